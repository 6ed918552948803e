#!/usr/bin/env python3
"""Helpers of the perf scripts: annotate certgate-load JSON, and turn JSON lines into Markdown.

    report.py merge KEY=VALUE...         stdin: certgate-load --json output; stdout: one JSON line
                                         with KEY=VALUE added and server CPU per operation derived
    report.py median FILE METRIC SERVER FIELD
                                         median of FIELD over the rounds of METRIC on SERVER
    report.py compare FILE               the Markdown tables of perf/compare.sh
    report.py calibration WHEN TEXT      one JSON line from perf/lib.sh's `calibrate` output
                                         (openssl speed), for the crypto floor of compare
    report.py tool-merge wrk|h2load FILE KEY=VALUE...
                                         one JSON line from a wrk or h2load report
    report.py tool-table FILE            the Markdown table of perf/wrk.sh and perf/h2load.sh
    report.py selftest                   checks the parsers and tables on fabricated input

Only the standard library. Numbers from the records; nothing is invented: a missing value is "—".
"""

import json
import statistics
import sys

SERVERS = ["certgate", "nginx", "haproxy", "caddy"]

# A run is clean when at most this % of either CPU went to anything but the measured processes
# (the server on CPU 0; the load generator and the upstream on CPU 1). Medians use the clean runs
# of a metric and server when there is at least one, else all its runs (marked with *).
CLEAN_OTHER_PCT = 10.0

# metric -> (label, value field, unit, higher_is_better)
# The value fields are those of certgate-load's JSON or ones merge() derives.
ROWS = [
    ("hs_full", "ops_per_s", "full mTLS handshakes/s (handshake only)", True),
    ("hs_full_req", "ops_per_s", "full mTLS handshake + 1 request, conn/s", True),
    ("hs_resume", "ops_per_s", "resumed handshakes/s (handshake only)", True),
    ("keepalive", "ops_per_s", "keep-alive proxied requests/s", True),
    ("p99_full", "p99_us", "p99 latency, handshake + request at fixed rate (µs)", False),
    ("p99_keepalive", "p99_us", "p99 latency, keep-alive requests at fixed rate (µs)", False),
    ("hs_full", "cpu_us_per_op", "server CPU per full handshake (µs)", False),
    ("hs_full_req", "cpu_us_per_op", "server CPU per full handshake + request (µs)", False),
    ("hs_resume", "cpu_us_per_op", "server CPU per resumed handshake (µs)", False),
    ("keepalive", "cpu_us_per_op", "server CPU per keep-alive request (µs)", False),
]


def number(text):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def last_json_object(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


def derive(rec):
    """Adds the fields the tables use, from the raw load result and the CPU counters."""
    lat = rec.get("latency_us") or {}
    if "p99" in lat:
        rec["p99_us"] = lat["p99"]
    ops = rec.get("ops") or 0
    ticks = rec.get("server_cpu_ticks")
    clk = rec.get("clk_tck") or 100
    if isinstance(ticks, (int, float)):
        rec["server_cpu_s"] = ticks / clk
        if ops:
            rec["cpu_us_per_op"] = round(ticks / clk * 1e6 / ops, 1)
    for cpu in ("cpu0", "cpu1"):
        busy, total = rec.get(cpu + "_busy_jiffies"), rec.get(cpu + "_total_jiffies")
        if isinstance(busy, (int, float)) and total:
            rec[cpu + "_busy_pct"] = round(100.0 * busy / total, 1)
    # CPU time on each CPU that none of the measured processes was charged: other processes,
    # and interrupt/softirq work (loopback delivery). High values mean a disturbed run.
    total0, total1 = rec.get("cpu0_total_jiffies"), rec.get("cpu1_total_jiffies")
    if total0 and isinstance(ticks, (int, float)):
        rec["other_cpu0_pct"] = round(100.0 * (rec["cpu0_busy_jiffies"] - ticks) / total0, 1)
    if total1 and isinstance(rec.get("load_cpu_s"), (int, float)):
        mine = rec.get("upstream_cpu_ticks", 0) + rec["load_cpu_s"] * clk
        rec["other_cpu1_pct"] = round(100.0 * (rec["cpu1_busy_jiffies"] - mine) / total1, 1)
    others = [rec[k] for k in ("other_cpu0_pct", "other_cpu1_pct") if k in rec]
    rec["clean"] = bool(others) and max(others) <= CLEAN_OTHER_PCT
    errors = rec.get("errors") or {}
    rec["error_count"] = sum(v for v in errors.values() if isinstance(v, (int, float)))
    return rec


def cmd_merge(args):
    raw = sys.stdin.read()
    rec = last_json_object(raw)
    if rec is None:
        rec = {"load_failed": True, "load_output": raw[-2000:]}
    for kv in args:
        key, _, value = kv.partition("=")
        rec[key] = number(value)
    print(json.dumps(derive(rec), sort_keys=True))


def load(path):
    recs = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                rec = json.loads(line)
                if "clean" not in rec:
                    others = [rec[k] for k in ("other_cpu0_pct", "other_cpu1_pct") if k in rec]
                    rec["clean"] = bool(others) and max(others) <= CLEAN_OTHER_PCT
                recs.append(rec)
    return recs


def runs(recs, metric, server):
    """The usable runs of metric on server: the clean ones if any, else all; and whether clean."""
    rs = [r for r in recs if r.get("metric") == metric and r.get("server") == server
          and not r.get("load_failed")]
    clean = [r for r in rs if r.get("clean", True)]
    return (clean, True) if clean else (rs, False)


def values(recs, metric, server, field):
    return [r[field] for r in runs(recs, metric, server)[0] if isinstance(r.get(field), (int, float))]


def median(recs, metric, server, field):
    v = values(recs, metric, server, field)
    return statistics.median(v) if v else None


def fmt_m(recs, metric, server, field):
    """fmt(median) with * when only disturbed runs were available."""
    m = median(recs, metric, server, field)
    rs, clean = runs(recs, metric, server)
    return fmt(m) + ("" if clean or m is None else "*")


def fmt(x):
    if x is None:
        return "—"
    if float(x).is_integer() or abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:.1f}"
    return f"{x:.2f}"


def cmd_median(args):
    path, metric, server, field = args
    m = median(load(path), metric, server, field)
    print("" if m is None else m)


def compare_tables(recs):
    servers = [s for s in SERVERS if any(r.get("server") == s for r in recs)]
    peers = [s for s in servers if s != "certgate"]
    rounds = max((r.get("round", 0) for r in recs), default=0)
    out = []
    head = ["metric"] + servers + [f"certgate/{p}" for p in peers]
    out.append(f"Medians of {rounds} round(s), over the clean runs (at most {CLEAN_OTHER_PCT:.0f}% of "
               "either CPU spent outside the measured processes); * marks a median of disturbed runs "
               "only. Ratios are certgate ÷ peer: above 1 is better for throughput, below 1 is "
               "better for latency and CPU.")
    out.append("")
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    for metric, field, label, _higher in ROWS:
        if not any(r.get("metric") == metric for r in recs):
            continue
        rate = next((r.get("rate") for r in recs if r.get("metric") == metric and r.get("rate")), None)
        if rate and field == "p99_us":
            label = label.replace("fixed rate", f"{fmt(rate)}/s")
        meds = {s: median(recs, metric, s, field) for s in servers}
        row = [label] + [fmt_m(recs, metric, s, field) for s in servers]
        for p in peers:
            c, v = meds.get("certgate"), meds.get(p)
            row.append(f"{c / v:.2f}" if c is not None and v else "—")
        out.append("| " + " | ".join(row) + " |")
    out.append("")
    out.append("Conditions per run (medians): errors; resumption ratio; busy % of the server's CPU "
               "(0) and of the load CPU (1: certgate-load + the shared upstream); \"other\" is the "
               "part of that busy time charged to none of the measured processes (interrupts, "
               "softirq, anything else running).")
    out.append("")
    out.append("| metric | server | clean runs | ops/s | errors | resumed ratio | CPU 0 busy % | "
               "CPU 0 other % | CPU 1 busy % | CPU 1 other % |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    metrics = []
    for r in recs:
        if r.get("metric") not in metrics:
            metrics.append(r.get("metric"))
    for metric in metrics:
        for s in servers:
            if not any(r.get("metric") == metric and r.get("server") == s for r in recs):
                continue
            failed = sum(1 for r in recs if r.get("metric") == metric and r.get("server") == s
                         and r.get("load_failed"))
            errs = median(recs, metric, s, "error_count")
            ratio = median(recs, metric, s, "resumption_ratio")
            allr = [r for r in recs if r.get("metric") == metric and r.get("server") == s]
            nclean = sum(1 for r in allr if r.get("clean", True) and not r.get("load_failed"))
            row = [metric, s, f"{nclean}/{len(allr)}", fmt(median(recs, metric, s, "ops_per_s")),
                   (fmt(errs) if errs is not None else "—") + (f" ({failed} run(s) failed)" if failed else ""),
                   f"{ratio:.2f}" if ratio is not None and metric == "hs_resume" else "",
                   fmt(median(recs, metric, s, "cpu0_busy_pct")),
                   fmt(median(recs, metric, s, "other_cpu0_pct")),
                   fmt(median(recs, metric, s, "cpu1_busy_pct")),
                   fmt(median(recs, metric, s, "other_cpu1_pct"))]
            out.append("| " + " | ".join(row) + " |")
    out.append("")
    noisy = sum(1 for r in recs if r.get("quiet_before") == 0)
    if noisy:
        out.append(f"{noisy} run(s) started while the machine was still busy with other work.")
        out.append("")
    out.append(floor_table(recs))
    out.append("")
    out.append(targets(recs))
    return "\n".join(out)


# What the handshakes cannot avoid, in operations of `openssl speed` (sign, verify, X25519):
# a returning client's full handshake (its chain verification is cached: 1 sign for the server's
# CertificateVerify, 1 verify of the client's, 2 X25519), a first-time client's (2 more verifies:
# leaf and intermediate signatures) and a TLS 1.3 resumption (psk_dhe_ke: 2 X25519).
FLOORS = {
    "full": ("full mTLS handshake, returning client: 1 sign + 1 verify + 2 X25519", (1, 1, 2)),
    "first": ("full mTLS handshake, first-time client: 1 sign + 3 verifies + 2 X25519", (1, 3, 2)),
    "resume": ("TLS 1.3 resumption: 2 X25519", (0, 0, 2)),
}

# CPU row -> the floor it is a multiple of (keep-alive requests: of a returning client's full
# handshake, as a scale only, since a request does no public-key crypto).
FLOOR_OF = {"hs_full": "full", "hs_full_req": "full", "hs_resume": "resume", "keepalive": "full"}


def cmd_calibration(args):
    """`calibrate`'s text ("ECDSA P-256 N sign/s, N verify/s, X25519 N op/s") as a JSON line."""
    when, text = args[0], " ".join(args[1:])
    words = text.replace(",", " ").split()
    rec = {"calibration": when}
    for key, unit in (("sign_per_s", "sign/s"), ("verify_per_s", "verify/s"), ("x25519_per_s", "op/s")):
        if unit in words:
            v = number(words[words.index(unit) - 1])
            if isinstance(v, (int, float)) and v > 0:
                rec[key] = v
    print(json.dumps(rec, sort_keys=True))


def floors(recs):
    """The crypto floors in µs (name -> µs) from the mean speed over the calibration records, and
    that speed (sign/s, verify/s, X25519/s); empty when the run had no complete calibration."""
    cals = [r for r in recs if "calibration" in r
            and all(isinstance(r.get(k), (int, float)) and r[k] > 0
                    for k in ("sign_per_s", "verify_per_s", "x25519_per_s"))]
    if not cals:
        return {}, None
    speed = tuple(statistics.mean(r[k] for r in cals)
                  for k in ("sign_per_s", "verify_per_s", "x25519_per_s"))
    us = {name: sum(n * 1e6 / ops for n, ops in zip(counts, speed))
          for name, (_label, counts) in FLOORS.items()}
    return us, speed


def floor_table(recs):
    """The crypto floor of the run, and every certgate CPU figure as a multiple of it."""
    us, speed = floors(recs)
    if not us:
        return "No crypto floor: the run has no `openssl speed` calibration."
    n = sum(1 for r in recs if "calibration" in r)
    out = [f"Crypto floor of this run (`openssl speed` on the server's CPU, mean of {n} "
           f"calibration(s): {speed[0]:,.0f} P-256 signs/s, {speed[1]:,.0f} verifies/s, "
           f"{speed[2]:,.0f} X25519 ops/s):", ""]
    for name, (label, _counts) in FLOORS.items():
        out.append(f"- {label}: {us[name]:.1f} µs")
    out.append("")
    servers = [s for s in SERVERS if any(r.get("server") == s for r in recs)]
    head = ["server CPU", "floor"] + [f"{s} ÷ floor" for s in servers]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    for metric, field, label, _higher in ROWS:
        if field != "cpu_us_per_op" or metric not in FLOOR_OF:
            continue
        if not any(r.get("metric") == metric for r in recs):
            continue
        f = us[FLOOR_OF[metric]]
        row = [label, f"{f:.1f} µs ({FLOOR_OF[metric]})"]
        for s in servers:
            v = median(recs, metric, s, field)
            row.append("—" if v is None else f"{v / f:.2f}")
        out.append("| " + " | ".join(row) + " |")
    return "\n".join(out)


def targets(recs):
    """The targets of the second performance round, checked against the medians."""
    m = lambda metric, server, field: median(recs, metric, server, field)  # noqa: E731
    lines = ["Targets (medians above):", ""]

    def check(name, ok, detail):
        state = "—" if ok is None else ("met" if ok else "**missed**")
        lines.append(f"- {name}: {state} ({detail})")

    us, _speed = floors(recs)
    for metric, floor, limit, name in (
            ("hs_full", "full", 1.5, "server CPU per full mTLS handshake (returning client) ≤ 1.5× its floor"),
            ("hs_resume", "resume", 1.6, "server CPU per TLS 1.3 resumption ≤ 1.6× its floor")):
        c, f = m(metric, "certgate", "cpu_us_per_op"), us.get(floor)
        check(name, None if None in (c, f) else c <= limit * f,
              f"certgate {fmt(c)} µs, floor " + (f"{f:.1f} µs, {c / f:.2f}×" if c and f else "—"))
    c, n = m("keepalive", "certgate", "cpu_us_per_op"), m("keepalive", "nginx", "cpu_us_per_op")
    check("server CPU per keep-alive proxied request ≤ 0.4× nginx's",
          None if None in (c, n) else c <= 0.4 * n,
          f"certgate {fmt(c)} µs, nginx {fmt(n)} µs, ratio " + (f"{c / n:.2f}" if c and n else "—"))
    for metric in ("p99_full", "p99_keepalive"):
        c, n = m(metric, "certgate", "p99_us"), m(metric, "nginx", "p99_us")
        if c is None and n is None:
            continue
        check(f"{metric.replace('_', ' ')} ≤ nginx", None if None in (c, n) else c <= n,
              f"certgate {fmt(c)} µs, nginx {fmt(n)} µs")
    return "\n".join(lines)


def cmd_compare(args):
    print(compare_tables(load(args[0])))


UNITS_US = {"us": 1.0, "ms": 1000.0, "s": 1e6}


def to_us(text):
    import re

    m = re.fullmatch(r"([0-9.]+)(us|ms|s)", text.strip())
    return float(m.group(1)) * UNITS_US[m.group(2)] if m else None


def parse_wrk(text):
    import re

    rec = {}
    m = re.search(r"Requests/sec:\s+([0-9.]+)", text)
    if m:
        rec["ops_per_s"] = float(m.group(1))
    m = re.search(r"(\d+) requests in ([0-9.]+)(ms|s|m)", text)
    if m:
        rec["ops"] = int(m.group(1))
    lat = {}
    for pct, key in (("50%", "p50"), ("90%", "p90"), ("99%", "p99")):
        m = re.search(r"^\s+" + re.escape(pct) + r"\s+([0-9.]+(?:us|ms|s))\s*$", text, re.M)
        if m:
            lat[key] = to_us(m.group(1))
    if lat:
        rec["latency_us"] = lat
    errors = {}
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        for kind, n in zip(("connect", "read", "write", "timeout"), m.groups()):
            if int(n):
                errors[kind] = int(n)
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errors["non_2xx"] = int(m.group(1))
    rec["errors"] = errors
    return rec


def parse_h2load(text):
    import re

    rec = {}
    m = re.search(r"finished in ([0-9.]+)s, ([0-9.]+) req/s", text)
    if m:
        rec["ops_per_s"] = float(m.group(2))
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", text)
    errors = {}
    if m:
        rec["ops"] = int(m.group(4))
        for kind, n in zip(("failed", "errored", "timeout"), m.groups()[4:]):
            if int(n):
                errors[kind] = int(n)
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if m and (int(m.group(3)) or int(m.group(4))):
        errors["non_2xx"] = int(m.group(3)) + int(m.group(4))
    m = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", text)
    if m:
        rec["latency_us"] = {"mean": to_us(m.group(3)), "max": to_us(m.group(2))}
    rec["errors"] = errors
    return rec


def cmd_tool_merge(args):
    tool, path, kvs = args[0], args[1], args[2:]
    with open(path, errors="replace") as f:
        text = f.read()
    rec = {"wrk": parse_wrk, "h2load": parse_h2load}[tool](text)
    if "ops_per_s" not in rec:
        rec = {"load_failed": True, "load_output": text[-2000:]}
    rec["tool"] = tool
    for kv in kvs:
        key, _, value = kv.partition("=")
        rec[key] = number(value)
    print(json.dumps(derive(rec), sort_keys=True))


def tool_table(recs):
    tool = recs[0].get("tool", "?") if recs else "?"
    servers = [s for s in SERVERS if any(r.get("server") == s for r in recs)]
    rounds = max((r.get("round", 0) for r in recs), default=0)
    lat_key = "p99" if tool == "wrk" else "mean"
    out = [f"Medians of {rounds} round(s), over the clean runs (at most {CLEAN_OTHER_PCT:.0f}% of "
           "either CPU spent outside the measured processes); * marks a median of disturbed runs "
           "only.", "",
           f"| server | requests/s | latency {lat_key} (µs) | server CPU per request (µs) | "
           "errors | CPU 0 busy % | CPU 0 other % | CPU 1 busy % | CPU 1 other % |",
           "|---|---|---|---|---|---|---|---|---|"]
    for s in servers:
        lat = [r["latency_us"][lat_key] for r in runs(recs, "ka", s)[0]
               if isinstance((r.get("latency_us") or {}).get(lat_key), (int, float))]
        failed = sum(1 for r in recs if r.get("server") == s and r.get("load_failed"))
        errs = median(recs, "ka", s, "error_count")
        out.append("| " + " | ".join([
            s, fmt_m(recs, "ka", s, "ops_per_s"),
            fmt(statistics.median(lat) if lat else None),
            fmt(median(recs, "ka", s, "cpu_us_per_op")),
            fmt(errs) + (f" ({failed} run(s) failed)" if failed else ""),
            fmt(median(recs, "ka", s, "cpu0_busy_pct")),
            fmt(median(recs, "ka", s, "other_cpu0_pct")),
            fmt(median(recs, "ka", s, "cpu1_busy_pct")),
            fmt(median(recs, "ka", s, "other_cpu1_pct"))]) + " |")
    c = median(recs, "ka", "certgate", "ops_per_s")
    for p in servers:
        if p == "certgate":
            continue
        v = median(recs, "ka", p, "ops_per_s")
        if c and v:
            out.append("")
            out.append(f"certgate/{p} requests/s: {c / v:.2f}")
    return "\n".join(out)


def cmd_tool_table(args):
    print(tool_table(load(args[0])))


def cmd_selftest(_args):
    import io
    import tempfile

    fake = ('{"mode":"full","connections":64,"threads":1,"duration_s":5.0,"ops":20000,'
            '"ops_per_s":4000.0,"ok":20000,"errors":{"timeout":2},"resumed":0,'
            '"resumption_ratio":0.0,"latency_us":{"p50":900,"p90":1500,"p99":3000,'
            '"p999":5000,"max":9000}}')
    lines = []
    for server, ops, ticks in (("certgate", 20000, 450), ("nginx", 5000, 495)):
        for rnd in (1, 2, 3):
            rec_in = json.loads(fake)
            rec_in["ops"] = ops
            rec_in["ops_per_s"] = ops / 5.0
            sys.stdin = io.StringIO("some log line\n" + json.dumps(rec_in) + "\n")
            buf = io.StringIO()
            old = sys.stdout
            sys.stdout = buf
            try:
                cmd_merge([f"server={server}", "metric=hs_full", f"round={rnd}",
                           f"server_cpu_ticks={ticks}", "clk_tck=100",
                           "cpu0_busy_jiffies=495", "cpu0_total_jiffies=500",
                           "cpu1_busy_jiffies=250", "cpu1_total_jiffies=500"])
            finally:
                sys.stdout = old
            lines.append(buf.getvalue())
    rec = json.loads(lines[0])
    assert rec["cpu_us_per_op"] == 225.0, rec
    assert rec["p99_us"] == 3000 and rec["error_count"] == 2 and rec["cpu0_busy_pct"] == 99.0, rec
    sys.stdin = io.StringIO("not json at all\n")
    buf = io.StringIO()
    old = sys.stdout
    sys.stdout = buf
    try:
        cmd_merge(["server=caddy", "metric=hs_full", "round=1"])
    finally:
        sys.stdout = old
    assert json.loads(buf.getvalue())["load_failed"] is True
    lines.append(buf.getvalue())
    buf = io.StringIO()
    old = sys.stdout
    sys.stdout = buf
    try:
        # 10,000 signs/s, 5,000 verifies/s, 20,000 X25519/s: floors 100 + 200 + 100 = 400 µs
        # (returning client) and 100 µs (resumption).
        cmd_calibration(["before", "ECDSA P-256 10000 sign/s, 5000 verify/s, X25519 20000 op/s"])
    finally:
        sys.stdout = old
    lines.append(buf.getvalue())
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        f.write("".join(lines))
    table = compare_tables(load(f.name))
    assert "| full mTLS handshakes/s (handshake only) | 4,000 | 1,000 | — | 4.00 | — |" in table, table
    assert "- full mTLS handshake, returning client: 1 sign + 1 verify + 2 X25519: 400.0 µs" in table, table
    assert "| server CPU per full handshake (µs) | 400.0 µs (full) | 0.56 | 2.48 | — |" in table, table
    assert "≤ 1.5× its floor: met (certgate 225 µs, floor 400.0 µs, 0.56×)" in table, table
    assert "(1 run(s) failed)" in table, table
    print(table)

    wrk_out = """Running 5s test @ https://127.0.0.1:20001/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.10ms  300.00us   9.00ms   90.00%
  Latency Distribution
     50%    2.00ms
     75%    2.20ms
     90%    2.50ms
     99%    3.10ms
  150000 requests in 5.00s, 20.00MB read
  Socket errors: connect 0, read 3, write 0, timeout 0
Requests/sec:  30000.00
Transfer/sec:      4.00MB
"""
    h2_out = """finished in 5.00s, 25000.00 req/s, 3.00MB/s
requests: 125000 total, 125000 started, 125000 done, 124990 succeeded, 10 failed, 0 errored, 0 timeout
status codes: 124990 2xx, 0 3xx, 10 4xx, 0 5xx
                     min         max         mean         sd        +/- sd
time for request:      500us     12.00ms      2.50ms       1.00ms    80.00%
"""
    recs = []
    for tool, text in (("wrk", wrk_out), ("h2load", h2_out)):
        with tempfile.NamedTemporaryFile("w", delete=False) as f:
            f.write(text)
        buf = io.StringIO()
        old = sys.stdout
        sys.stdout = buf
        try:
            cmd_tool_merge([tool, f.name, "server=certgate", "metric=ka", "round=1",
                            "server_cpu_ticks=500", "clk_tck=100", "cpu0_busy_jiffies=520",
                            "cpu0_total_jiffies=1000", "cpu1_busy_jiffies=300",
                            "cpu1_total_jiffies=1000", "load_cpu_s=2.0", "upstream_cpu_ticks=90"])
        finally:
            sys.stdout = old
        recs.append(json.loads(buf.getvalue()))
    w, h = recs
    assert w["ops_per_s"] == 30000.0 and w["ops"] == 150000, w
    assert w["latency_us"]["p99"] == 3100.0 and w["errors"] == {"read": 3}, w
    assert abs(w["cpu_us_per_op"] - 33.3) < 0.1, w
    assert h["ops"] == 124990 and h["errors"] == {"failed": 10, "non_2xx": 10}, h
    assert h["latency_us"]["mean"] == 2500.0, h
    assert w["clean"] and w["other_cpu0_pct"] == 2.0 and w["other_cpu1_pct"] == 1.0, w
    assert "| certgate | 30,000 | 3,100 | 33.3 | 3 | 52 | 2 | 30 | 1 |" in tool_table([w]), tool_table([w])
    print("selftest: ok")


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    cmd, args = sys.argv[1], sys.argv[2:]
    {"merge": cmd_merge, "median": cmd_median, "compare": cmd_compare,
     "calibration": cmd_calibration,
     "tool-merge": cmd_tool_merge, "tool-table": cmd_tool_table,
     "selftest": cmd_selftest}[cmd](args)


if __name__ == "__main__":
    main()

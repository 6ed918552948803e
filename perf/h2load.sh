#!/usr/bin/env bash
# perf/h2load.sh — HTTP/2 over TLS, certgate vs nginx (`listen ... ssl http2`), same upstream.
#
# Two parts, each printing a Markdown section:
#  1. h2load (HTTP/2, not --h1): h2load cannot present a client certificate, so both servers run
#     with OPTIONAL client auth (certgate `mode = "optional"`, nginx `ssl_verify_client optional`).
#  2. mTLS: certgate-load --protocol h2 presents the client certificate; both servers REQUIRE it.
#     Requests/s, server CPU per request (utime + stime of the server's processes from
#     /proc/<pid>/stat, as perf/lib.sh measures), p99 latency, and the ratios certgate/nginx
#     against the target: at most half of nginx's CPU per request, p99 no worse than nginx's.
#     --rate R holds both servers to the same R requests/s (certgate-load --rate): CPU per request
#     is then compared at equal load, below either server's limit, instead of each at its own
#     maximum (where the rig's CPU 1, not the server, may set the pace).
# Both: --connections (64) x --streams (10) concurrent streams, one server worker pinned to CPU 0;
# the load (1 thread) and the shared upstream on CPU 1. A server that does not negotiate ALPN h2
# (certgate before its HTTP/2 support) is not measured; the output says so.
#
# Usage: perf/h2load.sh [--rounds 3] [--duration 5s] [--connections 64] [--streams 10]
#                       [--servers "certgate nginx"] [--parts "h2load mtls"] [--rate R]
#                       [--no-install] [--no-build]
# Output: Markdown on stdout; raw JSON lines and the tools' reports in perf/out/h2load-<time>/.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

rounds=3 duration=5 connections=64 streams=10 servers="certgate nginx" parts="h2load mtls"
install=1 build=1 rate=""
while (($#)); do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=${2%s}; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --streams) streams=$2; shift 2 ;;
    --servers) servers=$2; shift 2 ;;
    --parts) parts=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --no-install) install=0; shift ;;
    --no-build) build=0; shift ;;
    -h | --help)
      sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0 ;;
    *) die "unknown argument: $1" ;;
  esac
done
[[ $rounds =~ ^[1-9][0-9]?$ ]] || die "--rounds must be 1..99"
if ! [[ $duration =~ ^[0-9]+$ ]] || ((duration < 1 || duration > 600)); then die "--duration: whole seconds, 1s..600s"; fi
if ! [[ $connections =~ ^[0-9]+$ ]] || ((connections < 1 || connections > 10000)); then die "--connections 1..10000"; fi
if ! [[ $streams =~ ^[0-9]+$ ]] || ((streams < 1 || streams > 128)); then die "--streams 1..128 (nginx and certgate allow 128 concurrent streams)"; fi
if [[ -n $rate ]] && ! [[ $rate =~ ^[1-9][0-9]{0,6}$ ]]; then die "--rate: requests per second, 1..9999999"; fi
for p in $parts; do [[ $p == h2load || $p == mtls ]] || die "--parts: h2load and/or mtls, not '$p'"; done

# nginx's peer config with HTTP/2 on its TLS listener (nginx 1.22: `listen ... ssl http2`).
export NGINX_LISTEN_OPTS=" http2"
# 64 connections x 10 streams keep 640 requests in flight: with the usual 32 idle upstream
# connections both servers would open an upstream connection for most requests (measured:
# certgate 86 %, nginx 38 % of requests), so both keep as many as can be in flight.
export UPSTREAM_KEEPALIVE=${UPSTREAM_KEEPALIVE:-1024}

new_run h2load
start=$(date +%s)
if ((install)); then
  ensure_pkgs nghttp2-client nginx-light curl time || die "cannot install nghttp2-client nginx-light curl time"
fi
((build)) && build_certgate
[[ -x $CERTGATE ]] || die "no $CERTGATE"
make_pki
start_upstream

# speaks_h2 NAME [CERT]: the server negotiates ALPN h2 and answers "ok" over HTTP/2.
speaks_h2() {
  local port=${SRV_PORT[$1]} out
  local -a cert=()
  [[ ${2:-} == cert ]] && cert=(--cert "$PKI/client.pem" --key "$PKI/client.key")
  out=$(curl -s --http2 --max-time 5 --cacert "$PKI/server-ca.pem" "${cert[@]}" \
    --resolve "localhost:$port:127.0.0.1" -w ' %{http_version}' "https://localhost:$port/") || return 1
  [[ $out == "ok"$'\n'" 2" ]]
}

# start_h2 NAME VERIFY: starts NAME and keeps it when it speaks h2 (else stops it and records a
# note). Returns non-zero when NAME is not measured.
declare -A NOTE=()
start_h2() {
  local s=$1 verify=$2 with=""
  [[ $verify == required ]] && with=cert
  if ! server_available "$s"; then NOTE[$s]="not installed"; return 1; fi
  if ! start_server "$s" "$verify"; then NOTE[$s]="did not start (logs in $RUN)"; stop_server "$s"; return 1; fi
  if ! check_mtls "$s"; then NOTE[$s]="no 'ok' over HTTPS/1.1 with a client certificate"; stop_server "$s"; return 1; fi
  if ! speaks_h2 "$s" "$with"; then
    if [[ $s == certgate ]]; then
      NOTE[$s]="not measured: it does not negotiate ALPN h2 (no HTTP/2 in this build: $(server_version "$s")); run this script again on a build with HTTP/2"
    else
      NOTE[$s]="not measured: it does not negotiate ALPN h2 with its configuration in perf/peers/"
    fi
    log "$s: ${NOTE[$s]}"
    stop_server "$s"
    return 1
  fi
}

# notes: the Markdown lines for servers that were not measured.
notes() {
  local s
  for s in $servers; do
    [[ -n ${NOTE[$s]:-} ]] && echo "- **$s: ${NOTE[$s]}.**"
  done
  return 0
}

# show_last JSONL: one progress line for the last record.
show_last() {
  tail -n 1 "$1" | python3 -c '
import json, sys
r = json.load(sys.stdin)
p99 = (r.get("latency_us") or {}).get("p99", "-")
print("  %-8s round %s: %10s req/s  cpu/req %6s us  p99 %s us  errors %s%s" % (r.get("server"),
      r.get("round"), round(r.get("ops_per_s", 0)), r.get("cpu_us_per_op", "-"), p99,
      r.get("error_count", "-"), "" if r.get("clean") else "  (disturbed)"))' >&2
}

# --- part 1: h2load, optional client auth ----------------------------------------------------
part_h2load() {
  local jsonl="$RUN/h2load.jsonl" out="$RUN/h2load-last.txt" active=() s round
  NOTE=()
  for s in $servers; do
    if start_h2 "$s" optional; then
      # Without a certificate the request must be forwarded too (optional client auth).
      local port=${SRV_PORT[$s]} body
      body=$(curl -s --http2 --cacert "$PKI/server-ca.pem" --max-time 5 --resolve "localhost:$port:127.0.0.1" "https://localhost:$port/") || true
      if [[ $body == ok ]]; then active+=("$s"); continue; fi
      NOTE[$s]="without a client certificate it answered '$body'"
      stop_server "$s"
    fi
  done
  if ((${#active[@]})); then
    log "h2load: ${active[*]}; $rounds round(s) of ${duration}s, $connections connections x $streams streams"
    for ((round = 1; round <= rounds; round++)); do
      for s in "${active[@]}"; do
        measure "$s" "$out" timeout --kill-after=5 $((duration + 30)) taskset -c "$LOAD_CPU" \
          h2load -t1 -c"$connections" -m"$streams" -D"$duration" "https://localhost:${SRV_PORT[$s]}/" || true
        cat "$RUN/load.err" >>"$out"
        cat "$out" >>"$RUN/h2load-all.txt"
        python3 "$PERF_DIR/report.py" tool-merge h2load "$out" "${METER[@]}" metric=ka round="$round" \
          connections="$connections" streams="$streams" >>"$jsonl"
        show_last "$jsonl"
      done
    done
  fi
  {
    echo "### HTTP/2 with h2load, optional client auth ($(date -u +%Y-%m-%d))"
    echo
    machine_info
    for s in "${active[@]}"; do echo "- $s: $(server_version "$s")"; done
    notes
    echo "- $(h2load --version 2>&1 | head -n 1 | sed 's/^ *//'): \`h2load -t1 -c$connections -m$streams -D$duration\` on CPU $LOAD_CPU; servers on CPU $SERVER_CPU, one worker each"
    echo "- Command: \`perf/h2load.sh --parts h2load --rounds $rounds --duration ${duration}s --connections $connections --streams $streams --servers \"$servers\"\`"
    echo
    if ((${#active[@]})); then python3 "$PERF_DIR/report.py" tool-table "$jsonl"; else echo "No server measured."; fi
    echo
  } | tee "$RUN/h2load.md"
  for s in "${active[@]}"; do stop_server "$s"; done
}

# --- part 2: certgate-load --protocol h2, client certificate required -------------------------
part_mtls() {
  local jsonl="$RUN/h2-mtls.jsonl" out="$RUN/h2-mtls-last.json" active=() s round
  NOTE=()
  [[ -x $CERTGATE_LOAD ]] || die "no load generator at $CERTGATE_LOAD (cargo build --release --workspace --bins)"
  for s in $servers; do
    start_h2 "$s" required && active+=("$s")
  done
  if ((${#active[@]})); then
    log "certgate-load --protocol h2: ${active[*]}; $rounds round(s) of ${duration}s, $connections connections x $streams streams"
    for s in "${active[@]}"; do # warm-up, not recorded
      timeout 30 "$CERTGATE_LOAD" --connect "127.0.0.1:${SRV_PORT[$s]}" --ca "$PKI/server-ca.pem" \
        --cert "$PKI/client.pem" --key "$PKI/client.key" --protocol h2 --mode keepalive \
        --connections "$connections" --streams "$streams" --pin "$LOAD_CPU" --duration 1s \
        --json >/dev/null 2>&1 || log "warm-up of $s failed"
    done
    for ((round = 1; round <= rounds; round++)); do
      for s in "${active[@]}"; do
        measure "$s" "$out" timeout --kill-after=5 $((duration + 30)) "$CERTGATE_LOAD" \
          --connect "127.0.0.1:${SRV_PORT[$s]}" --server-name localhost --ca "$PKI/server-ca.pem" \
          --cert "$PKI/client.pem" --key "$PKI/client.key" --protocol h2 --mode keepalive \
          --connections "$connections" --streams "$streams" --threads 1 --pin "$LOAD_CPU" \
          --duration "${duration}s" --max-errors 1000000000 ${rate:+--rate "$rate"} --json || true
        python3 "$PERF_DIR/report.py" merge "${METER[@]}" metric=h2_mtls round="$round" <"$out" >>"$jsonl"
        show_last "$jsonl"
      done
    done
  fi
  {
    echo "### HTTP/2 with mTLS, certgate-load --protocol h2 ($(date -u +%Y-%m-%d))"
    echo
    machine_info
    for s in "${active[@]}"; do echo "- $s: $(server_version "$s")"; done
    notes
    echo "- certgate-load $("$CERTGATE_LOAD" --version 2>/dev/null | awk '{print $2}'): 1 thread on CPU $LOAD_CPU, $connections connections x $streams streams, ${duration}s per run, client certificate required by both servers; servers on CPU $SERVER_CPU, one worker each, same upstream"
    echo "- Speed of CPU $SERVER_CPU (openssl speed) after the runs: $(calibrate "$SERVER_CPU")"
    [[ -n $rate ]] && echo "- Both servers held to $rate requests/s (certgate-load --rate): CPU per request at equal load"
    echo "- Command: \`perf/h2load.sh --parts mtls --rounds $rounds --duration ${duration}s --connections $connections --streams $streams --servers \"$servers\"${rate:+ --rate $rate}\`"
    echo
    if ((${#active[@]})); then RATE=$rate mtls_table "$jsonl"; else echo "No server measured."; fi
    echo
  } | tee "$RUN/h2-mtls.md"
  for s in "${active[@]}"; do stop_server "$s"; done
}

# mtls_table JSONL: medians per server (over the clean runs when there are any, * otherwise), and
# the ratios certgate/nginx against the targets.
mtls_table() {
  python3 - "$1" <<'PY'
import json, os, statistics, sys

recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
servers = [s for s in ("certgate", "nginx", "haproxy", "caddy") if any(r.get("server") == s for r in recs)]

def med(server, key):
    runs = [r for r in recs if r.get("server") == server and not r.get("load_failed")]
    clean = [r for r in runs if r.get("clean")]
    use = clean or runs
    vals = [r[key] for r in use if isinstance(r.get(key), (int, float))]
    return (statistics.median(vals) if vals else None), bool(use) and not clean

def fmt(x, star=False):
    if x is None:
        return "—"
    s = f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"
    return s + ("*" if star else "")

print("Medians of the rounds, over the clean runs (at most 10% of either CPU spent outside the "
      "measured processes); * marks a median of disturbed runs only.")
print()
print("| server | requests/s | server CPU per request (µs) | p99 (µs) | p50 (µs) | errors | "
      "CPU 0 busy % | CPU 0 other % | CPU 1 busy % | CPU 1 other % |")
print("|---|---|---|---|---|---|---|---|---|---|")
m = {}
for s in servers:
    row = {k: med(s, k) for k in ("ops_per_s", "cpu_us_per_op", "p99_us", "error_count")}
    lat = [r["latency_us"]["p50"] for r in recs if r.get("server") == s and (r.get("latency_us") or {}).get("p50")]
    m[s] = row
    print("| " + " | ".join([s, fmt(*row["ops_per_s"]), fmt(*row["cpu_us_per_op"]), fmt(*row["p99_us"]),
                             fmt(statistics.median(lat) if lat else None), fmt(row["error_count"][0])]
                     + [fmt(med(s, k)[0]) for k in ("cpu0_busy_pct", "other_cpu0_pct", "cpu1_busy_pct", "other_cpu1_pct")]) + " |")
c, n = m.get("certgate"), m.get("nginx")
if c and n:
    def ratio(k):
        a, b = c[k][0], n[k][0]
        return a / b if a is not None and b else None
    rps, cpu, p99 = ratio("ops_per_s"), ratio("cpu_us_per_op"), ratio("p99_us")
    print()
    print(f"certgate/nginx: requests/s {rps:.2f}" if rps is not None else "certgate/nginx: requests/s —", end="")
    print(f", CPU per request {cpu:.2f} (target ≤ 0.50: {'met' if cpu <= 0.5 else 'NOT met'})" if cpu is not None else ", CPU per request —", end="")
    print(f", p99 {p99:.2f} (target ≤ 1.00: {'met' if p99 <= 1.0 else 'NOT met'})" if p99 is not None else ", p99 —")
rate = float(os.environ.get("RATE") or 0)
short = [s for s in servers if rate and (m[s]["ops_per_s"][0] or 0) < 0.98 * rate]
if short:
    print()
    print(f"Short of the {rate:,.0f} requests/s asked: {', '.join(short)} (at its limit: "
          "not a comparison at equal load; choose a lower --rate).")
PY
}

for p in $parts; do
  case $p in
    h2load) part_h2load ;;
    mtls) part_mtls ;;
  esac
done
ln -sfn "$(basename "$RUN")" "$PERF_OUT/h2load-latest"
log "done in $(($(date +%s) - start)) s; raw results in $RUN"

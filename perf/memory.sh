#!/usr/bin/env bash
# perf/memory.sh — server memory per idle mutual-TLS connection: certgate vs nginx.
#
# For each server (one worker on CPU 0, mTLS required, TLS 1.3, the shared upstream): warms it
# with 100 connections, reads the RSS of all its processes (VmRSS), opens --connections idle
# established mTLS connections with perf/hold.py (Python asyncio + ssl, on CPU 1), reads the RSS
# again, then sends one keep-alive request on each connection and reads it a third time, then
# closes them all. Prints the RSS growth per connection in KiB for both states.
#
# Usage: perf/memory.sh [--connections 10000] [--servers "certgate nginx"] [--no-install] [--no-build]
#   (--servers may also name haproxy and caddy)
# Bounded: each phase of hold.py times out after 300 s. Output: a Markdown table on stdout,
# JSON lines in perf/out/memory-<time>/memory.jsonl.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

N=10000
SERVERS="certgate nginx"
INSTALL=1
BUILD=1
while (($#)); do
  case $1 in
    --connections) N=$2; shift 2 ;;
    --servers) SERVERS=$2; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1" ;;
  esac
done
if ! [[ $N =~ ^[0-9]+$ ]] || ((N < 100 || N > 100000)); then die "--connections 100..100000"; fi

new_run memory
START=$(date +%s)
nofile=$(ulimit -n)
if ((N + 200 > nofile)); then
  log "note: the open-file limit is $nofile (hard limit; raising it needs privileges); using $((nofile - 200)) connections instead of $N"
  N=$((nofile - 200))
fi
if ((INSTALL)); then ensure_pkgs nginx-light curl || die "cannot install nginx"; fi
((BUILD)) && build_certgate
[[ -x $CERTGATE ]] || die "no $CERTGATE"
make_pki
start_upstream
JSONL="$RUN/memory.jsonl"
PHASE_TIMEOUT=300

# hold_phase FD WORD: reads hold.py's next line, which must start with WORD; prints it.
hold_phase() {
  local fd=$1 word=$2 line
  if ! read -r -t "$PHASE_TIMEOUT" -u "$fd" line; then
    log "hold.py did not report '$word' within ${PHASE_TIMEOUT}s"
    return 1
  fi
  [[ $line == "$word"* ]] || { log "hold.py said: $line"; return 1; }
  echo "$line"
}

hold_args() {
  echo --port "${SRV_PORT[$1]}" --ca "$PKI/server-ca.pem" --cert "$PKI/client.pem" --key "$PKI/client.key" \
    --timeout "$PHASE_TIMEOUT"
}

measure_server() {
  local s=$1 line rss0 rss1 rss2 rss3 est req open1 open2
  local -a pids args
  read -r -a args <<<"$(hold_args "$s")"
  # Warm-up: 100 connections with a request each, closed.
  printf 'request\nclose\n' | timeout 60 taskset -c "$LOAD_CPU" python3 "$PERF_DIR/hold.py" "${args[@]}" -n 100 \
    >"$RUN/$s-warm.log" 2>&1 || log "$s: warm-up failed: $(tail -n 2 "$RUN/$s-warm.log")"
  sleep 1
  mapfile -t pids < <(server_pids "$s")
  rss0=$(rss_kib "${pids[@]}")
  log "$s: RSS $rss0 KiB with no connection; opening $N connections"

  local t0=$SECONDS
  coproc HOLD { exec taskset -c "$LOAD_CPU" python3 "$PERF_DIR/hold.py" "${args[@]}" -n "$N" 2>"$RUN/$s-hold.err"; }
  # shellcheck disable=SC2153 # HOLD_PID is set by coproc
  local hold_pid=$HOLD_PID out_fd=${HOLD[0]} in_fd=${HOLD[1]}
  STARTED_PIDS+=("$hold_pid")
  line=$(hold_phase "$out_fd" established) || { stop_pid "$hold_pid"; return 1; }
  est=$(awk '{print $2}' <<<"$line")
  log "$s: $line (in $((SECONDS - t0)) s)"
  sleep 2
  mapfile -t pids < <(server_pids "$s")
  rss1=$(rss_kib "${pids[@]}")
  open1=$(open_conns "$s")
  echo request >&"$in_fd"
  line=$(hold_phase "$out_fd" requested) || { stop_pid "$hold_pid"; return 1; }
  req=$(awk '{print $2 - $3}' <<<"$line")
  log "$s: $line"
  sleep 2
  rss2=$(rss_kib "${pids[@]}")
  open2=$(open_conns "$s")
  echo close >&"$in_fd"
  hold_phase "$out_fd" closed >/dev/null || true
  wait "$hold_pid" 2>/dev/null || true
  sleep 2
  rss3=$(rss_kib "${pids[@]}")
  log "$s: RSS $rss0 -> $rss1 (idle after handshake, $open1 open) -> $rss2 (after one request each, $open2 open) -> $rss3 KiB (closed)"
  printf '{"server":"%s","version":"%s","connections":%s,"open_idle":%s,"requested_ok":%s,"open_after_request":%s,"rss_kib_before":%s,"rss_kib_idle":%s,"rss_kib_after_request":%s,"rss_kib_closed":%s,"processes":%s}\n' \
    "$s" "$(server_version "$s")" "$est" "$open1" "$req" "$open2" "$rss0" "$rss1" "$rss2" "$rss3" "${#pids[@]}" >>"$JSONL"
}

for s in $SERVERS; do
  if ! server_available "$s"; then log "skipping $s: not installed"; continue; fi
  if ! start_server "$s" required || ! check_mtls "$s"; then
    log "skipping $s: it did not start or does not answer over mTLS"
    stop_server "$s"
    continue
  fi
  measure_server "$s" || log "$s: measurement failed"
  stop_server "$s"
done
[[ -s $JSONL ]] || die "nothing measured"

{
  echo "### Memory per idle mTLS connection ($(date -u +%Y-%m-%d))"
  echo
  machine_info
  echo "- Command: \`perf/memory.sh --connections $N --servers \"$SERVERS\"\`; one worker per server on CPU $SERVER_CPU; client: perf/hold.py (Python $(python3 -c 'import ssl, sys; print(sys.version.split()[0] + ", " + ssl.OPENSSL_VERSION)')) on CPU $LOAD_CPU"
  echo "- Speed of CPU $SERVER_CPU (openssl speed): $(calibrate "$SERVER_CPU")"
  echo "- RSS is VmRSS summed over the server's processes (nginx: master + worker)."
  echo
  python3 - "$JSONL" <<'EOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("| server | connections open (idle / after a request) | RSS before (MiB) | RSS, idle after handshake (MiB) | KiB per idle connection | RSS after one request each (MiB) | KiB per connection after a request | RSS after closing (MiB) |")
print("|---|---|---|---|---|---|---|---|")
per = {}
for r in recs:
    # Divide by the connections the server still had open when its RSS was read.
    n1 = r.get("open_idle") or r["connections"] or 1
    n2 = r.get("open_after_request") or n1
    idle = (r["rss_kib_idle"] - r["rss_kib_before"]) / n1
    after = (r["rss_kib_after_request"] - r["rss_kib_before"]) / n2
    per[r["server"]] = (idle, after)
    mib = lambda k: f"{k / 1024:.1f}"
    print(f"| {r['version']} | {n1:,} / {n2:,} | {mib(r['rss_kib_before'])} | {mib(r['rss_kib_idle'])} | "
          f"{idle:.1f} | {mib(r['rss_kib_after_request'])} | {after:.1f} | {mib(r['rss_kib_closed'])} |")
print()
if "certgate" in per:
    idle, after = per["certgate"]
    worst = max(idle, after)
    print(f"Target RSS per idle mTLS connection ≤ 8 KiB: {'met' if worst <= 8 else '**missed**'} "
          f"(certgate {idle:.1f} KiB after the handshake, {after:.1f} KiB after a request)")
    for peer, (pi, pa) in per.items():
        if peer != "certgate" and pi > 0:
            print(f"certgate/{peer}: {idle / pi:.2f} idle after handshake, "
                  f"{after / pa if pa else float('nan'):.2f} after a request")
EOF
} | tee "$RUN/memory.md"
ln -sfn "$(basename "$RUN")" "$PERF_OUT/memory-latest"
log "done in $(( $(date +%s) - START )) s; raw results: $JSONL"

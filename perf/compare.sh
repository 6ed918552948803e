#!/usr/bin/env bash
# perf/compare.sh — certgate against nginx, HAProxy and Caddy, per core, with certgate-load.
#
# Every server terminates TLS 1.3 with the same ECDSA P-256 server chain, requires a client
# certificate verified against the same CA bundle (client chain leaf <- intermediate <- root),
# forwards the same identity headers to the same upstream (nginx answering "ok", upstream
# keep-alive) and runs ONE worker/thread pinned to CPU $SERVER_CPU (0); the load generator and
# the shared upstream run on CPU $LOAD_CPU (1). Servers are started once and measured in
# alternation, round after round. For each run the script reads the server's CPU time
# (utime + stime of all its processes, /proc/PID/stat) before and after: CPU per operation is
# that delta divided by the operations certgate-load counted.
#
# Metrics (--metrics, in this order; the p99 rates are derived from the capacity runs):
#   hs_full        --mode full --handshake-only       full mTLS handshakes/s, CPU µs/handshake
#   hs_full_req    --mode full                        new connection + handshake + 1 request
#   hs_resume      --mode resume --handshake-only     resumed handshakes/s, CPU µs/handshake
#   keepalive      --mode keepalive                   proxied requests/s on persistent connections
#   p99_full       --mode full --rate R               p99 at R = 50% of the slowest server's hs_full_req
#   p99_keepalive  --mode keepalive --rate R          p99 at R = 50% of the slowest server's keepalive
#
# The report also gives the crypto floor of the run, from `openssl speed` on the server's CPU
# before and after the runs (a returning client's full handshake: 1 sign + 1 verify + 2 X25519;
# a first-time client's: 1 sign + 3 verifies + 2 X25519; a resumption: 2 X25519), and every
# server's CPU per operation as a multiple of it. The client offers --groups (default X25519,
# the group of the floor; certgate's own default is X25519MLKEM768 first, see perf/pq.sh).
#
# Usage: perf/compare.sh [--rounds 3] [--duration 5s] [--connections 64] [--groups X25519]
#          [--servers "certgate nginx haproxy caddy"] [--metrics "..."]
#          [--rate-full R] [--rate-keepalive R] [--retries 2] [--no-install] [--no-build]
# A run during which more than 10% of either CPU went to anything but the measured processes
# (this machine may be shared with builds) is flagged and repeated up to --retries times; the
# tables use the clean runs when there are any (QUIET_MAX_S, default 180: how long each run first
# waits for the machine to be idle).
# Output: Markdown tables on stdout (and in the run directory), raw JSON lines in
# perf/out/compare-<time>/compare.jsonl. Bounded: each load run lasts --duration (killed after
# --duration + 30 s); the total is estimated up front.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

ROUNDS=3
DURATION=5s
CONNECTIONS=64
KEX_GROUPS=X25519
SERVERS="certgate nginx haproxy caddy"
METRICS="hs_full hs_full_req hs_resume keepalive p99_full p99_keepalive"
RATE_FULL=""
RATE_KEEPALIVE=""
RETRIES=2
INSTALL=1
BUILD=1

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }

while (($#)); do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --groups) KEX_GROUPS=$2; shift 2 ;;
    --servers) SERVERS=$2; shift 2 ;;
    --metrics) METRICS=$2; shift 2 ;;
    --rate-full) RATE_FULL=$2; shift 2 ;;
    --rate-keepalive) RATE_KEEPALIVE=$2; shift 2 ;;
    --retries) RETRIES=$2; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) usage 0 ;;
    *) echo "unknown argument: $1" >&2; usage 2 ;;
  esac
done

[[ $ROUNDS =~ ^[1-9][0-9]?$ ]] || die "--rounds must be 1..99"
[[ $RETRIES =~ ^[0-9]$ ]] || die "--retries must be 0..9"
case $DURATION in
  *ms) DUR_S=$(( (${DURATION%ms} + 999) / 1000 )) ;;
  *s) DUR_S=${DURATION%s} ;;
  *) die "--duration like 5s or 500ms" ;;
esac
if ! [[ $DUR_S =~ ^[0-9]+$ ]] || ((DUR_S < 1 || DUR_S > 600)); then die "--duration must be 1s..600s"; fi

new_run compare
JSONL="$RUN/compare.jsonl"
START=$(date +%s)

# --- install, build, PKI, upstream -----------------------------------------------------------
if ((INSTALL)); then
  ensure_pkgs nginx-light curl time || die "nginx (the shared upstream) cannot be installed"
  for s in $SERVERS; do
    [[ $s == certgate ]] && continue
    server_available "$s" || log "note: $s is not installable here; it will be skipped"
  done
fi
command -v nginx >/dev/null || die "nginx is needed for the shared upstream"
((BUILD)) && build_certgate
[[ -x $CERTGATE_LOAD ]] || die "no load generator at $CERTGATE_LOAD (cargo build --release --workspace --bins)"

make_pki
start_upstream

ACTIVE=()
for s in $SERVERS; do
  if ! server_available "$s"; then
    log "skipping $s: not installed"
    continue
  fi
  if start_server "$s" required && check_mtls "$s"; then
    ACTIVE+=("$s")
  else
    log "skipping $s: it did not start or does not answer over mTLS (logs in $RUN)"
    stop_server "$s"
  fi
done
((${#ACTIVE[@]})) || die "no server to measure"

CAL_BEFORE=$(calibrate "$SERVER_CPU")
log "CPU $SERVER_CPU now: $CAL_BEFORE (openssl speed)"
python3 "$PERF_DIR/report.py" calibration before "$CAL_BEFORE" >>"$JSONL"
n_metrics=$(wc -w <<<"$METRICS")
est=$(( ${#ACTIVE[@]} * (n_metrics * ROUNDS * (DUR_S + 2) + 4) ))
log "servers: ${ACTIVE[*]}; metrics: $METRICS; $ROUNDS round(s) of $DURATION"
log "estimated measuring time: ~$((est / 60)) min $((est % 60)) s (plus setup); results in $RUN"

# --- one measured run ------------------------------------------------------------------------

# run_load SERVER METRIC ROUND CERTGATE-LOAD-ARGS...: one load run, one JSON line in $JSONL.
# A run disturbed by other work (more than 10% of either CPU charged to none of the measured
# processes) is kept, flagged, and repeated up to $RETRIES times; the report uses the clean runs.
run_load() {
  local server=$1 metric=$2 round=$3 attempt line alive
  shift 3
  local port=${SRV_PORT[$server]}
  for ((attempt = 1; attempt <= RETRIES + 1; attempt++)); do
    alive=1
    measure "$server" "$RUN/load.out" timeout --kill-after=5 $((DUR_S + 30)) "$CERTGATE_LOAD" \
      --connect "127.0.0.1:$port" --server-name localhost --ca "$PKI/server-ca.pem" \
      --cert "$PKI/client.pem" --key "$PKI/client.key" --threads 1 --pin "$LOAD_CPU" \
      --duration "$DURATION" --max-errors 1000000000 --groups "$KEX_GROUPS" --json "$@" || alive=0
    if ((METER_RC != 0)); then
      log "  $server $metric round $round: certgate-load exited $METER_RC: $(tail -c 300 "$RUN/load.err" | tr '\n' ' ')"
    fi
    line=$(python3 "$PERF_DIR/report.py" merge "${METER[@]}" metric="$metric" round="$round" \
      attempt="$attempt" rate="${RATE:-0}" args="$*" <"$RUN/load.out")
    printf '%s\n' "$line" >>"$JSONL"
    ((alive)) || break
    python3 -c 'import json, sys; sys.exit(0 if json.loads(sys.argv[1]).get("clean") else 1)' "$line" && break
    if ((attempt <= RETRIES)); then
      log "  $server $metric round $round: disturbed run (other CPU use > 10%), repeating it"
    fi
  done
  python3 -c '
import json, sys
r = json.loads(sys.argv[1])
lat = r.get("latency_us") or {}
print("  %-8s %-13s round %s: %10s ops/s  p99 %8s us  cpu/op %7s us  errors %s  resumed %s  cpu0 %s%% (other %s) cpu1 %s%% (other %s)" % (
    r.get("server"), r.get("metric"), r.get("round"), round(r.get("ops_per_s", 0)), lat.get("p99", "-"),
    r.get("cpu_us_per_op", "-"), r.get("error_count", "-"), r.get("resumption_ratio", "-"),
    r.get("cpu0_busy_pct", "-"), r.get("other_cpu0_pct", "-"), r.get("cpu1_busy_pct", "-"),
    r.get("other_cpu1_pct", "-")))' "$line" >&2
  if ((!alive)); then
    log "  $server died during $metric; its log:"
    tail -n 20 "$RUN/$server-required.log" >&2 || true
    return 1
  fi
}

metric_args() {
  case $1 in
    hs_full) echo "--mode full --handshake-only --connections $CONNECTIONS" ;;
    hs_full_req) echo "--mode full --connections $CONNECTIONS" ;;
    hs_resume) echo "--mode resume --handshake-only --connections $CONNECTIONS" ;;
    keepalive) echo "--mode keepalive --connections $CONNECTIONS" ;;
    p99_full) echo "--mode full --connections $CONNECTIONS --rate $RATE_FULL" ;;
    p99_keepalive) echo "--mode keepalive --connections $CONNECTIONS --rate $RATE_KEEPALIVE" ;;
    *) die "unknown metric $1" ;;
  esac
}

# half_of_slowest METRIC: 50% of the lowest median ops/s among the active servers.
half_of_slowest() {
  local s m min=""
  for s in "${ACTIVE[@]}"; do
    m=$(python3 "$PERF_DIR/report.py" median "$JSONL" "$1" "$s" ops_per_s)
    [[ -n $m ]] || continue
    if [[ -z $min ]] || python3 -c "import sys; sys.exit(0 if $m < $min else 1)"; then min=$m; fi
  done
  [[ -n $min ]] && python3 -c "print(max(1, int($min * 0.5)))"
}

# --- warm every server once (not recorded) ---------------------------------------------------
for s in "${ACTIVE[@]}"; do
  timeout 20 "$CERTGATE_LOAD" --connect "127.0.0.1:${SRV_PORT[$s]}" --server-name localhost \
    --ca "$PKI/server-ca.pem" --cert "$PKI/client.pem" --key "$PKI/client.key" --threads 1 \
    --pin "$LOAD_CPU" --mode full --connections "$CONNECTIONS" --duration 1s --json >/dev/null 2>&1 ||
    log "warm-up of $s failed"
done

# --- the measurements ------------------------------------------------------------------------
declare -A DEAD=()
for metric in $METRICS; do
  case $metric in
    p99_full)
      [[ -n $RATE_FULL ]] || RATE_FULL=$(half_of_slowest hs_full_req) || true
      [[ -n $RATE_FULL ]] || RATE_FULL=1000
      log "p99_full at $RATE_FULL connections/s" ;;
    p99_keepalive)
      [[ -n $RATE_KEEPALIVE ]] || RATE_KEEPALIVE=$(half_of_slowest keepalive) || true
      [[ -n $RATE_KEEPALIVE ]] || RATE_KEEPALIVE=1000
      log "p99_keepalive at $RATE_KEEPALIVE requests/s" ;;
  esac
  read -r -a margs <<<"$(metric_args "$metric")"
  RATE=0
  [[ $metric == p99_full ]] && RATE=$RATE_FULL
  [[ $metric == p99_keepalive ]] && RATE=$RATE_KEEPALIVE
  for ((round = 1; round <= ROUNDS; round++)); do
    for s in "${ACTIVE[@]}"; do
      [[ -z ${DEAD[$s]:-} ]] || continue
      run_load "$s" "$metric" "$round" "${margs[@]}" || DEAD[$s]=1
    done
  done
done

# --- report ----------------------------------------------------------------------------------
CAL_AFTER=$(calibrate "$SERVER_CPU")
python3 "$PERF_DIR/report.py" calibration after "$CAL_AFTER" >>"$JSONL"
{
  echo "### Peer comparison ($(date -u +%Y-%m-%d))"
  echo
  machine_info
  for s in "${ACTIVE[@]}"; do echo "- $s: $(server_version "$s")"; done
  echo "- certgate-load: $("$CERTGATE_LOAD" --version 2>/dev/null || echo '?'), 1 thread on CPU $LOAD_CPU, $CONNECTIONS connections, $DURATION per run; servers on CPU $SERVER_CPU, one worker each"
  echo "- Speed of CPU $SERVER_CPU (openssl speed) before: $CAL_BEFORE; after: $CAL_AFTER"
  echo "- Key exchange: the client offers $KEX_GROUPS"
  echo "- Command: \`perf/compare.sh --rounds $ROUNDS --duration $DURATION --connections $CONNECTIONS --groups $KEX_GROUPS --servers \"${ACTIVE[*]}\" --metrics \"$METRICS\"\`"
  echo
  python3 "$PERF_DIR/report.py" compare "$JSONL"
  for s in "${!DEAD[@]}"; do echo; echo "Note: $s died during the runs; later metrics lack it (see $RUN/$s-required.log)."; done
} | tee "$RUN/compare.md"
ln -sfn "$(basename "$RUN")" "$PERF_OUT/compare-latest"
log "done in $(( $(date +%s) - START )) s; raw results: $JSONL"

#!/usr/bin/env bash
# perf/workers.sh — does a second worker cost CPU per handshake? certgate with `workers = 1`
# (pinned to CPU 0) against `workers = 2` (CPUs 0 and 1), both CPUs busy in both cases: the load
# generator runs 2 threads, unpinned, 128 connections. For each run: the server's CPU time
# (utime + stime of the process, /proc/PID/stat) divided by the handshakes certgate-load counted.
# The two configurations alternate, round after round; the ratio two ÷ one is the figure (target
# ≤ 1.1: shared ticket keys, session cache and verified-chain cache must not contend).
#
# Usage: perf/workers.sh [--rounds 3] [--duration 5s] [--modes "full resume"] [--no-build]
# The same listener as perf/lib.sh (TLS 1.3, client certificate required, perf/pki.sh PKI), the
# client offering X25519. Output: one line per run and the medians, on stdout and in
# perf/out/workers-<time>/workers.txt.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

ROUNDS=3
DURATION=5s
MODES="full resume"
BUILD=1
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }
while (($#)); do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --modes) MODES=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) usage 0 ;;
    *) echo "unknown argument: $1" >&2; usage 2 ;;
  esac
done
[[ $ROUNDS =~ ^[1-9][0-9]?$ ]] || die "--rounds must be 1..99"

new_run workers
((BUILD)) && build_certgate
[[ -x $CERTGATE_LOAD ]] || die "no load generator at $CERTGATE_LOAD (cargo build --release --workspace --bins)"
make_pki

declare -A PORT PID
for w in 1 2; do
  PORT[$w]=$(fresh_port)
  cat >"$RUN/workers-$w.toml" <<EOF
[runtime]
workers = $w
pin_workers = true

[log]
level = "warn"
access = false

[[listener]]
name = "perf"
listen = "127.0.0.1:${PORT[$w]}"
upstream = "app"

[listener.tls]
certificate = "$PKI/server-chain.pem"
private_key = "$PKI/server.key"
min_version = "1.3"

[listener.client_auth]
mode = "required"
ca = "$PKI/client-ca-bundle.pem"
verify_depth = 2

[[upstream]]
name = "app"
servers = ["127.0.0.1:9"]
EOF
  # pin_workers puts worker i on CPU i; the one-worker process is kept on CPU 0 as a whole.
  cpus=0
  ((w == 2)) && cpus=0,1
  spawn "workers-$w" "$cpus" "$CERTGATE" run --config "$RUN/workers-$w.toml"
  PID[$w]=$SPAWNED
  wait_listen "${PORT[$w]}" "${PID[$w]}" || die "certgate with $w worker(s) did not start (see $RUN/workers-$w.log)"
done

log "CPU 0 now: $(calibrate 0) (openssl speed)"
declare -A RESULTS
for mode in $MODES; do
  for ((round = 1; round <= ROUNDS; round++)); do
    for w in 1 2; do
      wait_quiet "${QUIET_MAX_S:-30}" || log "  the machine stayed busy; measuring anyway"
      t0=$(cpu_ticks "${PID[$w]}")
      timeout --kill-after=5 60 "$CERTGATE_LOAD" --connect "127.0.0.1:${PORT[$w]}" \
        --server-name localhost --ca "$PKI/server-ca.pem" --cert "$PKI/client.pem" \
        --key "$PKI/client.key" --threads 2 --connections 128 --groups X25519 \
        --mode "$mode" --handshake-only --duration "$DURATION" --json >"$RUN/load.json" 2>"$RUN/load.err" ||
        die "certgate-load failed: $(tail -c 300 "$RUN/load.err")"
      t1=$(cpu_ticks "${PID[$w]}")
      us=$(python3 -c '
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
ops, errs = r["ops"], sum(r["errors"].values())
print("%.1f %d %d" % ((int(sys.argv[2]) - int(sys.argv[3])) / int(sys.argv[4]) * 1e6 / max(ops, 1), ops, errs))
' "$RUN/load.json" "$t1" "$t0" "$CLK_TCK")
      read -r cpu ops errs <<<"$us"
      echo "$mode round $round: workers=$w $ops handshakes, $errs errors, server CPU $cpu µs/handshake" |
        tee -a "$RUN/workers.txt"
      RESULTS[$mode,$w]+="$cpu "
    done
  done
  python3 -c '
import statistics, sys
one = [float(x) for x in sys.argv[2].split()]
two = [float(x) for x in sys.argv[3].split()]
m1, m2 = statistics.median(one), statistics.median(two)
print("%s: median server CPU per handshake, one worker %.1f µs, two workers %.1f µs: two ÷ one = %.2f" % (sys.argv[1], m1, m2, m2 / m1))
' "$mode" "${RESULTS[$mode,1]}" "${RESULTS[$mode,2]}" | tee -a "$RUN/workers.txt"
done
log "CPU 0 after: $(calibrate 0) (openssl speed); logs in $RUN"

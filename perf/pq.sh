#!/usr/bin/env bash
# perf/pq.sh [--rounds N] [--duration 5s] [--no-build] — what the hybrid post-quantum group
# costs certgate: server CPU per full mTLS handshake (TLS 1.3, ECDSA P-256, client certificate
# required) with X25519MLKEM768 forced on the client, against X25519 alone. One certgate worker
# on CPU $SERVER_CPU (default groups: X25519MLKEM768, X25519, P-256); certgate-load
# --handshake-only --groups G on CPU $LOAD_CPU, alternating the two groups round after round.
# Server CPU is utime + stime from /proc/PID/stat around each run (perf/lib.sh `measure`),
# divided by the handshakes certgate-load counted. Ends with `openssl speed` on the server CPU
# (X25519 and P-256), the floor that tells how fast this machine was during the run.
set -euo pipefail

PERF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=perf/lib.sh
source "$PERF_DIR/lib.sh"

ROUNDS=3
DURATION=5s
BUILD=1
while (($#)); do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1" ;;
  esac
done
DUR_S=${DURATION%s}
QUIET_MAX_S=${QUIET_MAX_S:-30}

new_run pq
((BUILD)) && build_certgate
[[ -x $CERTGATE_LOAD ]] || die "no load generator at $CERTGATE_LOAD"
make_pki
start_upstream
start_server certgate required
port=${SRV_PORT[certgate]}

printf '%-16s %5s %10s %12s %10s\n' group round handshakes server_cpu_s us_per_hs
for ((r = 1; r <= ROUNDS; r++)); do
  for g in X25519MLKEM768 X25519; do
    measure certgate "$RUN/$g-$r.json" timeout --kill-after=5 $((DUR_S + 30)) "$CERTGATE_LOAD" \
      --connect "127.0.0.1:$port" --server-name localhost --ca "$PKI/server-ca.pem" \
      --cert "$PKI/client.pem" --key "$PKI/client.key" --threads 1 --pin "$LOAD_CPU" \
      --mode full --handshake-only --tls-version 1.3 --groups "$g" --connections 64 \
      --duration "$DURATION" --json
    ops=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["handshakes"])' <"$RUN/$g-$r.json")
    ticks=0
    for kv in "${METER[@]}"; do [[ $kv == server_cpu_ticks=* ]] && ticks=${kv#*=}; done
    awk -v g="$g" -v r="$r" -v n="$ops" -v t="$ticks" -v hz="$CLK_TCK" \
      'BEGIN { printf "%-16s %5d %10d %12.2f %10.1f\n", g, r, n, t / hz, n ? t / hz / n * 1e6 : 0 }'
  done
done
echo
echo "openssl speed on CPU $SERVER_CPU:"
taskset -c "$SERVER_CPU" openssl speed -seconds 3 ecdhx25519 ecdsap256 2>/dev/null | tail -n 4

#!/usr/bin/env bash
# scripts/build-pgo.sh — a profile-guided (PGO) release build of certgate, for production.
#
# 1. builds certgate instrumented (-Cprofile-generate), for the host target only, so that build
#    scripts and proc macros are not;
# 2. trains it on loopback with the perf rig (perf/lib.sh: test PKI, an nginx upstream,
#    certgate-load with a client certificate): HTTP/2 streams, HTTP/1.1 keep-alive, full and
#    resumed handshakes, ~25 s in all, every load bounded;
# 3. merges the profile with the llvm-profdata of rustc's own LLVM major version (installs the
#    Debian package llvm-N when missing: an older llvm-profdata cannot read the raw profile);
# 4. builds certgate again with -Cprofile-use.
# Result: target/pgo/certgate (same features and config as target/release/certgate; the hot
# paths laid out by what a proxy does). perf/RESULTS.md quotes both builds.
#
# Usage: scripts/build-pgo.sh [--no-install]
# Then:  CERTGATE=target/pgo/certgate perf/h2load.sh --no-build
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../perf/lib.sh
source "$(dirname "$0")/../perf/lib.sh"

install=1
while (($#)); do
  case $1 in
    --no-install) install=0; shift ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1" ;;
  esac
done

OUT=$ROOT_DIR/target/pgo
host=$(rustc -vV | awk '/^host:/ {print $2}')
major=$(rustc -vV | awk '/^LLVM version:/ {split($3, v, "."); print v[1]}')
[[ -n $host && -n $major ]] || die "cannot read the host triple and LLVM version from 'rustc -vV'"

new_run pgo
profdata=""
find_profdata() {
  local p
  for p in "llvm-profdata-$major" "/usr/lib/llvm-$major/bin/llvm-profdata"; do
    if command -v "$p" >/dev/null 2>&1; then profdata=$(command -v "$p"); return 0; fi
  done
  return 1
}
if ! find_profdata; then
  ((install)) || die "no llvm-profdata for LLVM $major (rustc's); install the Debian package llvm-$major"
  ensure_pkgs "llvm-$major" || die "cannot install llvm-$major (rustc uses LLVM $major; its llvm-profdata reads the profile): see $RUN/apt-install.log"
  find_profdata || die "llvm-$major installed, but no llvm-profdata in it"
fi
if ((install)); then
  ensure_pkgs nginx-light curl || die "cannot install nginx-light curl (the training's upstream)"
fi
log "PGO build for $host with $profdata"

rm -rf "$OUT/raw"
mkdir -p "$OUT/raw"
log "1/4 instrumented build (target/pgo/gen)"
(cd "$ROOT_DIR" && RUSTFLAGS="-Cprofile-generate=$OUT/raw" CARGO_TARGET_DIR="$OUT/gen" \
  cargo build --release --target "$host" --bin certgate 2>&1 | tail -n 2) >&2
(cd "$ROOT_DIR" && cargo build --release -p certgate-tools --bin certgate-load 2>&1 | tail -n 1) >&2

log "2/4 training"
make_pki
start_upstream
CERTGATE="$OUT/gen/$host/release/certgate"
export LLVM_PROFILE_FILE="$OUT/raw/certgate-%p-%m.profraw"
start_server certgate required || die "the instrumented certgate did not start: $(tail -5 "$RUN"/certgate-required.log)"
unset LLVM_PROFILE_FILE
port=${SRV_PORT[certgate]}
train() {
  local what=$1
  shift
  local out
  out=$(timeout 60 "$CERTGATE_LOAD" --connect "127.0.0.1:$port" --server-name localhost \
    --ca "$PKI/server-ca.pem" --cert "$PKI/client.pem" --key "$PKI/client.key" --threads 1 \
    --pin "$LOAD_CPU" --max-errors 1000000000 --json "$@" 2>>"$RUN/load.err" | tail -n 1) ||
    die "training load '$what' failed: $(tail -3 "$RUN/load.err")"
  # A few failed requests do not spoil a profile; none answered means a broken build.
  python3 -c 'import json, sys; j = json.loads(sys.argv[1]); sys.exit(0 if j["ok"] > 0 else 1)' "$out" ||
    die "training load '$what': no request answered ($out)"
  log "  $what: $(python3 -c 'import json, sys; j = json.loads(sys.argv[1]); print("%d ok, %d errors" % (j["ok"], sum(j["errors"].values())))' "$out")"
}
train "HTTP/2, 64 connections x 10 streams" --protocol h2 --mode keepalive --connections 64 --streams 10 --duration 10s
train "HTTP/1.1 keep-alive, 64 connections" --mode keepalive --connections 64 --duration 5s
train "full handshakes" --mode full --connections 16 --duration 4s
train "resumed handshakes" --mode resume --connections 16 --duration 4s
# A clean exit writes the profile (SIGTERM: drain, then exit 0).
pid=${SRV_PID[certgate]}
kill -TERM "$pid"
for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && die "the instrumented certgate did not exit within 10 s of SIGTERM"
stop_all
compgen -G "$OUT/raw/certgate-*.profraw" >/dev/null || die "no profile written (in $OUT/raw)"

log "3/4 merging the profile"
"$profdata" merge -o "$OUT/certgate.profdata" "$OUT"/raw/certgate-*.profraw

log "4/4 optimized build (target/pgo/use)"
(cd "$ROOT_DIR" && RUSTFLAGS="-Cprofile-use=$OUT/certgate.profdata" CARGO_TARGET_DIR="$OUT/use" \
  cargo build --release --target "$host" --bin certgate 2>&1 | tail -n 2) >&2
cp "$OUT/use/$host/release/certgate" "$OUT/certgate"
"$OUT/certgate" --version >/dev/null || die "the PGO build does not run"
log "done: $OUT/certgate ($("$OUT/certgate" --version))"

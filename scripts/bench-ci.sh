#!/usr/bin/env bash
# scripts/bench-ci.sh [--update] — CI benchmark regression check by instruction counts.
#
# Runs the fixed workloads of examples/ci_workloads.rs under callgrind, counting only the
# measured loop (`--toggle-collect=ci_workloads::measured`: setup such as PKI parsing, context
# building and rule compilation is excluded), and compares the instruction counts (Ir) with
# perf/baseline.json. Fails, naming the workload, when one rose by more than the tolerance
# (5 %, or BENCH_CI_TOLERANCE_PCT). `--update` rewrites the baseline from this run instead.
# The memory workloads (MEMORY_WORKLOADS) run without valgrind and report bytes instead
# (`idle-connection`: heap the server keeps per idle mTLS connection); they are compared the
# same way, under the baseline key `<workload>-bytes`.
#
# Instruction counts are a property of the binary: a different rustc, Cargo.lock (BoringSSL via
# boring-sys), release profile or valgrind changes them without any change in certgate, and so can
# a CPU with other features (BoringSSL picks its code paths with CPUID). The baseline records the
# toolchain it was made with; after upgrading any of these, re-run with --update.
#
# Environment: BENCH_CI_TOLERANCE_PCT (default 5), BENCH_CI_OUT (callgrind files; default
# target/bench-ci), CARGO_TARGET_DIR (honoured). CI_WORKLOADS_EXTRA_PCT is never set here: setting
# it (e.g. to 10) makes every workload do that much more work, to see this check fail.
set -euo pipefail

cd "$(dirname "$0")/.."

usage() { sed -n '2,8s/^# \{0,1\}//p' "$0"; }

update=0
case "${1:-}" in
  "") ;;
  --update) update=1 ;;
  -h|--help) usage; exit 0 ;;
  *) usage >&2; exit 2 ;;
esac

# Workload and iterations. Changing a size invalidates its baseline entry (run --update).
WORKLOADS=(
  "handshakes-full 100"
  "handshakes-resumed 100"
  "server-first 100"
  "server-returning 100"
  "server-resumed 100"
  "floor-first 100"
  "floor-returning 100"
  "floor-resumed 100"
  "head-rewrite 10000"
  "rule-match 10000"
  "identity 1000"
)
# Workloads that print "bytes_per_connection: B" (run natively: allocation sizes, not time).
MEMORY_WORKLOADS=(
  "idle-connection 1000"
)
BASELINE=perf/baseline.json
TOLERANCE=${BENCH_CI_TOLERANCE_PCT:-5}
OUT=${BENCH_CI_OUT:-target/bench-ci}
BIN=${CARGO_TARGET_DIR:-target}/release/examples/ci_workloads

started=$SECONDS

# --- valgrind -----------------------------------------------------------------------------------
if ! command -v valgrind >/dev/null 2>&1; then
  echo "bench-ci: valgrind not found; installing the Debian package"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends valgrind
fi

# --- build --------------------------------------------------------------------------------------
echo "bench-ci: building the workloads (release profile)"
cargo build --release --example ci_workloads
built=$SECONDS

# Without address-space randomisation where possible (less noise from allocation addresses).
norandom=()
if setarch "$(uname -m)" -R true >/dev/null 2>&1; then
  norandom=(setarch "$(uname -m)" -R)
fi

mkdir -p "$OUT"

# Ir of one workload run, from callgrind's summary line.
run() {
  local name=$1 n=$2 file="$OUT/$1.callgrind" ir
  rm -f "$file"
  if ! "${norandom[@]}" valgrind --tool=callgrind --cache-sim=no --collect-atstart=no \
      --toggle-collect='ci_workloads::measured' \
      --callgrind-out-file="$file" --log-file="$OUT/$name.log" \
      "$BIN" "$name" "$n" >"$OUT/$name.out" 2>&1; then
    echo "bench-ci: workload $name failed; its output ($OUT/$name.out):" >&2
    cat "$OUT/$name.out" >&2
    exit 1
  fi
  ir=$(awk '$1 == "summary:" { print $2; exit }' "$file")
  if [ -z "$ir" ] || [ "$ir" -eq 0 ]; then
    echo "bench-ci: workload $name: no instructions counted; is ci_workloads::measured still" \
      "a symbol of $BIN? (see $OUT/$name.log)" >&2
    exit 1
  fi
  echo "$ir"
}

declare -A NOW
for w in "${WORKLOADS[@]}"; do
  read -r name n <<<"$w"
  t=$SECONDS
  NOW[$name]=$(run "$name" "$n")
  echo "bench-ci: $name $n: ${NOW[$name]} instructions ($((SECONDS - t)) s)"
done

# Bytes per connection of one memory workload.
run_memory() {
  local name=$1 n=$2 bytes
  if ! "$BIN" "$name" "$n" >"$OUT/$name.out" 2>&1; then
    echo "bench-ci: workload $name failed; its output ($OUT/$name.out):" >&2
    cat "$OUT/$name.out" >&2
    exit 1
  fi
  bytes=$(awk '$1 == "bytes_per_connection:" { print $2; exit }' "$OUT/$name.out")
  if [ -z "$bytes" ] || [ "$bytes" -eq 0 ]; then
    echo "bench-ci: workload $name reported no bytes_per_connection (see $OUT/$name.out)" >&2
    exit 1
  fi
  echo "$bytes"
}

for w in "${MEMORY_WORKLOADS[@]}"; do
  read -r name n <<<"$w"
  NOW[$name-bytes]=$(run_memory "$name" "$n")
  echo "bench-ci: $name $n: ${NOW[$name-bytes]} bytes per connection"
done

boring_sys=$(awk '/^name = "boring-sys"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock 2>/dev/null)
toolchain="$(rustc -V); boring-sys ${boring_sys:-?}; $(valgrind --version)"

# --- update -------------------------------------------------------------------------------------
if [ "$update" -eq 1 ]; then
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null | tr -d '"\134')
  sizes=$(printf '%s, ' "${WORKLOADS[@]}")
  {
    echo "{"
    msizes=$(printf '%s, ' "${MEMORY_WORKLOADS[@]}")
    printf '  "note": "%s",\n' "Callgrind instruction counts (Ir) of the measured loops of examples/ci_workloads.rs (${sizes%, }), and heap bytes held per idle connection (<workload>-bytes: ${msizes%, }; glibc mallinfo2), made by scripts/bench-ci.sh --update on $(date -u +%Y-%m-%d) on ${cpu:-unknown CPU} (nproc $(nproc)). Valid only for the toolchain below, this Cargo.lock (BoringSSL via boring-sys) and the release profile: after changing any of them, or on a CPU with other features, re-run scripts/bench-ci.sh --update."
    printf '  "toolchain": "%s",\n' "$toolchain"
    keys=()
    for w in "${WORKLOADS[@]}"; do
      read -r name n <<<"$w"
      keys+=("$name")
    done
    for w in "${MEMORY_WORKLOADS[@]}"; do
      read -r name n <<<"$w"
      keys+=("$name-bytes")
    done
    last=$((${#keys[@]} - 1))
    for i in "${!keys[@]}"; do
      sep=","
      if [ "$i" -eq "$last" ]; then sep=""; fi
      printf '  "%s": %s%s\n' "${keys[$i]}" "${NOW[${keys[$i]}]}" "$sep"
    done
    echo "}"
  } >"$BASELINE"
  echo "bench-ci: wrote $BASELINE (total $((SECONDS - started)) s, build $((built - started)) s)"
  exit 0
fi

# --- compare ------------------------------------------------------------------------------------
if [ ! -f "$BASELINE" ]; then
  echo "bench-ci: FAIL: no $BASELINE; create it with scripts/bench-ci.sh --update" >&2
  exit 1
fi

# Values of top-level keys of the baseline (written one key per line by --update).
baseline_count() {
  sed -n "s/^ *\"$1\": *\([0-9][0-9]*\),\{0,1\} *\$/\1/p" "$BASELINE" | head -n 1
}
baseline_string() {
  sed -n "s/^ *\"$1\": *\"\(.*\)\",\{0,1\} *\$/\1/p" "$BASELINE" | head -n 1
}

base_toolchain=$(baseline_string toolchain)
if [ "$base_toolchain" != "$toolchain" ]; then
  echo "bench-ci: warning: the baseline was made with \"$base_toolchain\";" \
    "this is \"$toolchain\": counts may differ for that reason alone" >&2
fi

printf '\n%-20s %8s %16s %16s %9s %12s\n' workload iters baseline now change "now/iter"
failed=()
# Memory workloads under their baseline key ("idle-connection-bytes 1000"); their "now/iter" is
# already per connection.
for w in "${WORKLOADS[@]}" "${MEMORY_WORKLOADS[@]/ /-bytes }"; do
  read -r name n <<<"$w"
  now=${NOW[$name]}
  per=$((now / n))
  if [[ $name == *-bytes ]]; then per=$now; fi
  base=$(baseline_count "$name")
  if [ -z "$base" ]; then
    printf '%-20s %8s %16s %16s %9s %12s\n' "$name" "$n" "-" "$now" "new" "$per"
    failed+=("$name (no baseline entry; run scripts/bench-ci.sh --update)")
    continue
  fi
  change=$(awk -v a="$base" -v b="$now" 'BEGIN { printf "%+.2f", (b - a) * 100 / a }')
  printf '%-20s %8s %16s %16s %8s%% %12s\n' "$name" "$n" "$base" "$now" "$change" "$per"
  if awk -v c="$change" -v t="$TOLERANCE" 'BEGIN { exit !(c > t) }'; then
    failed+=("$name rose ${change}% (limit +${TOLERANCE}%)")
  elif awk -v c="$change" -v t="$TOLERANCE" 'BEGIN { exit !(c < -t) }'; then
    echo "bench-ci: note: $name fell ${change}%; run scripts/bench-ci.sh --update to keep the gain"
  fi
done
# The server's handshakes as multiples of their crypto floors (the public-key operations they
# cannot avoid), in instructions: informational, the gate is the comparison above.
echo
echo "server handshake ÷ its crypto floor, in instructions (same iterations):"
for pair in "server-returning floor-returning" "server-first floor-first" "server-resumed floor-resumed"; do
  read -r server floor <<<"$pair"
  if [ -n "${NOW[$server]:-}" ] && [ -n "${NOW[$floor]:-}" ]; then
    awk -v s="${NOW[$server]}" -v f="${NOW[$floor]}" -v a="$server" -v b="$floor" \
      'BEGIN { printf "  %-17s %6.2f x %s\n", a, s / f, b }'
  fi
done
echo
echo "bench-ci: $((SECONDS - started)) s (build $((built - started)) s);" \
  "callgrind files in $OUT (callgrind_annotate FILE shows where the instructions go)"

if [ "${#failed[@]}" -gt 0 ]; then
  for f in "${failed[@]}"; do
    echo "bench-ci: FAIL: $f" >&2
  done
  echo "bench-ci: instruction counts regressed against $BASELINE; if the rise is intended," \
    "re-run scripts/bench-ci.sh --update and commit the new baseline" >&2
  exit 1
fi
echo "bench-ci: OK: no workload rose more than ${TOLERANCE}% (instructions, or bytes held)"

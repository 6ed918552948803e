#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time: FUZZ_SECONDS each (default 30), or only the
# targets named as arguments. Coverage-guided with libFuzzer via cargo-fuzz, on the stable
# toolchain (`--sanitizer none`: AddressSanitizer needs nightly; Rust code is memory-safe and the
# properties are assertions, built with debug assertions on).
#
# The committed seeds in fuzz/corpus/<target> are copied to a temporary directory first, so a run
# never dirties the repository. A crash stops that target, its input is kept under
# fuzz/artifacts/<target>/ (the path is printed), the other targets still run, and the script
# exits non-zero. Reproduce with: cargo fuzz run --sanitizer none -O -a <target> <artifact>
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-30}
all=(request_rewrite chunked response_head dn_rules config proxy_v2 proxy_in)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
flags=(--sanitizer none -O -a)
export CARGO_TERM_COLOR=never

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

echo "== fuzz: building the targets"
(cd fuzz && cargo fuzz build "${flags[@]}")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
for t in "${targets[@]}"; do
    mkdir -p "$work/$t" "fuzz/artifacts/$t"
    cp -R "fuzz/corpus/$t/." "$work/$t/"
    log="$work/$t.log"
    echo "== fuzz: $t for ${seconds}s"
    # -timeout: one input taking over 10 s is a hang; -rss_limit_mb: the machine is shared.
    if (cd fuzz && timeout $((seconds + 300)) cargo fuzz run "${flags[@]}" "$t" "$work/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/") >"$log" 2>&1; then
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
        echo "fuzz: $t: ok, ${execs:-?} executions, ${rate:-?}/s, $cov"
    else
        grep -A 4 'panicked at' "$log" | head -n 30 || true
        tail -n 25 "$log"
        artifact=$(grep -o 'Test unit written to .*' "$log" | sed 's/^Test unit written to //' | tail -n 1)
        echo "fuzz: $t: FAILED; crash input: fuzz/${artifact:-artifacts/$t/ (none written)}"
        failed+=("$t")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}"
    exit 1
fi
echo "fuzz: ${#targets[@]} target(s) passed"

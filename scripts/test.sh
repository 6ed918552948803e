#!/usr/bin/env bash
# Runs the whole test suite of the workspace (the proxy and tools/): unit tests, then the
# integration suite once on io_uring and once on epoll (the integration tests read
# CERTGATE_TEST_IO; curl picks HTTP/2 by ALPN in the first pass and is held to HTTP/1.1 in the
# second, so both request paths run the whole suite), then checks that benches build. Every
# member's binaries are built before any test runs, which the tools' tests rely on (they drive target/release/certgate).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh

# One profile for everything (tests, benches, scripts/bench-ci.sh, clippy in .ci/run): BoringSSL
# is compiled once per profile, and that build is most of a clean run's time.
export CARGO_TERM_COLOR=never
echo "== unit tests and integration tests (io_uring)"
CERTGATE_TEST_IO=io_uring cargo test --release --workspace --all-targets --no-fail-fast
echo "== integration tests (epoll; curl speaks HTTP/1.1, the io_uring pass let it pick h2)"
CERTGATE_TEST_IO=epoll CERTGATE_TEST_CURL_HTTP=1.1 cargo test --release --workspace --test '*' --no-fail-fast
echo "== benches build"
cargo bench --workspace --no-run

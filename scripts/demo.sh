#!/usr/bin/env bash
# Builds certgate (release) and runs `certgate demo`: a throwaway PKI, an echo upstream and the
# proxy on 127.0.0.1:8443, with the curl commands to try printed at start.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --release --workspace   # certgate and certgate-demo, which `certgate demo` runs
exec target/release/certgate demo "$@"

#!/usr/bin/env bash
# Installs what a fresh Debian/Ubuntu machine lacks to build and test certgate:
# BoringSSL's build (cmake, a C/C++ compiler, clang/libclang for bindgen, git), the real TLS
# clients and peers the tests drive (curl, openssl, nginx) and, with --perf, the peers and
# tools of perf/
set -euo pipefail

want=(cmake clang libclang-dev git curl openssl ca-certificates build-essential nginx-light python3
  nghttp2-client haproxy)
if [[ "${1:-}" == "--perf" ]]; then
  want+=(wrk valgrind)
fi

missing=()
for pkg in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]})); then
  echo "scripts/deps.sh: installing ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "scripts/deps.sh: cargo not found; install Rust (rustup) first" >&2
  exit 1
fi

# tests/metrics.rs parses the /metrics exposition with Python's prometheus_client (strict
# OpenMetrics parser).
if ! python3 -c 'import prometheus_client' >/dev/null 2>&1; then
  echo "scripts/deps.sh: installing the Python package prometheus-client"
  python3 -m pip install --quiet prometheus-client 2>/dev/null ||
    { SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
      $SUDO apt-get install -y -qq --no-install-recommends python3-prometheus-client >/dev/null; }
fi

# tests/grpc.rs drives a real gRPC client and server: Python's grpcio.
if ! python3 -c 'import grpc' >/dev/null 2>&1; then
  echo "scripts/deps.sh: installing the Python package grpcio"
  python3 -m pip install --quiet grpcio
fi

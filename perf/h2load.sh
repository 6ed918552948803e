#!/usr/bin/env bash
# perf/h2load.sh — keep-alive HTTPS/1.1 throughput, certgate vs nginx, measured with h2load --h1.
#
# h2load cannot present a client certificate, so both servers run with OPTIONAL client auth
# (certgate `mode = "optional"`, nginx `ssl_verify_client optional`). One server worker on
# CPU 0; h2load (1 thread) and the upstream on CPU 1. Installs nghttp2-client if missing.
#
# Usage: perf/h2load.sh [--rounds 3] [--duration 5s] [--connections 64]
#                       [--servers "certgate nginx"] [--no-install] [--no-build]
# Output: a Markdown table on stdout; raw JSON lines and h2load's reports in perf/out/h2load-<time>/.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
ka_main h2load "$@"

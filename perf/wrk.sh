#!/usr/bin/env bash
# perf/wrk.sh — keep-alive HTTPS throughput, certgate vs nginx, measured with wrk.
#
# wrk cannot present a client certificate, so both servers run with OPTIONAL client auth
# (certgate `mode = "optional"`, nginx `ssl_verify_client optional`): the handshake requests a
# certificate, none is sent, requests are forwarded with verify = NONE to the shared upstream.
# One server worker on CPU 0; wrk (1 thread) and the upstream on CPU 1. Installs wrk if missing.
#
# Usage: perf/wrk.sh [--rounds 3] [--duration 5s] [--connections 64]
#                    [--servers "certgate nginx"] [--no-install] [--no-build]
# Output: a Markdown table on stdout; raw JSON lines and wrk's reports in perf/out/wrk-<time>/.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
ka_main wrk "$@"

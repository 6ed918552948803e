# perf/lib.sh — shared by perf/compare.sh, perf/wrk.sh, perf/h2load.sh and perf/memory.sh.
# Sourced, not run. Starts the servers under test and the shared upstream on fresh loopback ports,
# remembers every process it started and stops them all on exit.
#
# Environment:
#   CERTGATE      certgate binary            (default: target/release/certgate)
#   CERTGATE_LOAD certgate-load binary       (default: target/release/certgate-load)
#   SERVER_CPU    CPU of the server under test (default 0)
#   LOAD_CPU      CPU of the load generator and the shared upstream (default 1)
#   PERF_OUT      output directory           (default: perf/out, gitignored)
#   NGINX_LISTEN_OPTS  extra nginx `listen` parameters, e.g. " http2" (default none)
#   UPSTREAM_KEEPALIVE idle upstream connections each server keeps (default 32; certgate
#                      `keepalive`, nginx `keepalive`, Caddy `keepalive_idle_conns`)
# shellcheck shell=bash

PERF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT_DIR=$(dirname "$PERF_DIR")
CERTGATE=${CERTGATE:-$ROOT_DIR/target/release/certgate}
CERTGATE_LOAD=${CERTGATE_LOAD:-$ROOT_DIR/target/release/certgate-load}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PERF_OUT=${PERF_OUT:-$ROOT_DIR/perf/out}
CLK_TCK=$(getconf CLK_TCK)

STARTED_PIDS=()            # every background process this script started
declare -A SRV_PID=()      # server name -> pid of its main process
declare -A SRV_PORT=()     # server name -> TLS port
UPSTREAM_PORT=""
UPSTREAM_PID=""
RUN=""                     # this run's directory under $PERF_OUT
PKI=""

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- setup -----------------------------------------------------------------------------------

# new_run NAME: creates $PERF_OUT/NAME-<timestamp> as $RUN and installs the exit trap.
new_run() {
  RUN="$PERF_OUT/$1-$(date +%Y%m%d-%H%M%S)"
  mkdir -p "$RUN"
  trap stop_all EXIT
  trap 'exit 130' INT TERM
  # Raise the open-file limit as far as allowed (the hard limit may be below what a test wants).
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}

# ensure_pkgs PKG...: installs the Debian packages that are missing, saying which.
# Returns non-zero (without exiting) when apt-get fails, so callers can skip a peer.
ensure_pkgs() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  log "installing Debian packages: ${missing[*]}"
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  if [[ -z ${APT_UPDATED:-} ]]; then
    DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq >/dev/null 2>&1 || true
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >"${RUN:-/tmp}/apt-install.log" 2>&1
}

# make_pki: writes the benchmark PKI into $RUN/pki.
make_pki() {
  PKI="$RUN/pki"
  "$PERF_DIR/pki.sh" "$PKI" >/dev/null
}

# build_certgate: release build of every binary of the workspace, certgate-load included (one
# cargo command).
build_certgate() {
  log "cargo build --release --workspace --bins"
  (cd "$ROOT_DIR" && cargo build --release --workspace --bins 2>&1 | tail -n 3) >&2
  [[ -x $CERTGATE ]] || die "no $CERTGATE after the build"
}

# fresh_port: a TCP port below the ephemeral range with nothing listening on it.
fresh_port() {
  local i p
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 12000))
    if ! ss -Hltn "sport = :$p" 2>/dev/null | grep -q . &&
       ! ss -Htan "sport = :$p" 2>/dev/null | grep -q .; then
      echo "$p"
      return 0
    fi
  done
  die "no free port found"
}

# render TEMPLATE OUT KEY=VALUE...: copies TEMPLATE to OUT replacing each @KEY@ by VALUE.
render() {
  local tpl=$1 out=$2 kv expr=()
  shift 2
  for kv in "$@"; do expr+=(-e "s#@${kv%%=*}@#${kv#*=}#g"); done
  sed "${expr[@]}" "$tpl" >"$out"
  if grep -q '@[A-Z_]*@' "$out"; then die "unfilled placeholder in $out: $(grep -o '@[A-Z_]*@' "$out" | head -1)"; fi
}

# --- processes -------------------------------------------------------------------------------

# spawn NAME CPU CMD...: starts CMD in the background pinned to CPU, output in $RUN/NAME.log;
# sets SPAWNED to its pid.
spawn() {
  local name=$1 cpu=$2
  shift 2
  taskset -c "$cpu" "$@" >"$RUN/$name.log" 2>&1 &
  SPAWNED=$!
  STARTED_PIDS+=("$SPAWNED")
}

# wait_listen PORT PID [SECONDS]: waits until PORT is listening; fails if PID died first.
wait_listen() {
  local port=$1 pid=$2 secs=${3:-15} i
  for ((i = 0; i < secs * 10; i++)); do
    ss -Hltn "sport = :$port" 2>/dev/null | grep -q . && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# proc_tree PID: PID and all its descendants.
proc_tree() {
  local pid=$1 c
  [[ -d /proc/$pid ]] || return 0
  echo "$pid"
  for c in $(pgrep -P "$pid" 2>/dev/null); do proc_tree "$c"; done
}

# cpu_ticks PID...: user + system CPU of the processes (all their threads), in clock ticks.
cpu_ticks() {
  local total=0 p line f
  for p in "$@"; do
    line=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    line=${line##*) }
    read -r -a f <<<"$line"
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}

# rss_kib PID...: summed VmRSS in KiB.
rss_kib() {
  local total=0 p v
  for p in "$@"; do
    v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null) || continue
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

# cpu_stat CPU: "busy total" jiffies of one CPU from /proc/stat.
cpu_stat() {
  awk -v c="cpu$1" '$1 == c { busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6 }' /proc/stat
}

# busy_pct SECONDS: busy % of the whole machine (all CPUs) over SECONDS.
busy_pct() {
  local a b
  a=$(awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat)
  sleep "$1"
  b=$(awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN {split(a, x, " "); split(b, y, " "); t = y[2] - x[2]; print (t > 0 ? int(100 * (y[1] - x[1]) / t) : 0)}'
}

# wait_quiet [MAX_SECONDS]: waits (bounded, default 180 s) until the machine is idle (< 10% busy
# over half a second) — other work, e.g. a cargo build, would distort a measurement. Returns
# non-zero when it never became quiet (the caller measures anyway and the run is flagged).
QUIET_WAITED=0
wait_quiet() {
  local max=${1:-180} i p said=0
  for ((i = 0; i < max * 2; i++)); do
    p=$(busy_pct 0.5)
    if ((p < 10)); then
      ((said)) && log "machine quiet again after ~$((i / 2)) s"
      return 0
    fi
    if ((!said)); then
      log "machine busy (${p}% of all CPUs, not ours: $(ps -eo pcpu=,comm= --sort=-pcpu | head -n 2 | awk '{printf "%s %s%% ", $2, $1}')); waiting up to ${max}s"
      said=1
    fi
    QUIET_WAITED=$((QUIET_WAITED + 1))
  done
  log "warning: the machine stayed busy; measuring anyway (the run is flagged)"
  return 1
}

# measure SERVER OUTFILE CMD...: runs CMD (bounded by the caller) after wait_quiet, with stdout
# in OUTFILE, and sets METER to KEY=VALUE words for report.py: the server's CPU ticks, the
# shared upstream's, the load command's own (via /usr/bin/time), and the busy/total jiffies of
# the server's and the load's CPU. METER_RC is the command's exit status.
METER=()
METER_RC=0
measure() {
  local server=$1 outfile=$2
  shift 2
  local quiet=1
  wait_quiet "${QUIET_MAX_S:-180}" || quiet=0
  local -a pids upids
  mapfile -t pids < <(server_pids "$server")
  mapfile -t upids < <(proc_tree "$UPSTREAM_PID")
  local t0 u0 t1 u1 c0b c0t c1b c1t c0b2 c0t2 c1b2 c1t2 lu ls
  t0=$(cpu_ticks "${pids[@]}")
  u0=$(cpu_ticks "${upids[@]}")
  read -r c0b c0t < <(cpu_stat "$SERVER_CPU")
  read -r c1b c1t < <(cpu_stat "$LOAD_CPU")
  METER_RC=0
  /usr/bin/time -f '%U %S' -o "$RUN/time.out" "$@" >"$outfile" 2>"$RUN/load.err" || METER_RC=$?
  t1=$(cpu_ticks "${pids[@]}")
  u1=$(cpu_ticks "${upids[@]}")
  read -r c0b2 c0t2 < <(cpu_stat "$SERVER_CPU")
  read -r c1b2 c1t2 < <(cpu_stat "$LOAD_CPU")
  read -r lu ls < <(tail -n 1 "$RUN/time.out" 2>/dev/null | awk 'NF == 2 && $1 ~ /^[0-9.]+$/ {print $1, $2}') || true
  local alive=1
  kill -0 "${SRV_PID[$server]}" 2>/dev/null || alive=0
  METER=(server="$server" load_rc="$METER_RC" server_alive="$alive" quiet_before="$quiet"
    server_processes="${#pids[@]}" clk_tck="$CLK_TCK"
    server_cpu_ticks=$((t1 - t0)) upstream_cpu_ticks=$((u1 - u0))
    load_cpu_s="$(awk -v u="${lu:-0}" -v s="${ls:-0}" 'BEGIN {print u + s}')"
    cpu0_busy_jiffies=$((c0b2 - c0b)) cpu0_total_jiffies=$((c0t2 - c0t))
    cpu1_busy_jiffies=$((c1b2 - c1b)) cpu1_total_jiffies=$((c1t2 - c1t)))
  ((alive))
}

# stop_pid PID: SIGTERM, up to 5 s, then SIGKILL.
stop_pid() {
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    local k
    for k in $(proc_tree "$pid"); do kill -KILL "$k" 2>/dev/null || true; done
  fi
  wait "$pid" 2>/dev/null || true
}

# stop_all: the exit trap — stops every process this script started (and their children).
stop_all() {
  local pid k
  for pid in "${STARTED_PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null || continue
    local kids
    kids=$(proc_tree "$pid" | tail -n +2)
    stop_pid "$pid"
    for k in $kids; do kill -KILL "$k" 2>/dev/null || true; done
  done
  STARTED_PIDS=()
}

# --- the shared upstream ---------------------------------------------------------------------

# start_upstream: nginx answering 200 "ok" on a fresh port, pinned to $LOAD_CPU.
start_upstream() {
  UPSTREAM_PORT=$(fresh_port)
  mkdir -p "$RUN/upstream-tmp"
  render "$PERF_DIR/peers/upstream-nginx.conf" "$RUN/upstream-nginx.conf" \
    RUN="$RUN" LISTEN="127.0.0.1:$UPSTREAM_PORT"
  spawn upstream "$LOAD_CPU" nginx -p "$RUN" -e "$RUN/upstream-error.log" -c "$RUN/upstream-nginx.conf"
  UPSTREAM_PID=$SPAWNED
  wait_listen "$UPSTREAM_PORT" "$SPAWNED" || die "upstream nginx did not start: $(tail -5 "$RUN/upstream.log" "$RUN/upstream-error.log" 2>/dev/null)"
  local body
  body=$(curl -s --max-time 5 "http://127.0.0.1:$UPSTREAM_PORT/") || die "upstream does not answer"
  [[ $body == ok ]] || die "upstream answered '$body'"
  log "upstream: nginx on 127.0.0.1:$UPSTREAM_PORT (CPU $LOAD_CPU)"
}

# --- servers under test ----------------------------------------------------------------------

# server_pkgs NAME: the Debian package a server comes from (empty for certgate).
server_pkgs() {
  case $1 in
    certgate) ;;
    nginx) echo nginx-light ;;
    haproxy) echo haproxy ;;
    caddy) echo caddy ;;
    *) die "unknown server $1" ;;
  esac
}

# server_available NAME: installs the server's package if needed; non-zero when impossible.
server_available() {
  local name=$1 bin
  case $name in
    certgate) [[ -x $CERTGATE ]]; return ;;
    nginx) bin=nginx ;;
    haproxy) bin=haproxy ;;
    caddy) bin=caddy ;;
  esac
  command -v "$bin" >/dev/null 2>&1 && return 0
  ensure_pkgs "$(server_pkgs "$name")" || return 1
  command -v "$bin" >/dev/null 2>&1
}

server_version() {
  case $1 in
    certgate) echo "certgate $(git -C "$ROOT_DIR" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT_DIR" diff --quiet 2>/dev/null || echo '+dirty')" ;;
    nginx) nginx -v 2>&1 | sed 's/^nginx version: //' | tr -d '\n'; printf ' (%s)' "$(nginx -V 2>&1 | grep -o 'running with OpenSSL [0-9.a-z]*' | sed 's/running with //')" ;;
    haproxy) haproxy -vv 2>/dev/null | awk '/^HAProxy version/ {v=$3} /^Running on OpenSSL version/ {o="OpenSSL "$7} END {print "HAProxy " v " (" o ")"}' ;;
    caddy) echo "Caddy $(caddy version 2>/dev/null | awk '{print $1}') (Go crypto/tls)" ;;
  esac
}

# start_server NAME [VERIFY]: starts NAME on a fresh port pinned to $SERVER_CPU, one worker.
# VERIFY is required (default) or optional. Sets SRV_PID[NAME] and SRV_PORT[NAME].
start_server() {
  local name=$1 verify=${2:-required} port pid v
  port=$(fresh_port)
  local tag="$name-$verify"
  case $name in
    certgate)
      cat >"$RUN/$tag.toml" <<EOF
# Written by perf/lib.sh: one worker, access log off, the shared upstream.
[runtime]
workers = 1
io = "auto"
pin_workers = true

[log]
level = "warn"
access = false

[[listener]]
name = "perf"
listen = "127.0.0.1:$port"
upstream = "app"

[listener.tls]
certificate = "$PKI/server-chain.pem"
private_key = "$PKI/server.key"
min_version = "1.3"

[listener.client_auth]
mode = "$verify"
ca = "$PKI/client-ca-bundle.pem"
verify_depth = 2

[listener.timeouts]         # 300 s idle everywhere, as in perf/peers/*, for perf/memory.sh
request_head = "300s"
keepalive_idle = "300s"

[listener.limits]
max_connections = 32768

[[upstream]]
name = "app"
servers = ["127.0.0.1:$UPSTREAM_PORT"]
keepalive = ${UPSTREAM_KEEPALIVE:-32}
EOF
      spawn "$tag" "$SERVER_CPU" "$CERTGATE" run --config "$RUN/$tag.toml"
      ;;
    nginx)
      [[ $verify == required ]] && v=on || v=optional
      mkdir -p "$RUN/nginx-tmp"
      render "$PERF_DIR/peers/nginx.conf" "$RUN/$tag.conf" RUN="$RUN" PKI="$PKI" \
        LISTEN="127.0.0.1:$port" UPSTREAM="127.0.0.1:$UPSTREAM_PORT" VERIFY="$v" \
        LISTEN_OPTS="${NGINX_LISTEN_OPTS:-}" KEEPALIVE="${UPSTREAM_KEEPALIVE:-32}"
      # Each instance its own pid file and error log.
      sed -i -e "s#$RUN/nginx.pid#$RUN/$tag.pid#; s#$RUN/nginx-error.log#$RUN/$tag-error.log#" "$RUN/$tag.conf"
      spawn "$tag" "$SERVER_CPU" nginx -p "$RUN" -e "$RUN/$tag-error.log" -c "$RUN/$tag.conf"
      ;;
    haproxy)
      render "$PERF_DIR/peers/haproxy.cfg" "$RUN/$tag.cfg" RUN="$RUN" PKI="$PKI" \
        LISTEN="127.0.0.1:$port" UPSTREAM="127.0.0.1:$UPSTREAM_PORT" VERIFY="$verify"
      sed -i "s#$RUN/haproxy.pid#$RUN/$tag.pid#" "$RUN/$tag.cfg"
      spawn "$tag" "$SERVER_CPU" haproxy -db -f "$RUN/$tag.cfg"
      ;;
    caddy)
      [[ $verify == required ]] && v=require_and_verify || v=verify_if_given
      render "$PERF_DIR/peers/Caddyfile" "$RUN/$tag.Caddyfile" RUN="$RUN/$tag" PKI="$PKI" \
        LISTEN_PORT="$port" UPSTREAM="127.0.0.1:$UPSTREAM_PORT" VERIFY="$v"
      mkdir -p "$RUN/$tag/home"
      spawn "$tag" "$SERVER_CPU" env GOMAXPROCS=1 HOME="$RUN/$tag/home" \
        XDG_DATA_HOME="$RUN/$tag/home" XDG_CONFIG_HOME="$RUN/$tag/home" \
        caddy run --config "$RUN/$tag.Caddyfile" --adapter caddyfile
      ;;
    *) die "unknown server $name" ;;
  esac
  pid=$SPAWNED
  if ! wait_listen "$port" "$pid" 20; then
    log "$name did not start; its log:"
    tail -n 20 "$RUN/$tag.log" >&2
    return 1
  fi
  SRV_PID[$name]=$pid
  SRV_PORT[$name]=$port
  log "$name ($(server_version "$name")): 127.0.0.1:$port, pid $pid, CPU $SERVER_CPU, client auth $verify"
}

# open_conns NAME: established TCP connections on the server's listening port.
open_conns() { ss -Htn state established "sport = :${SRV_PORT[$1]}" 2>/dev/null | wc -l; }

# server_pids NAME: the server's processes (e.g. nginx master and worker).
server_pids() { proc_tree "${SRV_PID[$1]}"; }

# stop_server NAME
stop_server() {
  [[ -n ${SRV_PID[$1]:-} ]] || return 0
  stop_pid "${SRV_PID[$1]}"
  unset "SRV_PID[$1]" "SRV_PORT[$1]"
}

# check_mtls NAME: one request with the client certificate through NAME must return "ok",
# and one without a certificate must not (when client auth is required).
check_mtls() {
  local name=$1 port=${SRV_PORT[$1]} body
  body=$(curl -s --max-time 5 --cacert "$PKI/server-ca.pem" --cert "$PKI/client.pem" --key "$PKI/client.key" \
    --resolve "localhost:$port:127.0.0.1" "https://localhost:$port/") || { log "$name: curl with a client certificate failed"; return 1; }
  [[ $body == ok ]] || { log "$name: answered '$body' instead of 'ok'"; return 1; }
}

# calibrate CPU: the speed of one CPU right now, from `openssl speed` (about 3 s): ECDSA P-256
# signs/s and verifies/s and X25519 ops/s. This VM's speed varies with its host; numbers measured
# at different speeds compare only through ratios.
calibrate() {
  taskset -c "$1" openssl speed -seconds 1 ecdsap256 ecdhx25519 2>/dev/null | awk '
    /ecdsa \(nistp256\)/ {s = $(NF - 1); v = $NF}
    /ecdh \(X25519\)/ {x = $NF}
    END {printf "ECDSA P-256 %d sign/s, %d verify/s, X25519 %d op/s", s, v, x}'
}

# machine_info: Markdown lines about this machine.
machine_info() {
  echo "- Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
  echo "- Date: $(date -u +'%Y-%m-%d %H:%M UTC')"
}

# --- keep-alive HTTPS with third-party tools (perf/wrk.sh, perf/h2load.sh) -------------------

# ka_main TOOL ARGS...: keep-alive HTTPS throughput of certgate and peers measured with TOOL
# (wrk or h2load), which cannot present a client certificate: every server runs with OPTIONAL
# client authentication (certgate mode = "optional", nginx ssl_verify_client optional, ...), so
# the handshake asks for a certificate, gets none, and requests are forwarded as NONE.
ka_main() {
  local tool=$1
  shift
  local rounds=3 duration=5 connections=64 servers="certgate nginx" install=1 build=1
  while (($#)); do
    case $1 in
      --rounds) rounds=$2; shift 2 ;;
      --duration) duration=${2%s}; shift 2 ;;
      --connections) connections=$2; shift 2 ;;
      --servers) servers=$2; shift 2 ;;
      --no-install) install=0; shift ;;
      --no-build) build=0; shift ;;
      -h | --help)
        echo "usage: perf/$tool.sh [--rounds 3] [--duration 5s] [--connections 64] [--servers \"certgate nginx\"] [--no-install] [--no-build]"
        exit 0 ;;
      *) die "unknown argument: $1" ;;
    esac
  done
  [[ $rounds =~ ^[1-9][0-9]?$ ]] || die "--rounds must be 1..99"
  if ! [[ $duration =~ ^[0-9]+$ ]] || ((duration < 1 || duration > 600)); then die "--duration: whole seconds, 1s..600s"; fi
  if ! [[ $connections =~ ^[0-9]+$ ]] || ((connections < 1 || connections > 10000)); then die "--connections 1..10000"; fi

  new_run "$tool"
  local jsonl="$RUN/$tool.jsonl" start
  start=$(date +%s)
  local pkg=$tool
  [[ $tool == h2load ]] && pkg=nghttp2-client
  if ((install)); then
    ensure_pkgs "$pkg" nginx-light curl time || die "cannot install $pkg"
  fi
  command -v "$tool" >/dev/null || die "$tool is not installed (Debian package $pkg)"
  ((build)) && build_certgate
  [[ -x $CERTGATE ]] || die "no $CERTGATE"
  make_pki
  start_upstream

  local active=() s
  for s in $servers; do
    if ! server_available "$s"; then log "skipping $s: not installed"; continue; fi
    if start_server "$s" optional && check_mtls "$s"; then
      # Without a certificate the request must be forwarded too (optional client auth).
      local port=${SRV_PORT[$s]} body
      body=$(curl -sk --max-time 5 --resolve "localhost:$port:127.0.0.1" "https://localhost:$port/") || true
      if [[ $body == ok ]]; then active+=("$s"); continue; fi
      log "skipping $s: without a client certificate it answered '$body'"
    fi
    stop_server "$s"
  done
  ((${#active[@]})) || die "no server to measure"
  log "$tool: ${active[*]}; $rounds round(s) of ${duration}s, $connections connections, 1 thread on CPU $LOAD_CPU"
  log "estimated time: ~$(( ${#active[@]} * rounds * (duration + 2) )) s"

  local round out="$RUN/$tool-last.txt"
  for ((round = 1; round <= rounds; round++)); do
    for s in "${active[@]}"; do
      # The name, not the address: SNI "localhost" and Host "localhost:PORT" (Caddy answers 421
      # when the Host does not match the SNI of a client-auth connection).
      local url="https://localhost:${SRV_PORT[$s]}/"
      local -a cmd
      if [[ $tool == wrk ]]; then
        cmd=(wrk -t1 -c"$connections" -d"${duration}s" --latency --timeout 5s "$url")
      else
        cmd=(h2load --h1 -t1 -c"$connections" -D"$duration" "$url")
      fi
      measure "$s" "$out" timeout --kill-after=5 $((duration + 30)) taskset -c "$LOAD_CPU" "${cmd[@]}" || true
      cat "$RUN/load.err" >>"$out"
      cat "$out" >>"$RUN/$tool-all.txt"
      python3 "$PERF_DIR/report.py" tool-merge "$tool" "$out" "${METER[@]}" metric=ka round="$round" \
        connections="$connections" >>"$jsonl"
      tail -n 1 "$jsonl" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("  %-8s round %s: %10s req/s  cpu/req %6s us  errors %s" % (r.get("server"), r.get("round"),
      round(r.get("ops_per_s", 0)), r.get("cpu_us_per_op", "-"), r.get("error_count", "-")))' >&2
    done
  done

  {
    echo "### Keep-alive HTTPS with $tool, optional client auth ($(date -u +%Y-%m-%d))"
    echo
    machine_info
    for s in "${active[@]}"; do echo "- $s: $(server_version "$s")"; done
    echo "- $("$tool" --version 2>&1 | head -n 1 | sed 's/^ *//'); 1 thread on CPU $LOAD_CPU, $connections connections, ${duration}s per run; servers on CPU $SERVER_CPU, one worker each"
    echo "- Speed of CPU $SERVER_CPU (openssl speed) after the runs: $(calibrate "$SERVER_CPU")"
    echo "- Command: \`perf/$tool.sh --rounds $rounds --duration ${duration}s --connections $connections --servers \"${active[*]}\"\`"
    echo
    python3 "$PERF_DIR/report.py" tool-table "$jsonl"
  } | tee "$RUN/$tool.md"
  ln -sfn "$(basename "$RUN")" "$PERF_OUT/$tool-latest"
  log "done in $(( $(date +%s) - start )) s; raw results: $jsonl"
}

# shellcheck shell=bash
# scripts/bench-lib.sh -- helpers shared by the ssogate benchmarks
# (scripts/bench-proxy.sh, scripts/bench-sso.sh).
#
# Source it, do not execute it:
#
#   . "$(dirname "$0")/bench-lib.sh"
#   bench_init                       # temp dir + EXIT/INT/TERM cleanup trap
#   bench_ensure_tools               # apt-get install nginx wrk (if missing)
#   up_port=$(bench_free_port)
#   bench_start_nginx_upstream upstream "$up_port"
#   bench_wait_port "$up_port" 15 "$BENCH_LAST_PID" "$BENCH_TMP/upstream/error.log"
#   bench_wrk upstream "http://127.0.0.1:$up_port/"
#   bench_print_table
#
# Everything binds to 127.0.0.1 only. Every process started through these
# helpers is recorded and killed (by pid) when the calling script exits.
#
# Tunables (environment):
#   DURATION      wrk duration in seconds per leg          (default 10)
#   CONNECTIONS   wrk connections                          (default 64)
#   THREADS       wrk threads                              (default 2)
#   WARMUP        un-counted warm-up per leg, seconds; 0 = none (default 2)
#   KEEP_TMP      1 = keep the temp dir (configs, logs, raw wrk output)
#   NGINX_BIN     nginx binary (default: nginx on PATH, else /usr/sbin/nginx)
#   WRK_BIN       wrk binary   (default: wrk on PATH)
#   SSOGATE_BIN   ssogate binary; when set, bench_ensure_ssogate never builds
#   RUST_LOG      ssogate log filter for bench_start_ssogate (default info)
#   NGINX_WORKERS / UPSTREAM_WORKERS  worker_processes (default nproc)

: "${DURATION:=10}"
: "${CONNECTIONS:=64}"
: "${THREADS:=2}"
: "${WARMUP:=2}"
: "${KEEP_TMP:=0}"

BENCH_TMP=""
BENCH_PIDS=()          # pids to kill on exit, in start order
# shellcheck disable=SC2034  # read by the sourcing scripts
BENCH_LAST_PID=""      # pid of the most recently started process
BENCH_USED_PORTS=" "   # ports already handed out by bench_free_port
BENCH_ORDER=()         # leg names in the order they were measured
# shellcheck disable=SC2034  # read by the sourcing scripts
BENCH_WALK_ANSWERED="" # answers counted by the last bench_wrk_walk_all
declare -A BENCH_RPS=() BENCH_P50=() BENCH_P99=() BENCH_NOTE=()

bench_log() { printf '[bench] %s\n' "$*" >&2; }
bench_die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

# --------------------------------------------------------------------------
# temp dir and cleanup
# --------------------------------------------------------------------------

bench_init() {
    BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/ssogate-bench.XXXXXX")
    # nginx workers run as "nobody" when nginx is started as root; they must
    # be able to traverse the prefix directories below this one.
    chmod 755 "$BENCH_TMP"
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    bench_log "temp dir: $BENCH_TMP"
}

# Stop one process by pid: SIGTERM, wait up to ~5 s, then SIGKILL. For an
# nginx master its worker processes are collected first and killed too if
# they outlive the master.
bench_kill_pid() {
    local pid=$1 kids i
    kill -0 "$pid" 2>/dev/null || return 0
    kids=$(ps -o pid= --ppid "$pid" 2>/dev/null || true)
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        bench_log "pid $pid ignored SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    for i in $kids; do
        kill -KILL "$i" 2>/dev/null || true
    done
}

bench_cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
        bench_kill_pid "${BENCH_PIDS[i]}"
    done
    BENCH_PIDS=()
    if [[ -n $BENCH_TMP && -d $BENCH_TMP ]]; then
        # keep on failure (not on Ctrl-C/TERM) or when asked to
        if [[ $KEEP_TMP == 1 ]] || ((rc != 0 && rc != 130 && rc != 143)); then
            bench_log "keeping temp dir (logs, configs, wrk output): $BENCH_TMP"
        else
            rm -rf "$BENCH_TMP"
        fi
    fi
    exit "$rc"
}

# Remember a background pid so that it is killed on exit.
bench_track_pid() {
    BENCH_PIDS+=("$1")
    # shellcheck disable=SC2034  # read by the sourcing scripts
    BENCH_LAST_PID=$1
}

# Stop a tracked process now (e.g. at the end of its leg) and forget it.
bench_stop_pid() {
    local pid=$1 p keep=()
    bench_kill_pid "$pid"
    for p in "${BENCH_PIDS[@]}"; do
        [[ $p == "$pid" ]] || keep+=("$p")
    done
    BENCH_PIDS=("${keep[@]}")
}

# --------------------------------------------------------------------------
# tools
# --------------------------------------------------------------------------

bench_nginx_bin() {
    if [[ -n ${NGINX_BIN:-} ]]; then
        echo "$NGINX_BIN"
    elif command -v nginx >/dev/null 2>&1; then
        command -v nginx
    elif [[ -x /usr/sbin/nginx ]]; then
        echo /usr/sbin/nginx
    else
        return 1
    fi
}

bench_wrk_bin() {
    if [[ -n ${WRK_BIN:-} ]]; then echo "$WRK_BIN"; else command -v wrk; fi
}

# Install nginx and wrk with apt-get when missing (Debian; needs root).
# Also checks for curl, which bench_wait_port uses.
bench_ensure_tools() {
    local missing=()
    bench_nginx_bin >/dev/null 2>&1 || missing+=(nginx)
    bench_wrk_bin >/dev/null 2>&1 || missing+=(wrk)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    if ((${#missing[@]})); then
        bench_log "installing: ${missing[*]}"
        [[ $(id -u) -eq 0 ]] || bench_die "need root to apt-get install ${missing[*]}"
        # Debian's nginx postinst would try to start the system nginx on
        # port 80; forbid service starts for the duration of the install.
        local policy=/usr/sbin/policy-rc.d added_policy=0
        if [[ ! -e $policy ]]; then
            printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && added_policy=1
        fi
        local rc=0
        { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"; } >&2 || rc=$?
        ((added_policy)) && rm -f "$policy"
        ((rc == 0)) || bench_die "apt-get install ${missing[*]} failed (rc=$rc)"
    fi
    NGINX_BIN=$(bench_nginx_bin) || bench_die "nginx not found after install"
    WRK_BIN=$(bench_wrk_bin) || bench_die "wrk not found after install"
}

# --------------------------------------------------------------------------
# ports
# --------------------------------------------------------------------------

# Print a currently free TCP port on 127.0.0.1, never the same one twice in
# one run. (There is an unavoidable race between picking and binding.)
bench_free_port() {
    local port i
    for ((i = 0; i < 50; i++)); do
        if command -v python3 >/dev/null 2>&1; then
            port=$(python3 -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()')
        else
            port=$((20000 + RANDOM % 40000))
            # something answers (or accepts) there -> not free
            if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then continue; fi
        fi
        if [[ $BENCH_USED_PORTS != *" $port "* ]]; then
            BENCH_USED_PORTS+="$port "
            echo "$port"
            return 0
        fi
    done
    bench_die "could not find a free port"
}

# bench_wait_port PORT [TIMEOUT_S] [PID] [LOGFILE]
# Poll http://127.0.0.1:PORT/ with curl until it gives any HTTP answer.
# Fails if TIMEOUT_S (default 15) passes, or if PID (when given) dies first;
# LOGFILE's tail is printed on failure.
bench_wait_port() {
    local port=$1 timeout=${2:-15} pid=${3:-} logfile=${4:-}
    local deadline=$((SECONDS + timeout))
    while ((SECONDS < deadline)); do
        if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/"; then
            return 0
        fi
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            bench_log "process $pid exited before 127.0.0.1:$port answered"
            [[ -n $logfile && -f $logfile ]] && tail -n 30 "$logfile" >&2
            return 1
        fi
        sleep 0.1
    done
    bench_log "127.0.0.1:$port did not answer within ${timeout}s"
    [[ -n $logfile && -f $logfile ]] && tail -n 30 "$logfile" >&2
    return 1
}

# bench_probe NAME URL -- one request with curl; prints status and body size,
# and records a note if the answer is not "200 with a 1024-byte body" (i.e. the
# benchmark would not be measuring the same thing as the upstream leg).
bench_probe() {
    local name=$1 url=$2 out code size
    out=$(curl -s -o /dev/null --max-time 5 -w '%{http_code} %{size_download}' "$url") || true
    code=${out%% *}
    size=${out##* }
    bench_log "probe $name: $url -> HTTP $code, body $size bytes"
    if [[ $code != 200 || $size != 1024 ]]; then
        bench_log "WARNING: $name does not answer 200 with the 1024-byte upstream body"
        BENCH_NOTE[$name]+="probe: HTTP $code, $size bytes; "
    fi
}

# --------------------------------------------------------------------------
# nginx
# --------------------------------------------------------------------------

# bench_nginx_conf_common PREFIX WORKERS ACCESS_LOG_DIRECTIVE
# Prints the common head of an nginx.conf (main + events + http preamble,
# without the closing brace of the http block).
bench_nginx_conf_common() {
    local prefix=$1 workers=$2 access_log=$3
    cat <<EOF
worker_processes $workers;
daemon off;
master_process on;
pid $prefix/nginx.pid;
error_log $prefix/error.log warn;
lock_file $prefix/nginx.lock;

events {
    worker_connections 4096;
    multi_accept on;
}

http {
    access_log $access_log;
    client_body_temp_path $prefix/client_body;
    proxy_temp_path $prefix/proxy_temp;
    fastcgi_temp_path $prefix/fastcgi_temp;
    uwsgi_temp_path $prefix/uwsgi_temp;
    scgi_temp_path $prefix/scgi_temp;
    default_type text/plain;
    server_tokens off;
    # Default is 1000 requests per connection; raise it so nginx does not
    # close client connections mid-run (ssogate presumably never does).
    keepalive_requests 1000000;
    keepalive_timeout 65s;
EOF
}

# bench_start_nginx PREFIX -- start nginx (daemon off, in the background) with
# PREFIX/nginx.conf; sets BENCH_LAST_PID to its master pid.
bench_start_nginx() {
    local prefix=$1
    "$NGINX_BIN" -t -q -p "$prefix" -e "$prefix/error.log" -c "$prefix/nginx.conf" ||
        bench_die "nginx config test failed: $prefix/nginx.conf"
    "$NGINX_BIN" -p "$prefix" -e "$prefix/error.log" -c "$prefix/nginx.conf" \
        >"$prefix/stdout.log" 2>&1 &
    bench_track_pid $!
}

# bench_start_nginx_upstream NAME PORT [WORKERS]
# Small fast upstream on 127.0.0.1:PORT answering every request with a
# 1024-byte body (HTTP 200, text/plain); access log off. WORKERS defaults to
# UPSTREAM_WORKERS or nproc. Config/logs under $BENCH_TMP/NAME.
bench_start_nginx_upstream() {
    local name=$1 port=$2 workers=${3:-${UPSTREAM_WORKERS:-$(nproc)}}
    local prefix=$BENCH_TMP/$name body
    mkdir -p "$prefix"
    # 1024 bytes: 15 lines of 63 chars + '\n' (960) + 63 chars + '\n' (64).
    body=$(printf 'x%.0s' {1..63})
    body=$(for _ in {1..16}; do printf '%s\\n' "$body"; done)
    {
        bench_nginx_conf_common "$prefix" "$workers" off
        cat <<EOF

    server {
        listen 127.0.0.1:$port reuseport backlog=4096;
        location / {
            return 200 "$body";
        }
    }
}
EOF
    } >"$prefix/nginx.conf"
    bench_start_nginx "$prefix"
}

# bench_start_nginx_proxy NAME PORT UPSTREAM_PORT [WORKERS]
# nginx reverse proxy on 127.0.0.1:PORT -> 127.0.0.1:UPSTREAM_PORT, with an
# upstream block + keepalive 64, HTTP/1.1 and "Connection: ''" to the upstream,
# access log ON (default "combined" format, unbuffered) to $BENCH_TMP/NAME/access.log.
# WORKERS defaults to NGINX_WORKERS or nproc (= ssogate's runtime threads).
bench_start_nginx_proxy() {
    local name=$1 port=$2 up_port=$3 workers=${4:-${NGINX_WORKERS:-$(nproc)}}
    local prefix=$BENCH_TMP/$name
    mkdir -p "$prefix"
    {
        bench_nginx_conf_common "$prefix" "$workers" "$prefix/access.log"
        cat <<EOF

    upstream backend {
        server 127.0.0.1:$up_port;
        keepalive 64;
        keepalive_requests 1000000;
    }

    server {
        listen 127.0.0.1:$port reuseport backlog=4096;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
        }
    }
}
EOF
    } >"$prefix/nginx.conf"
    bench_start_nginx "$prefix"
}

# --------------------------------------------------------------------------
# ssogate
# --------------------------------------------------------------------------

# bench_ensure_ssogate ROOT
# Sets SSOGATE_BIN (default ROOT/target/release/ssogate). Unless SSOGATE_BIN
# was given by the caller, runs `cargo build --release --locked` in ROOT --
# but only if the binary is missing or older than Cargo.toml or any file
# under src/.
bench_ensure_ssogate() {
    local root=$1 newer
    if [[ -n ${SSOGATE_BIN:-} ]]; then
        [[ -x $SSOGATE_BIN ]] || bench_die "SSOGATE_BIN=$SSOGATE_BIN is not executable"
        return 0
    fi
    SSOGATE_BIN=$root/target/release/ssogate
    if [[ ! -x $SSOGATE_BIN ]]; then
        bench_log "ssogate: $SSOGATE_BIN missing; building"
    else
        newer=$(find "$root/src" "$root/Cargo.toml" -newer "$SSOGATE_BIN" -print -quit 2>/dev/null)
        if [[ -z $newer ]]; then
            bench_log "ssogate: $SSOGATE_BIN is up to date"
            return 0
        fi
        bench_log "ssogate: $newer is newer than the binary; rebuilding"
    fi
    (cd "$root" && cargo build --release --locked) >&2 || bench_die "cargo build --release --locked failed"
    [[ -x $SSOGATE_BIN ]] || bench_die "build finished but $SSOGATE_BIN is missing"
}

# bench_start_ssogate CONFIG LOGFILE
# Runs `$SSOGATE_BIN --config CONFIG` in the background with RUST_LOG
# (default info), stdout+stderr to LOGFILE; sets BENCH_LAST_PID.
bench_start_ssogate() {
    local config=$1 logfile=$2
    RUST_LOG=${RUST_LOG:-info} "$SSOGATE_BIN" --config "$config" >"$logfile" 2>&1 &
    bench_track_pid $!
}

# --------------------------------------------------------------------------
# wrk
# --------------------------------------------------------------------------

# Convert a wrk latency ("812.00us", "1.20ms", "2.01s", "1.5m") to ms.
bench_to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        else if (u != "ms") { print "?"; exit }
        printf "%.2f", n }'
}

# bench_wrk NAME URL [EXTRA_WRK_ARGS...]
# Optional warm-up (WARMUP s, not counted), then one wrk --latency run of
# DURATION s with CONNECTIONS/THREADS. Raw output goes to stderr and to
# $BENCH_TMP/wrk-NAME.txt; parsed figures go to BENCH_RPS/BENCH_P50/BENCH_P99
# [NAME] (latencies in ms) and NAME is appended to BENCH_ORDER.
bench_wrk() {
    local name=$1 url=$2
    shift 2
    local out=$BENCH_TMP/wrk-$name.txt
    if ((WARMUP > 0)); then
        bench_log "$name: warm-up ${WARMUP}s"
        "$WRK_BIN" -t "$THREADS" -c "$CONNECTIONS" -d "${WARMUP}s" "$@" "$url" >/dev/null 2>&1 || true
    fi
    bench_log "$name: wrk -t $THREADS -c $CONNECTIONS -d ${DURATION}s --latency $url"
    "$WRK_BIN" -t "$THREADS" -c "$CONNECTIONS" -d "${DURATION}s" --latency "$@" "$url" >"$out" 2>&1 ||
        bench_log "WARNING: wrk exited non-zero for $name"
    bench_record_wrk "$name" "$out"
}

# bench_record_wrk NAME OUTFILE -- echo a wrk --latency output file to stderr
# and record its figures under NAME (BENCH_RPS/P50/P99/NOTE, BENCH_ORDER).
bench_record_wrk() {
    local name=$1 out=$2 rps p50 p99 errs
    sed 's/^/    /' "$out" >&2
    rps=$(awk '$1 == "Requests/sec:" { print $2 }' "$out")
    p50=$(awk '$1 == "50%" { print $2; exit }' "$out")
    p99=$(awk '$1 == "99%" { print $2; exit }' "$out")
    BENCH_RPS[$name]=${rps:-?}
    BENCH_P50[$name]=$([[ -n $p50 ]] && bench_to_ms "$p50" || echo '?')
    BENCH_P99[$name]=$([[ -n $p99 ]] && bench_to_ms "$p99" || echo '?')
    errs=$(grep -E 'Socket errors|Non-2xx' "$out" | sed 's/^ *//' | tr '\n' ';' || true)
    [[ -n $errs ]] && BENCH_NOTE[$name]+="$errs "
    BENCH_ORDER+=("$name")
}

# --------------------------------------------------------------------------
# reporting
# --------------------------------------------------------------------------

# Peak RSS (VmHWM) of a live process, e.g. "23456 kB"; "?" if unavailable.
bench_peak_rss() {
    awk '$1 == "VmHWM:" { print $2, $3; found = 1 } END { if (!found) print "?" }' \
        "/proc/$1/status" 2>/dev/null || echo '?'
}

# Current RSS (VmRSS) of a live process, e.g. "23456 kB"; "?" if unavailable.
bench_rss() {
    awk '$1 == "VmRSS:" { print $2, $3; found = 1 } END { if (!found) print "?" }' \
        "/proc/$1/status" 2>/dev/null || echo '?'
}

# bench_ratio A B -- A/B with 2 decimals ("?" if either is missing/zero).
bench_ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a !~ /^[0-9.]+$/ || b !~ /^[0-9.]+$/ || b + 0 == 0) { print "?"; exit }
        printf "%.2f", a / b }'
}

bench_print_facts() {
    local commit
    commit=$(git -C "${1:-.}" rev-parse --short HEAD 2>/dev/null) || commit="n/a"
    echo "== machine"
    echo "nproc:        $(nproc)"
    echo "cpu:          $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)"
    echo "kernel:       $(uname -sr)"
    echo "loadavg:      $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
    if [[ $commit != n/a ]] && ! git -C "${1:-.}" diff --quiet HEAD -- 2>/dev/null; then
        commit+=" (+uncommitted changes)"
    fi
    echo "ssogate git:  $commit"
    echo "nginx:        $("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //')"
    echo "wrk:          $("$WRK_BIN" -v 2>&1 | head -n1 | awk '{ print $2 }')"
    echo "load:         wrk -t $THREADS -c $CONNECTIONS -d ${DURATION}s --latency (warm-up ${WARMUP}s)"
}

bench_print_table() {
    local n
    local rps
    printf '%-15s %-9s %-8s %s\n' target req/s p50 p99
    for n in "${BENCH_ORDER[@]}"; do
        rps=${BENCH_RPS[$n]}
        [[ $rps =~ ^[0-9.]+$ ]] && rps=$(awk -v r="$rps" 'BEGIN { printf "%.1f", r }')
        printf '%-15s %-9s %-8s %s\n' "$n" "$rps" "${BENCH_P50[$n]}ms" "${BENCH_P99[$n]}ms"
    done
    for n in "${BENCH_ORDER[@]}"; do
        [[ -n ${BENCH_NOTE[$n]:-} ]] && echo "note $n: ${BENCH_NOTE[$n]}"
    done
    return 0
}

# --------------------------------------------------------------------------
# wrk walking a file of pre-made tokens (scripts/bench-sso.sh)
# --------------------------------------------------------------------------

# bench_walk_lua FILE -- write the wrk Lua script that sends every request
# with the next token of a file: GET $WALK_PREFIX<token>$WALK_SUFFIX. Each wrk
# thread takes its own contiguous share of the file, so no token is sent twice
# (a second use would be refused as a replay). Environment, read by wrk:
#   WALK_TOKENS    token file, one per line          WALK_COUNT  its line count
#   WALK_THREADS   wrk -t                            WALK_EXPECT status of a success (303)
#   WALK_PREFIX / WALK_SUFFIX  around the token in the request target
#   WALK_ON_EMPTY  stop   -- a thread out of tokens stops (a timed run: the
#                            figures are then too low, and reported as invalid)
#                  filler -- it sends WALK_FILLER (default /, answered 200 by
#                            the upstream) until wrk is stopped (an un-timed
#                            pass that must use every token)
#   WALK_MARK_DIR  where a thread writes progress-<id> (answers so far, every
#                  500) and done-<id> once all its tokens are answered
# done() prints one line:
#   walk: tokens=N sent=N answered=N unexpected=N filler=N exhausted_threads=N statuses=303:N,...
bench_walk_lua() {
    cat >"$1" <<'EOF'
local prefix = os.getenv("WALK_PREFIX") or "/api/auth/sso?jwt="
local suffix = os.getenv("WALK_SUFFIX") or "&redirect_uri=/"
local file = os.getenv("WALK_TOKENS")
local count = tonumber(os.getenv("WALK_COUNT"))
local nthreads = tonumber(os.getenv("WALK_THREADS"))
local expect = tonumber(os.getenv("WALK_EXPECT") or "303")
local on_empty = os.getenv("WALK_ON_EMPTY") or "stop"
local filler_path = os.getenv("WALK_FILLER") or "/"
local mark_dir = os.getenv("WALK_MARK_DIR") or ""

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local per = math.floor(count / nthreads)
  local first = id * per + 1
  local last = (id == nthreads - 1) and count or (id + 1) * per
  tokens = {}
  local i = 0
  for line in io.lines(file) do
    i = i + 1
    if i > last then break end
    if i >= first then tokens[#tokens + 1] = line end
  end
  ntokens = #tokens
  nexti, sent, answered, unexpected, filler, exhausted = 1, 0, 0, 0, 0, 0
  marked = false
  statuses = {}
end

-- wrk calls request() once in thread 0 right after init, to check the
-- request's syntax, and never sends that one: do not spend a token on it.
local verified = false

function request()
  if not verified and id == 0 then
    verified = true
    return wrk.format("GET", prefix .. (tokens[1] or "x") .. suffix)
  end
  local token = tokens[nexti]
  if token then
    nexti = nexti + 1
    sent = sent + 1
    return wrk.format("GET", prefix .. token .. suffix)
  end
  exhausted = 1
  if on_empty == "stop" then
    wrk.thread:stop()
  end
  return wrk.format("GET", filler_path)
end

-- Out of tokens in filler mode: send the filler slowly (it only keeps wrk
-- alive until it is stopped). Defined only then, as any delay() slows wrk.
if on_empty == "filler" then
  function delay()
    return exhausted == 1 and 50 or 0
  end
end

local function note(name, value)
  local f = io.open(mark_dir .. "/" .. name .. "-" .. id, "w")
  if f then
    f:write(value, "\n")
    f:close()
  end
end

function response(status, headers, body)
  if exhausted == 1 and status == 200 then
    filler = filler + 1
    return
  end
  answered = answered + 1
  statuses[status] = (statuses[status] or 0) + 1
  if status ~= expect then
    unexpected = unexpected + 1
  end
  if mark_dir ~= "" then
    if answered % 500 == 0 then
      note("progress", answered)
    end
    if not marked and answered >= ntokens then
      marked = true
      note("progress", answered)
      note("done", answered)
    end
  end
end

function done(summary, latency, requests)
  local sum = { ntokens = 0, sent = 0, answered = 0, unexpected = 0, filler = 0, exhausted = 0 }
  local by_status = {}
  for _, t in ipairs(threads) do
    for k, _ in pairs(sum) do
      sum[k] = sum[k] + (tonumber(t:get(k)) or 0)
    end
    local s = t:get("statuses")
    if type(s) == "table" then
      for code, n in pairs(s) do
        by_status[code] = (by_status[code] or 0) + n
      end
    end
  end
  local parts = {}
  for code, n in pairs(by_status) do
    parts[#parts + 1] = code .. ":" .. n
  end
  table.sort(parts)
  io.write(string.format(
    "walk: tokens=%d sent=%d answered=%d unexpected=%d filler=%d exhausted_threads=%d statuses=%s\n",
    sum.ntokens, sum.sent, sum.answered, sum.unexpected, sum.filler, sum.exhausted, table.concat(parts, ",")))
end
EOF
}

# bench_walk_field OUTFILE FIELD -- a number from the "walk:" line of a wrk
# output (tokens, sent, answered, unexpected, filler, exhausted_threads) or
# the statuses list; "?" when absent.
bench_walk_field() {
    awk -v f="$2" '$1 == "walk:" { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == f) { print kv[2]; found = 1 } } }
        END { if (!found) print "?" }' "$1"
}

# bench_walk_env TOKENFILE ON_EMPTY [MARK_DIR] -- print the env assignments
# for bench_walk_lua's script (use as: env $(bench_walk_env ...) wrk ...).
bench_walk_env() {
    local file=$1 on_empty=$2 mark_dir=${3:-}
    printf 'WALK_TOKENS=%s WALK_COUNT=%s WALK_THREADS=%s WALK_ON_EMPTY=%s WALK_MARK_DIR=%s' \
        "$file" "$(wc -l <"$file" | tr -d ' ')" "$THREADS" "$on_empty" "$mark_dir"
}

# bench_wrk_walk NAME URL LUA TOKENFILE -- one timed wrk --latency run of
# DURATION s (no warm-up: every token is used once) walking TOKENFILE;
# threads stop when out of tokens. Output in $BENCH_TMP/wrk-NAME.txt, figures
# recorded like bench_wrk's.
bench_wrk_walk() {
    local name=$1 url=$2 lua=$3 file=$4 out=$BENCH_TMP/wrk-$1.txt
    bench_log "$name: wrk -t $THREADS -c $CONNECTIONS -d ${DURATION}s --latency -s $lua ($(wc -l <"$file") tokens)"
    # shellcheck disable=SC2046  # word splitting of the env assignments is wanted
    env $(bench_walk_env "$file" stop) \
        "$WRK_BIN" -t "$THREADS" -c "$CONNECTIONS" -d "${DURATION}s" --timeout 10s --latency -s "$lua" "$url" \
        >"$out" 2>&1 || bench_log "WARNING: wrk exited non-zero for $name"
    bench_record_wrk "$name" "$out"
}

# bench_wrk_walk_all NAME URL LUA TOKENFILE [TIMEOUT_S] -- send every token
# of TOKENFILE once (un-timed pass, e.g. to fill a directory): wrk runs until
# each thread has had an answer for each of its tokens, then gets SIGINT.
# Returns 1 (after stopping wrk) if that has not happened after TIMEOUT_S
# (default 600) or when no answer came for 15 s (an answer lost to a closed
# connection never comes). Output in $BENCH_TMP/wrk-NAME.txt (not recorded in
# the results table); BENCH_WALK_ANSWERED holds the answers counted.
bench_wrk_walk_all() {
    local name=$1 url=$2 lua=$3 file=$4 timeout=${5:-600} out=$BENCH_TMP/wrk-$1.txt
    local marks=$BENCH_TMP/marks-$1 pid deadline done_count=0 progress last="" last_change
    mkdir -p "$marks"
    bench_log "$name: sending all $(wc -l <"$file") tokens (wrk -t $THREADS -c $CONNECTIONS, at most ${timeout}s)"
    # shellcheck disable=SC2046
    env $(bench_walk_env "$file" filler "$marks") \
        "$WRK_BIN" -t "$THREADS" -c "$CONNECTIONS" -d "$((timeout + 5))s" --timeout 10s -s "$lua" "$url" \
        >"$out" 2>&1 &
    pid=$!
    bench_track_pid "$pid"
    deadline=$((SECONDS + timeout))
    last_change=$SECONDS
    while :; do
        done_count=$(find "$marks" -name 'done-*' | wc -l)
        ((done_count >= THREADS)) && break
        kill -0 "$pid" 2>/dev/null || break
        progress=$(cat "$marks"/progress-* 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
        if [[ $progress != "$last" ]]; then
            last=$progress
            last_change=$SECONDS
        elif ((SECONDS - last_change >= 15)); then
            bench_log "$name: no answer for 15 s (at $progress)"
            break
        fi
        if ((SECONDS >= deadline)); then
            bench_log "$name: not done after ${timeout}s"
            break
        fi
        sleep 0.2
    done
    kill -INT "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    bench_stop_pid "$pid"
    sed 's/^/    /' "$out" >&2
    # shellcheck disable=SC2034  # read by the sourcing scripts
    BENCH_WALK_ANSWERED=$(bench_walk_field "$out" answered)
    if ((done_count < THREADS)); then
        bench_log "WARNING: $name: only $done_count of $THREADS wrk threads had answers for all their tokens"
        return 1
    fi
}

# bench_sqlite DBFILE SQL -- print the first column of the first row (python3 sqlite3).
bench_sqlite() {
    python3 - "$1" "$2" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
row = db.execute(sys.argv[2]).fetchone()
print(row[0] if row else "")
EOF
}

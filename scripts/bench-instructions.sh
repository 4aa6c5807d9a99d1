#!/usr/bin/env bash
# scripts/bench-instructions.sh -- user-space instructions per proxied request, ssogate and nginx, under callgrind.
#
# Prints figures; a benchmark, not a test. requests/s move by +-5 % or more between runs on a shared 2-core machine,
# which hides a 2 % change; these counts repeat within about 1 %. Each proxy runs alone under valgrind's callgrind, in
# front of the same nginx upstream (1 KiB body), with one worker and its access log on, and wrk drives it twice (a
# short and a longer load). The difference between the two runs' totals, over the difference in requests (counted
# from the access logs), is the cost of one request without the start-up (TLS library self-tests, RNG seeding).
#
# Kernel time is not counted: both proxies make about the same system calls per request (2 reads and 2 writes for
# ssogate; nginx also writes each log line).
#
# Needs valgrind, nginx, wrk and curl (apt-get installs them when missing; Debian, root) and target/release/ssogate
# (built with `cargo build --release --locked` when missing). Everything runs on 127.0.0.1; every process is
# stopped at the end.
#
# Environment: SHORT=2 LONG=5 (seconds of wrk load), CONNECTIONS=4, SSOGATE_BIN=... (use this binary),
#              KEEP_TMP=1 (keep configs, logs and callgrind files).
#
# Usage: scripts/bench-instructions.sh

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${SHORT:=2}" "${LONG:=5}" "${CONNECTIONS:=4}"
: "${SSOGATE_BIN:=$ROOT/target/release/ssogate}"

need() {
    local missing=()
    for tool in valgrind nginx wrk curl; do
        command -v "$tool" >/dev/null || [[ -x /usr/sbin/$tool ]] || missing+=("$tool")
    done
    if ((${#missing[@]})); then
        echo "[bench] installing: ${missing[*]}" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if [[ ! -x $SSOGATE_BIN ]]; then
        (cd "$ROOT" && cargo build --release --locked)
    fi
}
need
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

TMP=$(mktemp -d /tmp/ssogate-instr.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    if [[ ${KEEP_TMP:-0} == 1 ]]; then echo "[bench] kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_for() {
    local url=$1
    for _ in $(seq 1 150); do
        curl -s -o /dev/null "$url" && return 0
        sleep 0.2
    done
    echo "[bench] nothing answers at $url" >&2
    return 1
}

UP_PORT=$(free_port)
head -c 1024 /dev/zero | tr '\0' 'a' >"$TMP/body.txt"
# One process (no master), so stopping it leaves no worker behind.
cat >"$TMP/upstream.conf" <<EOF
master_process off;
worker_processes 1;
daemon off;
pid $TMP/upstream.pid;
error_log $TMP/upstream.err;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server { listen 127.0.0.1:$UP_PORT; location / { root $TMP; try_files /body.txt =404; } }
}
EOF
"$NGINX" -c "$TMP/upstream.conf" &
PIDS+=($!)
wait_for "http://127.0.0.1:$UP_PORT/"

# run_ssogate SECONDS -> "requests instructions"
run_ssogate() {
    local port
    port=$(free_port)
    cat >"$TMP/ssogate.yaml" <<EOF
listen: 127.0.0.1:$port
workers: 1
upstream:
  url: http://127.0.0.1:$UP_PORT
EOF
    rm -f "$TMP"/sg.cg*
    RUST_LOG=info valgrind --tool=callgrind --callgrind-out-file="$TMP/sg.cg" "$SSOGATE_BIN" \
        --config "$TMP/ssogate.yaml" 2>"$TMP/ssogate.log" &
    local vg=$!
    PIDS+=("$vg")
    wait_for "http://127.0.0.1:$port/"
    wrk -t1 -c"$CONNECTIONS" -d"${1}s" "http://127.0.0.1:$port/" >/dev/null
    kill -INT "$vg"
    wait "$vg" || true
    echo "$(grep -c 'ssogate::access' "$TMP/ssogate.log") $(totals "$TMP"/sg.cg*)"
}

# run_nginx SECONDS -> "requests instructions"
run_nginx() {
    local port
    port=$(free_port)
    cat >"$TMP/proxy.conf" <<EOF
master_process off;
daemon off;
worker_processes 1;
pid $TMP/proxy.pid;
error_log $TMP/proxy.err;
events { worker_connections 4096; }
http {
    access_log $TMP/proxy.access.log;
    upstream backend { server 127.0.0.1:$UP_PORT; keepalive 64; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
        }
    }
}
EOF
    rm -f "$TMP"/nx.cg* "$TMP/proxy.access.log"
    valgrind --tool=callgrind --callgrind-out-file="$TMP/nx.cg" "$NGINX" -c "$TMP/proxy.conf" 2>"$TMP/proxy.vg.log" &
    local vg=$!
    PIDS+=("$vg")
    wait_for "http://127.0.0.1:$port/"
    wrk -t1 -c"$CONNECTIONS" -d"${1}s" "http://127.0.0.1:$port/" >/dev/null
    kill -QUIT "$vg"
    wait "$vg" || true
    echo "$(wc -l <"$TMP/proxy.access.log") $(totals "$TMP"/nx.cg*)"
}

totals() {
    # A file has both a "summary:" and a "totals:" line with the same figure; count one of them.
    grep -hE '^summary:' "$@" | awk '{s += $2} END {print s}'
}

per_request() {
    python3 -c "import sys; a=sys.argv[1].split(); b=sys.argv[2].split(); print(round((int(b[1])-int(a[1]))/(int(b[0])-int(a[0]))))" "$1" "$2"
}

echo "[bench] ssogate: ${SHORT}s and ${LONG}s of wrk -c$CONNECTIONS under callgrind ($SSOGATE_BIN)" >&2
sg_short=$(run_ssogate "$SHORT")
sg_long=$(run_ssogate "$LONG")
echo "[bench] nginx proxy: the same" >&2
nx_short=$(run_nginx "$SHORT")
nx_long=$(run_nginx "$LONG")

sg=$(per_request "$sg_short" "$sg_long")
nx=$(per_request "$nx_short" "$nx_long")
echo
echo "== user-space instructions per proxied request (callgrind; requests and totals: short run / long run)"
printf '%-12s %10s   (%s / %s)\n' ssogate "$sg" "$sg_short" "$sg_long"
printf '%-12s %10s   (%s / %s)\n' nginx-proxy "$nx" "$nx_short" "$nx_long"
python3 -c "import sys; print('ratio ssogate/nginx-proxy instructions:', round(int(sys.argv[1])/int(sys.argv[2]), 2))" "$sg" "$nx"

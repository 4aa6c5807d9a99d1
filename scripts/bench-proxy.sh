#!/usr/bin/env bash
# scripts/bench-proxy.sh -- proxy-overhead benchmark for ssogate.
#
# Prints figures; it is a benchmark, not a test (exit status only says whether
# the legs could be run, never whether ssogate was "fast enough").
#
# On 127.0.0.1 it starts a small fast upstream (nginx returning a 1 KiB body,
# access log off) and runs the same wrk load against the following (the two
# proxies in ROUNDS alternating rounds: a shared machine's capacity drifts
# between legs by more than the difference being measured):
#   1. upstream     -- the upstream directly (the ceiling)
#   2. nginx-proxy  -- nginx as reverse proxy: upstream block + keepalive 64,
#                      proxy_http_version 1.1, Connection "", worker_processes
#                      = nproc (= ssogate's runtime threads), access log ON to a
#                      file (ssogate logs one line per request too)
#   3. ssogate      -- target/release/ssogate --config <tmp>/ssogate.yaml,
#                      RUST_LOG=info, output to a log file
# and prints requests/s, p50 and p99 latency per leg (wrk --latency), the
# ratio ssogate/nginx-proxy of requests/s per round and of the two medians,
# and ssogate's peak RSS (VmHWM).
#
# Needs nginx, wrk, curl (nginx and wrk are apt-get installed when missing;
# Debian, root) and python3 (to pick free ports; falls back to random ports).
# Builds ssogate with `cargo build --release --locked` only if
# target/release/ssogate is missing or older than Cargo.toml or a file in src/.
# Every process it starts is killed on exit; everything lives in a mktemp -d
# directory that is removed afterwards (kept with KEEP_TMP=1 or when a leg
# fails, for its logs).
#
# Environment:
#   DURATION=10      seconds of measured load per leg
#   ROUNDS=3         alternating nginx-proxy / ssogate rounds
#   CONNECTIONS=64   wrk connections
#   THREADS=2        wrk threads
#   WARMUP=2         un-counted warm-up seconds per leg (0 = none)
#   SKIP_SSOGATE=1   run only the upstream and nginx-proxy legs (no build)
#   SSOGATE_BIN=...  use this ssogate binary, never build
#   NGINX_WORKERS    proxy nginx worker_processes (default nproc)
#   UPSTREAM_WORKERS upstream nginx worker_processes (default nproc)
#   KEEP_TMP=1       keep the temp dir (configs, logs, raw wrk output)
#   RUST_LOG=info    ssogate log filter
#
# Usage: scripts/bench-proxy.sh            (from anywhere)
#        DURATION=5 SKIP_SSOGATE=1 scripts/bench-proxy.sh

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source=scripts/bench-lib.sh
. "$SCRIPT_DIR/bench-lib.sh"

: "${SKIP_SSOGATE:=0}" "${ROUNDS:=3}"

bench_ensure_tools
if [[ $SKIP_SSOGATE != 1 ]]; then
    bench_ensure_ssogate "$ROOT"
fi
bench_init

bench_print_facts "$ROOT"
echo

# --- upstream -------------------------------------------------------------
up_port=$(bench_free_port)
bench_start_nginx_upstream upstream "$up_port"
up_pid=$BENCH_LAST_PID
bench_wait_port "$up_port" 15 "$up_pid" "$BENCH_TMP/upstream/error.log" ||
    bench_die "upstream nginx did not come up"
bench_probe upstream "http://127.0.0.1:$up_port/"

echo "== leg 1/3: upstream (127.0.0.1:$up_port)"
bench_wrk upstream "http://127.0.0.1:$up_port/"
echo

# --- nginx as reverse proxy and ssogate, in alternating rounds ------------
px_port=$(bench_free_port)
bench_start_nginx_proxy nginx-proxy "$px_port" "$up_port"
px_pid=$BENCH_LAST_PID
bench_wait_port "$px_port" 15 "$px_pid" "$BENCH_TMP/nginx-proxy/error.log" ||
    bench_die "proxy nginx did not come up"
bench_probe nginx-proxy "http://127.0.0.1:$px_port/"

rss="skipped"
if [[ $SKIP_SSOGATE != 1 ]]; then
    sg_port=$(bench_free_port)
    sg_cfg=$BENCH_TMP/ssogate.yaml
    sg_log=$BENCH_TMP/ssogate.log
    cat >"$sg_cfg" <<EOF
listen: 127.0.0.1:$sg_port
public_url: http://127.0.0.1:$sg_port
upstream:
  url: http://127.0.0.1:$up_port
EOF
    bench_start_ssogate "$sg_cfg" "$sg_log"
    sg_pid=$BENCH_LAST_PID
    bench_wait_port "$sg_port" 15 "$sg_pid" "$sg_log" ||
        bench_die "ssogate did not come up (log: $sg_log)"
    bench_probe ssogate "http://127.0.0.1:$sg_port/"
fi

# On a shared machine the capacity drifts by more than the difference being measured; alternating the two proxies
# and taking the median of each puts both through the same drift.
px_rps=() sg_rps=()
for round in $(seq 1 "$ROUNDS"); do
    echo "== round $round/$ROUNDS: nginx-proxy (127.0.0.1:$px_port -> $up_port, workers ${NGINX_WORKERS:-$(nproc)})"
    bench_wrk "nginx-proxy#$round" "http://127.0.0.1:$px_port/"
    px_rps+=("${BENCH_RPS[nginx-proxy#$round]}")
    if [[ $SKIP_SSOGATE != 1 ]]; then
        echo "== round $round/$ROUNDS: ssogate (127.0.0.1:$sg_port -> $up_port, $SSOGATE_BIN)"
        bench_wrk "ssogate#$round" "http://127.0.0.1:$sg_port/"
        sg_rps+=("${BENCH_RPS[ssogate#$round]}")
    fi
    echo
done
bench_stop_pid "$px_pid"
bench_log "nginx-proxy access log: $(wc -l <"$BENCH_TMP/nginx-proxy/access.log") lines"
if [[ $SKIP_SSOGATE != 1 ]]; then
    if kill -0 "$sg_pid" 2>/dev/null; then
        rss=$(bench_peak_rss "$sg_pid")
    else
        rss="? (ssogate exited during the run)"
        BENCH_NOTE[ssogate#$ROUNDS]+="process exited during the run; "
        tail -n 30 "$sg_log" >&2
    fi
    bench_stop_pid "$sg_pid"
    bench_log "ssogate log: $(wc -l <"$sg_log") lines"
fi
echo
# --- summary --------------------------------------------------------------
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo "== results (wrk -t $THREADS -c $CONNECTIONS -d ${DURATION}s, $ROUNDS alternating rounds, nproc $(nproc))"
bench_print_table
px_median=$(median "${px_rps[@]}")
echo "nginx-proxy median req/s: $px_median"
if [[ $SKIP_SSOGATE != 1 ]]; then
    sg_median=$(median "${sg_rps[@]}")
    echo "ssogate median req/s: $sg_median"
    rounds=""
    for i in "${!sg_rps[@]}"; do
        rounds+=" $(bench_ratio "${sg_rps[$i]}" "${px_rps[$i]}")"
    done
    echo "ratio ssogate/nginx-proxy req/s per round:$rounds"
    echo "ratio ssogate/nginx-proxy req/s (medians): $(bench_ratio "$sg_median" "$px_median")"
    echo "ratio ssogate/upstream req/s (median): $(bench_ratio "$sg_median" "${BENCH_RPS[upstream]}")"
fi
echo "ratio nginx-proxy/upstream req/s (median): $(bench_ratio "$px_median" "${BENCH_RPS[upstream]}")"
echo "ssogate peak RSS (VmHWM): $rss"

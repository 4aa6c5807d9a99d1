#!/usr/bin/env bash
# scripts/bench-sso.sh -- SSO login throughput of ssogate.
#
# Prints figures; it is a benchmark, not a test (exit status only says whether
# the run could be made, never whether ssogate was "fast enough").
#
# What it measures: logins per second through the Tribe entry route
#   GET /api/auth/sso?jwt=<token>&redirect_uri=/
# each request with a different, valid HS256 token (verify, claim profile,
# replay guard, member directory upsert in SQLite, sealed session cookie,
# 303), half of them for members already in the directory ("returning": their
# profile is updated) and half for brand-new members (created).
#
#   1. starts an nginx upstream (never reached by a login) and
#      target/release/ssogate with an SSO config: one HS256 key, a session
#      secret, the directory in the temp dir, rate limits off, RUST_LOG=info
#   2. pre-mints with PyJWT (the venv's, as the docs' samples do:
#      jwt.encode(..., algorithm='HS256')), every token with its own jti:
#        M = TOKENS/2 warm-up tokens, one per "returning" member, and
#        TOKENS measured tokens alternating a returning member (a fresh token)
#        and a new member
#   3. warm-up pass (not counted): wrk sends all M warm-up tokens, so the
#      directory holds M members
#   4. measured pass: wrk -t THREADS -c CONNECTIONS -d DURATION --latency,
#      every request the next token of the file (each wrk thread its own
#      share); a Lua response() hook counts answers that are not 303
#   5. prints logins/s, p50/p99, the non-303 count, the members in the
#      directory afterwards (python3 sqlite3) and the machine facts, next to
#      the target of 5,000 logins/s on this 2-core machine
#
# The run is INVALID (said so in the output) if any login was not answered
# 303, wrk saw socket errors or timeouts, or a wrk thread ran out of tokens
# (it then stops, so the figure would be too low: raise TOKENS).
#
# Needs nginx, wrk, curl (apt-get installed when missing; Debian, root),
# python3, and PyJWT in .venv (python3 -m venv .venv &&
# .venv/bin/pip install -r tests/interop/requirements.txt; or PYTHON=...).
# Builds ssogate with `cargo build --release --locked` only if the binary is
# missing or older than Cargo.toml or a file in src/. Every process it starts
# is killed on exit; the temp dir is removed (kept with KEEP_TMP=1 or on
# failure).
#
# Environment:
#   TOKENS=200000    measured tokens (plus TOKENS/2 warm-up tokens)
#   DURATION=10      seconds of measured load
#   CONNECTIONS=64   wrk connections
#   THREADS=2        wrk threads
#   WARMUP_TIMEOUT=300  seconds allowed for the warm-up pass
#   TARGET=5000      logins/s printed as the target
#   PYTHON=.venv/bin/python   a Python with PyJWT
#   SSOGATE_BIN=...  use this ssogate binary, never build
#   KEEP_TMP=1       keep the temp dir (config, tokens, logs, wrk output)
#   RUST_LOG=info    ssogate log filter
#
# Usage: scripts/bench-sso.sh
#        TOKENS=50000 DURATION=5 scripts/bench-sso.sh

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source=scripts/bench-lib.sh
. "$SCRIPT_DIR/bench-lib.sh"

: "${TOKENS:=200000}"
: "${WARMUP_TIMEOUT:=300}"
: "${TARGET:=5000}"
: "${PYTHON:=$ROOT/.venv/bin/python}"
# bench-lib's timed warm-up is not used: the warm-up here is a pass over its own tokens.
WARMUP=0

if ! [[ $TOKENS =~ ^[0-9]+$ ]] || ((TOKENS < 2 * THREADS)); then
    bench_die "TOKENS must be a number >= 2 x THREADS"
fi
RETURNING=$((TOKENS / 2))

"$PYTHON" -c 'import jwt' 2>/dev/null ||
    bench_die "$PYTHON has no PyJWT: python3 -m venv .venv && .venv/bin/pip install -r tests/interop/requirements.txt"
bench_ensure_tools
bench_ensure_ssogate "$ROOT"
bench_init

bench_print_facts "$ROOT"
echo "python:       $("$PYTHON" -c 'import sys, jwt; print(sys.version.split()[0], "PyJWT", jwt.__version__)')"
echo "tokens:       $RETURNING warm-up + $TOKENS measured (half returning, half new members)"
echo

secret=$("$PYTHON" -c 'import secrets; print(secrets.token_hex(32))')
session_secret=$("$PYTHON" -c 'import secrets; print(secrets.token_hex(32))')

# --- upstream and ssogate ---------------------------------------------------
up_port=$(bench_free_port)
bench_start_nginx_upstream upstream "$up_port"
bench_wait_port "$up_port" 15 "$BENCH_LAST_PID" "$BENCH_TMP/upstream/error.log" ||
    bench_die "upstream nginx did not come up"

sg_port=$(bench_free_port)
sg_cfg=$BENCH_TMP/ssogate.yaml
sg_log=$BENCH_TMP/ssogate.log
db=$BENCH_TMP/directory/ssogate.db
cat >"$sg_cfg" <<EOF
listen: 127.0.0.1:$sg_port
public_url: http://127.0.0.1:$sg_port
upstream:
  url: http://127.0.0.1:$up_port
sso:
  keys:
    - id: bench
      algorithm: HS256
      secret: $secret
session:
  secret: $session_secret
directory:
  path: $db
rate_limit:
  sso_per_ip: off
  sso_per_subject: off
EOF
bench_start_ssogate "$sg_cfg" "$sg_log"
sg_pid=$BENCH_LAST_PID
bench_wait_port "$sg_port" 15 "$sg_pid" "$sg_log" || bench_die "ssogate did not come up (log: $sg_log)"
rss_start=$(bench_rss "$sg_pid")

# --- tokens -------------------------------------------------------------------
# Tribe's sample payload (sub a number, email, name, iat, exp) plus a jti, so a
# returning member's second token can never equal their first. exp is 10 min
# out (sso.max_token_age's default) so that a slow warm-up does not expire them.
warm_tokens=$BENCH_TMP/warmup.tok
run_tokens=$BENCH_TMP/measured.tok
bench_log "minting $((RETURNING + TOKENS)) tokens with PyJWT"
mint_out=$("$PYTHON" - "$secret" "$RETURNING" "$TOKENS" "$warm_tokens" "$run_tokens" <<'EOF'
import random, sys, time
import jwt

secret, returning, total, warm_path, run_path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
start = time.time()
now = round(time.time())

def token(sub, jti):
    user_data = {
        "sub": sub, "email": f"member{sub}@example.com", "name": f"Member {sub}",
        "iat": now, "exp": now + 600, "jti": jti,
    }
    return jwt.encode(user_data, secret, algorithm="HS256")

with open(warm_path, "w") as out:
    for sub in range(1, returning + 1):
        out.write(token(sub, f"w{sub}") + "\n")
order = list(range(1, returning + 1))
random.Random(1).shuffle(order)
new_sub = returning
with open(run_path, "w") as out:
    for i in range(total):
        if i % 2 == 0:
            sub = order[(i // 2) % returning]
        else:
            new_sub += 1
            sub = new_sub
        out.write(token(sub, f"m{i}") + "\n")
elapsed = time.time() - start
print(f"{returning + total} {elapsed:.1f} {(returning + total) / elapsed:.0f}")
EOF
)
read -r minted mint_secs mint_rate <<<"$mint_out"
bench_log "minted $minted tokens in ${mint_secs}s ($mint_rate tokens/s)"
minted_at=$SECONDS

lua=$BENCH_TMP/walk.lua
bench_walk_lua "$lua"
url="http://127.0.0.1:$sg_port"

# Sanity: one login by hand (a token the passes never use).
probe=$("$PYTHON" -c 'import sys, time, jwt; now = round(time.time()); print(jwt.encode({"sub": "probe", "email": "probe@example.com", "name": "Probe", "iat": now, "exp": now + 60}, sys.argv[1], algorithm="HS256"))' "$secret")
probe_code=$(curl -s -o /dev/null --max-time 5 -w '%{http_code}' "$url/api/auth/sso?jwt=$probe&redirect_uri=/")
bench_log "probe login: HTTP $probe_code"
[[ $probe_code == 303 ]] || { tail -n 20 "$sg_log" >&2; bench_die "a valid login was answered $probe_code, not 303"; }

# --- warm-up: create the returning members --------------------------------------
echo "== warm-up: $RETURNING logins creating the returning members (not counted)"
warm_start=$SECONDS
warm_complete=1
bench_wrk_walk_all warmup "$url/" "$lua" "$warm_tokens" "$WARMUP_TIMEOUT" || warm_complete=0
warm_secs=$((SECONDS - warm_start))
warm_bad=$(bench_walk_field "$BENCH_TMP/wrk-warmup.txt" unexpected)
members_before=$(bench_sqlite "$db" 'SELECT count(*) FROM members')
rss_warm=$(bench_rss "$sg_pid")
echo "warm-up: ${warm_secs}s, answers: $BENCH_WALK_ANSWERED of $RETURNING, non-303: $warm_bad, members now: $members_before (expected $((RETURNING + 1)) with the probe)"
[[ $warm_bad == 0 ]] || bench_log "WARNING: the warm-up had $warm_bad non-303 answers ($(bench_walk_field "$BENCH_TMP/wrk-warmup.txt" statuses))"
echo

# --- measured pass ------------------------------------------------------------------
echo "== measured: logins with fresh tokens, alternating returning and new members"
bench_wrk_walk logins "$url/" "$lua" "$run_tokens"
out=$BENCH_TMP/wrk-logins.txt
answered=$(bench_walk_field "$out" answered)
non303=$(bench_walk_field "$out" unexpected)
statuses=$(bench_walk_field "$out" statuses)
exhausted=$(bench_walk_field "$out" exhausted_threads)
socket_errors=$(grep -E 'Socket errors' "$out" | sed 's/^ *//' || true)
if ((SECONDS - minted_at > 600)); then
    bench_log "WARNING: more than 600 s since minting: tokens may have expired (see the statuses)"
fi

rss=$(bench_peak_rss "$sg_pid")
rss_end=$(bench_rss "$sg_pid")
kill -0 "$sg_pid" 2>/dev/null || BENCH_NOTE[logins]+="ssogate exited during the run; "
bench_stop_pid "$sg_pid"
members_after=$(bench_sqlite "$db" 'SELECT count(*) FROM members')
returning_logged=$(bench_sqlite "$db" "SELECT count(*) FROM members WHERE login_count >= 2")
echo

# --- summary ------------------------------------------------------------------------
invalid=()
[[ $non303 == 0 ]] || invalid+=("$non303 logins not answered 303 ($statuses)")
[[ $exhausted == 0 ]] || invalid+=("$exhausted wrk thread(s) ran out of tokens: raise TOKENS")
[[ -z $socket_errors ]] || invalid+=("wrk: $socket_errors")
[[ $answered =~ ^[0-9]+$ ]] || invalid+=("no walk counts in the wrk output")
((warm_complete)) || invalid+=("the warm-up did not get an answer for every token ($BENCH_WALK_ANSWERED of $RETURNING)")
((members_before == RETURNING + 1)) || invalid+=("$members_before members after the warm-up, not $((RETURNING + 1))")

rps=${BENCH_RPS[logins]}
echo "== results (wrk -t $THREADS -c $CONNECTIONS -d ${DURATION}s, nproc $(nproc))"
bench_print_table
printf 'logins/s:             %s   (target: %s logins/s on this %s-core machine: %s)\n' \
    "$(awk -v r="$rps" 'BEGIN { printf "%.0f", r }')" "$TARGET" "$(nproc)" \
    "$(awk -v r="$rps" -v t="$TARGET" 'BEGIN { print (r + 0 >= t + 0) ? "met" : "NOT met" }')"
echo "latency p50 / p99:    ${BENCH_P50[logins]} ms / ${BENCH_P99[logins]} ms"
echo "logins answered:      $answered ($statuses)"
echo "non-303 answers:      $non303"
echo "members before/after: $members_before / $members_after (new during the run: $((members_after - members_before)); returning members signed in again: $returning_logged)"
echo "warm-up:              $RETURNING logins in ${warm_secs}s (~$((RETURNING / (warm_secs > 0 ? warm_secs : 1))) logins/s, incl. wrk start/stop)"
echo "minting (PyJWT):      $minted tokens in ${mint_secs}s ($mint_rate tokens/s, one process)"
echo "ssogate RSS:          $rss_start at start, $rss_warm after the warm-up, $rss_end after the run (peak $rss)"
if ((${#invalid[@]})); then
    echo "RUN INVALID:"
    printf '  - %s\n' "${invalid[@]}"
else
    echo "run valid: every login answered 303, no socket errors, tokens left over"
fi

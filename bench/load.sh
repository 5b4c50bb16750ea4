#!/usr/bin/env bash
# Load benchmark: the release build of the app, the demo upstream as its own process (so the
# app's memory is the app's), both on loopback, wrk as the load generator. For concurrency 1, 8, 64, 256 (10 s each, TOKENLESS_BENCH_SECONDS to
# change): the authenticated SSR page /frogs (cookie opened, session checked, one upstream call,
# render), the same page with the auth layer bypassed (demo.bench_fixed_session: no cookie work)
# as the baseline, the bare-Leptos ceiling (../shared/ceiling-leptos: the same page with nothing
# else, its own sealed cookie, against the same upstream process; built here into
# target/ceiling) and a static file. Prints a Markdown table (requests/s, p50, p99, errors),
# Tokenless / ceiling ratios measured in the same run, and each app's peak RSS; BENCHMARKS.md
# holds a run's figures.
#
#   bash bench/load.sh             # needs: target/release/tokenless (built if missing), wrk
#   TOKENLESS_BENCH_SECONDS=2 TOKENLESS_BENCH_CONCURRENCY="1 8" bash bench/load.sh   # a smoke run
#   TOKENLESS_BENCH_ROUNDS=3 TOKENLESS_BENCH_CONCURRENCY="8 64" bash bench/load.sh    # the ceiling
#       ratios in 3 rounds (each runs Tokenless, baseline, ceiling, static file at every
#       concurrency; even rounds run Tokenless after the ceiling), each round's and the median
#       (one run swings by ±15 %)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECONDS_EACH="${TOKENLESS_BENCH_SECONDS:-10}"
CONCURRENCY="${TOKENLESS_BENCH_CONCURRENCY:-1 8 64 256}"
ROUNDS="${TOKENLESS_BENCH_ROUNDS:-1}"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "TOKENLESS_BENCH_ROUNDS must be a whole number of rounds, 1 or more (got $ROUNDS)" >&2; exit 1; }
PORT_AUTH=3300
PORT_BASE=3302
PORT_UPSTREAM=3320
PORT_CEILING=3304
CEILING="$ROOT/../shared/ceiling-leptos"
KEYS="4:bG9hZCBiZW5jaG1hcmsga2V5LCBub3QgZm9yIHVzZSE="

if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get install -y -q wrk >/dev/null
    else
        echo "bench/load.sh needs wrk: install it (Debian/Ubuntu: sudo apt-get install wrk)" >&2
        exit 1
    fi
fi
# shellcheck source=bench/lib.sh
. bench/lib.sh
build_release
[ -f "$CEILING/Cargo.toml" ] || { echo "the ceiling is missing: $CEILING (the shared directory beside the repository)" >&2; exit 1; }
CARGO_TARGET_DIR="$ROOT/target/ceiling" cargo build --release --features ssr --manifest-path "$CEILING/Cargo.toml"

start_upstream

start_app $PORT_AUTH
AUTH_PID=${pids[-1]}
start_app $PORT_BASE TOKENLESS_DEMO__BENCH_FIXED_SESSION=true
BASE_PID=${pids[-1]}

# A real session cookie for the authenticated runs.
cookie=$(sign_in "$PORT_AUTH")
curl -fsS -o /dev/null -H "cookie: $cookie" "http://127.0.0.1:$PORT_AUTH/frogs"
curl -fsS -o /dev/null "http://127.0.0.1:$PORT_BASE/frogs"

# The ceiling, with its own key and a cookie sealed its way around the access token the demo
# upstream issued to that sign-in.
CEILING_KEY=$(head -c 32 /dev/urandom | base64)
SESSION_KEY_B64="$CEILING_KEY" UPSTREAM_URL="http://127.0.0.1:$PORT_UPSTREAM" LEPTOS_SITE_ADDR="127.0.0.1:$PORT_CEILING" \
    LEPTOS_OUTPUT_NAME=probe target/ceiling/release/probe >target/bench-ceiling.log 2>&1 &
pids+=("$!")
CEILING_PID=${pids[-1]}
wait_for "http://127.0.0.1:$PORT_CEILING/" target/bench-ceiling.log
ceiling_cookie=$(ceiling_cookie "$CEILING_KEY")
# Both render the frogs (drawings as data: URIs), not a signed-out page.
for page in "$PORT_CEILING $ceiling_cookie" "$PORT_AUTH $cookie"; do
    curl -fsS -H "cookie: ${page#* }" "http://127.0.0.1:${page%% *}/frogs" | grep -q 'data:image/svg+xml' ||
        { echo "/frogs on :${page%% *} did not render the frogs" >&2; exit 1; }
done

echo "Machine: $(nproc) cores, $(uname -srm); ${SECONDS_EACH}s per run; wrk on the same machine."
echo
echo "| target | connections | requests/s | p50 | p99 | errors |"
echo "|---|---:|---:|---:|---:|---:|"
declare -A ratios
run_tokenless() { # concurrency; leaves its summary in $tokenless
    run "/frogs, signed in (cookie)" "http://127.0.0.1:$PORT_AUTH/frogs" "$1" -H "cookie: $cookie"
    tokenless=$LAST
}
for round in $(seq 1 "$ROUNDS"); do
    for c in $CONCURRENCY; do
        # Odd rounds run Tokenless before the ceiling, even rounds after it: neither always
        # meets a machine the other has just warmed (or tired).
        if (( round % 2 )); then run_tokenless "$c"; fi
        run "/frogs, auth bypassed (baseline)" "http://127.0.0.1:$PORT_BASE/frogs" "$c"
        run "/frogs, bare Leptos (ceiling)" "http://127.0.0.1:$PORT_CEILING/frogs" "$c" -H "cookie: $ceiling_cookie"
        ceiling=$LAST
        if (( round % 2 == 0 )); then run_tokenless "$c"; fi
        run "static file (/pkg/tokenless.css)" "http://127.0.0.1:$PORT_AUTH/pkg/tokenless.css" "$c"
        IFS='|' read -r t_rps _ t_p99 _ <<<"$tokenless"
        IFS='|' read -r c_rps _ c_p99 _ <<<"$ceiling"
        ratios[$c]="${ratios[$c]:-} $(awk -v t="$t_rps" -v c="$c_rps" 'BEGIN { printf "%.2f", (c > 0 ? t / c : 0) }'):$(awk -v t="$(millis "$(echo "$t_p99" | tr -d ' ')")" -v c="$(millis "$(echo "$c_p99" | tr -d ' ')")" 'BEGIN { printf "%.2f", (c > 0 ? t / c : 0) }')"
    done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { printf "%.2f\n", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
echo
echo "Tokenless /frogs against the ceiling, same run (target: requests/s ≥ 0.90, p99 ≤ 1.20 at 8 and 64), each round and the median:"
echo
echo "| connections | requests/s, Tokenless / ceiling | p99, Tokenless / ceiling | median requests/s ratio | median p99 ratio |"
echo "|---:|---|---|---:|---:|"
for c in $CONCURRENCY; do
    rps=$(for r in ${ratios[$c]}; do printf '%s ' "${r%%:*}"; done)
    p99=$(for r in ${ratios[$c]}; do printf '%s ' "${r##*:}"; done)
    echo "| $c | ${rps% } | ${p99% } | $(echo "$rps" | median) | $(echo "$p99" | median) |"
done
echo
echo "Peak RSS: app with sessions $(awk '/VmHWM/ {print $2, $3}' /proc/$AUTH_PID/status), baseline app $(awk '/VmHWM/ {print $2, $3}' /proc/$BASE_PID/status), ceiling $(awk '/VmHWM/ {print $2, $3}' /proc/$CEILING_PID/status)"
# Session scale: many distinct signed-in sessions cycling through the authenticated page.
SESSIONS="${TOKENLESS_BENCH_SESSIONS:-10000}"
rss() { awk '/VmRSS/ {print $2}' "/proc/$AUTH_PID/status"; }
rss_before=$(rss)
python3 - "$PORT_AUTH" "$SESSIONS" >target/bench-cookies.txt <<'PY'
import http.client, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
conn = http.client.HTTPConnection("127.0.0.1", port)
body = "email=user%40example.com&password=frogs-are-green&next=%2F"
headers = {"content-type": "application/x-www-form-urlencoded", "accept": "application/json",
           "origin": f"http://127.0.0.1:{port}"}
for _ in range(n):
    conn.request("POST", "/api/login", body, headers)
    r = conn.getresponse()
    r.read()
    cookie = r.getheader("set-cookie")
    if r.status != 200 or not cookie:
        sys.exit(f"sign-in failed: {r.status}")
    print(cookie.split(";")[0])
PY
rss_signed_in=$(rss)
cat >target/bench-cycle.lua <<'LUA'
local cookies = {}
for line in io.lines("target/bench-cookies.txt") do cookies[#cookies + 1] = line end
local i = math.random(#cookies)
request = function()
  i = i % #cookies + 1
  return wrk.format("GET", "/frogs", { ["Cookie"] = cookies[i] })
end
LUA
scale=$(wrk -t2 -c64 -d"${SECONDS_EACH}s" --latency -s target/bench-cycle.lua "http://127.0.0.1:$PORT_AUTH/frogs" | summarize)
echo
echo "Session scale: $SESSIONS sessions signed in, cycled at 64 connections: $scale (requests/s | p50 | p99 | errors)"
echo "RSS of the app: ${rss_before} kB before, ${rss_signed_in} kB after $SESSIONS sign-ins, $(rss) kB after the run"

refreshes=$(curl -fsS "http://127.0.0.1:$((PORT_UPSTREAM + 1))/_test/counters" | sed -n 's/.*"refresh_token":\([0-9]*\).*/\1/p')
echo "Refresh grants during the run: ${refreshes:-0}"

#!/usr/bin/env bash
# The refresh memory's stores under load (issue 33): two release instances of the app side by
# side on one demo upstream process — the refresh memory in a SQLite file (the default store)
# and in the process — and wrk on the authenticated SSR page /frogs of each, taking turns
# within every round (odd rounds SQLite first). Prints each run, then SQLite / in-process per
# round and the median; the target is requests/s ≥ 0.95. What a signed-in page reads of the
# memory is the same for both (the SQLite store answers from its in-process copy); the file
# is written on sign-in, sign-out and refresh only.
#
#   bash bench/stores.sh                                      # 8 and 64 connections, 3 rounds, 10 s each
#   TOKENLESS_BENCH_SECONDS=2 TOKENLESS_BENCH_ROUNDS=1 bash bench/stores.sh   # a smoke run
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECONDS_EACH="${TOKENLESS_BENCH_SECONDS:-10}"
CONCURRENCY="${TOKENLESS_BENCH_CONCURRENCY:-8 64}"
ROUNDS="${TOKENLESS_BENCH_ROUNDS:-3}"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "TOKENLESS_BENCH_ROUNDS must be a whole number of rounds, 1 or more (got $ROUNDS)" >&2; exit 1; }
PORT_SQLITE=3340
PORT_MEMORY=3342
PORT_UPSTREAM=3344
KEYS="4:bG9hZCBiZW5jaG1hcmsga2V5LCBub3QgZm9yIHVzZSE="

# shellcheck source=bench/lib.sh
. bench/lib.sh
need wrk wrk
build_release

start_upstream
start_app $PORT_SQLITE
start_app $PORT_MEMORY TOKENLESS_SESSION__STORE=memory
sqlite_cookie=$(sign_in $PORT_SQLITE)
memory_cookie=$(sign_in $PORT_MEMORY)
for page in "$PORT_SQLITE $sqlite_cookie" "$PORT_MEMORY $memory_cookie"; do
    curl -fsS -H "cookie: ${page#* }" "http://127.0.0.1:${page%% *}/frogs" | grep -q 'data:image/svg+xml' ||
        { echo "/frogs on :${page%% *} did not render the frogs" >&2; exit 1; }
done

echo "Machine: $(nproc) cores, $(uname -srm); ${SECONDS_EACH}s per run; wrk on the same machine."
echo
echo "| store | connections | requests/s | p50 | p99 | errors |"
echo "|---|---:|---:|---:|---:|---:|"
declare -A ratios
for round in $(seq 1 "$ROUNDS"); do
    for c in $CONCURRENCY; do
        sqlite_run() { run "sqlite (default)" "http://127.0.0.1:$PORT_SQLITE/frogs" "$c" -H "cookie: $sqlite_cookie"; sqlite=$LAST; }
        if (( round % 2 )); then sqlite_run; fi
        run "memory (in process)" "http://127.0.0.1:$PORT_MEMORY/frogs" "$c" -H "cookie: $memory_cookie"
        memory=$LAST
        if (( round % 2 == 0 )); then sqlite_run; fi
        IFS='|' read -r s_rps _ _ s_errors <<<"$sqlite"
        IFS='|' read -r m_rps _ _ m_errors <<<"$memory"
        if (( s_errors + m_errors > 0 )); then echo "errors in round $round at $c connections" >&2; exit 1; fi
        ratios[$c]="${ratios[$c]:-} $(awk -v s="$s_rps" -v m="$m_rps" 'BEGIN { printf "%.3f", (m > 0 ? s / m : 0) }')"
    done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { printf "%.3f\n", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
echo
echo "SQLite / in-process requests/s, same run (target ≥ 0.95), each round and the median:"
echo
echo "| connections | each round | median |"
echo "|---:|---|---:|"
for c in $CONCURRENCY; do
    echo "| $c | ${ratios[$c]# } | $(echo "${ratios[$c]}" | median) |"
done

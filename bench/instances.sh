#!/usr/bin/env bash
# Several instances under load (issue 17): the release app on /frogs, signed in, with wrk as the
# load generator, in four set-ups measured in one run against one demo upstream process:
#   1 instance, refresh memory in process            (direct)
#   1 instance, refresh memory on Redis              (direct)
#   1 instance, memory in process, behind haproxy    (what the front itself costs)
#   2 instances on one Redis, behind haproxy (round-robin, no stickiness)
# All on this machine's loopback: wrk, haproxy, the instances, redis-server and the upstream
# share its cores. Prints a Markdown table and what the instances' metrics say (leases, Redis
# failures, answers without Redis). BENCHMARKS.md holds a run's figures.
#
#   bash bench/instances.sh        # needs wrk, haproxy, redis-server (installed from apt as root)
#   TOKENLESS_BENCH_SECONDS=2 TOKENLESS_BENCH_CONCURRENCY=8 TOKENLESS_BENCH_ROUNDS=1 bash bench/instances.sh   # smoke
#
# The set-ups alternate within each round (ROUNDS of them, 3 by default): on a shared 2-core
# machine, one run's luck is as large as the differences measured.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECONDS_EACH="${TOKENLESS_BENCH_SECONDS:-10}"
CONCURRENCY="${TOKENLESS_BENCH_CONCURRENCY:-8 64}"
ROUNDS="${TOKENLESS_BENCH_ROUNDS:-3}"
PORT_UPSTREAM=3350
PORT_REDIS=3352
PORT_MEMORY=3353
PORT_REDIS_ONE=3354
PORT_A=3355
PORT_B=3356
PORT_FRONT_ONE=3357
PORT_FRONT_TWO=3358
KEYS="4:bG9hZCBiZW5jaG1hcmsga2V5LCBub3QgZm9yIHVzZSE="

# shellcheck source=bench/lib.sh
. bench/lib.sh
need wrk wrk
need haproxy haproxy
need redis-server redis-server
build_release

start_upstream

redis-server --port "$PORT_REDIS" --bind 127.0.0.1 --save "" --appendonly no >target/bench-redis.log 2>&1 &
pids+=("$!")
for _ in $(seq 1 100); do redis-cli -p "$PORT_REDIS" ping >/dev/null 2>&1 && break; sleep 0.1; done
REDIS=(TOKENLESS_SESSION__STORE=redis TOKENLESS_SESSION__REDIS_URL="redis://127.0.0.1:$PORT_REDIS/0")

start_app "$PORT_MEMORY" TOKENLESS_SESSION__STORE=memory
start_app "$PORT_REDIS_ONE" "${REDIS[@]}"
start_app "$PORT_A" "${REDIS[@]}"
start_app "$PORT_B" "${REDIS[@]}"

cat >target/bench-haproxy.cfg <<CFG
global
    maxconn 4096
    nbthread 1
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    http-reuse always
frontend one
    bind 127.0.0.1:$PORT_FRONT_ONE
    default_backend one
backend one
    server memory 127.0.0.1:$PORT_MEMORY
frontend two
    bind 127.0.0.1:$PORT_FRONT_TWO
    default_backend two
backend two
    balance roundrobin
    server a 127.0.0.1:$PORT_A
    server b 127.0.0.1:$PORT_B
CFG
haproxy -db -f target/bench-haproxy.cfg >target/bench-haproxy.log 2>&1 &
pids+=("$!")
wait_for "http://127.0.0.1:$PORT_FRONT_TWO/" target/bench-haproxy.log

# One session, signed in on the front of two: the same keys open it on every instance.
cookie=$(sign_in "$PORT_FRONT_TWO")
for port in "$PORT_MEMORY" "$PORT_REDIS_ONE" "$PORT_A" "$PORT_B" "$PORT_FRONT_ONE" "$PORT_FRONT_TWO"; do
    curl -fsS -o /dev/null -H "cookie: $cookie" "http://127.0.0.1:$port/frogs"
done

echo "Machine: $(nproc) cores, $(uname -srm); ${SECONDS_EACH}s per run; wrk, haproxy, redis-server, the instances and the upstream on the same machine."
echo
echo "| set-up | connections | requests/s | p50 | p99 | errors |"
echo "|---|---:|---:|---:|---:|---:|"
for _ in $(seq 1 "$ROUNDS"); do for c in $CONCURRENCY; do
    run "1 instance, memory" "http://127.0.0.1:$PORT_MEMORY/frogs" "$c" -H "cookie: $cookie"
    run "1 instance, Redis" "http://127.0.0.1:$PORT_REDIS_ONE/frogs" "$c" -H "cookie: $cookie"
    run "1 instance, memory, behind haproxy" "http://127.0.0.1:$PORT_FRONT_ONE/frogs" "$c" -H "cookie: $cookie"
    run "2 instances, Redis, behind haproxy" "http://127.0.0.1:$PORT_FRONT_TWO/frogs" "$c" -H "cookie: $cookie"
done; done

# What the instances' metrics say (the metrics route is open on loopback in development).
metric() { # port, name
    curl -fsS "http://127.0.0.1:$1/metrics" | awk -v n="tokenless_refresh_shared_$2" 'index($1, n) == 1 { s += $2 } END { print s + 0 }'
}
echo
for port in "$PORT_REDIS_ONE" "$PORT_A" "$PORT_B"; do
    echo "Instance :$port — leases $(metric "$port" leases_total), Redis failures $(metric "$port" failures_total), try again $(metric "$port" try_again_total), answers without Redis $(metric "$port" local_answers_total)"
done
refreshes=$(curl -fsS "http://127.0.0.1:$((PORT_UPSTREAM + 1))/_test/counters" | sed -n 's/.*"refresh_token":\([0-9]*\).*/\1/p')
echo "Refresh grants during the run: ${refreshes:-0}"

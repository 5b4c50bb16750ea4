#!/usr/bin/env bash
# Allocations per request (issue 18): the release app's `/frogs` signed in, the same page with
# the auth layer bypassed (demo.bench_fixed_session), and the bare-Leptos ceiling
# (../shared/ceiling-leptos), each run under heaptrack twice in a fresh process — WARM
# requests, then WARM + N — over one keep-alive connection; per request = the difference in
# calls to allocation functions (and in temporary allocations: freed right after, heaptrack's
# measure of churn) divided by N, so start-up and warm-up cancel out. Same demo upstream
# process for all. Each measured run's trace stays in target/alloc-<label>.zst for
# `heaptrack_print` (the sites that allocate most).
#
#   bash bench/allocations.sh                 # needs heaptrack (installed from apt as root)
#   TOKENLESS_BENCH_REQUESTS=200 bash bench/allocations.sh   # quicker
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
N="${TOKENLESS_BENCH_REQUESTS:-2000}"
WARM=200
PORT_UPSTREAM=3360
PORT_APP=3362
CEILING="$ROOT/../shared/ceiling-leptos"
KEYS="4:bG9hZCBiZW5jaG1hcmsga2V5LCBub3QgZm9yIHVzZSE="

# shellcheck source=bench/lib.sh
. bench/lib.sh
need heaptrack heaptrack
[ -f target/toolchain.env ] || bash scripts/setup.sh build
# shellcheck disable=SC1091
. target/toolchain.env
cargo build --release --features ssr --bin tokenless
cargo build --release -p tokenless-upstream --bin demo-upstream
CARGO_TARGET_DIR="$ROOT/target/ceiling" cargo build --release --features ssr --manifest-path "$CEILING/Cargo.toml"

DEMO_UPSTREAM_ADDRESS="127.0.0.1:$PORT_UPSTREAM" DEMO_UPSTREAM_CONTROL_ADDRESS="127.0.0.1:$((PORT_UPSTREAM + 1))" \
    DEMO_UPSTREAM_TEST_CONTROLS=true DEMO_UPSTREAM_FAST_HASHING=true DEMO_UPSTREAM_ACCESS_TTL=3600 RUST_LOG=warn \
    target/release/demo-upstream >target/bench-upstream.log 2>&1 &
pids+=("$!")
wait_for "http://127.0.0.1:$((PORT_UPSTREAM + 1))/_test/counters" target/bench-upstream.log

CEILING_KEY=$(head -c 32 /dev/urandom | base64)
APP_ENV=(TOKENLESS_SERVER__ADDRESS="127.0.0.1:$PORT_APP" TOKENLESS_SERVER__LOG=warn TOKENLESS_SESSION__KEYS="$KEYS"
    TOKENLESS_UPSTREAM__BASE_URL="http://127.0.0.1:$PORT_UPSTREAM" LEPTOS_SITE_ROOT="$ROOT/target/site")
CEILING_ENV=(SESSION_KEY_B64="$CEILING_KEY" UPSTREAM_URL="http://127.0.0.1:$PORT_UPSTREAM"
    LEPTOS_SITE_ADDR="127.0.0.1:$PORT_APP" LEPTOS_OUTPUT_NAME=probe)

# GET /frogs `count` times on one connection, with `cookie`; stops on anything but a 200.
requests() { # count, cookie
    python3 - "$PORT_APP" "$1" "$2" <<'PY'
import http.client, sys
port, n, cookie = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
conn = http.client.HTTPConnection("127.0.0.1", port)
for _ in range(n):
    conn.request("GET", "/frogs", headers={"cookie": cookie} if cookie else {})
    r = conn.getresponse()
    body = r.read()
    if r.status != 200 or b"data:image/svg+xml" not in body:
        sys.exit(f"/frogs answered {r.status} without the frogs")
PY
}

# One process under heaptrack: `count` requests; prints "calls temporary"; the trace is
# target/alloc-$TRACE.zst.
measure() { # count, cookie, env...
    local count=$1 cookie=$2; shift 2
    rm -f "target/alloc-$TRACE".*
    env "$@" heaptrack -o "target/alloc-$TRACE" "$BINARY" >target/bench-alloc-app.log 2>&1 &
    local pid=$!
    wait_for "http://127.0.0.1:$PORT_APP/" target/bench-alloc-app.log
    requests "$count" "$cookie"
    # Stop the binary itself (its command line starts with it; heaptrack's does not), and let
    # heaptrack write its file.
    pkill -TERM -f "^$BINARY"
    wait "$pid" 2>/dev/null || true
    heaptrack_print -f "target/alloc-$TRACE".* 2>/dev/null | awk '
        /^calls to allocation functions:/ { calls = $5 }
        /^temporary memory allocations:/ { temporary = $4 }
        END { print calls, temporary }'
}

per_request() { # label, trace name, cookie, env...
    local label=$1 cookie=$3; TRACE=$2; shift 3
    local first second
    first=$(measure "$WARM" "$cookie" "$@")
    second=$(measure $((WARM + N)) "$cookie" "$@")
    awk -v a="$first" -v b="$second" -v n="$N" -v label="$label" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        printf "| %s | %.0f | %.0f |\n", label, (y[1] - x[1]) / n, (y[2] - x[2]) / n }'
}

# A session cookie: signed in on a plain run of the app (same keys as the measured ones).
BINARY=target/release/tokenless
env "${APP_ENV[@]}" "$BINARY" >target/bench-alloc-app.log 2>&1 &
pids+=("$!")
wait_for "http://127.0.0.1:$PORT_APP/" target/bench-alloc-app.log
cookie=$(curl -fsS -o /dev/null -D - "http://127.0.0.1:$PORT_APP/api/login" \
    -H "origin: http://127.0.0.1:$PORT_APP" -H 'accept: application/json' \
    --data 'email=user%40example.com&password=frogs-are-green&next=%2F' |
    sed -n 's/^set-cookie: \([^;]*\).*/\1/Ip' | head -1)
[ -n "$cookie" ] || { echo "sign-in failed" >&2; exit 1; }
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
access=$(curl -fsS "http://127.0.0.1:$((PORT_UPSTREAM + 1))/_test/users/user%40example.com/tokens" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_tokens"][-1])')
ceiling_cookie="session=$(ACCESS_TOKEN="$access" SESSION_KEY_B64="$CEILING_KEY" node "$CEILING/seal.mjs" session)"

echo "$N requests after $WARM, one connection, release builds; heaptrack $(heaptrack --version | awk '{print $2}')."
echo
echo "| /frogs | allocations per request | of which temporary |"
echo "|---|---:|---:|"
per_request "Tokenless, signed in (cookie)" signed-in "$cookie" "${APP_ENV[@]}"
per_request "Tokenless, auth bypassed (baseline)" baseline "" "${APP_ENV[@]}" TOKENLESS_DEMO__BENCH_FIXED_SESSION=true
BINARY=target/ceiling/release/probe
per_request "bare Leptos (ceiling)" ceiling "$ceiling_cookie" "${CEILING_ENV[@]}"

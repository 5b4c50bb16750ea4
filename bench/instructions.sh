#!/usr/bin/env bash
# Instructions per request (issue 18): the release app's `/frogs` signed in, the same page with
# the auth layer bypassed (demo.bench_fixed_session), and the bare-Leptos ceiling
# (../shared/ceiling-leptos), each under valgrind's callgrind twice in a fresh process — WARM
# requests, then WARM + N — over one keep-alive connection. Per request = the difference
# divided by N, so start-up and warm-up cancel out. Instructions, not seconds: the same build
# and inputs give the same count whatever else the machine is doing, so a change of a few
# percent shows here where a load run (±15 % from run to run) cannot see it. Then the
# allocations per request (calls to Rust's allocator that get memory, counted from the same
# profiles: heaptrack cannot see them once the app's allocator is mimalloc, which does not go
# through malloc), and where a request's instructions go, by part (each function's own
# instructions, grouped by crate).
# Same demo upstream process for all (it is not counted: only the app runs under callgrind).
#
#   bash bench/instructions.sh                 # needs valgrind (installed from apt as root)
#   TOKENLESS_BENCH_REQUESTS=100 bash bench/instructions.sh   # quicker
#   TOKENLESS_BENCH_TARGETS=signed-in bash bench/instructions.sh   # only some of: signed-in baseline ceiling
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
N="${TOKENLESS_BENCH_REQUESTS:-300}"
[[ "$N" =~ ^[1-9][0-9]*$ ]] || { echo "TOKENLESS_BENCH_REQUESTS must be a whole number, 1 or more (got $N)" >&2; exit 1; }
WARM=50
TARGETS="${TOKENLESS_BENCH_TARGETS:-signed-in baseline ceiling}"
for t in $TARGETS; do
    case "$t" in signed-in|baseline|ceiling) ;; *) echo "TOKENLESS_BENCH_TARGETS: unknown target $t (signed-in, baseline, ceiling)" >&2; exit 1 ;; esac
done
wanted() { [[ " $TARGETS " == *" $1 "* ]]; }
PORT_UPSTREAM=3370
PORT_APP=3372
CEILING="$ROOT/../shared/ceiling-leptos"
KEYS="4:bG9hZCBiZW5jaG1hcmsga2V5LCBub3QgZm9yIHVzZSE="
OUT="$ROOT/target/instructions"

# shellcheck source=bench/lib.sh
. bench/lib.sh
need valgrind valgrind
need callgrind_annotate valgrind
build_release
if wanted ceiling; then
    need node nodejs
    [ -f "$CEILING/Cargo.toml" ] || { echo "the ceiling is missing: $CEILING (the shared directory beside the repository)" >&2; exit 1; }
    CARGO_TARGET_DIR="$ROOT/target/ceiling" cargo build --release --features ssr --manifest-path "$CEILING/Cargo.toml"
fi
mkdir -p "$OUT"

start_upstream

CEILING_KEY=$(head -c 32 /dev/urandom | base64)
APP_ENV=(TOKENLESS_SERVER__ADDRESS="127.0.0.1:$PORT_APP" TOKENLESS_SERVER__LOG=warn TOKENLESS_SESSION__KEYS="$KEYS"
    TOKENLESS_UPSTREAM__BASE_URL="http://127.0.0.1:$PORT_UPSTREAM" LEPTOS_SITE_ROOT="$ROOT/target/site")
CEILING_ENV=(SESSION_KEY_B64="$CEILING_KEY" UPSTREAM_URL="http://127.0.0.1:$PORT_UPSTREAM"
    LEPTOS_SITE_ADDR="127.0.0.1:$PORT_APP" LEPTOS_OUTPUT_NAME=probe)

# GET /frogs `count` times on one connection, with `cookie`; stops on anything but a 200 with
# the frogs in it.
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

# One process under callgrind serving `count` requests; its profile is $OUT/<trace>-<count>.out.
measure() { # trace, count, cookie, env...
    local trace=$1 count=$2 cookie=$3; shift 3
    local file="$OUT/$trace-$count.out"
    rm -f "$file"
    # Under callgrind a start takes seconds: wait_for's 10 s is not enough.
    env "$@" valgrind --tool=callgrind --callgrind-out-file="$file" "$BINARY" >"$OUT/$trace-$count.log" 2>&1 &
    local pid=$!
    pids+=("$pid")
    local up=0
    for _ in $(seq 1 600); do
        curl -fsS -o /dev/null "http://127.0.0.1:$PORT_APP/" 2>/dev/null && { up=1; break; }
        kill -0 "$pid" 2>/dev/null || { echo "the app under callgrind stopped; see $OUT/$trace-$count.log" >&2; exit 1; }
        sleep 0.2
    done
    [ "$up" = 1 ] || { echo "the app under callgrind did not answer in 2 minutes; see $OUT/$trace-$count.log" >&2; exit 1; }
    requests "$count" "$cookie"
    # valgrind passes the signal on to the program and writes the profile when it has ended.
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    [ -s "$file" ] || { echo "callgrind wrote no profile; see $OUT/$trace-$count.log" >&2; exit 1; }
}

per_request() { # label, trace, cookie, env...
    local label=$1 trace=$2 cookie=$3; shift 3
    wanted "$trace" || return 0
    measure "$trace" "$WARM" "$cookie" "$@"
    measure "$trace" $((WARM + N)) "$cookie" "$@"
    python3 bench/instructions.py total "$N" "$OUT/$trace-$WARM.out" "$OUT/$trace-$((WARM + N)).out" "$label"
    ALLOCATIONS+=("$(python3 bench/instructions.py allocations "$N" "$OUT/$trace-$WARM.out" "$OUT/$trace-$((WARM + N)).out" "$label")")
}
ALLOCATIONS=()

# A session cookie: signed in on a plain run of the app (same keys as the measured ones).
BINARY=target/release/tokenless
env "${APP_ENV[@]}" "$BINARY" >"$OUT/sign-in.log" 2>&1 &
pids+=("$!")
wait_for "http://127.0.0.1:$PORT_APP/" "$OUT/sign-in.log"
cookie=$(sign_in "$PORT_APP")
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
ceiling_cookie=""
if wanted ceiling; then
    ceiling_cookie=$(ceiling_cookie "$CEILING_KEY")
fi

echo "$N requests after $WARM, one connection, release builds, $(valgrind --version)."
echo
echo "| /frogs | instructions per request |"
echo "|---|---:|"
per_request "Tokenless, signed in (cookie)" signed-in "$cookie" "${APP_ENV[@]}"
per_request "Tokenless, auth bypassed (baseline)" baseline "" "${APP_ENV[@]}" TOKENLESS_DEMO__BENCH_FIXED_SESSION=true
BINARY=target/ceiling/release/probe
per_request "bare Leptos (ceiling)" ceiling "$ceiling_cookie" "${CEILING_ENV[@]}"
echo
echo "| /frogs | allocations per request |"
echo "|---|---:|"
printf '%s\n' "${ALLOCATIONS[@]}"
echo
echo "Where a request's instructions go (each function's own, grouped; thousands per request):"
echo
columns=()
for t in $TARGETS; do columns+=("$OUT/$t-$WARM.out" "$OUT/$t-$((WARM + N)).out" "$t"); done
python3 bench/instructions.py parts "$N" "${columns[@]}"
echo
echo "Profiles: $OUT/*.out (callgrind_annotate --inclusive=yes <file> for the callers' view)."

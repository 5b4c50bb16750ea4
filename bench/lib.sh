# What the load scripts share (sourced by bench/load.sh, instances.sh, instructions.sh and
# stores.sh): the release build, the processes they start (stopped on exit), waiting for one to
# answer, starting an app instance, running wrk and summarizing its answer, the demo upstream,
# a signed-in cookie. Callers set ROOT, KEYS and PORT_UPSTREAM first (and CEILING for
# ceiling_cookie).

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_for() { # url, log
    for _ in $(seq 1 100); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing answers at $1; see $2" >&2
    exit 1
}

# The demo upstream on PORT_UPSTREAM, its test controls on the next port. Access tokens live an
# hour: no refresh happens during a run (fan-out is its own benchmark).
start_upstream() {
    DEMO_UPSTREAM_ADDRESS="127.0.0.1:$PORT_UPSTREAM" DEMO_UPSTREAM_CONTROL_ADDRESS="127.0.0.1:$((PORT_UPSTREAM + 1))" \
        DEMO_UPSTREAM_TEST_CONTROLS=true DEMO_UPSTREAM_FAST_HASHING=true DEMO_UPSTREAM_ACCESS_TTL=3600 RUST_LOG=warn \
        target/release/demo-upstream >target/bench-upstream.log 2>&1 &
    pids+=("$!")
    wait_for "http://127.0.0.1:$((PORT_UPSTREAM + 1))/_test/counters" target/bench-upstream.log
}

# Prints the session cookie ("name=value") of the demo user signed in at the app on `port`;
# fails when the sign-in gives none.
sign_in() { # port
    local cookie
    cookie=$(curl -fsS -o /dev/null -D - "http://127.0.0.1:$1/api/login" \
        -H "origin: http://127.0.0.1:$1" -H 'accept: application/json' \
        --data 'email=user%40example.com&password=frogs-are-green&next=%2F' |
        sed -n 's/^set-cookie: \([^;]*\).*/\1/Ip' | head -1)
    [ -n "$cookie" ] || { echo "sign-in at :$1 failed" >&2; return 1; }
    echo "$cookie"
}

# Prints a cookie the bare-Leptos ceiling opens: the demo user's latest access token (from the
# upstream's test controls) sealed the ceiling's way with `key` (32 bytes, base64).
ceiling_cookie() { # key
    local access
    access=$(curl -fsS "http://127.0.0.1:$((PORT_UPSTREAM + 1))/_test/users/user%40example.com/tokens" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["access_tokens"][-1])')
    echo "session=$(ACCESS_TOKEN="$access" SESSION_KEY_B64="$1" node "$CEILING/seal.mjs" session)"
}

# The toolchain scripts/setup.sh chose, then the release app and demo upstream and the client's
# files (no-ops when up to date).
build_release() {
    [ -f target/toolchain.env ] || bash scripts/setup.sh build
    # shellcheck disable=SC1091
    . target/toolchain.env
    cargo build --release --features ssr --bin tokenless
    cargo build --release -p tokenless-upstream --bin demo-upstream
    [ -f target/site/pkg/tokenless.css ] || cargo leptos build --frontend-only
}

start_app() { # port, extra env...
    local port=$1; shift
    # Each app its own refresh memory file (the default store), new for every run.
    rm -f "target/bench-memory-$port.sqlite3" "target/bench-memory-$port.sqlite3-wal"
    env TOKENLESS_SERVER__ADDRESS="127.0.0.1:$port" TOKENLESS_SERVER__LOG=warn \
        TOKENLESS_SESSION__SQLITE_PATH="$ROOT/target/bench-memory-$port.sqlite3" \
        TOKENLESS_SESSION__KEYS="$KEYS" TOKENLESS_UPSTREAM__BASE_URL="http://127.0.0.1:$PORT_UPSTREAM" \
        LEPTOS_SITE_ROOT="$ROOT/target/site" "$@" \
        target/release/tokenless >"target/bench-app-$port.log" 2>&1 &
    pids+=("$!")
    wait_for "http://127.0.0.1:$port/" "target/bench-app-$port.log"
}

# wrk's summary -> "rps | p50 | p99 | errors"
summarize() {
    awk '
        /^ +50%/ { p50 = $2 }
        /^ +99%/ { p99 = $2 }
        /^Requests\/sec:/ { rps = $2 }
        /Non-2xx or 3xx responses:/ { bad += $5 }
        /Socket errors:/ { gsub(",", ""); bad += $4 + $6 + $8 + $10 }
        END { printf "%.0f | %s | %s | %d", rps, p50, p99, bad }'
}

# Runs wrk, prints a table row, and leaves "rps | p50 | p99 | errors" in LAST.
LAST=""
run() { # label, url, concurrency, header...
    local label=$1 url=$2 c=$3; shift 3
    local threads=$(( c < 2 ? 1 : 2 ))
    local out
    out=$(wrk -t"$threads" -c"$c" -d"${SECONDS_EACH}s" --latency "$@" "$url")
    LAST=$(echo "$out" | summarize)
    echo "| $label | $c | $LAST |"
}

# wrk's duration ("850.00us", "6.16ms", "1.02s") in milliseconds.
millis() {
    awk -v d="$1" 'BEGIN {
        if (d ~ /us$/) { sub(/us$/, "", d); print d / 1000 }
        else if (d ~ /ms$/) { sub(/ms$/, "", d); print d + 0 }
        else if (d ~ /s$/) { sub(/s$/, "", d); print d * 1000 }
        else if (d ~ /m$/) { sub(/m$/, "", d); print d * 60000 }
        else print d + 0 }'
}


need() { # command, Debian package: installed from apt when missing (as root), else a clear stop
    command -v "$1" >/dev/null && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get install -y -q "$2" >/dev/null
    else
        echo "this benchmark needs $1: install it (Debian/Ubuntu: sudo apt-get install $2)" >&2
        exit 1
    fi
}

#!/usr/bin/env bash
# Client size: builds the client for release (cargo-leptos, wasm-release profile: opt-level "z",
# LTO, one codegen unit, panic=abort; then wasm-opt), and prints raw / gzip -9 / brotli -q 11
# sizes of the wasm, the JS glue and the CSS, where the wasm's code goes by crate
# (bench/wasm_parts.py), and what a first visit to each page downloads from the server built
# from the same source (HTML + JS + wasm + CSS as sent to a browser that accepts brotli:
# `--precompress` writes .br/.gz files beside each asset and the server sends those), against
# issue 16's targets. BENCHMARKS.md holds a run's figures and the before/after.
#
#   bash bench/size.sh            # TOKENLESS_BENCH_NO_BUILD=1 to measure target/site as it is
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
for tool in brotli:brotli wasm-objdump:wabt; do
    if ! command -v "${tool%%:*}" >/dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            apt-get install -y -q "${tool##*:}" >/dev/null
        elif [ "${tool%%:*}" = brotli ]; then
            echo "bench/size.sh needs brotli (Debian/Ubuntu: sudo apt-get install brotli)" >&2
            exit 1
        fi
    fi
done
[ -f target/toolchain.env ] || bash scripts/setup.sh build
# shellcheck disable=SC1091
. target/toolchain.env
# cargo-leptos runs wasm-opt on release builds and would download it from GitHub. Binaryen from
# crates.io (116) works; Debian's binaryen 108 breaks hydration (../shared/TOOLCHAIN.md).
if ! command -v wasm-opt >/dev/null; then
    echo "==> installing wasm-opt 0.116.1 from crates.io (about 5 minutes, once)"
    cargo install wasm-opt --version 0.116.1
fi
if [ -z "${TOKENLESS_BENCH_NO_BUILD:-}" ]; then
    cargo leptos build --release --frontend-only --precompress
    # The pages are measured as this source renders them (a server binary left from another
    # commit would render other HTML); a no-op when up to date.
    cargo build --release --features ssr --bin tokenless
fi
pkg=target/site/pkg
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

sizes() { # file -> "raw | gzip | brotli" in bytes
    local f=$1
    printf '%s | %s | %s' "$(stat -c %s "$f")" "$(gzip -9 -c "$f" | wc -c)" "$(brotli -q 11 -c "$f" | wc -c)"
}

echo "| file | raw bytes | gzip -9 | brotli -q 11 |"
echo "|---|---:|---:|---:|"
for f in tokenless.wasm tokenless.js tokenless.css; do
    echo "| $f | $(sizes "$pkg/$f") |"
done
wasm="$pkg/tokenless.wasm"

# Where the client's code goes, by crate: cargo's wasm, before wasm-bindgen and wasm-opt strip
# the names (so larger than what is sent; the shares are what count).
cargo_wasm=target/front/wasm32-unknown-unknown/wasm-release/tokenless.wasm
echo
if [ -f "$cargo_wasm" ] && command -v wasm-objdump >/dev/null; then
    wasm-objdump -x -j Code "$cargo_wasm" | python3 bench/wasm_parts.py ||
        echo "(the code by crate could not be read from $cargo_wasm)"
else
    echo "(the code by crate needs wasm-objdump: sudo apt-get install wabt)"
fi

# What a first visit to /login and to /frogs (signed in) downloads from the server, as sent to a
# browser that accepts brotli (HTML is sent as rendered; assets precompressed when built so).
if [ -x target/release/tokenless ] || [ -x target/debug/tokenless ]; then
    bin=target/release/tokenless; [ -x "$bin" ] || bin=target/debug/tokenless
    TOKENLESS_SERVER__ADDRESS=127.0.0.1:3310 TOKENLESS_SERVER__LOG=warn TOKENLESS_DEMO__FAST_HASHING=true TOKENLESS_DEMO__DATABASE=:memory: TOKENLESS_SESSION__DEV_KEY_FILE= \
        LEPTOS_SITE_ROOT="$ROOT/target/site" "$bin" >"$work/app.log" 2>&1 &
    app=$!
    trap 'kill $app 2>/dev/null; rm -rf "$work"' EXIT
    for _ in $(seq 1 100); do curl -fsS -o "$work/login.html" http://127.0.0.1:3310/login 2>/dev/null && break; sleep 0.1; done
    sign_in() { # email password -> the session cookie
        curl -fsS -o /dev/null -D - http://127.0.0.1:3310/api/login -H 'origin: http://127.0.0.1:3310' \
            -H 'accept: application/json' --data "email=$1&password=$2&next=%2F" |
            sed -n 's/^set-cookie: \([^;]*\).*/\1/Ip' | head -1
    }
    user=$(sign_in user%40example.com frogs-are-green)
    admin=$(sign_in admin%40example.com admin-frogs-rule)
    sent() { # path [curl args] -> "bytes encoding" as the server sends them to a brotli-capable browser
        local path=$1; shift
        curl -fsS -o "$work/body" -D "$work/head" -H 'accept-encoding: br, gzip' "$@" "http://127.0.0.1:3310$path"
        printf '%s %s' "$(stat -c %s "$work/body")" \
            "$(sed -n 's/^content-encoding: *\([a-z]*\).*/\1/Ip' "$work/head" | head -1 | grep . || echo identity)"
    }
    echo
    echo "| sent by the server | bytes | content-encoding |"
    echo "|---|---:|---|"
    # The files a page can link: the forms' script, the islands' loader, JS glue and wasm, the CSS.
    files_linked=(/forms.js /islands.js /pkg/tokenless.js /pkg/tokenless.wasm /pkg/tokenless.css)
    declare -A asset
    for f in "${files_linked[@]}"; do
        read -r bytes encoding <<<"$(sent "$f")"
        asset[$f]=$bytes
        echo "| $f | $bytes | $encoding |"
    done
    # Each page with what it makes the browser download: the files its HTML links (the islands'
    # loader links the JS glue and preloads the wasm; pages without islands link neither).
    totals=""
    for page in /login /register /account /admin / /frogs; do
        case $page in
            /account|/frogs) cookie=$user ;;
            /admin) cookie=$admin ;;
            *) cookie="" ;;
        esac
        read -r bytes encoding <<<"$(sent "$page" -H "cookie: $cookie")"
        html=$(cat "$work/body")
        echo "| $page (HTML) | $bytes | $encoding |"
        total=$bytes
        files=""
        for f in "${files_linked[@]}"; do
            if grep -q "\"$f\"" <<<"$html"; then
                total=$((total + ${asset[$f]}))
                files="$files + ${f##*/}"
            fi
        done
        # Issue 16's targets: 15 KB where the page has no island, 60 KB for / and /frogs.
        case $page in
            /|/frogs) target=60000 ;;
            *) target=15000 ;;
        esac
        verdict=met; [ "$total" -le "$target" ] || verdict=MISSED
        totals="$totals
| $page | HTML$files | $total | $(((total + 1023) / 1024)) | ≤ $target: $verdict |"
    done
    echo
    echo "| first visit | what is downloaded | bytes on the wire | KiB | target |"
    echo "|---|---|---:|---:|---|$totals"
fi

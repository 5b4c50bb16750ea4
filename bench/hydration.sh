#!/usr/bin/env bash
# Navigation-to-interactive time in headless Chromium (median of 10) for /login, / and /frogs,
# against the release build (server and client). Needs what `make test` installs.
#
#   bash bench/hydration.sh
#   TOKENLESS_BENCH_BINARY=/path/to/tokenless TOKENLESS_BENCH_SITE_ROOT=/path/to/target/site \
#     bash bench/hydration.sh      # another build, e.g. the full-hydration one before islands
#                                  # (BENCHMARKS.md, "Client size", says how it was built)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[ -f target/toolchain.env ] || bash scripts/setup.sh test
# shellcheck disable=SC1091
. target/toolchain.env
if { [ -n "${TOKENLESS_BENCH_BINARY:-}" ] && [ -z "${TOKENLESS_BENCH_SITE_ROOT:-}" ]; } ||
    { [ -z "${TOKENLESS_BENCH_BINARY:-}" ] && [ -n "${TOKENLESS_BENCH_SITE_ROOT:-}" ]; }; then
    # A server with another build's client names islands that client does not have.
    echo "bench/hydration.sh: set TOKENLESS_BENCH_BINARY and TOKENLESS_BENCH_SITE_ROOT together (one build's server and client)" >&2
    exit 1
fi
binary="${TOKENLESS_BENCH_BINARY:-$ROOT/target/release/tokenless}"
site="${TOKENLESS_BENCH_SITE_ROOT:-$ROOT/target/site}"
if [ -z "${TOKENLESS_BENCH_BINARY:-}" ]; then
    # Always (a no-op when up to date): an island's name in the page is a hash of its source, doc
    # comments included, so a server binary older than the client names islands the client does
    # not have, and the page never hydrates.
    cargo build --release --features ssr --bin tokenless
    [ -n "${TOKENLESS_BENCH_NO_BUILD:-}" ] || cargo leptos build --release --frontend-only --precompress
fi
for f in "$binary" "$site/pkg/tokenless.wasm"; do
    [ -f "$f" ] || { echo "bench/hydration.sh: $f is missing" >&2; exit 1; }
done
cd end2end
TOKENLESS_E2E_BINARY="$binary" TOKENLESS_E2E_SITE_ROOT="$site" npx playwright test --config playwright.bench.config.ts

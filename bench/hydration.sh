#!/usr/bin/env bash
# Navigation-to-interactive time in headless Chromium (median of 10) for /login and /frogs, against
# the release build (server and client). Needs what `make test` installs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[ -f target/toolchain.env ] || bash scripts/setup.sh test
# shellcheck disable=SC1091
. target/toolchain.env
# Always (a no-op when up to date): an island's name in the page is a hash of its source, doc
# comments included, so a server binary older than the client names islands the client does not
# have, and the page never hydrates.
cargo build --release --features ssr --bin tokenless
[ -n "${TOKENLESS_BENCH_NO_BUILD:-}" ] || cargo leptos build --release --frontend-only --precompress
cd end2end
TOKENLESS_E2E_BINARY="$ROOT/target/release/tokenless" npx playwright test --config playwright.bench.config.ts

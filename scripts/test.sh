#!/usr/bin/env bash
# Every test: the workspace's unit and integration tests, then Playwright in headless Chromium
# against a freshly built app. Installs what is missing first (scripts/setup.sh test).
#
#   scripts/test.sh                 everything
#   scripts/test.sh e2e [ARGS...]   only the build + Playwright, ARGS passed to `playwright test`
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

ONLY_E2E=0
if [ "${1:-}" = e2e ]; then ONLY_E2E=1; shift; fi

step "set-up script tests: scripts/setup.sh's decisions on fake machines (seconds, no network)"
bash scripts/tests/setup.sh

step "setup (installs only what is missing)"
bash scripts/setup.sh test
# shellcheck disable=SC1091
. target/toolchain.env

# `cargo test` also builds the server binary (target/debug/tokenless, feature ssr): integration
# tests make cargo build the package's binaries. Playwright runs that very binary, so only the
# client half is left for cargo-leptos. (A separate `cargo leptos build` of the server would
# compile every server dependency a second time: test builds unify dev-dependency features.)
if [ "$ONLY_E2E" = 0 ]; then
    step "cargo test: unit and integration tests of the workspace"
    cargo test --workspace --features tokenless/ssr
    step "benchmark smoke: each benchmark once, unoptimized (cargo test --benches), so they cannot rot"
    cargo test --workspace --features tokenless/ssr --benches
    step "the library's rustdoc: every public item documented, no broken or private link"
    RUSTDOCFLAGS="-D warnings" cargo doc -p tokenless-bff --no-deps
else
    step "cargo test --no-run: build the server binary"
    cargo test --workspace --features tokenless/ssr --no-run
fi

step "cargo leptos build --frontend-only: the wasm client, JS glue and CSS into target/site"
cargo leptos build --frontend-only

step "playwright: end-to-end tests in headless Chromium ($TOKENLESS_CHROMIUM)"
cd end2end
npx playwright test "$@"

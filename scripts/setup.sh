#!/usr/bin/env bash
# Installs what building and testing Tokenless needs, and nothing that is already there.
#
#   scripts/setup.sh [build|test|bench]
#
#   build  the wasm32 target, cargo-leptos, wasm-bindgen-cli (pinned to Cargo.lock)
#   test   build + end2end's npm packages + a Chromium for Playwright
#   bench  build + wasm-opt (for release builds) + a load generator (oha)
#
# It prints each step. Every step checks first and is a no-op when its tool is present.
# It writes target/toolchain.env, which the Makefile sources, so that every later command uses
# the toolchain chosen here (rustup's when it has the wasm32 target, else Debian's rustc-web).
set -euo pipefail

WHAT="${1:-build}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
mkdir -p target
ENV_FILE="$ROOT/target/toolchain.env"

CARGO_LEPTOS_VERSION="0.3.11"
WASM_OPT_VERSION="0.116.1"
OHA_VERSION="1.14.0"
# Where Debian's packages put Rust. Only the set-up tests (scripts/tests/setup.sh) change it, to
# point the script at a fake machine.
DEBIAN_PREFIX="${TOKENLESS_DEBIAN_PREFIX:-/usr}"
DEBIAN_RUSTC="$DEBIAN_PREFIX/bin/rustc"
DEBIAN_CARGO="$DEBIAN_PREFIX/bin/cargo"
DEBIAN_LLD="$DEBIAN_PREFIX/bin/rust-lld"
DEBIAN_RUST_SRC="$DEBIAN_PREFIX/lib/rustlib/src/rust/library"
DEBIAN_WASM_SYSROOT="$DEBIAN_PREFIX/lib/rustlib/wasm32-unknown-unknown/lib"
# Every command substitution and pipeline below must survive a tool that is not installed:
# under `set -euo pipefail` an assignment whose pipeline fails ends the script with no message
# (issue 12: `m="$(rustc_minor /usr/bin/rustc)"` died with 127 on a machine without rustc-web).
# Helpers that probe for a tool therefore never fail; they print nothing instead.

STARTED=$SECONDS
say() { printf '\033[1m[setup +%ss]\033[0m %s\n' "$((SECONDS - STARTED))" "$*"; }
fail() { printf '\033[1;31m[setup] %s\033[0m\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }
have() { command -v "$1" >/dev/null 2>&1; }

APT_UPDATED=0
apt_install() {
    have apt-get || return 1
    is_root || return 1
    if [ "$APT_UPDATED" = 0 ]; then
        say "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq || return 1
        APT_UPDATED=1
    fi
    say "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# ---------------------------------------------------------------- the wasm32 target
rustup_has_wasm() {
    have rustup || return 1
    local installed
    # Captured first: `grep -q` on a pipe could end rustup with SIGPIPE and read as "missing".
    installed="$(rustup target list --installed 2>/dev/null || true)"
    grep -qx wasm32-unknown-unknown <<<"$installed"
}

debian_has_wasm() {
    [ -x "$DEBIAN_RUSTC" ] && [ -x "$DEBIAN_CARGO" ] && compgen -G "$DEBIAN_WASM_SYSROOT/libstd-*.rlib" >/dev/null
}

build_debian_wasm_std() {
    # Debian ships rustc-web and the standard library's source, but no wasm32 std: build it once.
    say "building the wasm32 standard library with Debian's rustc-web (about 30 s, once)"
    local tmp
    tmp="$(mktemp -d)"
    mkdir -p "$tmp/src"
    cat >"$tmp/Cargo.toml" <<'TOML'
[package]
name = "wasm-std-seed"
version = "0.0.0"
edition = "2021"
[lib]
crate-type = ["cdylib"]
path = "src/lib.rs"
[workspace]
TOML
    echo '#[no_mangle] pub extern "C" fn seed() -> u32 { 1 }' >"$tmp/src/lib.rs"
    (cd "$tmp" && PATH="$DEBIAN_PREFIX/bin:$PATH" RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$tmp/target" \
        cargo build -q --release --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort) \
        || fail "building the wasm32 std failed (see above)"
    mkdir -p "$DEBIAN_WASM_SYSROOT"
    find "$tmp/target/wasm32-unknown-unknown/release/deps" -name 'lib*.rlib' \
        ! -name 'libwasm_std_seed*' -exec cp -t "$DEBIAN_WASM_SYSROOT/" {} + \
        || fail "could not copy the wasm32 std into $DEBIAN_WASM_SYSROOT"
    rm -rf "$tmp"
    debian_has_wasm || fail "the wasm32 std is still missing from $DEBIAN_WASM_SYSROOT after building it"
}

MIN_RUST_MINOR=96 # cargo-leptos 0.3.11 needs Rust 1.96

rustc_minor() { # the minor version of the rustc at $1; nothing (and status 0) when there is none
    local v
    v="$("$1" --version 2>/dev/null || true)"
    sed -n 's/^rustc 1\.\([0-9]*\)\..*/\1/p' <<<"$v"
}

rustup_new_enough() {
    have rustup || return 1
    local rustc m
    rustc="$(rustup which rustc 2>/dev/null || true)"
    [ -n "$rustc" ] || return 1
    m="$(rustc_minor "$rustc")"
    [ -n "$m" ] && [ "$m" -ge "$MIN_RUST_MINOR" ]
}

choose_toolchain() {
    # One compiler builds everything (server, client, cargo-leptos). rustup's when it is new
    # enough and has (or can fetch) the wasm32 target; else Debian's rustc-web, for which we
    # build the wasm32 standard library once.
    if [ -n "${TOKENLESS_TOOLCHAIN:-}" ]; then
        say "toolchain forced by TOKENLESS_TOOLCHAIN=$TOKENLESS_TOOLCHAIN" >&2
        echo "$TOKENLESS_TOOLCHAIN"
        return
    fi
    if rustup_new_enough; then
        if rustup_has_wasm; then echo rustup; return; fi
        say "rustup target add wasm32-unknown-unknown (60 s at most)" >&2
        if timeout 60 rustup target add wasm32-unknown-unknown >&2; then echo rustup; return; fi
        say "rustup could not fetch the wasm32 target; using Debian's rustc-web instead" >&2
    elif have rustup; then
        say "rustup's rustc is older than 1.$MIN_RUST_MINOR; using Debian's rustc-web (or run 'rustup update stable')" >&2
    fi
    echo debian
}

setup_toolchain() {
    local tc
    tc="$(choose_toolchain)"
    if [ "$tc" = debian ]; then
        local m
        m="$(rustc_minor "$DEBIAN_RUSTC")"
        if [ -z "$m" ] || [ "$m" -lt "$MIN_RUST_MINOR" ] || [ ! -x "$DEBIAN_CARGO" ] \
            || [ ! -d "$DEBIAN_RUST_SRC" ] || [ ! -e "$DEBIAN_LLD" ]; then
            apt_install rustc-web cargo-web rust-web-src lld-22 || fail \
                "No usable Rust for wasm32: run 'rustup update stable && rustup target add wasm32-unknown-unknown' (Rust 1.$MIN_RUST_MINOR or newer), or on Debian 12 as root 'apt-get install rustc-web cargo-web rust-web-src lld-22', then run this again."
            m="$(rustc_minor "$DEBIAN_RUSTC")"
            if [ -z "$m" ] || [ "$m" -lt "$MIN_RUST_MINOR" ]; then
                local v
                v="$("$DEBIAN_RUSTC" --version 2>/dev/null || echo missing)"
                fail "Debian's rustc-web is older than 1.$MIN_RUST_MINOR ($v): run 'apt-get update && apt-get install rustc-web' or use rustup's Rust 1.$MIN_RUST_MINOR or newer."
            fi
        fi
        debian_has_wasm || build_debian_wasm_std
        # Debian's cargo/rustc first; tools installed by `cargo install` stay in ~/.cargo/bin.
        printf 'export PATH="%s/bin:%s/.cargo/bin:$PATH"\nexport TOKENLESS_TOOLCHAIN=debian\n' "$DEBIAN_PREFIX" "$HOME" >"$ENV_FILE"
    else
        printf 'export PATH="%s/.cargo/bin:$PATH"\nexport TOKENLESS_TOOLCHAIN=rustup\n' "$HOME" >"$ENV_FILE"
    fi
    # shellcheck disable=SC1090
    . "$ENV_FILE"
    say "toolchain: $tc ($(rustc --version))"
}

# ---------------------------------------------------------------- cargo-installed tools
# The tools share one build directory, so the dependencies they have in common (tokio, serde,
# syn...) compile once, and a reinstall at another version rebuilds only what changed.
TOOLS_TARGET_DIR="${CARGO_HOME:-$HOME/.cargo}/tokenless-tools-target"

cargo_install() { # name version binary version-as-the-binary-prints-it [extra args...]
    local name="$1" version="$2" bin="$3" shown="$4" current=""
    shift 4
    if have "$bin"; then current="$("$bin" --version 2>/dev/null || true)"; fi
    if [[ "$current" == *"$shown"* ]]; then
        return
    fi
    say "cargo install $name $version (once; several minutes on 2 cores)"
    # Light builds: the packages' fat-LTO release profiles take 15 min here, and a tool that
    # spends its time waiting on rustc gains nothing from them.
    CARGO_TARGET_DIR="$TOOLS_TARGET_DIR" CARGO_PROFILE_RELEASE_LTO=off \
        CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_OPT_LEVEL=1 \
        CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=true \
        cargo install --quiet "$name" --version "$version" "$@"
    say "installed $name $version"
}

wasm_bindgen_version() {
    # The exact version Cargo.lock resolved; Cargo.toml pins it with `=` so the two cannot drift.
    awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
}

setup_build() {
    setup_toolchain
    cargo_install cargo-leptos "$CARGO_LEPTOS_VERSION" cargo-leptos "$CARGO_LEPTOS_VERSION" --locked
    [ -f Cargo.lock ] || cargo generate-lockfile
    local wbv
    wbv="$(wasm_bindgen_version)"
    [ -n "$wbv" ] || fail "wasm-bindgen is not in Cargo.lock"
    cargo_install wasm-bindgen-cli "$wbv" wasm-bindgen "$wbv"
}

# ---------------------------------------------------------------- Playwright + Chromium
find_chromium() {
    if [ -n "${TOKENLESS_CHROMIUM:-}" ]; then echo "$TOKENLESS_CHROMIUM"; return; fi
    local c
    for c in chromium chromium-browser google-chrome-stable google-chrome; do
        if have "$c"; then command -v "$c"; return; fi
    done
}

setup_e2e() {
    # The shared refresh memory's tests start their own redis-server on loopback.
    have redis-server || apt_install redis-server || fail \
        "redis-server is missing: install Redis 7 (Debian/Ubuntu: apt-get install redis-server), then run this again."
    have npm || apt_install nodejs npm || fail "npm is missing: install Node.js 18 or newer, then run this again."
    if [ ! -d end2end/node_modules/@playwright/test ] || [ end2end/package-lock.json -nt end2end/node_modules/.package-lock.json ]; then
        say "npm ci in end2end/"
        (cd end2end && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
    fi
    local chromium
    chromium="$(find_chromium)"
    if [ -z "$chromium" ]; then
        if apt_install chromium; then
            chromium="$(find_chromium)"
        else
            say "no system Chromium and no apt: letting Playwright download its own"
            (cd end2end && npx playwright install chromium) || fail \
                "No Chromium: install one (Debian/Ubuntu: apt-get install chromium) or set TOKENLESS_CHROMIUM to its path."
            chromium="playwright"
        fi
    fi
    printf 'export TOKENLESS_CHROMIUM="%s"\n' "$chromium" >>"$ENV_FILE"
    say "browser: $chromium"
}

setup_bench() {
    cargo_install wasm-opt "$WASM_OPT_VERSION" wasm-opt "version 116"
    cargo_install oha "$OHA_VERSION" oha "$OHA_VERSION" --locked
}

case "$WHAT" in
    build) setup_build ;;
    test) setup_build; setup_e2e ;;
    bench) setup_build; setup_bench ;;
    *) fail "usage: scripts/setup.sh [build|test|bench]" ;;
esac
say "ready"

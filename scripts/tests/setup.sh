#!/usr/bin/env bash
# Tests for scripts/setup.sh and scripts/run.sh: their decisions on fake machines.
#
#   bash scripts/tests/setup.sh            every case (a few seconds, no network, no root)
#   bash scripts/tests/setup.sh CASE...    only the named cases
#
# Each case builds a machine in a temporary directory: stub `rustup`, `rustc`, `cargo`,
# `apt-get`, `id`, `npm`, `npx`, `chromium`, `cargo-leptos` and `wasm-bindgen` that log every call,
# a fake Debian prefix (TOKENLESS_DEBIAN_PREFIX) in place of /usr, and a PATH holding only those
# stubs and a few basic utilities. The script under test runs from a copy of the repository's
# set-up files, so nothing of the real machine is read or written. A case asserts the exit status
# and the install commands the stubs saw.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BASH_BIN="$(command -v bash)"
WASM_BINDGEN_VERSION="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock")"
CARGO_LEPTOS_VERSION="$(sed -n 's/^CARGO_LEPTOS_VERSION="\(.*\)"$/\1/p' "$ROOT/scripts/setup.sh")"

PASSED=0
FAILED=0
FAILED_NAMES=()
SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT

# ------------------------------------------------------------------ the fake machine
# The basic utilities the scripts may use; anything else is "not installed".
UTILS="$SCRATCH/utils"
mkdir -p "$UTILS"
for tool in bash sh sed awk grep mktemp find cp mkdir rm cat dirname basename timeout chmod touch \
    head tail tr env ls sort uname date; do
    ln -s "$(command -v "$tool")" "$UTILS/$tool"
done

stub() { # path, body (runs under bash with $LOG, $STATE set); every call is logged first
    local path="$1" label="$2" body="$3"
    mkdir -p "$(dirname "$path")"
    cat >"$path" <<STUB
#!$BASH_BIN
echo "$label \$*" >>"\$FAKE_LOG"
$body
STUB
    chmod +x "$path"
}

rustc_stub() { # path, minor version, label
    stub "$1" "$3" "case "\$1" in --version) echo 'rustc 1.$2.0 (fake 2026-01-01)';; esac"
}

cargo_stub() { # path, label: `install` creates the tool, `build` of the wasm std makes rlibs
    stub "$1" "$2" '
case "$1" in
install)
    shift; name=""; version=""
    while [ $# -gt 0 ]; do
        case "$1" in --version) version="$2"; shift 2;; --*) shift;; *) name="$1"; shift;; esac
    done
    case "$name" in
    cargo-leptos) bin=cargo-leptos; shown="cargo-leptos $version";;
    wasm-bindgen-cli) bin=wasm-bindgen; shown="wasm-bindgen $version";;
    *) bin="$name"; shown="$name $version";;
    esac
    mkdir -p "$HOME/.cargo/bin"
    printf "#!%s\necho \"%s\"\n" "$(command -v bash)" "$shown" >"$HOME/.cargo/bin/$bin"
    chmod +x "$HOME/.cargo/bin/$bin"
    ;;
build)
    deps="$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/deps"
    mkdir -p "$deps"
    touch "$deps/libstd-0a.rlib" "$deps/libcore-0b.rlib" "$deps/libwasm_std_seed-0c.rlib"
    ;;
esac'
}

tool_stub() { # path, text its --version prints
    stub "$1" "$(basename "$1")" "echo '$2'"
}

# new_machine NAME [options]: options say what the machine already has.
#   rustup=95|96|none   rustup's stable rustc (none: no rustup, no rustc at all)
#   rustup_wasm=1       rustup has the wasm32 target;  target_add=ok|fail (default fail)
#   debian=1            Debian's rustc-web 1.96, its source, lld and the wasm32 std built
#   root=0              not root (default root);       apt=0  no apt-get at all
#   leptos=VERSION      cargo-leptos installed;        bindgen=VERSION  wasm-bindgen installed
#   npm=1  node_modules=1  chromium=1  redis=1
new_machine() {
    local name="$1"
    shift
    M="$SCRATCH/$name"
    mkdir -p "$M"/{home,stubs,usr/bin,state}
    export FAKE_LOG="$M/log" FAKE_STATE="$M/state"
    : >"$FAKE_LOG"
    local rustup=95 rustup_wasm=0 target_add=fail debian=0 root=1 apt=1 leptos="" bindgen="" \
        npm=0 node_modules=0 chromium=0 redis=0 opt
    for opt in "$@"; do
        local "${opt%%=*}=${opt#*=}"
    done
    # the repository's set-up files, copied so the script's ROOT is the fake one
    mkdir -p "$M/repo/scripts" "$M/repo/end2end"
    cp "$ROOT/scripts/setup.sh" "$ROOT/scripts/run.sh" "$M/repo/scripts/"
    cp "$ROOT/Cargo.lock" "$M/repo/"
    cp "$ROOT/end2end/package.json" "$ROOT/end2end/package-lock.json" "$M/repo/end2end/"

    local cargo_bin="$M/home/.cargo/bin"
    if [ "$rustup" != none ]; then
        stub "$cargo_bin/rustup" rustup '
case "$1 $2" in
"which rustc") echo "$HOME/.cargo/bin/rustc";;
"target list") [ -f "$FAKE_STATE/rustup-wasm" ] && echo wasm32-unknown-unknown; echo x86_64-unknown-linux-gnu;;
"target add") [ -f "$FAKE_STATE/target-add-ok" ] && touch "$FAKE_STATE/rustup-wasm" && exit 0; echo "error: could not download" >&2; exit 1;;
esac'
        rustc_stub "$cargo_bin/rustc" "$rustup" rustup-rustc
        cargo_stub "$cargo_bin/cargo" rustup-cargo
        [ "$rustup_wasm" = 1 ] && touch "$FAKE_STATE/rustup-wasm"
        [ "$target_add" = ok ] && touch "$FAKE_STATE/target-add-ok"
    fi
    if [ "$debian" = 1 ]; then
        rustc_stub "$M/usr/bin/rustc" 96 debian-rustc
        cargo_stub "$M/usr/bin/cargo" debian-cargo
        touch "$M/usr/bin/rust-lld"
        mkdir -p "$M/usr/lib/rustlib/src/rust/library" "$M/usr/lib/rustlib/wasm32-unknown-unknown/lib"
        touch "$M/usr/lib/rustlib/wasm32-unknown-unknown/lib/libstd-0a.rlib"
    fi
    stub "$M/stubs/id" id "[ \"\$1\" = -u ] && { [ '$root' = 1 ] && echo 0 || echo 1000; }"
    if [ "$apt" = 1 ]; then
        # installing a package makes its files appear under the fake /usr
        stub "$M/stubs/apt-get" apt-get "
U='$M/usr'
for p in \"\$@\"; do
    case \"\$p\" in
    rustc-web) cp '$M/stubs/.debian-rustc' \"\$U/bin/rustc\";;
    cargo-web) cp '$M/stubs/.debian-cargo' \"\$U/bin/cargo\";;
    rust-web-src) mkdir -p \"\$U/lib/rustlib/src/rust/library\";;
    lld-22) touch \"\$U/bin/rust-lld\";;
    chromium) cp '$M/stubs/.chromium' \"\$U/bin/chromium\";;
    redis-server) cp '$M/stubs/.redis-server' \"\$U/bin/redis-server\";;
    npm) cp '$M/stubs/.npm' \"\$U/bin/npm\"; cp '$M/stubs/.npx' \"\$U/bin/npx\";;
    esac
done"
    fi
    rustc_stub "$M/stubs/.debian-rustc" 96 debian-rustc
    cargo_stub "$M/stubs/.debian-cargo" debian-cargo
    tool_stub "$M/stubs/.chromium" "Chromium 156.0"
    tool_stub "$M/stubs/.redis-server" "Redis server v=7.0.15"
    stub "$M/stubs/.npm" npm 'case "$1" in ci) mkdir -p node_modules/@playwright/test; touch node_modules/.package-lock.json;; esac'
    stub "$M/stubs/.npx" npx ''
    if [ "$npm" = 1 ]; then cp "$M/stubs/.npm" "$M/usr/bin/npm"; cp "$M/stubs/.npx" "$M/usr/bin/npx"; fi
    if [ "$node_modules" = 1 ]; then
        mkdir -p "$M/repo/end2end/node_modules/@playwright/test"
        touch "$M/repo/end2end/node_modules/.package-lock.json"
    fi
    [ "$chromium" = 1 ] && cp "$M/stubs/.chromium" "$M/usr/bin/chromium"
    [ "$redis" = 1 ] && cp "$M/stubs/.redis-server" "$M/usr/bin/redis-server"
    [ -n "$leptos" ] && tool_stub "$cargo_bin/cargo-leptos" "cargo-leptos $leptos"
    [ -n "$bindgen" ] && tool_stub "$cargo_bin/wasm-bindgen" "wasm-bindgen $bindgen"
    true
}

# run_setup ARGS...: runs the copied setup.sh on the current machine; sets STATUS and OUT
run_script() {
    local script="$1"
    shift
    OUT="$(cd "$M" && env -i HOME="$M/home" FAKE_LOG="$FAKE_LOG" FAKE_STATE="$FAKE_STATE" \
        TOKENLESS_DEBIAN_PREFIX="$M/usr" PATH="$M/home/.cargo/bin:$M/stubs:$M/usr/bin:$UTILS" \
        "$BASH_BIN" "$M/repo/scripts/$script" "$@" 2>&1)"
    STATUS=$?
}
run_setup() { run_script setup.sh "$@"; }

# ------------------------------------------------------------------ assertions
CASE_OK=1
problem() {
    CASE_OK=0
    printf '    %s\n' "$*"
}
expect_status() {
    if [ "$1" = 0 ] && [ "$STATUS" != 0 ]; then problem "exit status $STATUS, expected 0"; fi
    if [ "$1" != 0 ] && [ "$STATUS" = 0 ]; then problem "exit status 0, expected a failure"; fi
}
expect_ran() { # a line of the log contains this text
    grep -qF -- "$1" "$FAKE_LOG" || problem "expected a call containing: $1"
}
expect_not_ran() {
    if grep -qF -- "$1" "$FAKE_LOG"; then problem "unexpected call: $(grep -F -- "$1" "$FAKE_LOG" | head -1)"; fi
}
expect_output() {
    grep -qF -- "$1" <<<"$OUT" || problem "expected the output to say: $1"
}
expect_env() { # target/toolchain.env contains this text
    grep -qF -- "$1" "$M/repo/target/toolchain.env" 2>/dev/null || problem "expected toolchain.env to hold: $1"
}
expect_no_install() {
    expect_not_ran "apt-get"
    expect_not_ran "cargo install"
    expect_not_ran "npm ci"
    expect_not_ran "rustup target add"
    expect_not_ran "cargo build"
}

DEBIAN_PACKAGES="install -y -qq rustc-web cargo-web rust-web-src lld-22"

# ------------------------------------------------------------------ the cases
case_a_old_rustup_no_debian_rust() {
    new_machine a rustup=95
    run_setup build
    expect_status 0
    expect_ran "apt-get update"
    expect_ran "apt-get $DEBIAN_PACKAGES"
    expect_ran "debian-cargo build -q --release --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort"
    expect_ran "debian-cargo install --quiet cargo-leptos --version $CARGO_LEPTOS_VERSION --locked"
    expect_ran "debian-cargo install --quiet wasm-bindgen-cli --version $WASM_BINDGEN_VERSION"
    expect_not_ran "rustup-cargo install"
    expect_not_ran "rustup target add"
    expect_env "TOKENLESS_TOOLCHAIN=debian"
    expect_env "export PATH=\"$M/usr/bin:"
    compgen -G "$M/usr/lib/rustlib/wasm32-unknown-unknown/lib/libstd-*.rlib" >/dev/null \
        || problem "the wasm32 std was not copied into the Debian sysroot"
    if compgen -G "$M/usr/lib/rustlib/wasm32-unknown-unknown/lib/libwasm_std_seed*" >/dev/null; then
        problem "the throwaway crate's own rlib was copied too"
    fi
}

case_b_new_rustup_with_wasm() {
    new_machine b rustup=96 rustup_wasm=1
    run_setup build
    expect_status 0
    expect_not_ran "apt-get"
    expect_not_ran "rustup target add"
    expect_ran "rustup-cargo install --quiet cargo-leptos --version $CARGO_LEPTOS_VERSION --locked"
    expect_ran "rustup-cargo install --quiet wasm-bindgen-cli --version $WASM_BINDGEN_VERSION"
    expect_env "TOKENLESS_TOOLCHAIN=rustup"
}

case_b2_new_rustup_fetches_wasm() {
    new_machine b2 rustup=96 target_add=ok
    run_setup build
    expect_status 0
    expect_ran "rustup target add wasm32-unknown-unknown"
    expect_not_ran "apt-get"
    expect_env "TOKENLESS_TOOLCHAIN=rustup"
}

case_c_new_rustup_target_add_fails() {
    new_machine c rustup=96 target_add=fail
    run_setup build
    expect_status 0
    expect_ran "rustup target add wasm32-unknown-unknown"
    expect_ran "apt-get $DEBIAN_PACKAGES"
    expect_ran "debian-cargo install --quiet cargo-leptos"
    expect_env "TOKENLESS_TOOLCHAIN=debian"
    expect_output "using Debian's rustc-web"
}

case_d_no_rustup() {
    new_machine d rustup=none
    run_setup build
    expect_status 0
    expect_ran "apt-get $DEBIAN_PACKAGES"
    expect_ran "debian-cargo build"
    expect_ran "debian-cargo install --quiet cargo-leptos"
    expect_env "TOKENLESS_TOOLCHAIN=debian"
}

case_e_not_root_nothing_usable() {
    new_machine e rustup=95 root=0
    run_setup build
    expect_status 1
    expect_not_ran "apt-get"
    expect_not_ran "cargo install"
    expect_output "apt-get install rustc-web cargo-web rust-web-src lld-22"
    expect_output "rustup update stable"
}

case_e2_no_apt_nothing_usable() {
    new_machine e2 rustup=none apt=0
    run_setup build
    expect_status 1
    expect_output "No usable Rust for wasm32"
}

case_f_everything_present_rustup() {
    new_machine f rustup=96 rustup_wasm=1 leptos="$CARGO_LEPTOS_VERSION" bindgen="$WASM_BINDGEN_VERSION" \
        npm=1 node_modules=1 chromium=1 redis=1
    run_setup test
    expect_status 0
    expect_no_install
    expect_env "TOKENLESS_CHROMIUM=\"$M/usr/bin/chromium\""
}

case_f2_everything_present_debian() {
    new_machine f2 rustup=95 debian=1 leptos="$CARGO_LEPTOS_VERSION" bindgen="$WASM_BINDGEN_VERSION" \
        npm=1 node_modules=1 chromium=1 redis=1
    run_setup test
    expect_status 0
    expect_no_install
    expect_env "TOKENLESS_TOOLCHAIN=debian"
}

case_g_no_chromium_apt_available() {
    new_machine g rustup=96 rustup_wasm=1 leptos="$CARGO_LEPTOS_VERSION" bindgen="$WASM_BINDGEN_VERSION" \
        npm=1 node_modules=1 redis=1
    run_setup test
    expect_status 0
    expect_ran "apt-get install -y -qq chromium"
    expect_not_ran "npx playwright install"
    expect_env "TOKENLESS_CHROMIUM=\"$M/usr/bin/chromium\""
}

case_g2_no_npm_apt_available() {
    new_machine g2 rustup=96 rustup_wasm=1 leptos="$CARGO_LEPTOS_VERSION" bindgen="$WASM_BINDGEN_VERSION" \
        chromium=1 redis=1
    run_setup test
    expect_status 0
    expect_ran "apt-get install -y -qq nodejs npm"
    expect_ran "npm ci"
}

case_g3_no_redis() {
    new_machine g3 rustup=96 rustup_wasm=1 leptos="$CARGO_LEPTOS_VERSION" bindgen="$WASM_BINDGEN_VERSION" \
        npm=1 node_modules=1 chromium=1
    run_setup test
    expect_status 0
    expect_ran "apt-get install -y -qq redis-server"
    new_machine g4 rustup=96 rustup_wasm=1 leptos="$CARGO_LEPTOS_VERSION" bindgen="$WASM_BINDGEN_VERSION" \
        npm=1 node_modules=1 chromium=1 apt=0
    run_setup test
    expect_status 1
    expect_output "redis-server is missing"
}

case_h_cargo_leptos_other_version() {
    new_machine h rustup=96 rustup_wasm=1 leptos=0.3.10 bindgen="$WASM_BINDGEN_VERSION"
    run_setup build
    expect_status 0
    expect_ran "cargo install --quiet cargo-leptos --version $CARGO_LEPTOS_VERSION --locked"
    expect_not_ran "install --quiet wasm-bindgen-cli"
}

case_h2_wasm_bindgen_other_version() {
    new_machine h2 rustup=96 rustup_wasm=1 leptos="$CARGO_LEPTOS_VERSION" bindgen=0.2.100
    run_setup build
    expect_status 0
    expect_ran "cargo install --quiet wasm-bindgen-cli --version $WASM_BINDGEN_VERSION"
    expect_not_ran "install --quiet cargo-leptos"
}

case_i_make_run_needs_no_test_pieces() {
    # `make run` on a fresh machine: no npm, no Chromium, and it must not install them
    new_machine i rustup=95
    run_script run.sh
    expect_status 0
    expect_ran "apt-get $DEBIAN_PACKAGES"
    expect_not_ran "chromium"
    expect_not_ran "redis"
    expect_not_ran "nodejs"
    expect_not_ran "npm"
    expect_ran "debian-cargo leptos serve"
}

ALL_CASES=(
    case_a_old_rustup_no_debian_rust case_b_new_rustup_with_wasm case_b2_new_rustup_fetches_wasm
    case_c_new_rustup_target_add_fails case_d_no_rustup case_e_not_root_nothing_usable
    case_e2_no_apt_nothing_usable case_f_everything_present_rustup case_f2_everything_present_debian
    case_g_no_chromium_apt_available case_g2_no_npm_apt_available case_g3_no_redis case_h_cargo_leptos_other_version
    case_h2_wasm_bindgen_other_version case_i_make_run_needs_no_test_pieces
)
if [ $# -gt 0 ]; then CASES=("$@"); else CASES=("${ALL_CASES[@]}"); fi

for c in "${CASES[@]}"; do
    CASE_OK=1
    "$c"
    if [ "$CASE_OK" = 1 ]; then
        PASSED=$((PASSED + 1))
        printf 'ok     %s\n' "$c"
    else
        FAILED=$((FAILED + 1))
        FAILED_NAMES+=("$c")
        printf 'FAILED %s (exit %s)\n' "$c" "$STATUS"
        printf '    script output:\n'
        sed 's/^/      | /' <<<"$OUT" | tail -15
        printf '    calls:\n'
        sed 's/^/      > /' "$FAKE_LOG" | tail -15
    fi
done
echo
echo "set-up script tests: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]

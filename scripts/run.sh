#!/usr/bin/env bash
# Builds Tokenless and serves it at http://127.0.0.1:3000 (Leptos.toml / TOKENLESS_* settings).
# Installs what is missing first (scripts/setup.sh build).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh build
# shellcheck disable=SC1091
. target/toolchain.env
exec cargo leptos serve "$@"

#!/usr/bin/env bash
# Soak test: the release build under steady load for 10 minutes, access tokens of 4 seconds, 200
# sessions each sending 4 requests at once, round after round (benches/soak.rs). Fails on any
# error, reuse event or spurious sign-out; prints the RSS samples and their slope after warm-up.
#
#   bash bench/soak.sh                      10 minutes
#   SOAK_SECS=60 SOAK_SESSIONS=50 bash bench/soak.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh build
# shellcheck disable=SC1091
. target/toolchain.env
echo "==> soak: ${SOAK_SECS:-600} s (release build; $(nproc) cores)"
cargo bench --features ssr --bench soak

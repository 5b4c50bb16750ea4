#!/usr/bin/env bash
# The chaos run (benches/chaos.rs): three release instances behind a round-robin balancer on one
# Redis, the demo upstream with 4-second access tokens, 200 simulated browsers for 10 minutes
# while faults come on a schedule. Prints the four invariants (reuse, spurious sign-outs,
# revived and stuck sessions) and the 503s, and fails when one is not 0.
#
#   bash bench/chaos.sh                                  10 minutes, 200 browsers
#   CHAOS_SECS=120 CHAOS_BROWSERS=50 CHAOS_SEED=7 bash bench/chaos.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh build
# shellcheck disable=SC1091
. target/toolchain.env
command -v redis-server >/dev/null || bash scripts/setup.sh test
echo "==> chaos: ${CHAOS_SECS:-600} s, ${CHAOS_BROWSERS:-200} browsers (release build; $(nproc) cores)"
cargo bench --features ssr --bench chaos

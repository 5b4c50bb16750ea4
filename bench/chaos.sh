#!/usr/bin/env bash
# The chaos run (benches/chaos.rs): three release instances behind a round-robin balancer on one
# Redis, the demo upstream with 4-second access tokens, 200 simulated browsers for 10 minutes
# while faults come on a schedule; then its OpenID variant (benches/chaos/oidc.rs: the same in
# front of node-oidc-provider, a third of the browsers, back-channel logouts during Redis
# pauses). Prints the invariants (reuse, spurious sign-outs, revived and stuck sessions, and
# per variant grace reuses no SIGKILL explains / back-channel logouts lost) and the 503s, and
# fails when one is not 0.
#
#   bash bench/chaos.sh                                  both, 10 minutes each
#   CHAOS_VARIANT=oidc bash bench/chaos.sh               one of them (demo or oidc)
#   CHAOS_SECS=120 CHAOS_BROWSERS=50 CHAOS_SEED=7 bash bench/chaos.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh build
# shellcheck disable=SC1091
. target/toolchain.env
{ command -v redis-server >/dev/null && [ -d end2end/node_modules/oidc-provider ]; } || bash scripts/setup.sh test
echo "==> chaos: ${CHAOS_SECS:-600} s, ${CHAOS_BROWSERS:-200} browsers (release build; $(nproc) cores)"
cargo bench --features ssr --bench chaos

#!/usr/bin/env bash
# Mutation testing of the code whose mistakes would matter most: routing, the policy, merge
# patch's apply, bearer-token parsing and the claims-to-Principal mapping.
#
#   scripts/mutants.sh            # installs cargo-mutants if missing; ~20 s a mutant here
#
# Every mutant must be caught by a test (or be listed in the note as equivalent, with why).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo mutants --version >/dev/null 2>&1; then
  cargo install cargo-mutants --locked
fi
export SECURITY_UPDATE_TEST_POSTGRES="${SECURITY_UPDATE_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}"
cargo mutants -p security-update --all-features --no-shuffle -j 1 --timeout 120 \
  --file src/route.rs \
  --file src/auth/policy.rs \
  --file src/merge_patch/apply.rs \
  --file src/auth/mod.rs \
  --file src/auth/jwt/claims.rs \
  --re 'route\.rs|policy\.rs|apply\.rs|claims\.rs|bearer_token|is_token68' \
  -- --lib --test service --test hostile_catalog --test rfc7396 --test layers --test properties "$@"

#!/usr/bin/env bash
# Builds oxiida and runs every test: lints, unit and integration tests (the
# project's conformance corpus, the README's examples, the foreign-call seam)
# and, when it sits beside this checkout, the shared conformance suite.
set -euo pipefail
cd "$(dirname "$0")/.."

if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --workspace --all-targets -q -- -D warnings
else
  echo "note: cargo clippy is not installed; lints skipped"
fi

if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --all --check
fi

cargo test --workspace

shared=../shared/conformance
if [ -f "$shared/run.sh" ]; then
  echo "shared conformance suite:"
  bash "$shared/run.sh" "${CARGO_TARGET_DIR:-$PWD/target}/debug/oxiida"
else
  echo "note: $shared not found (it is not shipped with oxiida); shared suite skipped"
fi

#!/usr/bin/env bash
# Builds oxiida and runs every test: lints, unit and integration tests (the
# project's conformance corpus, the README's examples, the foreign-call seam,
# plugins, liboxiida), the Python package's pytest suite (in .venv, with
# pytest and cloudpickle installed there) and, when it sits beside
# this checkout, the shared conformance suite.
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

# The oxiida Python package, built into a private virtual environment.
venv=${OXIIDA_VENV:-$PWD/.venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || { echo "error: python3 -m venv failed (on Debian: apt-get install python3-venv)"; exit 1; }
fi
"$venv/bin/pip" install -q --disable-pip-version-check pytest cloudpickle
# Installed as a user installs it (a release build through pip and maturin),
# into a target folder of its own: the extension (no libpython linked) must
# not overwrite the CLI plugin of the same name in target/debug.
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}/maturin-release" \
  "$venv/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps ./plugins/python
"$venv/bin/python" -m pytest -q -p no:cacheprovider -W error::DeprecationWarning plugins/python/tests

shared=../shared/conformance
if [ -f "$shared/run.sh" ]; then
  echo "shared conformance suite:"
  bash "$shared/run.sh" "${CARGO_TARGET_DIR:-$PWD/target}/debug/oxiida"
else
  echo "note: $shared not found (it is not shipped with oxiida); shared suite skipped"
fi

#!/usr/bin/env bash
# Builds oxiida and runs every test: lints, unit and integration tests (the
# project's conformance corpus, the examples of README.md and docs/, the
# foreign-call seam, plugins, liboxiida), the Python package's pytest suite (in .venv, with
# pytest, cloudpickle, numpy, pandas, distributed and loky for the executor tests, and ipykernel and jupyter_client for the Jupyter one, installed there), the Lua module under lua5.4
# (installed with apt-get when missing) and, when it sits beside
# this checkout, the shared conformance suite (and its lang-0.3 folder).
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

# Process plugins' dependencies, before `cargo test` runs them
# (cli/tests/process_plugins.rs): the Node kit's npm packages (from its
# package-lock.json), and msgpack for the Python process plugin, in the test venv.
if ! command -v node >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  echo "installing nodejs and npm (apt-get) for the Node plugin kit's tests"
  apt-get install -y -qq nodejs npm >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null; }
fi
(cd plugins/node && npm ci --no-audit --no-fund --loglevel=error)
venv=${OXIIDA_VENV:-$PWD/.venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || { echo "error: python3 -m venv failed (on Debian: apt-get install python3-venv)"; exit 1; }
fi
"$venv/bin/pip" install -q --disable-pip-version-check msgpack
export OXIIDA_TEST_PYTHON="$venv/bin/python"

# `cargo build` first: the C tests link liboxiida.so, a cdylib that a bare
# `cargo test` does not build.
cargo build --workspace
cargo test --workspace

echo "Node plugin kit (node --test, in plugins/node):"
(cd plugins/node && npm test --silent)

# The oxiida Python package, built into a private virtual environment.
venv=${OXIIDA_VENV:-$PWD/.venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || { echo "error: python3 -m venv failed (on Debian: apt-get install python3-venv)"; exit 1; }
fi
"$venv/bin/pip" install -q --disable-pip-version-check pytest cloudpickle numpy pandas distributed loky ipykernel jupyter_client
# Installed as a user installs it (a release build through pip and maturin),
# into a target folder of its own: the extension (no libpython linked) must
# not overwrite the CLI plugin of the same name in target/debug.
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}/maturin-release" \
  "$venv/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps ./plugins/python
"$venv/bin/python" -m pytest -q -p no:cacheprovider -W error::DeprecationWarning plugins/python/tests

# The oxiida Lua module, loaded by Debian's stock lua5.4. Built on its own:
# mlua's module mode cannot share a build with the plugin's vendored Lua.
if ! command -v lua5.4 >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  echo "installing lua5.4 (apt-get) for the Lua module's tests"
  apt-get install -y -qq lua5.4 >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq lua5.4 >/dev/null; }
fi
if command -v lua5.4 >/dev/null 2>&1; then
  lua_module=plugins/lua/module/Cargo.toml
  lua_target="${CARGO_TARGET_DIR:-$PWD/target}/lua-module"
  cargo fmt --manifest-path "$lua_module" --check
  if cargo clippy --version >/dev/null 2>&1; then
    CARGO_TARGET_DIR="$lua_target" cargo clippy -q --manifest-path "$lua_module" --all-targets -- -D warnings
  fi
  CARGO_TARGET_DIR="$lua_target" cargo build -q --manifest-path "$lua_module"
  cpath=$(mktemp -d)
  trap 'rm -rf "$cpath"' EXIT
  cp "$lua_target/debug/liboxiida_lua_module.so" "$cpath/oxiida.so"
  echo "Lua module (lua5.4 plugins/lua/tests/module_test.lua):"
  LUA_CPATH="$cpath/?.so;;" lua5.4 plugins/lua/tests/module_test.lua
else
  echo "note: lua5.4 is not installed and apt-get is not available; the Lua module's tests were skipped (install Lua 5.4 to run them)"
fi

# The Lua module as a rock: `luarocks make` (Debian's luarocks, which wants the
# Lua 5.4 headers even for a `command` build) into a private tree, then loaded
# through `luarocks path` by stock lua5.4, and refused with the version it
# needs by lua5.1.
if command -v apt-get >/dev/null 2>&1; then
  missing=""
  command -v luarocks >/dev/null 2>&1 || missing="$missing luarocks"
  [ -f /usr/include/lua5.4/lua.h ] || missing="$missing liblua5.4-dev"
  command -v lua5.1 >/dev/null 2>&1 || missing="$missing lua5.1"
  if [ -n "$missing" ]; then
    echo "installing$missing (apt-get) for the Lua rock's tests"
    apt-get install -y -qq $missing >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq $missing >/dev/null; }
  fi
fi
if command -v luarocks >/dev/null 2>&1 && command -v lua5.4 >/dev/null 2>&1; then
  rocktree=$(mktemp -d)
  (cd plugins/lua && OXIIDA_ROCK_TARGET="${CARGO_TARGET_DIR:-$PWD/../../target}/lua-rock" \
    luarocks --lua-version 5.4 --tree "$rocktree" make oxiida-0.1.0-1.rockspec >/dev/null && rm -f oxiida_native.so)
  echo "Lua rock (luarocks make, then plugins/lua/tests/rock_test.lua):"
  (eval "$(luarocks --lua-version 5.4 --tree "$rocktree" path)" && lua5.4 plugins/lua/tests/rock_test.lua &&
    if command -v lua5.1 >/dev/null 2>&1; then lua5.1 plugins/lua/tests/rock_test.lua; else echo "note: lua5.1 is not installed; the version check was not run"; fi)
  rm -rf "$rocktree"
else
  echo "note: luarocks or lua5.4 is missing and apt-get is not available; the Lua rock's test was skipped"
fi

shared=../shared/conformance
if [ -f "$shared/run.sh" ]; then
  echo "shared conformance suite:"
  bash "$shared/run.sh" "${CARGO_TARGET_DIR:-$PWD/target}/debug/oxiida"
  # Language 0.3's cases (functions, maps, keyword arguments, %, div, in),
  # in a folder of their own, run by the same script.
  if [ -d "$shared/lang-0.3" ]; then
    echo "shared conformance suite, language 0.3:"
    bash "$shared/run.sh" "${CARGO_TARGET_DIR:-$PWD/target}/debug/oxiida" "$(cd "$shared/lang-0.3" && pwd)"
  fi
else
  echo "note: $shared not found (it is not shipped with oxiida); shared suite skipped"
fi

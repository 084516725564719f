#!/bin/sh
# Draws docs/provenance.svg: the provenance graph of docs/provenance.md's
# example, recorded by `oxiida run --record` and drawn by
# `oxiida workflow graph --format svg` (Graphviz, installed here if missing).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
if ! command -v dot >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq graphviz >/dev/null
fi
cargo build -q -p oxiida-cli
oxiida="${CARGO_TARGET_DIR:-$root/target}/debug/oxiida"
work=$(mktemp -d)
trap '"$oxiida" daemon stop >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
export OXIIDA_DATA_DIR="$work/data" OXIIDA_RUNTIME_DIR="$work/run"
# The example: the first ```oxiida block of docs/provenance.md.
awk '/^```oxiida/{on=1; next} on && /^```/{exit} on' "$root/docs/provenance.md" > "$work/sort.ox"
cd "$work"
"$oxiida" run --record sort.ox
"$oxiida" daemon start >/dev/null
"$oxiida" workflow graph 1 --format svg > "$root/docs/provenance.svg"
# A PNG beside it, to look at where SVG cannot be shown (not committed).
"$oxiida" workflow graph 1 | dot -Tpng > "${PNG:-/dev/null}"
echo "wrote $root/docs/provenance.svg"

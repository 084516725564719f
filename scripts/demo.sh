#!/usr/bin/env bash
# Builds oxiida and runs the demo workflow.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -q -p oxiida-cli -- run examples/demo.ox

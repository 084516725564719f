#!/usr/bin/env bash
# Installs oxiida for C, Julia and shell users:
#   PREFIX/bin/oxiida, PREFIX/lib/liboxiida.so, PREFIX/include/oxiida.h,
#   PREFIX/lib/pkgconfig/oxiida.pc, and the Lua and Python CLI plugins in
#   PREFIX/lib/oxiida/plugins, where PREFIX/bin/oxiida finds them by itself
#   (`--plugin lua`, `--plugin python`: no OXIIDA_PLUGIN_PATH needed)
# usage: scripts/install.sh [PREFIX]          (default /usr/local; builds --release)
#        FROM=DIR scripts/install.sh PREFIX   (install what is already built in DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:-/usr/local}
from=${FROM:-}
if [ -z "$from" ]; then
  cargo build --release -p oxiida-cli -p liboxiida -p oxiida-lua -p oxiida-python
  from=${CARGO_TARGET_DIR:-$PWD/target}/release
fi
lib=$from/liboxiida.so
[ -f "$lib" ] || lib=$from/deps/liboxiida.so
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)

install -D -m 755 "$from/oxiida" "$prefix/bin/oxiida"
install -D -m 755 "$lib" "$prefix/lib/liboxiida.so"
install -D -m 644 include/oxiida.h "$prefix/include/oxiida.h"
mkdir -p "$prefix/lib/pkgconfig"
cat >"$prefix/lib/pkgconfig/oxiida.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: oxiida
Description: Embed the oxiida workflow runtime, or write oxiida language plugins
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -loxiida -Wl,-rpath,\${libdir}
PC
# The language plugins, where the CLI looks relative to itself
# (PREFIX/bin/../lib/oxiida/plugins). FROM=DIR installs those built there.
for plugin in lua python; do
  so=$from/liboxiida_$plugin.so
  if [ -f "$so" ]; then
    install -D -m 755 "$so" "$prefix/lib/oxiida/plugins/liboxiida_$plugin.so"
  else
    echo "note: $so is not built; the $plugin plugin was not installed (cargo build --release -p oxiida-$plugin)" >&2
  fi
done
echo "installed oxiida $version under $prefix"

#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# Installs the build tree into a temporary prefix, then builds and runs a
# consumer with find_package(regcache) and another with pkg-config.
# Usage: install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
cmake -S "$src/tests/install/consumer" -B "$tmp/cmake-build" \
  -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/cmake-build" >/dev/null
LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/cmake-build/consumer"
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
# shellcheck disable=SC2046
g++ -std=c++17 -o "$tmp/pc-consumer" "$src/tests/install/consumer/main.cc" \
  $(pkg-config --cflags --libs regcache)
LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/pc-consumer"
echo "install_test: find_package and pkg-config consumers both work"

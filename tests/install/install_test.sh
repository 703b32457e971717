#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# Installs the build tree into a temporary prefix, then builds and runs, as a
# new user would, a C++ consumer with find_package(regcache) and a C and a
# C++ consumer with pkg-config. Neither may need more than the prefix: the
# system's .pc files are hidden (PKG_CONFIG_LIBDIR), so a regcache.pc or
# regcacheConfig.cmake that required libibverbs' or libfabric's development
# files would fail here.
# Usage: install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(dirname "$(find "$prefix" -name 'libregcache.so.0' | head -1)")
[[ -d $libdir ]] || { echo "install_test: no libregcache.so.0 installed" >&2; exit 1; }

export PKG_CONFIG_LIBDIR=$libdir/pkgconfig
cmake -S "$src/tests/install/consumer" -B "$tmp/cmake-build" \
  -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$tmp/cmake-build" >/dev/null
LD_LIBRARY_PATH="$libdir" "$tmp/cmake-build/consumer"

flags=$(pkg-config --cflags --libs regcache) ||
  { echo "install_test: pkg-config regcache fails with only the prefix visible" >&2; exit 1; }
# shellcheck disable=SC2086
g++ -std=c++11 -o "$tmp/pc-consumer" "$src/tests/install/consumer/main.cc" $flags
LD_LIBRARY_PATH="$libdir" "$tmp/pc-consumer"
# shellcheck disable=SC2086
gcc -std=c99 -o "$tmp/pc-c-consumer" "$src/tests/install/consumer/main.c" $flags
LD_LIBRARY_PATH="$libdir" "$tmp/pc-c-consumer"
echo "install_test: find_package (C++) and pkg-config (C, C++11) consumers work"

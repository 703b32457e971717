#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# Checks that libregcache.so exports exactly the C API, versioned:
#   - every function the public headers declare (other than the inline
#     wrappers) is in src/regcache/libregcache.map and exported;
#   - the library exports nothing else (no C++ symbols, no internals);
#   - every export carries the version node REGCACHE_0.1 (or a later one).
# A function left out of the library because it was configured without
# it (regcache_registrar_libfabric without libfabric) may be missing.
#
# Usage: check-exports.sh LIBREGCACHE_SO SOURCE_DIR
set -euo pipefail
lib=${1:?usage: check-exports.sh LIBREGCACHE_SO SOURCE_DIR}
src=${2:?usage: check-exports.sh LIBREGCACHE_SO SOURCE_DIR}
[[ -f $lib ]] || { echo "check-exports: no library at $lib" >&2; exit 1; }

declared=$(grep -hoE '^[a-z][^(]*\bregcache_[a-z_]+\(' "$src"/include/regcache/*.h |
           grep -v 'static inline' | grep -oE 'regcache_[a-z_]+\($' | tr -d '(' | sort -u)
mapped=$(grep -oE '^[[:space:]]+regcache_[a-z_]+;' "$src/src/regcache/libregcache.map" |
         tr -d ' ;' | sort -u)
# name@@VERSION for every defined dynamic symbol
exported=$(nm -D --defined-only --with-symbol-versions "$lib" | awk '{print $3}' |
           grep -v '^REGCACHE_[0-9._]*$' | sort -u)

bad=0
while read -r fn; do
  grep -qx "$fn" <<<"$mapped" || { echo "declared but not in libregcache.map: $fn"; bad=1; }
done <<<"$declared"
while read -r fn; do
  grep -qx "$fn" <<<"$declared" || { echo "in libregcache.map but not declared: $fn"; bad=1; }
done <<<"$mapped"
while read -r sym; do
  name=${sym%%@*}
  version=${sym#*@@}
  if ! grep -qx "$name" <<<"$mapped"; then
    echo "exported but not part of the API: $sym"
    bad=1
  elif [[ $sym != *@@REGCACHE_* ]]; then
    echo "exported without a version: $sym"
    bad=1
  fi
done <<<"$exported"
while read -r fn; do
  if ! grep -q "^$fn@@" <<<"$exported"; then
    if [[ $fn == regcache_registrar_libfabric ]]; then
      echo "note: $fn not exported (built without libfabric)"
    else
      echo "in the API but not exported: $fn"
      bad=1
    fi
  fi
done <<<"$mapped"
soname=$(objdump -p "$lib" | awk '/SONAME/ {print $2}')
[[ $soname == libregcache.so.0 ]] || { echo "soname is '$soname', not libregcache.so.0"; bad=1; }

((bad == 0)) || exit 1
echo "check-exports: $(wc -l <<<"$exported") symbols, all of them the versioned C API; soname $soname"

#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# Runs the kernel's checkpatch.pl --strict over the module's sources and its
# uapi header (kernel style, as Documentation/process/coding-style.rst).
# checkpatch.pl is not packaged on its own in Debian: it is taken from
# Debian's linux-source package (downloaded with apt-get download, never
# installed), unpacked once into a cache folder.
#
# Usage: scripts/checkpatch.sh [--cache-dir DIR] [FILE...]
#   default files: src/kmod_notifier/*.[ch] include/regcache/kmod_uapi.h
#   default cache: $REGCACHE_VM_CACHE or ${XDG_CACHE_HOME:-~/.cache}/regcache-vm
# Exit status: 0 when checkpatch reports no error, warning or check; 1 when
# it does (its report is printed); 2 on bad usage or when checkpatch.pl
# cannot be obtained.
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${REGCACHE_VM_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/regcache-vm}
files=()
while (($#)); do
  case $1 in
    --cache-dir) cache=${2:?--cache-dir needs a folder}; shift 2 ;;
    -h|--help) sed -n '4,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "checkpatch: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) files+=("$1"); shift ;;
  esac
done
if ((${#files[@]} == 0)); then
  files=(src/kmod_notifier/*.c src/kmod_notifier/*.h include/regcache/kmod_uapi.h)
fi

dir=$cache/checkpatch
script=$dir/scripts/checkpatch.pl
if [[ ! -x $script ]]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "checkpatch: fetching checkpatch.pl from Debian's linux-source" >&2
  pkg=$(apt-cache search --names-only '^linux-source-[0-9.]+$' 2>/dev/null |
        awk '{print $1}' | sort -V | tail -1)
  [[ -n $pkg ]] || { echo "checkpatch: no linux-source package known to apt (apt-get update?)" >&2; exit 2; }
  (cd "$tmp" && apt-get download -q "$pkg" >/dev/null) ||
    { echo "checkpatch: apt-get download $pkg failed" >&2; exit 2; }
  dpkg -x "$tmp"/"$pkg"_*.deb "$tmp/x"
  tarball=$(ls "$tmp"/x/usr/src/linux-source-*.tar.xz)
  top=$(basename "$tarball" .tar.xz)
  tar -xJf "$tarball" -C "$tmp" "$top/scripts/checkpatch.pl" \
    "$top/scripts/spelling.txt" "$top/scripts/const_structs.checkpatch"
  mkdir -p "$dir"
  rm -rf "$dir/scripts"
  mv "$tmp/$top/scripts" "$dir/scripts"
fi

# Per file, what kernel style asks that this code cannot do: the uapi
# header is also user space's (BIT() is not in the uapi headers), and an
# out-of-tree module that builds on several kernels tests their version in
# its compat header.
ignore_for() {
  case $1 in
    */kmod_uapi.h) echo BIT_MACRO ;;
    */rck_compat.h) echo LINUX_VERSION_CODE ;;
    *) echo "" ;;
  esac
}
out=""
for f in "${files[@]}"; do
  ignore=$(ignore_for "$f")
  out+=$("$script" --strict --no-tree --terse --show-types \
           ${ignore:+--ignore "$ignore"} -f "$f" 2>&1) || true
  out+=$'\n'
done
if grep -qE ': (ERROR|WARNING|CHECK):' <<<"$out"; then
  echo "$out"
  echo "checkpatch: the module is not checkpatch-clean" >&2
  exit 1
fi
echo "checkpatch: ${#files[@]} files, no errors, warnings or checks"

#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# Builds the regcache module for one of the rig's kernels, out of the source
# tree: the module's own `make dkms-source` copies what a build needs into
# OUT (unchanged files keep their times, so a rebuild is incremental), then
# kbuild builds OUT/regcache.ko against that kernel's headers: on the host
# for 6.1 and 6.12, inside the kernel's build root for 7.x (its kbuild needs
# trixie's glibc and gcc-14), in a private mount namespace with its own
# /proc. scripts/fetch-kernels.sh fetches the kernel first if it is not
# cached. Any compiler warning fails the build (the module builds
# warning-free on every kernel of the rig).
#
# Usage: scripts/build-kmod.sh [--cache-dir DIR] --kernel KERNEL --out DIR
#   KERNEL: 6.1, 6.12 or 7 (as scripts/fetch-kernels.sh)
# Exit status: 0 with OUT/regcache.ko built; 1 when the build failed or
# warned; 2 on bad usage.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$here/../src/kmod_notifier

# Under a parallel make (cmake --build -j) the inherited MAKEFLAGS name a
# jobserver whose descriptors do not reach the makes below, which then warn
# "jobserver unavailable"; the warning check at the end would fail the
# build on that. The module's build is its own make: start it afresh.
unset MAKEFLAGS MFLAGS MAKELEVEL

bad_usage() { echo "build-kmod: $*" >&2; echo "see: $0 --help" >&2; exit 2; }
die() { echo "build-kmod: $*" >&2; exit 1; }

kernel="" out="" fetch_opts=()
while (($#)); do
  case $1 in
    --kernel) [[ -n ${2:-} ]] || bad_usage "--kernel needs 6.1, 6.12 or 7"; kernel=$2; shift 2 ;;
    --kernel=*) kernel=${1#*=}; shift ;;
    --out) [[ -n ${2:-} ]] || bad_usage "--out needs a folder"; out=$2; shift 2 ;;
    --out=*) out=${1#*=}; shift ;;
    --cache-dir) [[ -n ${2:-} ]] || bad_usage "--cache-dir needs a folder"; fetch_opts+=(--cache-dir "$2"); shift 2 ;;
    -h|--help) sed -n '3,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) bad_usage "unknown argument '$1'" ;;
  esac
done
case $kernel in
  6.1|6.12|7) ;;
  "") bad_usage "--kernel is required (6.1, 6.12 or 7)" ;;
  *) bad_usage "unknown kernel '$kernel' (choose 6.1, 6.12 or 7)" ;;
esac
[[ -n $out ]] || bad_usage "--out is required"
[[ -f $src/Makefile ]] || die "no $src/Makefile"

KVER="" KDIR="" BUILD_ROOT=""
eval "$("$here/fetch-kernels.sh" "${fetch_opts[@]}" --print "$kernel")"
[[ -n $KVER ]] || die "fetch-kernels.sh named no kernel for $kernel"

mkdir -p "$out"
out=$(cd "$out" && pwd -P)
make -s -C "$src" dkms-source DKMS_DIR="$out"
log=$out/build.log
if [[ -z $BUILD_ROOT ]]; then
  make -C "$out" KDIR="$KDIR" > "$log" 2>&1 || { cat "$log" >&2; die "build for $KVER failed"; }
else
  # The build root sees OUT at /build/regcache; the objects stay in OUT.
  [[ -e $BUILD_ROOT/.complete ]] || die "no build root for $KVER (scripts/fetch-kernels.sh $kernel)"
  mkdir -p "$BUILD_ROOT/build/regcache"
  unshare --mount --propagation private -- sh -c '
    mount -t proc proc "$1/proc" &&
    mount --bind "$2" "$1/build/regcache" &&
    exec chroot "$1" make -C /build/regcache KDIR="$3"' \
    sh "$BUILD_ROOT" "$out" "$KDIR" > "$log" 2>&1 ||
    { cat "$log" >&2; die "build for $KVER in $BUILD_ROOT failed"; }
fi
if grep -E 'warning:|error:' "$log" >&2; then
  rm -f "$out/regcache.ko"
  die "the build for $KVER warned (full log: $log)"
fi
[[ -s $out/regcache.ko ]] || die "no $out/regcache.ko after the build"
echo "$KVER" > "$out/kver"
echo "build-kmod: $out/regcache.ko for $KVER"

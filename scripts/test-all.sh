#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# Runs every test: installs the Debian packages, builds, runs the host unit
# tests, builds everything with clang's thread-safety analysis as errors,
# checks the module's kernel style (checkpatch), runs the guest tests in
# the qemu + Soft-RoCE rig, and the host suite
# again under AddressSanitizer+UBSan and under ThreadSanitizer. The guest
# tests run on three Debian kernels: the whole suite on the host's own 6.1
# (ctest -L '^vm$'), and the module, monitor-conformance, hazard and ODP
# suites on 6.12 and 7.x (ctest -L '^vm-6\.12$', -L '^vm-7$'), which
# scripts/fetch-kernels.sh fetches into its cache first (never installed).
#
# Usage: scripts/test-all.sh [--no-vm] [--no-other-kernels] [--no-sanitizers]
#   --no-other-kernels  guest tests on 6.1 only (no download)
# Exit status: 0 only if every stage passed. Build trees: build/,
# build-clang/, build-asan/, build-tsan/ at the top of the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

run_vm=1
run_other_kernels=1
run_sanitizers=1
for arg in "$@"; do
  case "$arg" in
    --no-vm) run_vm=0 ;;
    --no-other-kernels) run_other_kernels=0 ;;
    --no-sanitizers) run_sanitizers=0 ;;
    *) echo "test-all: unknown option '$arg'" >&2
       echo "usage: $0 [--no-vm] [--no-other-kernels] [--no-sanitizers]" >&2; exit 2 ;;
  esac
done

jobs=$(nproc)
started=$SECONDS
stage_start=$SECONDS
stage() {
  ((SECONDS > started)) && printf '(%d s)\n' $((SECONDS - stage_start))
  stage_start=$SECONDS
  printf '\n=== %s === (at %d s)\n' "$*" $((SECONDS - started))
}

stage "install dependencies"
scripts/install-deps.sh

stage "build (RelWithDebInfo)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"

stage "host tests"
ctest --test-dir build -LE vm --output-on-failure -j"$jobs"

stage "clang build: -Wthread-safety -Wthread-safety-beta -Werror"
# The locking protocol's annotations (src/regcache/base/thread_annotations.h)
# are checked by clang only; any warning fails the stage.
cmake -S . -B build-clang -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_C_FLAGS="-Werror" \
  -DCMAKE_CXX_FLAGS="-Wthread-safety -Wthread-safety-beta -Werror" >/dev/null
cmake --build build-clang -j"$jobs"

stage "kernel style: checkpatch.pl --strict on the module and its uapi header"
# checkpatch.pl comes from Debian's linux-source package (downloaded once,
# cached, never installed). The C++ is checked by ctest's layout_format.
scripts/checkpatch.sh

if ((run_vm)); then
  stage "guest tests on Debian 6.1 (qemu + the host's kernel + regcache module + rdma_rxe)"
  ctest --test-dir build -L '^vm$' --output-on-failure
  if ((run_other_kernels)); then
    stage "fetch Debian's 6.12 and 7.x kernels and 7.x's module build root (cached)"
    scripts/fetch-kernels.sh 6.12 7
    for kernel in 6.12 7; do
      stage "guest tests on Debian $kernel: module, monitor conformance, hazard, ODP"
      ctest --test-dir build -L "^vm-${kernel//./\\.}\$" --output-on-failure
    done
  fi
fi

if ((run_sanitizers)); then
  for pair in "asan:address,undefined" "tsan:thread"; do
    dir=build-${pair%%:*}
    san=${pair#*:}
    stage "host tests under -fsanitize=$san"
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Debug -DREGCACHE_SANITIZE="$san" \
      -DREGCACHE_BUILD_BENCH=OFF >/dev/null
    cmake --build "$dir" -j"$jobs"
    ctest --test-dir "$dir" -LE vm --output-on-failure -j"$jobs"
  done
fi

stage "all stages passed"

#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# The main job (issue 4): regcache-pingpong, an MPI-style RDMA WRITE
# rendezvous ping-pong that compares obtaining registrations per message,
# through regcache (kmod, uffd, no monitor), once up front, and with ODP,
# over buffer reuse, rotation and free-and-reallocate, checking every
# message (docs/pingpong.md).
#
# Installs what it needs, builds regcache-pingpong and the regcache kernel
# module, boots the qemu rig (Debian's kernel, Soft-RoCE rxe0, the module
# loaded) and runs the tool there; prints the tables and the targets' PASS/
# FAIL lines and leaves results/pingpong.json and results/pingpong.svg.
# Exit status: the tool's (non-zero only for a correctness failure, or when
# the run itself failed), or the rig's (124 timeout, 125 VM trouble, 126 the
# kernel log showed a problem).
#
# On a machine with a real RDMA device, run it there without the VM:
#   scripts/run-main.sh --device mlx5_0 [more regcache-pingpong options]
#   REGCACHE_PINGPONG_ARGS="-d mlx5_0 -g 3" scripts/run-main.sh
# (load the module first for the regcache-kmod mode: docs/kmod.md).
# The hit-path benchmark that used to be the main job: bench/ (cmake
# --build build --target bench-hit).
#
# Usage: scripts/run-main.sh [--device DEV] [regcache-pingpong options...]
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

args=()
direct=0
while (($#)); do
  case $1 in
    --device) args+=(-d "${2:?--device needs a device name}"); direct=1; shift 2 ;;
    --device=*) args+=(-d "${1#--device=}"); direct=1; shift ;;
    -h|--help) sed -n '3,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) args+=("$1"); shift ;;
  esac
done
# shellcheck disable=SC2206  # word splitting of the extra options is wanted
extra=(${REGCACHE_PINGPONG_ARGS:-})
for a in "${extra[@]}" "${args[@]}"; do
  [[ $a == -d || $a == --device || $a == --device=* ]] && direct=1
done

scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target regcache-pingpong >/dev/null
bin=$PWD/build/tools/pingpong/regcache-pingpong
mkdir -p results
results=$PWD/results
rm -f "$results/pingpong.json" "$results/pingpong.svg"
run=("$bin" --json "$results/pingpong.json" --svg "$results/pingpong.svg"
     "${extra[@]}" "${args[@]}")

echo "main job: host load average $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores" \
     "(other VMs on this host slow the emulated guest down)"
status=0
if ((direct)); then
  "${run[@]}" || status=$?
else
  kver=$(tests/vm/run-in-vm.sh --print-kver)
  make -s -C src/kmod_notifier KVER="$kver" >/dev/null
  # Both endpoints on vCPU 0 (--cpu any to undo): on a busy host a message
  # that needs the second vCPU waits until the host schedules it (~12 ms),
  # which swamps what is measured (docs/pingpong.md).
  tests/vm/run-in-vm.sh --module src/kmod_notifier/regcache.ko \
    --rw "$results" --timeout 900 -- \
    "$bin" --cpu 0 "${run[@]:1}" || status=$?
fi
echo "main job: status $status after $((SECONDS - start)) s; results in" \
     "results/pingpong.json and results/pingpong.svg"
exit "$status"

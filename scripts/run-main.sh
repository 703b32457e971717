#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# The main job: regcache-pingpong (docs/pingpong.md) in the qemu rig with
# the regcache module loaded, or on a real RDMA device without the VM.
# Checks its command line first (an unknown option is exit status 2 before
# anything is installed, built or booted; a bad value, once the tool is
# built, before the VM boots), then installs what it needs, builds, runs,
# and leaves results/pingpong.json and results/pingpong.svg (on another
# kernel of the rig results/pingpong-KERNEL.json and .svg).
# usage() below is the whole story; tools/pingpong/run-main-test.sh checks
# that the options it passes on are regcache-pingpong's.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

# regcache-pingpong's options, passed on: its flags, and those that take a
# value (-d/--device are also this script's: they mean "without the VM").
# Not passed: -h/--help (this script's own) and --version.
tool_flags=(--server --full-check --quick)
tool_values=(--client -p --port -d --device -i --ib-port -g --gid-index
             --cpu --poll --spin-us --modes --workloads --sizes --iters
             --warmup --passes --seconds-per-point --max-entries
             --mem-budget --reg-time --json --svg)

usage() {
  cat <<'EOF'
usage: scripts/run-main.sh [--kernel 6.1|6.12|7 | --device DEV]
                           [regcache-pingpong options...]

Runs the main job, regcache-pingpong: an MPI-style RDMA WRITE rendezvous
ping-pong that compares obtaining registrations per message, through
regcache (kmod, uffd, no monitor), once up front and with ODP, over buffer
reuse, rotation and free-and-reallocate, checking every message
(docs/pingpong.md).

Without --device it installs the Debian packages it needs, builds
regcache-pingpong and the regcache kernel module for the chosen kernel,
boots the qemu rig (that Debian kernel, Soft-RoCE rxe0, the module loaded)
and runs the tool there with --cpu 0 (--cpu any undoes it). With --device it
runs the tool on this host's device instead (load the module first for
regcache-kmod: docs/kmod.md). It prints the tables and the targets'
PASS/FAIL lines and leaves results/pingpong.json and results/pingpong.svg
(with --kernel 6.12 or 7: results/pingpong-6.12.json, results/pingpong-7.json
and their .svg).

Options:
  --kernel K     boot Debian's kernel K in the rig: 6.1 (default, the host's
                 own; or $REGCACHE_VM_KERNEL), 6.12 or 7 (fetched once by
                 scripts/fetch-kernels.sh, never installed). rxe has
                 on-demand paging, so the odp mode runs, only on 7
  --device DEV   run on this RDMA device, without the VM (-d DEV too)
  -h, --help     this text
Every other option goes to regcache-pingpong (regcache-pingpong --help says
what each does); the environment variable REGCACHE_PINGPONG_ARGS adds more,
before those of the command line:
EOF
  { printf '%s ' "${tool_flags[@]}" "${tool_values[@]}"; echo; } |
    fold -s -w 72 | sed 's/ *$//; s/^/  /'
  cat <<'EOF'
Examples:
  scripts/run-main.sh
  scripts/run-main.sh --quick
  scripts/run-main.sh --kernel 7 --reg-time 64M
  scripts/run-main.sh --device mlx5_0 --sizes 4K,64K
  REGCACHE_PINGPONG_ARGS="-d mlx5_0 -g 3" scripts/run-main.sh

Exit status: regcache-pingpong's (0; 1 when a correctness target failed;
2 bad arguments; 3 when the run itself failed), or the rig's (124 timeout,
125 VM trouble, 126 the kernel log showed a problem); 2 for an option
neither this script nor regcache-pingpong has, before anything runs, or for
a value regcache-pingpong refuses, before the VM boots.
EOF
}

usage_error() {
  printf 'run-main.sh: %s\nTry '\''scripts/run-main.sh --help'\''.\n' "$*" >&2
  exit 2
}

# Whether word $1 is one of the remaining arguments.
one_of() {
  local word=$1 w
  shift
  for w; do [[ $w == "$word" ]] && return 0; done
  return 1
}

# Checks that "$@" are regcache-pingpong options (their values are the
# tool's to check) and sets direct=1 when one of them names a device.
check_tool_options() {
  local name
  while (($#)); do
    name=${1%%=*}
    if [[ $1 =~ ^-[a-zA-Z]. ]]; then name=${1:0:2}; fi  # -p9999, -dmlx5_0
    if [[ $1 != -* ]]; then
      usage_error "unexpected argument '$1'"
    elif one_of "$name" "${tool_flags[@]}"; then
      [[ $1 == "$name" ]] || usage_error "$name takes no value"
      shift
    elif one_of "$name" "${tool_values[@]}"; then
      [[ $name == -d || $name == --device ]] && direct=1
      if [[ $1 == "$name" ]]; then
        (($# >= 2)) || usage_error "$1 needs a value"
        shift
      fi
      shift
    else
      usage_error "unknown option '$1'"
    fi
  done
}

args=()
direct=0
kernel=""
while (($#)); do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --device) (($# >= 2)) || usage_error "--device needs a value (DEV)"
              args+=(-d "$2"); shift 2 ;;
    --device=*) args+=(-d "${1#--device=}"); shift ;;
    --kernel) (($# >= 2)) || usage_error "--kernel needs a value (6.1, 6.12 or 7)"
              kernel=$2; shift 2 ;;
    --kernel=*) kernel=${1#--kernel=}; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
# shellcheck disable=SC2206  # word splitting of the extra options is wanted
extra=(${REGCACHE_PINGPONG_ARGS:-})
check_tool_options "${extra[@]}" "${args[@]}"
if [[ -n $kernel ]] && ((direct)); then
  usage_error "--kernel $kernel chooses the rig's kernel, but --device runs without the rig"
fi
kernel=${kernel:-${REGCACHE_VM_KERNEL:-6.1}}
case $kernel in
  6.1|6.12|7) ;;
  *) usage_error "unknown kernel '$kernel' (--kernel 6.1, 6.12 or 7)" ;;
esac
# The default kernel's files keep their old names.
name=pingpong
if ((!direct)) && [[ $kernel != 6.1 ]]; then name=pingpong-$kernel; fi

scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target regcache-pingpong >/dev/null
bin=$PWD/build/tools/pingpong/regcache-pingpong
mkdir -p results
results=$PWD/results
rm -f "$results/$name.json" "$results/$name.svg"
run=("$bin" --json "$results/$name.json" --svg "$results/$name.svg"
     "${extra[@]}" "${args[@]}")
# The values, checked by the tool itself: with --version it checks every
# option and prints its version only if they are all good.
"${run[@]}" --version >/dev/null || exit 2

echo "main job: host load average $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores" \
     "(other VMs on this host slow the emulated guest down)"
status=0
if ((direct)); then
  "${run[@]}" || status=$?
else
  # The module for that kernel (6.12 and 7 are fetched first if they are
  # not cached; 7.x's is built in its trixie build root).
  echo "main job: kernel $kernel ($(tests/vm/run-in-vm.sh --kernel "$kernel" --print-kver))"
  scripts/build-kmod.sh --kernel "$kernel" --out "build/kmod-$kernel" >/dev/null
  # Both endpoints on vCPU 0 (--cpu any to undo): on a busy host a message
  # that needs the second vCPU waits until the host schedules it (~12 ms),
  # which swamps what is measured (docs/pingpong.md).
  tests/vm/run-in-vm.sh --kernel "$kernel" --module "build/kmod-$kernel/regcache.ko" \
    --rw "$results" --timeout 1800 -- \
    "$bin" --cpu 0 "${run[@]:1}" || status=$?
fi
echo "main job: status $status after $((SECONDS - start)) s; results in" \
     "results/$name.json and results/$name.svg"
exit "$status"

#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# Runs the monitor-cost benchmarks of docs/benchmarks.md ("Monitor costs")
# where each can run, keeps the JSON and prints the ratio tables:
#   host:  munmap_bench (plain, uffd, ucx_hooks; the kmod cases skip: the
#          host has no /dev/regcache) and miss_path_bench's BM_MissOverhead
#   guest: munmap_bench and miss_path_bench in the qemu rig
#          (tests/vm/run-in-vm.sh) with the regcache module loaded and rxe0
# then bench/compare_monitor_costs.py on the results.
#
# The VM gets ONE vCPU (REGCACHE_VM_SMP=1) and munmap_bench starts the
# monitors' threads SCHED_IDLE (REGCACHE_BENCH_IDLE_HELPERS=1): munmap() then
# pays for everything it does synchronously (the notifier, waking the event
# thread; for uffd, waiting for the reader), and the monitors' threads do
# their asynchronous work while the benchmark waits between munmap() calls,
# as they would on a spare core. With two vCPUs this rig cannot measure it:
# the emulated CPUs share the host's busy cores, and a cross-vCPU wake-up
# takes milliseconds, so every case in which munmap() wakes a thread would be
# measuring the host's scheduler. docs/benchmarks.md has the details.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: bench/run_guest_benchmarks.sh [options]
  --build DIR        CMake build folder (default: BUILD_DIR or <repo>/build;
                     configured RelWithDebInfo if it does not exist)
  --results DIR      where the JSON goes (default: <repo>/results)
  --min-time SEC     --benchmark_min_time (default 0.1)
  --repetitions N    --benchmark_repetitions (default 3; medians are used)
  --no-host          skip the host runs
  --no-guest         skip the VM run
  --strict           exit 1 when a target fails (compare_monitor_costs.py)
  -h, --help         this text
The build and results folders must not be under /tmp (the VM has its own).
EOF
}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD_DIR:-$REPO/build}
RESULTS=$REPO/results
MIN_TIME=0.1
REPS=3
RUN_HOST=1
RUN_GUEST=1
STRICT=()
IN_GUEST=0

while (($#)); do
  case $1 in
    --build) BUILD=${2:?}; shift 2 ;;
    --results) RESULTS=${2:?}; shift 2 ;;
    --min-time) MIN_TIME=${2:?}; shift 2 ;;
    --repetitions) REPS=${2:?}; shift 2 ;;
    --no-host) RUN_HOST=0; shift ;;
    --no-guest) RUN_GUEST=0; shift ;;
    --strict) STRICT=(--strict); shift ;;
    --in-guest) IN_GUEST=1; shift ;;  # internal: the part that runs in the VM
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

log() { echo "run_guest_benchmarks: $*" >&2; }
die() { log "$*"; exit 1; }

BENCH_ARGS=(--benchmark_min_time="$MIN_TIME" --benchmark_repetitions="$REPS"
            --benchmark_out_format=json)

# ------------------------------------------------------------- in the guest
if ((IN_GUEST)); then
  [[ -e /dev/regcache ]] || die "no /dev/regcache in the guest (--module?)"
  status=0
  REGCACHE_BENCH_IDLE_HELPERS=1 "$BUILD/bench/munmap_bench" "${BENCH_ARGS[@]}" \
    --benchmark_out="$RESULTS/munmap_guest.json" || status=$?
  "$BUILD/bench/miss_path_bench" "${BENCH_ARGS[@]}" \
    --benchmark_out="$RESULTS/miss_path_guest.json" || status=$?
  exit "$status"
fi

# ------------------------------------------------------------------ the host
BUILD=$(mkdir -p "$BUILD" && cd "$BUILD" && pwd -P)
RESULTS=$(mkdir -p "$RESULTS" && cd "$RESULTS" && pwd -P)
if ((RUN_GUEST)); then
  for dir in "$BUILD" "$RESULTS"; do
    [[ $dir != /tmp/* ]] || die "$dir is under /tmp, which the VM does not share"
  done
fi

KO=$REPO/src/kmod_notifier/regcache.ko
if ((RUN_GUEST)); then
  stale=0
  [[ -f $KO ]] || stale=1
  for src in "$REPO"/src/kmod_notifier/*.[ch] "$REPO"/include/regcache/kmod_uapi.h; do
    [[ $src == */regcache.mod.c ]] && continue
    [[ $stale == 1 || $src -nt $KO ]] && stale=1
  done
  if ((stale)); then
    log "building the module (make -C src/kmod_notifier)"
    make -C "$REPO/src/kmod_notifier" >&2
  fi
fi

if [[ ! -f $BUILD/CMakeCache.txt ]]; then
  log "configuring $BUILD (RelWithDebInfo)"
  cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2
fi
log "building munmap_bench and miss_path_bench in $BUILD"
cmake --build "$BUILD" --target munmap_bench miss_path_bench -j "$(nproc)" >&2

if ((RUN_HOST)); then
  log "host: munmap_bench -> $RESULTS/munmap_host.json"
  "$BUILD/bench/munmap_bench" "${BENCH_ARGS[@]}" \
    --benchmark_out="$RESULTS/munmap_host.json"
  log "host: miss_path_bench (BM_MissOverhead) -> $RESULTS/miss_overhead_host.json"
  "$BUILD/bench/miss_path_bench" "${BENCH_ARGS[@]}" \
    --benchmark_filter='BM_MissOverhead' \
    --benchmark_out="$RESULTS/miss_overhead_host.json"
fi

if ((RUN_GUEST)); then
  log "guest: munmap_bench and miss_path_bench in the VM, module $KO"
  REGCACHE_VM_SMP=1 \
  "$REPO/tests/vm/run-in-vm.sh" --module "$KO" --rw "$RESULTS" --timeout 900 -- \
    "$REPO/bench/run_guest_benchmarks.sh" --in-guest --build "$BUILD" \
    --results "$RESULTS" --min-time "$MIN_TIME" --repetitions "$REPS"
fi

COMPARE=()
[[ -s $RESULTS/munmap_host.json ]] && COMPARE+=(--munmap-host "$RESULTS/munmap_host.json")
[[ -s $RESULTS/miss_overhead_host.json ]] &&
  COMPARE+=(--miss-host "$RESULTS/miss_overhead_host.json")
if ((RUN_GUEST)); then
  COMPARE+=(--munmap-guest "$RESULTS/munmap_guest.json"
            --miss-path "$RESULTS/miss_path_guest.json")
fi
((${#COMPARE[@]})) || die "nothing to compare"
python3 "$REPO/bench/compare_monitor_costs.py" "${STRICT[@]}" "${COMPARE[@]}"

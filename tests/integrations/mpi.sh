#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# Open MPI 4.1, two ranks over rxe0, running mpi_reuse (frees and
# reallocates 1-2 MiB buffers between messages, one kind through raw
# munmap/mmap system calls no hook sees, and checks every message) under:
#   ucx+preload  pml ucx, UCX registering per message (direct), with
#                libregcache-preload.so
#   ucx          pml ucx with UCX's own cache and hooks (the control)
#   ofi+plugin   pml cm, mtl ofi, verbs;ofi_rxm, libregcache-fi.so
#   ofi          the same without the plug-in: libfabric's cache with the
#                monitor Open MPI imports (its memory hooks; the control)
# Checks: the two regcache runs deliver every message intact. The controls
# are reported, not asserted: the raw kind is expected to go bad there,
# and a control that does not show it is said so by name.
# Usage (in the VM): mpi.sh BUILD OUTDIR [ROUNDS]
set -u
BUILD=$1
OUT=${2:-/tmp/mpi}
ROUNDS=${3:-8}
source "$(dirname "$0")/lib.sh"
need mpirun
[[ -e /dev/regcache ]] || skip "/dev/regcache is missing (the test needs the module)"
PROG=$BUILD/tests/integrations/mpi_reuse
[[ -x $PROG ]] || skip "$PROG was not built (libopenmpi-dev missing at configure time)"

mpi=(mpirun --allow-run-as-root --oversubscribe -np 2 --mca osc ^ucx
     --mca btl self,vader)
ucx=(--mca pml ucx)
for v in "${UCX_ENV[@]}"; do ucx+=(-x "$v"); done
ofi=(--mca pml cm --mca mtl ofi --mca mtl_ofi_provider_include "verbs;ofi_rxm"
     -x FI_UNIVERSE_SIZE=16)

table=$OUT/table.md
mkdir -p "$OUT"
{
  echo "| stack | cache | messages | bad (malloc / mmap / raw syscall) | time (s) |"
  echo "| --- | --- | --- | --- | --- |"
} >"$table"

run() {  # NAME DESCRIPTION MPIRUN-ARGS...
  local name=$1 what=$2
  shift 2
  local dir=$OUT/$name
  mkdir -p "$dir"
  local t0 t1 rc
  t0=$(date +%s.%N)
  timeout 300 "${mpi[@]}" "$@" "$PROG" "$ROUNDS" >"$dir/out" 2>"$dir/err"
  rc=$?
  t1=$(date +%s.%N)
  local b=() n=0 k
  for k in malloc mmap raw; do
    local line
    line=$(grep "^kind=$k " "$dir/out")
    local bad_k msgs_k
    bad_k=$(sed -n 's/.*bad=\([0-9]*\).*/\1/p' <<<"$line")
    msgs_k=$(sed -n 's/.*messages=\([0-9]*\).*/\1/p' <<<"$line")
    b+=("$bad_k")
    n=$((n + ${msgs_k:-0}))
  done
  printf '| %s | %s | %s | %s / %s / %s | %.1f |\n' "${name%%+*}" "$what" "$n" \
    "${b[0]:-?}" "${b[1]:-?}" "${b[2]:-?}" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" >>"$table"
  echo "== $name (exit $rc)"
  cat "$dir/out"
  grep -h "regcache\|mpi_reuse: round" "$dir/err" | head -8
  eval "rc_$(tr '+' '_' <<<"$name")=$rc; bad_raw_$(tr '+' '_' <<<"$name")=${b[2]:-}; ran_$(tr '+' '_' <<<"$name")=$n"
}

run ucx+preload "UCX direct + libregcache-preload.so" "${ucx[@]}" \
  -x UCX_IB_REG_METHODS=direct -x UCX_RCACHE_ENABLE=n \
  -x LD_PRELOAD="$PRELOAD_LIB" -x REGCACHE_STATS=1
run ucx "UCX rcache + UCM hooks (default)" "${ucx[@]}"
run ofi+plugin "libfabric MR cache + libregcache-fi.so" "${ofi[@]}" \
  -x FI_PROVIDER_PATH="$FI_PLUGIN_DIR" -x REGCACHE_STATS=1
run ofi "libfabric MR cache + Open MPI's imported hook monitor (default)" "${ofi[@]}"

expected=$((ROUNDS * 3))
for name in ucx_preload ofi_plugin; do
  rc_var=rc_$name ran_var=ran_$name
  if [[ ${!rc_var} == 0 && ${!ran_var} == "$expected" ]]; then
    pass "$name: $expected messages, none bad"
  else
    fail "$name: exit ${!rc_var}, $((${!ran_var})) of $expected messages checked"
  fi
done
for name in ucx ofi; do
  bad_var=bad_raw_$name rc_var=rc_$name
  if [[ ${!bad_var:-0} -gt 0 ]]; then
    echo "CONTROL $name: the stack's default cache delivered ${!bad_var} bad raw-syscall messages (the hazard, as expected)"
  elif [[ -n ${!bad_var} ]]; then
    echo "CONTROL $name: NOT SHOWN: the default cache delivered every raw-syscall message intact"
  else
    echo "CONTROL $name: did not run to the end (exit ${!rc_var})"
  fi
done
cat "$table"
finish mpi

#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# The plug-in and the interposer where things go wrong, in the VM. With the
# module loaded:
#   storm    fi_storm storm: memory churn in threads while others replace
#            buffers with raw munmap/mmap and fi_mr_reg/fi_close them
#            through the plug-in; must finish (no deadlock) and cost one
#            ibv_reg_mr per replaced buffer (nothing stale), counted by the
#            interposer in counting mode. The control (libfabric's memhooks
#            monitor, which no raw system call reaches) is reported.
#   import   a program that calls fi_import itself: before libfabric
#            initialises it wins (the plug-in says so), after it it gets
#            -FI_EBUSY (the plug-in serves it); the program goes on.
#   fork     fi_storm fork with the plug-in and the interposer: both exit 0.
#   memlock  ibv_rc_pingpong under RLIMIT_MEMLOCK 64 KiB as nobody, with
#            and without the interposer: the same outcome (4 KiB passes,
#            1 MiB fails to register), and a message from the interposer.
# Without the module (run-in-vm.sh without --module):
#   nomodule ibv_rc_pingpong with the interposer and fi_pingpong with the
#            plug-in pass, each saying once why nothing is cached.
# Usage (in the VM): faults.sh BUILD OUTDIR [STORM_SECONDS]
set -u
BUILD=$1
OUT=${2:-/tmp/faults}
SECS=${3:-5}
source "$(dirname "$0")/lib.sh"
need ibv_rc_pingpong fi_pingpong
STORM=$BUILD/tests/integrations/fi_storm
AS_USER=$(cd "$(dirname "$0")/../vm" && pwd)/as-user.sh
mkdir -p "$OUT"
plugin=(FI_PROVIDER_PATH="$FI_PLUGIN_DIR" REGCACHE_STATS=1)
counting=(LD_PRELOAD="$PRELOAD_LIB" REGCACHE_PRELOAD=0 REGCACHE_STATS=1)

# Sum of "reg calls N" over the interposer's exit lines in FILE.
reg_calls() { awk '/^regcache-preload: pid [0-9]+ exit:/ { for (i = 1; i < NF; ++i) if ($i == "calls") n += $(i + 1) } END { print n + 0 }' "$1"; }
field() { sed -n "s/.*$2=\([0-9]*\).*/\1/p" "$1" | tail -1; }

if [[ ! -e /dev/regcache ]]; then
  echo "== nomodule"
  if run_pair "$OUT/rc" 60 -- env LD_PRELOAD="$PRELOAD_LIB" ibv_rc_pingpong -d rxe0 -g 1 -n 50 \
      -- env LD_PRELOAD="$PRELOAD_LIB" ibv_rc_pingpong -d rxe0 -g 1 -n 50 "$SERVER_ADDR"; then
    pass "nomodule: ibv_rc_pingpong with the interposer passed"
  else
    fail "nomodule: ibv_rc_pingpong with the interposer: $(cat "$OUT/rc/status")"
  fi
  n=$(grep -c "regcache-preload: pid [0-9]*: not caching registrations:.*/dev/regcache" "$OUT/rc/client.err")
  if [[ $n == 1 ]]; then pass "nomodule: the interposer said once why: $(grep -h 'not caching' "$OUT/rc/client.err")"
  else fail "nomodule: the interposer's message appeared $n times"; fi
  args=(-p "verbs;ofi_rxm" -e rdm -S 4096 -I 20)
  if run_pair "$OUT/fi" 60 -- env "${FI_ENV[@]}" "${plugin[@]}" FI_LOG_LEVEL=warn fi_pingpong "${args[@]}" \
      -- env "${FI_ENV[@]}" "${plugin[@]}" FI_LOG_LEVEL=warn fi_pingpong "${args[@]}" "$SERVER_ADDR"; then
    pass "nomodule: fi_pingpong with the plug-in passed"
  else
    fail "nomodule: fi_pingpong with the plug-in: $(cat "$OUT/fi/status")"
  fi
  n=$(grep -c "regcache-fi.*not importing a memory monitor: /dev/regcache" "$OUT/fi/client.err")
  if [[ $n == 1 ]]; then pass "nomodule: the plug-in warned once: $(grep -h 'not importing' "$OUT/fi/client.err")"
  else fail "nomodule: the plug-in's warning appeared $n times"; fi
  finish faults-nomodule
fi

echo "== storm ($SECS s)"
for setup in plugin memhooks; do
  envs=("${FI_ENV[@]}" "${counting[@]}")
  if [[ $setup == plugin ]]; then envs+=("${plugin[@]}"); else envs+=(FI_MR_CACHE_MONITOR=memhooks); fi
  log=$OUT/storm-$setup
  t0=$(date +%s)
  env "${envs[@]}" timeout $((SECS + 120)) "$STORM" storm "$SECS" >"$log.out" 2>"$log.err"
  rc=$?
  t1=$(date +%s)
  remaps=$(field "$log.out" remaps) regs=$(field "$log.out" regs) calls=$(reg_calls "$log.err")
  echo "$setup: exit $rc in $((t1 - t0)) s: $(cat "$log.out") ibv_reg_mr=$calls"
  if [[ $setup == plugin ]]; then
    if [[ $rc == 0 && -n $remaps && $remaps -gt 0 && $calls -ge $remaps && $calls -lt $regs ]]; then
      pass "storm: finished; $remaps buffers replaced, $calls ibv_reg_mr for $regs fi_mr_reg (none stale, some cached)"
    else
      fail "storm: exit $rc, remaps=$remaps ibv_reg_mr=$calls fi_mr_reg=$regs"
      tail -5 "$log.err"
    fi
    grep "^regcache-fi" "$log.err"
  elif [[ $rc == 0 && -n $remaps && $calls -lt $remaps ]]; then
    echo "CONTROL memhooks: $((remaps - calls)) of $remaps replaced buffers were served a stale registration (the hazard)"
  else
    echo "CONTROL memhooks: NOT SHOWN (exit $rc, remaps=$remaps ibv_reg_mr=$calls)"
  fi
done

echo "== import"
# Before fi_getinfo the program's import wins and the plug-in says so; after
# it (Open MPI's order) the program gets -FI_EBUSY. Either way it goes on.
for when in import import-late; do
  env "${FI_ENV[@]}" "${plugin[@]}" FI_LOG_LEVEL=warn "$STORM" "$when" >"$OUT/$when.out" 2>"$OUT/$when.err"
  rc=$?
  cat "$OUT/$when.out"
  if [[ $when == import ]]; then
    ok=$(grep -c "own fi_import (early): 0 " "$OUT/$when.out")
    said=$(grep -c "regcache-fi.*fi_import of the regcache memory monitor failed" "$OUT/$when.err")
    what="the program's early import won, the plug-in said so once at warn level"
  else
    ok=$(grep -c "own fi_import (late): -16 " "$OUT/$when.out")
    said=$(grep -c "^regcache-fi: pid .*subscribe [1-9]" "$OUT/$when.err")
    what="the program's late import got -FI_EBUSY, the plug-in served its registrations"
  fi
  if [[ $rc == 0 && $ok == 1 && $said == 1 ]]; then pass "$when: $what; the program went on"
  else fail "$when: exit $rc ($ok, $said)"; tail -5 "$OUT/$when.err"; fi
done

echo "== fork"
env "${FI_ENV[@]}" "${plugin[@]}" LD_PRELOAD="$PRELOAD_LIB" timeout 120 "$STORM" fork >"$OUT/fork.out" 2>"$OUT/fork.err"
rc=$?
cat "$OUT/fork.out"
if [[ $rc == 0 ]]; then pass "fork: parent and child exited 0"
else fail "fork: exit $rc"; tail -5 "$OUT/fork.err"; fi

echo "== memlock (nobody, RLIMIT_MEMLOCK 64 KiB)"
for size in 4096 1048576; do
  for with in without with; do
    envs=()
    [[ $with == with ]] && envs=(LD_PRELOAD="$PRELOAD_LIB")
    d=$OUT/memlock-$size-$with
    run_pair "$d" 60 -- env "${envs[@]}" "$AS_USER" --memlock 65536 65534 ibv_rc_pingpong -d rxe0 -g 1 -n 20 -s "$size" \
      -- env "${envs[@]}" "$AS_USER" --memlock 65536 65534 ibv_rc_pingpong -d rxe0 -g 1 -n 20 -s "$size" "$SERVER_ADDR"
    eval "st_${size}_$with='$(cat "$d/status")'"
  done
  a=st_${size}_without b=st_${size}_with
  if [[ ${!a} == "${!b}" ]]; then pass "memlock: $size bytes: the same outcome with and without the interposer (${!b})"
  else fail "memlock: $size bytes: without '${!a}', with '${!b}'"; fi
done
grep -h "regcache-preload" "$OUT"/memlock-1048576-with/*.err | head -2
finish faults

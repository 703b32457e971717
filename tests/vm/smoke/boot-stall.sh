#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# Test of run-in-vm.sh's boot watchdog (runs on the host; it starts VMs).
# REGCACHE_VM_TEST_STALL_BOOTS=N makes the first N boots run a PID 1 that
# only sleeps, so the guest never starts its side of the job:
#   1. one stalled boot, then a good one: the command runs once and passes,
#      the stall is reported and its console kept;
#   2. every boot stalls: status 125 and a message that says so.
set -uo pipefail
RIG=$(cd "$(dirname "$0")/.." && pwd)/run-in-vm.sh
WORK=${1:?usage: boot-stall.sh WORK_DIR}
rm -rf "$WORK"
mkdir -p "$WORK"
fail() { echo "FAIL: $*"; exit 1; }

# rig NAME STALLED_BOOTS BOOT_TIMEOUT: two boots at most, output in
# $WORK/NAME.out and .err (shown), results in $WORK/NAME; sets status.
rig() {
  REGCACHE_VM_TEST_STALL_BOOTS=$2 "$RIG" --no-rxe --timeout 300 \
    --boot-timeout "$3" --boot-attempts 2 --out "$WORK/$1" \
    -- echo "the command ran" > "$WORK/$1.out" 2> "$WORK/$1.err"
  status=$?
  sed "s/^/  $1| /" "$WORK/$1.err"
}

rig retry 1 30
((status == 0)) || fail "one stalled boot then a good one: status $status, not 0"
[[ $(grep -c 'the command ran' "$WORK/retry.out") == 1 ]] ||
  fail "the command's output should appear once: $(cat "$WORK/retry.out")"
[[ $(grep -c 'BOOT STALLED' "$WORK/retry.err") == 1 ]] ||
  fail "one 'BOOT STALLED' report expected"
grep -q 'attempt 2 of 2' "$WORK/retry.err" || fail "no report of the second attempt"
grep -q 'Run /bin/busybox as init process' "$WORK/retry/console-stalled-boot1.log" ||
  fail "the stalled boot's console was not kept, or it stalled elsewhere"
echo "PASS: a stalled boot is reported, kept and retried; the command ran once"

rig stall 2 10
((status == 125)) || fail "every boot stalled: status $status, not 125"
grep -q 'the command ran' "$WORK/stall.out" && fail "the command ran in a stalled VM"
grep -q 'VM BOOT STALLED' "$WORK/stall.err" || fail "no final 'VM BOOT STALLED' message"
echo "PASS: when every boot stalls the run fails with 125 and says why"

#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
#
# The guest half of run-in-vm.sh: runs as root inside the VM, chrooted into
# the host's (read-only) root, with the results folder $1 writable at its host
# path.  It brings up Soft-RoCE (veth pair va/vb, 192.168.77.1/24 on va, rxe0
# on va), loads the module under test, runs the command with its output in
# $OUT/stdout and $OUT/stderr, unloads the module, checks the kernel log and
# writes the verdict to $OUT/status for the host to read.
set -u

OUT=$1
JOB=$OUT/job
# shellcheck source=/dev/null
source "$JOB/config"     # CWD, CMD_TIMEOUT, MODULE_NAME, NO_RXE
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

note() { echo "[$(cut -d" " -f1 /proc/uptime)] $*" >> "$OUT/guest.log"; }
setup_failed() {
  echo "$*" >> "$OUT/rig-error"
  note "SETUP FAILED: $*"
  exit 1
}
mark_kmsg() { echo "regcache-vm: $*" > /dev/kmsg; }

note "guest up after $(cut -d' ' -f1 /proc/uptime) s"
ip link set lo up || setup_failed "cannot bring up lo"

if [[ $NO_RXE != 1 ]]; then
  {
    ip link add va type veth peer name vb &&
    ip addr add 192.168.77.1/24 dev va &&
    ip link set va up &&
    ip link set vb up &&
    rdma link add rxe0 type rxe netdev va
  } >> "$OUT/guest.log" 2>&1 || setup_failed "cannot create rxe0 on veth va"
  # The port turns ACTIVE once va has carrier, and GID index 1 (the IPv4
  # one) appears once the address is seen; wait for both.
  port=/sys/class/infiniband/rxe0/ports/1
  for _ in $(seq 100); do
    if grep -q ACTIVE "$port/state" 2>/dev/null &&
       [[ $(cat "$port/gids/1" 2>/dev/null) == *:c0a8:4d01 ]]; then
      break
    fi
    sleep 0.1
  done
  grep -q ACTIVE "$port/state" || setup_failed "rxe0 port is $(cat "$port/state")"
  [[ $(cat "$port/gids/1") == *:c0a8:4d01 ]] ||
    setup_failed "rxe0 GID 1 is $(cat "$port/gids/1"), not 192.168.77.1"
fi
# What rdma-core's udev rules do on a real system: verbs for every user.
chmod 0666 /dev/infiniband/* 2>/dev/null

# Everything the kernel logs from here on is checked after the command.
mark_kmsg "checkpoint: kernel log checked from here"
MODULE_LOADED=0
if [[ -n $MODULE_NAME ]]; then
  if ! insmod "$JOB/module.ko" >> "$OUT/guest.log" 2>&1; then
    dmesg > "$OUT/dmesg.txt" 2>&1
    setup_failed "insmod of $MODULE_NAME failed (see dmesg.txt)"
  fi
  MODULE_LOADED=1
  # Tests drop privileges (memlock limits); let every user open the device.
  [[ -e /dev/regcache ]] && chmod 0666 /dev/regcache
  note "module $MODULE_NAME loaded"
fi

# The command: the host's environment, the host's working directory.
cd "$CWD" 2>/dev/null || { note "no $CWD in the guest; running in /"; cd /; }
# shellcheck source=/dev/null
source "$JOB/env"
# shellcheck source=/dev/null
source "$JOB/cmd"    # CMD=(...)
export REGCACHE_VM=1 REGCACHE_VM_OUT="$OUT"

note "running: ${CMD[*]}"
start=$(cut -d' ' -f1 /proc/uptime)
timeout --kill-after=10 "$CMD_TIMEOUT" "${CMD[@]}" \
  < /dev/null >> "$OUT/stdout" 2>> "$OUT/stderr"
cmd_status=$?
end=$(cut -d' ' -f1 /proc/uptime)
cmd_timed_out=0
# timeout(1) says 124 (TERM) or 137 (KILL) when it had to stop the command.
if [[ $cmd_status == 124 || $cmd_status == 137 ]] &&
   awk -v s="$start" -v e="$end" -v t="$CMD_TIMEOUT" 'BEGIN { exit !(e - s >= t) }'; then
  cmd_timed_out=1
fi
note "command exited $cmd_status after $(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.1f", e - s }') s"
cd /

rmmod_status=0
if ((MODULE_LOADED)); then
  rmmod "$MODULE_NAME" >> "$OUT/guest.log" 2>&1
  rmmod_status=$?
  note "rmmod $MODULE_NAME exited $rmmod_status"
fi

# kmemleak, where the kernel has it (Debian's does not): scan now.
if [[ -w /sys/kernel/debug/kmemleak ]]; then
  echo scan > /sys/kernel/debug/kmemleak
  cat /sys/kernel/debug/kmemleak > "$OUT/kmemleak.txt"
  [[ -s $OUT/kmemleak.txt ]] && mark_kmsg "kmemleak: unreferenced objects, see kmemleak.txt"
fi

dmesg > "$OUT/dmesg.txt" 2>&1
sed -n '/regcache-vm: checkpoint/,$p' "$OUT/dmesg.txt" |
  grep -E 'BUG:|WARNING:|Oops|general protection|kmemleak|[Ll]eak' > "$OUT/dmesg-findings.txt"
dmesg_status=0
[[ -s $OUT/dmesg-findings.txt ]] && dmesg_status=1

cat > "$OUT/status.tmp" <<EOF
cmd_status=$cmd_status
cmd_timed_out=$cmd_timed_out
rmmod_status=$rmmod_status
dmesg_status=$dmesg_status
EOF
mv "$OUT/status.tmp" "$OUT/status"
note "verdict written"
sync

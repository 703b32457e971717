#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
#
# The guest half of run-in-vm.sh: runs as root inside the VM, chrooted into
# the host's (read-only) root, with the results folder $1 writable at its host
# path.  It brings up Soft-RoCE (veth pair va/vb with MTU 9000,
# 192.168.77.1/24 on va, rxe0 on va with port MTU 4096), loads the module
# under test, runs the command with its output in $OUT/stdout and
# $OUT/stderr, unloads the module, checks the kernel log and writes the
# verdict to $OUT/status for the host to read.
set -u

OUT=$1
JOB=$OUT/job
# shellcheck source=/dev/null
source "$JOB/config"     # CWD, VM_DEADLINE, MARGIN, MODULE_NAME, MODULE_ARGS, NO_RXE
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

note() {
  local up _
  read -r up _ < /proc/uptime
  echo "[$up] $*" >> "$OUT/guest.log"
}
setup_failed() {
  echo "$*" >> "$OUT/rig-error"
  note "SETUP FAILED: $*"
  exit 1
}
mark_kmsg() { echo "regcache-vm: $*" > /dev/kmsg; }

note "guest up"
# Each exec costs tens of milliseconds on the emulated CPU over 9p: one ip
# for all the links, shell builtins for the waiting.
# The veth pair's MTU is 9000, on every kernel: rxe0's port MTU (active_mtu)
# follows its netdev's, and only from a netdev MTU of 4096 plus headers on is
# it 4096, one page per packet. rxe's on-demand paging (7.x) misplaces the
# data of a packet that starts inside a page (docs/odp.md), so ODP moves
# correct data only at path MTU 4096 with page-aligned buffers; the same MTU
# on every kernel keeps the rig one configuration, whose runs compare.
if [[ $NO_RXE == 1 ]]; then
  ip link set lo up || setup_failed "cannot bring up lo"
else
  ip -batch - >> "$OUT/guest.log" 2>&1 <<'EOF_IP' || setup_failed "cannot set up the veth pair va/vb"
link set lo up
link add va type veth peer name vb
link set va mtu 9000
link set vb mtu 9000
addr add 192.168.77.1/24 dev va
link set va up
link set vb up
EOF_IP
  rdma link add rxe0 type rxe netdev va >> "$OUT/guest.log" 2>&1 ||
    setup_failed "cannot create rxe0 on veth va"
  # The port turns ACTIVE once va has carrier, and GID index 1 (the IPv4
  # one) appears once the address is seen; wait for both (up to 10 s).
  port=/sys/class/infiniband/rxe0/ports/1
  state="" gid1=""
  for _ in $(seq 200); do
    read -r state < "$port/state" || state=""
    read -r gid1 < "$port/gids/1" || gid1=""
    [[ $state == *ACTIVE* && $gid1 == *:c0a8:4d01 ]] && break
    read -rt 0.05 <> <(:) || true    # sleep 50 ms without an exec
  done
  [[ $state == *ACTIVE* ]] || setup_failed "rxe0 port is '$state', not ACTIVE"
  [[ $gid1 == *:c0a8:4d01 ]] || setup_failed "rxe0 GID 1 is '$gid1', not 192.168.77.1"
  note "rxe0 up"
fi
# A hostname, as every real system has: mpirun refuses "(none)". A
# builtin write, no exec.
echo localhost > /proc/sys/kernel/hostname
# hugetlb pages, as an operator reserves them (vm.nr_hugepages): 64 of the
# default size (2 MiB: 128 MiB of the guest's 2 GiB), so regcache_mem_alloc's
# REGCACHE_MEM_HUGE path and the hugetlb benchmarks find them. A test that
# needs none sets it to 0 itself (and back).
echo 64 > /proc/sys/vm/nr_hugepages 2>/dev/null
read -r hugepages < /proc/sys/vm/nr_hugepages
note "vm.nr_hugepages=$hugepages"
# What rdma-core's udev rules do on a real system: verbs for every user.
chmod 0666 /dev/infiniband/* 2>/dev/null

# Everything the kernel logs from here on is checked after the command.
mark_kmsg "checkpoint: kernel log checked from here"
MODULE_LOADED=0
if [[ -n $MODULE_NAME ]]; then
  # shellcheck disable=SC2086  # MODULE_ARGS is a list of name=value words
  if ! insmod "$JOB/module.ko" $MODULE_ARGS >> "$OUT/guest.log" 2>&1; then
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

# The host kills the VM at VM_DEADLINE (its clock, seconds since the epoch;
# the guest's wall clock comes from the emulated RTC, so it agrees).  Stop the
# command MARGIN seconds before, which leaves time to unload and report.
CMD_TIMEOUT=$((VM_DEADLINE - $(printf '%(%s)T' -1) - MARGIN))
read -r start _ < /proc/uptime
((CMD_TIMEOUT >= 1)) || CMD_TIMEOUT=1
note "running (for at most $CMD_TIMEOUT s): ${CMD[*]}"
timeout --kill-after=10 "$CMD_TIMEOUT" "${CMD[@]}" \
  < /dev/null >> "$OUT/stdout" 2>> "$OUT/stderr"
cmd_status=$?
read -r end _ < /proc/uptime
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

# The kernel log after the checkpoint must be clean.  Builtins again.
mapfile -t kernel_log < <(dmesg 2>&1)
printf '%s\n' "${kernel_log[@]}" > "$OUT/dmesg.txt"
trouble='BUG:|WARNING:|Oops|general protection|kmemleak|[Ll]eak'
# Find the checkpoint (a glob match is cheap), then test only what follows.
first=-1 dmesg_status=0
for i in "${!kernel_log[@]}"; do
  [[ ${kernel_log[i]} == *"regcache-vm: checkpoint"* ]] && first=$i
done
if ((first < 0)); then
  # Lost to a full ring buffer, or dmesg failed: check all there is.
  echo "no checkpoint in the kernel log (${#kernel_log[@]} lines)" >> "$OUT/dmesg-findings.txt"
  dmesg_status=1
  first=0
fi
for line in "${kernel_log[@]:first}"; do
  if [[ $line =~ $trouble ]]; then
    echo "$line" >> "$OUT/dmesg-findings.txt"
    dmesg_status=1
  fi
done

# The share has no cache: what is written is on the host already.
printf 'cmd_status=%s\ncmd_timed_out=%s\nrmmod_status=%s\ndmesg_status=%s\n' \
  "$cmd_status" "$cmd_timed_out" "$rmmod_status" "$dmesg_status" > "$OUT/status"
note "verdict written"

#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
#
# PID 1 of the test VM (busybox sh, inside the initramfs that run-in-vm.sh
# builds).  It loads the kernel modules listed in /modules/order, mounts the
# host's root (9p tag "hostroot", read-only) on /host and the run's results
# folder (tag "results", writable) at its host path inside /host, gives the
# chroot fresh proc/sys/dev/tmp/run, then runs job/guest-run.sh from the
# results folder with the host's own bash, chrooted into the host's root.
# Whatever happens, it powers the VM off; run-in-vm.sh reads the verdict from
# the results folder.  Boot messages go to the serial console (console.log).

PATH=/bin:/sbin:/usr/bin:/usr/sbin
export PATH

/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin /proc /sys /dev /host /results
/bin/busybox --install -s

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

say() { echo "regcache-vm-init: $*" > /dev/console; }

halt_vm() {
  sync
  poweroff -f
  sleep 5
  echo o > /proc/sysrq-trigger
}

# A rig failure: tell the console and, if the results share is there, the host.
die() {
  say "RIG FAILURE: $*"
  if mountpoint -q /results; then
    echo "$*" >> /results/rig-error
  fi
  halt_vm
}

while read -r ko; do
  [ -n "$ko" ] || continue
  insmod "/modules/$ko" || die "insmod $ko failed"
done < /modules/order
say "modules loaded"

NINEP=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o "$NINEP" results /results || die "cannot mount the results share"
[ -r /results/job/config ] || die "no job/config in the results share"
# Sets OUT (host path of the results folder), RW_DIRS (extra writable
# shares, tags rw0, rw1, ... mounted at these host paths) and RO_DIRS (host
# folders under /tmp, /run or /dev/shm, which the guest's tmpfs would hide).
. /results/job/config

mount -t 9p -o "$NINEP,ro,cache=loose" hostroot /host || die "cannot mount the host root"
# The host's /tmp and /run stay reachable here, under the fresh tmpfs ones.
mkdir -p /orig
mount --bind /host /orig || die "cannot bind the host root"
mount -t proc proc /host/proc || die "cannot mount /proc"
mount -t sysfs sysfs /host/sys || die "cannot mount /sys"
mount -t devtmpfs devtmpfs /host/dev || die "cannot mount /dev"
mkdir -p /host/dev/shm /host/dev/pts
# What udev would add: bash's <(...) needs /dev/fd.
ln -sf /proc/self/fd /host/dev/fd
ln -sf /proc/self/fd/0 /host/dev/stdin
ln -sf /proc/self/fd/1 /host/dev/stdout
ln -sf /proc/self/fd/2 /host/dev/stderr
mount -t tmpfs -o mode=1777,nosuid,nodev shm /host/dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /host/dev/pts
mount -t tmpfs -o mode=1777 tmp /host/tmp || die "cannot mount /tmp"
mount -t tmpfs -o mode=755 run /host/run || die "cannot mount /run"
mount -t debugfs debugfs /host/sys/kernel/debug 2>/dev/null

# Host folders hidden by those (a build folder in /tmp) come back read-only.
for dir in $RO_DIRS; do
  mkdir -p "/host$dir" 2>/dev/null
  mount --bind "/orig$dir" "/host$dir" || die "cannot bind $dir"
done
# The results folder (and any extra writable folder) appears at the same
# path as on the host; under /tmp or /run the path is created on the tmpfs.
mkdir -p "/host$OUT" 2>/dev/null
mount --bind /results "/host$OUT" || die "cannot bind the results share at $OUT"
i=0
for dir in $RW_DIRS; do
  mkdir -p "/host$dir" 2>/dev/null
  mount -t 9p -o "$NINEP" "rw$i" "/host$dir" || die "cannot mount rw$i at $dir"
  i=$((i + 1))
done

say "shares mounted; starting job/guest-run.sh"
chroot /host /bin/bash "$OUT/job/guest-run.sh" "$OUT" \
  || say "guest-run.sh exited $?"
halt_vm

#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# Smoke test of the VM rig (runs in the guest, with --module): the module is
# loaded, /dev/regcache is a character device every user may open, and an
# unprivileged open and close leave the kernel log clean.  run-in-vm.sh then
# unloads the module and fails the run if that, or the log, goes wrong.
set -euo pipefail
grep -w '^regcache' /proc/modules || { echo "FAIL: module not loaded"; exit 1; }
[[ -c /dev/regcache ]] || { echo "FAIL: no /dev/regcache"; exit 1; }
mode=$(stat -c %a /dev/regcache)
[[ $mode == 666 ]] || { echo "FAIL: /dev/regcache mode $mode, not 666"; exit 1; }
"$(dirname "$0")/../as-user.sh" 65534 sh -c 'exec 3<>/dev/regcache && exec 3>&-' ||
  { echo "FAIL: nobody cannot open /dev/regcache"; exit 1; }
echo "PASS: /dev/regcache (mode $mode) opens as nobody"

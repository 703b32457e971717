#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# The ODP suite, in the qemu rig (as root in the guest): raises the veth
# pair's MTU to 9000 so that rxe0's port MTU, and so the tests' path MTU, is
# 4096 (one page per packet: rxe's ODP is correct only for page-aligned
# copies of at most a page), then runs the given GoogleTest binaries with
# run-guest-tests.sh. On a kernel whose rxe has no ODP every test skips with
# the reason, and the suite exits 77 (skipped), never 0.
#
# usage: odp-suite.sh BIN...
set -euo pipefail
(($#)) || { echo "usage: odp-suite.sh BIN..." >&2; exit 2; }
[[ ${REGCACHE_VM:-} == 1 ]] || { echo "odp-suite.sh: runs in the qemu rig only (it changes the veth's MTU)" >&2; exit 2; }
ip link set va mtu 9000
ip link set vb mtu 9000
mtu=""
for _ in $(seq 100); do
  mtu=$(ibv_devinfo -d rxe0 | awk '/active_mtu/ { print $2; exit }')
  [[ $mtu == 4096 ]] && break
  sleep 0.05
done
echo "== veth MTU 9000; rxe0 active_mtu $mtu"
exec "$(dirname "$0")/run-guest-tests.sh" --skip-if-none-ran "$@"

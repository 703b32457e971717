#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# Smoke test of the VM rig (runs in the guest): rxe0 exists and its port is
# ACTIVE, with the IPv4 GID of 192.168.77.1 at index 1.
set -euo pipefail
out=$(ibv_devinfo -v -d rxe0)
echo "$out" | grep -E 'hca_id|state:|link_layer|GID\[ *[01]\]'
grep -q 'state:.*PORT_ACTIVE' <<<"$out" || { echo "FAIL: rxe0 port not ACTIVE"; exit 1; }
grep -q 'GID\[ *1\]:.*192\.168\.77\.1' <<<"$out" ||
  { echo "FAIL: GID 1 is not 192.168.77.1"; exit 1; }
echo "PASS: rxe0 PORT_ACTIVE"

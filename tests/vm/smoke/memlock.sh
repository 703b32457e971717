#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# Smoke test of the VM rig (runs in the guest, as root): ibv_reg_mr honours
# RLIMIT_MEMLOCK for an unprivileged user, as it does on a real host, so the
# cache's memlock handling can be tested here.  Uses tests/vm/as-user.sh.
set -euo pipefail
here=$(dirname "$0")
# shellcheck source=tests/vm/smoke/lib.sh
source "$here/lib.sh"
as_nobody=("$here/../as-user.sh" --memlock 65536 65534)

echo "== nobody, memlock 64 KiB, 4 KiB buffers: must work"
pingpong_pair "${as_nobody[@]}" -- -n 5 -s 4096

echo "== nobody, memlock 64 KiB, 256 KiB buffer: ibv_reg_mr must fail"
if "${as_nobody[@]}" timeout 60 ibv_rc_pingpong -d rxe0 -g 1 -s 262144 -p 18600 \
     > /tmp/pp-big 2>&1; then
  cat /tmp/pp-big; echo "FAIL: registered 256 KiB under a 64 KiB memlock limit"; exit 1
fi
cat /tmp/pp-big
grep -q "Couldn't register MR" /tmp/pp-big ||
  { echo "FAIL: failed, but not in ibv_reg_mr"; exit 1; }

echo "== nobody, memlock 512 KiB, 256 KiB buffers: must work"
pingpong_pair "$here/../as-user.sh" --memlock 524288 65534 -- -n 5 -s 262144

echo "== root (CAP_IPC_LOCK), memlock 64 KiB, 256 KiB buffers: must work"
pingpong_pair prlimit --memlock=65536:65536 -- -n 5 -s 262144
echo "PASS: RLIMIT_MEMLOCK is enforced for users without CAP_IPC_LOCK"

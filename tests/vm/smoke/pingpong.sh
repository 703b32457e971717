#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# Smoke test of the VM rig (runs in the guest): real RC traffic on rxe0, a
# ibv_rc_pingpong server and client talking through 192.168.77.1 (GID 1).
# usage: pingpong.sh [WRAPPER...]   e.g. pingpong.sh as-user.sh 65534
# WRAPPER, if given, runs both ends (e.g. as an unprivileged user).
set -euo pipefail
# shellcheck source=tests/vm/smoke/lib.sh
source "$(dirname "$0")/lib.sh"
pingpong_pair "$@" -- -n 100 -s 4096
echo "PASS: ibv_rc_pingpong over rxe0"

#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# Runs CMD as an unprivileged user, for tests of what a normal user meets:
# RLIMIT_MEMLOCK on ibv_reg_mr (root has CAP_IPC_LOCK and is never limited),
# permissions on /dev/regcache.  Meant for the VM (run-in-vm.sh runs commands
# as root); it needs root to switch users.
#
# usage: as-user.sh [--memlock BYTES|unlimited] UID[:GID] CMD [ARGS...]
#   --memlock   the RLIMIT_MEMLOCK (soft and hard) CMD starts with; default:
#               whatever this shell has
#   UID[:GID]   numeric ids, e.g. 65534 (nobody); GID defaults to UID
# The user has no supplementary groups, no capabilities and an empty bounding
# set; HOME is /tmp.  Example, in the guest:
#   tests/vm/as-user.sh --memlock 65536 65534 ibv_rc_pingpong -d rxe0 -g 1 -s 4096
set -euo pipefail

memlock=""
if [[ ${1:-} == --memlock ]]; then
  memlock=${2:?--memlock needs a size in bytes}
  shift 2
elif [[ ${1:-} == --memlock=* ]]; then
  memlock=${1#*=}
  shift
fi
if (($# < 2)); then
  sed -n 's/^# \{0,1\}//; /^usage:/,/^set /p' "$0" | sed '$d' >&2
  exit 2
fi
ids=$1
shift
uid=${ids%%:*}
gid=${ids#*:}
[[ $ids == *:* ]] || gid=$uid
[[ $uid =~ ^[0-9]+$ && $gid =~ ^[0-9]+$ ]] || { echo "as-user: UID[:GID] must be numeric" >&2; exit 2; }
((EUID == 0)) || { echo "as-user: must run as root" >&2; exit 2; }

limit=()
[[ -z $memlock ]] || limit=(prlimit "--memlock=$memlock:$memlock" --)
exec "${limit[@]}" env HOME=/tmp \
  setpriv --reuid="$uid" --regid="$gid" --clear-groups \
          --inh-caps=-all --bounding-set=-all -- "$@"

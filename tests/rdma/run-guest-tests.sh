#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# Runs several GoogleTest binaries one after the other (in the qemu guest:
# one VM boot for the group instead of one per binary), prints each one's
# output and a summary line per binary, and fails if any binary failed.
#
# usage: run-guest-tests.sh [--env NAME=VALUE]... [--known-bug BIN]... BIN...
#   --env NAME=VALUE  export this for every binary (e.g. FI_MR_CACHE_MAX_COUNT=0)
#   --known-bug BIN   also run BIN's DISABLED_ tests (reproducers of known
#                     bugs, named in the report); their result is reported
#                     but does not decide the exit status
#   --timeout SEC     per binary (default 300)
#   --skip-if-none-ran  exit 77 (skipped) when every binary passed without
#                     running a test, all of them skipped (a suite the
#                     kernel or device has no use for), never 0
# Prints, per binary: "== NAME: exit S; P passed, F failed, K skipped (T s)",
# and in the summary every line a test printed that starts with "KNOWN
# KERNEL DEFECT" (a known defect a test reproduced, by name).
set -uo pipefail

per_binary_timeout=300
skip_if_none_ran=0
binaries=()
known_bugs=()
while (($#)); do
  case $1 in
    --env) export "${2:?--env needs NAME=VALUE}"; shift 2 ;;
    --known-bug) known_bugs+=("${2:?--known-bug needs a binary}"); shift 2 ;;
    --timeout) per_binary_timeout=${2:?--timeout needs seconds}; shift 2 ;;
    --skip-if-none-ran) skip_if_none_ran=1; shift ;;
    -h|--help) sed -n '3,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) binaries+=("$1"); shift ;;
  esac
done
((${#binaries[@]})) || { echo "run-guest-tests: no binaries" >&2; exit 2; }

# What this run is on, for the log.
echo "== kernel $(uname -r); devices: $(ls /sys/class/infiniband 2>/dev/null | tr '\n' ' ')"
[[ -r /sys/class/infiniband/rxe0/ports/1/gids/1 ]] &&
  echo "== rxe0 GID[1] $(cat /sys/class/infiniband/rxe0/ports/1/gids/1)"
if [[ -e /dev/regcache ]]; then
  echo "== /dev/regcache present; ring_entries $(cat /sys/module/regcache/parameters/ring_entries 2>/dev/null)," \
       "max_ranges $(cat /sys/module/regcache/parameters/max_ranges 2>/dev/null)"
else
  echo "== /dev/regcache absent (kmod cases skip)"
fi

# count WORD FILE: N from gtest's "[  WORD  ] N test(s)" summary line.
count() {
  local n
  n=$(grep -E "^\[ +$1 +\] [0-9]+ tests?[,.]" "$2" | tail -n1 |
      sed -E 's/^\[[^]]*\] ([0-9]+).*/\1/')
  echo "${n:-0}"
}

run_one() {   # run_one LOGFILE BIN [ARGS...]; sets last_status
  local log=$1; shift
  local start end
  start=$(date +%s.%N)
  timeout --kill-after=10 "$per_binary_timeout" "$@" > "$log" 2>&1
  last_status=$?
  end=$(date +%s.%N)
  cat "$log"
  last_seconds=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.1f", e - s }')
}

workdir=$(mktemp -d "${TMPDIR:-/tmp}/guest-tests.XXXXXX")
trap 'rm -rf "$workdir"' EXIT
summary=()
overall=0
for bin in "${binaries[@]}"; do
  name=$(basename "$bin")
  echo
  echo "######## $name"
  run_one "$workdir/$name.log" "$bin"
  line="== $name: exit $last_status; $(count PASSED "$workdir/$name.log") passed, \
$(count FAILED "$workdir/$name.log") failed, $(count SKIPPED "$workdir/$name.log") skipped \
($last_seconds s)"
  ((last_status == 124 || last_status == 137)) && line+=" TIMEOUT after ${per_binary_timeout} s"
  echo "$line"
  summary+=("$line")
  while read -r defect; do
    summary+=("   $defect")
  done < <(grep -o 'KNOWN KERNEL DEFECT.*' "$workdir/$name.log" | sort -u)
  ran=$(($(count PASSED "$workdir/$name.log") + $(count FAILED "$workdir/$name.log")))
  total_ran=$((${total_ran:-0} + ran))
  ((last_status == 0)) || overall=1
done

for bin in "${known_bugs[@]}"; do
  name=$(basename "$bin")
  echo
  echo "######## $name: known-bug reproducers (DISABLED_ tests; do not decide the verdict)"
  run_one "$workdir/$name.bugs.log" "$bin" --gtest_also_run_disabled_tests \
    --gtest_filter='*DISABLED_*'
  if ((last_status == 0)); then
    line="== $name known bugs: the reproducers PASS now: the bug looks fixed, enable them"
  else
    line="== $name known bugs: $(count FAILED "$workdir/$name.bugs.log") reproducer(s) still fail, as expected until fixed"
  fi
  echo "$line"
  summary+=("$line")
done

echo
echo "######## summary"
printf '%s\n' "${summary[@]}"
if ((overall == 0 && skip_if_none_ran && total_ran == 0)); then
  echo "== every test skipped (see the reasons above): reported as skipped, not passed"
  exit 77
fi
exit "$overall"

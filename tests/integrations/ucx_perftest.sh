#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# Unmodified ucx_perftest (ucx-utils), two processes over rxe0, tag_bw and
# ucp_put_bw at 1 MiB, in three set-ups measured in this one run:
#   default         UCX's own registration cache and memory hooks
#   direct          UCX_IB_REG_METHODS=direct UCX_RCACHE_ENABLE=n: UCX
#                   registers per message, no cache
#   direct+preload  the same with libregcache-preload.so
# default and direct run with the interposer in counting mode
# (REGCACHE_PRELOAD=0: every call passes through, counted), so the three
# are counted the same way. Checks, per test: every run passes; with the
# preload, direct mode makes a small multiple of the registrations UCX's
# own cache makes, far fewer than direct; the module counts as many
# watched ranges as the caches made registrations; for tag_bw, the median
# post time ("overhead" 50%ile) with the preload is under half of direct's
# (ucp_put_bw's overhead includes the completion: reported only).
# Prints a table (docs/integrations.md shows one) and writes OUT/table.md.
# Usage (in the VM): ucx_perftest.sh BUILD OUTDIR [ITERATIONS]
set -u
BUILD=$1
OUT=${2:-/tmp/ucx_perftest}
ITERS=${3:-100}
source "$(dirname "$0")/lib.sh"
need ucx_perftest
[[ -e /dev/regcache ]] || skip "/dev/regcache is missing (the test needs the module)"

# Fields of the interposer's exit line, summed over server and client.
stat_sum() {  # FILE... -> "reg_calls registrations kernel_watches"
  awk '/^regcache-preload: pid [0-9]+ exit:/ {
         for (i = 1; i <= NF; ++i) {
           if ($i == "calls") calls += $(i + 1)
           if ($i == "registrations") regs += $(i + 1)
           if ($i == "watched") watched += $(i + 1)
         }
       } END { printf "%d %d %d\n", calls, regs, watched }' "$@"
}
# "Final:" line of ucx_perftest: iterations, overhead 50%ile, average,
# overall, bandwidth average, overall, ...
final_field() { awk -v f="$2" '$1 == "Final:" { print $f }' "$1"; }

table=$OUT/table.md
mkdir -p "$OUT"
{
  echo "| test | set-up | median post (us) | bandwidth (MB/s) | ibv_reg_mr calls | registrations made | module: ranges watched |"
  echo "| --- | --- | --- | --- | --- | --- | --- |"
} >"$table"

for test in tag_bw ucp_put_bw; do
  declare -A post=() calls=() regs=() watched=()
  for setup in default direct direct+preload; do
    envs=("${UCX_ENV[@]}" LD_PRELOAD="$PRELOAD_LIB" REGCACHE_STATS=1)
    case $setup in
      default) envs+=(REGCACHE_PRELOAD=0) ;;
      direct) envs+=("${UCX_DIRECT[@]}" REGCACHE_PRELOAD=0) ;;
      direct+preload) envs+=("${UCX_DIRECT[@]}") ;;
    esac
    dir=$OUT/$test-$setup
    args=(-t "$test" -s 1048576 -n "$ITERS" -w 10)
    before=$(rxe_sent_pkts)
    if ! run_pair "$dir" 180 -- env "${envs[@]}" ucx_perftest "${args[@]}" \
        -- env "${envs[@]}" ucx_perftest "$SERVER_ADDR" "${args[@]}"; then
      fail "$test $setup: ucx_perftest failed ($(cat "$dir/status"))"
      tail -5 "$dir"/*.err
      continue
    fi
    after=$(rxe_sent_pkts)
    ((after > before)) || fail "$test $setup: rxe0 carried no packets"
    read -r c r w < <(stat_sum "$dir/server.err" "$dir/client.err")
    post[$setup]=$(final_field "$dir/client.out" 3)
    bw=$(final_field "$dir/client.out" 7)
    calls[$setup]=$c
    # Without caching every call is a registration.
    if [[ $setup == direct+preload ]]; then regs[$setup]=$r; watched[$setup]=$w
    else regs[$setup]=$c; watched[$setup]="-"; fi
    echo "| $test | $setup | ${post[$setup]} | $bw | $c | ${regs[$setup]} | ${watched[$setup]} |" >>"$table"
  done
  [[ -n ${post[direct+preload]:-} && -n ${post[direct]:-} && -n ${post[default]:-} ]] || continue
  p=${regs[direct+preload]} d=${regs[direct]} u=${regs[default]}
  if ((p <= 2 * u + 2 && 4 * p <= d)); then
    pass "$test: registrations with the preload $p, UCX's own cache $u, direct $d"
  else
    fail "$test: registrations with the preload $p, UCX's own cache $u, direct $d"
  fi
  if [[ ${watched[direct+preload]} == "$p" ]]; then
    pass "$test: the module watched $p ranges, one per registration"
  else
    fail "$test: the module watched ${watched[direct+preload]} ranges for $p registrations"
  fi
  # ucp_put_bw's "overhead" is the time per iteration including the wait
  # for completion, not the post: only tag_bw's says what registering costs.
  if [[ $test != tag_bw ]]; then
    echo "$test: median overhead ${post[direct+preload]} us with the preload, ${post[direct]} us direct, ${post[default]} us with UCX's cache (not a post time)"
  elif awk -v a="${post[direct+preload]}" -v b="${post[direct]}" 'BEGIN { exit !(2 * a < b) }'; then
    pass "$test: median post ${post[direct+preload]} us with the preload, ${post[direct]} us direct, ${post[default]} us with UCX's cache"
  else
    fail "$test: median post ${post[direct+preload]} us with the preload is not under half of direct's ${post[direct]} us"
  fi
  unset post calls regs watched
done
cat "$table"
finish ucx_perftest

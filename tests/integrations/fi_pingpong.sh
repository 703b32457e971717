#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# Unmodified fi_pingpong (libfabric-bin) over verbs;ofi_rxm on rxe0 with
# libregcache-fi.so in FI_PROVIDER_PATH, in the VM with the module loaded.
# Checks: both sides pass; libfabric's own log says it uses an imported
# monitor and that it is ours; the plug-in's counters show libfabric's MR
# cache subscribed through it; rxe0 carried the traffic.
# Usage (in the VM): fi_pingpong.sh BUILD OUTDIR
set -u
BUILD=$1
OUT=${2:-/tmp/fi_pingpong}
source "$(dirname "$0")/lib.sh"
need fi_pingpong
[[ -e /dev/regcache ]] || skip "/dev/regcache is missing (the test needs the module)"

env_fi=("${FI_ENV[@]}" FI_PROVIDER_PATH="$FI_PLUGIN_DIR" FI_LOG_LEVEL=info
        FI_LOG_SUBSYS=mr REGCACHE_STATS=1)
args=(-p "verbs;ofi_rxm" -e rdm -S 65536 -I 100)
before=$(rxe_sent_pkts)
start=$(date +%s.%N)
if run_pair "$OUT" 120 -- env "${env_fi[@]}" fi_pingpong "${args[@]}" \
    -- env "${env_fi[@]}" fi_pingpong "${args[@]}" "$SERVER_ADDR"; then
  pass "fi_pingpong server and client passed ($(cat "$OUT/status"))"
else
  fail "fi_pingpong: $(cat "$OUT/status")"
  tail -5 "$OUT"/*.err
fi
end=$(date +%s.%N)
after=$(rxe_sent_pkts)
cat "$OUT/client.out"

for side in server client; do
  err=$OUT/$side.err
  if grep -q "setting imported memory monitor as default" "$err" &&
     grep -q "regcache-fi.*imported the regcache memory monitor" "$err"; then
    pass "$side: libfabric set the regcache monitor as its default"
  else
    fail "$side: libfabric's log does not show the imported regcache monitor"
  fi
  line=$(grep "^regcache-fi: pid" "$err" | tail -1)
  subs=$(sed -n 's/.*subscribe \([0-9]*\) .*/\1/p' <<<"$line")
  if [[ -n $subs && $subs -ge 1 ]]; then
    pass "$side: libfabric's MR cache subscribed $subs range(s) through the plug-in: $line"
  else
    fail "$side: no subscription reached the plug-in ('$line')"
  fi
  grep "MR cache stats" "$err" | sed "s/^/$side: /"
done
if ((after > before)); then
  pass "rxe0 sent $((after - before)) packets"
else
  fail "rxe0's sent_pkts did not move ($before -> $after)"
fi
awk -v s="$start" -v e="$end" 'BEGIN { printf "fi_pingpong with the plug-in took %.1f s\n", e - s }'
finish fi_pingpong

#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# Guest test of regcache-pingpong's odp mode on a kernel whose rxe has
# on-demand paging (ctest vm_pingpong_odp-7, run by tests/vm/run-in-vm.sh):
#  1. at the rig's path MTU 4096 the odp mode runs briefly in every workload
#     (reuse, rotate-8, rotate-64, realloc), checking every word of every
#     message: it must measure every point and see no data error, and the
#     library's warning about rxe's known ODP defect is not repeated per
#     cache;
#  2. at path MTU 1024 (the veth's MTU lowered to 1500), where that defect
#     would misplace data, the tool must refuse the odp mode with a note
#     naming the defect, and measure nothing.
# Where rxe0 has no ODP at all it says so and exits 77 (skipped).
# usage: vm-odp-smoke.sh PATH/TO/regcache-pingpong
set -euo pipefail
bin=${1:?usage: vm-odp-smoke.sh PATH/TO/regcache-pingpong}
[[ ${REGCACHE_VM:-} == 1 ]] || { echo "vm-odp-smoke.sh: runs in the qemu rig only (it changes the veth's MTU)" >&2; exit 2; }
out=${REGCACHE_VM_OUT:-$(mktemp -d)}

active_mtu() { ibv_devinfo -d rxe0 | awk '/active_mtu/ { print $2; exit }'; }
# Waits (up to 5 s) until rxe0's active_mtu is $1.
wait_mtu() {
  local mtu=""
  for _ in $(seq 100); do
    mtu=$(active_mtu)
    [[ $mtu == "$1" ]] && return 0
    sleep 0.05
  done
  echo "FAIL: rxe0 active_mtu is $mtu, not $1"
  exit 1
}

wait_mtu 4096
status=0
"$bin" --quick --full-check --modes odp,register-per-message,register-once \
  --json "$out/odp.json" 2> "$out/odp.stderr" || status=$?
cat "$out/odp.stderr" >&2
if grep -q 'odp_caps = 0' "$out/odp.json"; then
  echo "SKIP: rxe0 has no on-demand paging on $(uname -r)"
  exit 77
fi
((status == 0)) || { echo "FAIL: regcache-pingpong --modes odp,... exited with status $status"; exit 1; }
warnings=$(grep -c 'regcache: warning' "$out/odp.stderr" || true)
((warnings == 0)) || { echo "FAIL: $warnings library warnings on stderr"; exit 1; }

ip link set va mtu 1500
ip link set vb mtu 1500
wait_mtu 1024
status=0
"$bin" --quick --modes odp --workloads reuse,realloc --json "$out/refused.json" || status=$?
((status == 0)) || { echo "FAIL: regcache-pingpong at MTU 1024 exited with status $status"; exit 1; }

python3 - "$out/odp.json" "$out/refused.json" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
odp = [p for p in run["points"] if p["mode"] == "odp"]
workloads = {"reuse", "rotate-8", "rotate-64", "realloc"}
if {p["workload"] for p in odp} != workloads:
    sys.exit(f"FAIL: odp ran in {sorted({p['workload'] for p in odp})}")
not_ok = [p for p in odp if p["status"] != "ok"]
if not_ok:
    sys.exit(f"FAIL: odp not measured: {not_ok[0]['workload']} "
             f"{not_ok[0]['size']}: {not_ok[0]['note']}")
bad = [p for p in run["points"] if p["status"] == "ok" and p["data_errors"]]
if bad:
    sys.exit(f"FAIL: data errors: {bad[0]['workload']} {bad[0]['mode']} "
             f"{bad[0]['size']}: {bad[0]['first_error']}")
checked = sum(p["messages_checked"] for p in odp)
if "rxe-odp-page-offset" in run["odp"] and "despite" not in run["odp"]:
    sys.exit(f"FAIL: odp note: {run['odp']}")

refused = json.load(open(sys.argv[2]))
points = refused["points"]
if any(p["status"] == "ok" for p in points):
    sys.exit("FAIL: at path MTU 1024 the odp mode was measured")
notes = {p["note"] for p in points}
if not all("refused on rxe0" in n and "rxe-odp-page-offset" in n and
           "path MTU 1024" in n for n in notes):
    sys.exit(f"FAIL: the refusal does not say why: {notes}")
print(f"PASS: odp at path MTU 4096: {len(odp)} points in every workload, "
      f"{checked} messages checked word by word, no data errors "
      f"({run['odp'] or 'no known defect'}); at path MTU 1024 refused: "
      f"{notes.pop()}")
PY

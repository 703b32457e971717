#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# Guest smoke test of regcache-pingpong (ctest vm_pingpong_quick, run by
# tests/vm/run-in-vm.sh with the module loaded): --quick (2 sizes, a few
# round trips, every mode and workload) must exit 0 (no correctness
# failure) and the unsafe control (regcache-none in realloc) must have
# shown data errors, which proves the check can see a stale registration.
# usage: vm-smoke.sh PATH/TO/regcache-pingpong [extra options]
set -euo pipefail
bin=${1:?usage: vm-smoke.sh PATH/TO/regcache-pingpong}
shift
out=${REGCACHE_VM_OUT:-$(mktemp -d)}
status=0
"$bin" --quick --json "$out/pingpong.json" --svg "$out/pingpong.svg" "$@" || status=$?
if ((status != 0)); then
  echo "FAIL: regcache-pingpong --quick exited with status $status"
  exit 1
fi
python3 - "$out/pingpong.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
points = [p for p in report["points"] if p["status"] == "ok"]
control = [p for p in points
           if p["mode"] == "regcache-none" and p["workload"] == "realloc"]
if not control:
    sys.exit("FAIL: the unsafe control (regcache-none, realloc) did not run")
bad = sum(p["data_errors"] for p in control)
reused = sum(p["same_address"] for p in control)
if bad == 0:
    sys.exit("FAIL: the unsafe control showed no data errors "
             f"({reused} buffers came back at the same address)")
modes = sorted({p["mode"] for p in points})
for needed in ("regcache-kmod", "regcache-uffd", "register-per-message",
               "register-once", "regcache-pool"):
    if needed not in modes:
        sys.exit(f"FAIL: mode {needed} did not run (ran: {', '.join(modes)})")
print(f"PASS: regcache-pingpong --quick: {len(points)} points, modes "
      f"{', '.join(modes)}; the unsafe control showed {bad} bad messages "
      f"({reused} reallocations at the same address)")
PY

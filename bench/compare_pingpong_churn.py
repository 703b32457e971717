#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""Verdicts of the main job (regcache-pingpong) for what a cache costs when it
cannot help, from its JSON (results/pingpong.json; docs/pingpong.md).

Per point, throughput relative to the peer measured in the same run
(bandwidth = size / median one-way latency, so a ratio of bandwidths is the
inverse ratio of median latencies):

  realloc, rotate-64   regcache-kmod and regcache-uffd against
                       register-per-message: at least 0.97x
  reuse, rotate-8      regcache-kmod and regcache-uffd against register-once:
                       at least 0.95x (within 5 %)
  every point          no data errors in a mode with invalidation

Given several JSON files (runs of the same plan), a point's ratio is the
median of its per-run ratios, and every run's ratio is printed next to it.

For the realloc and rotate-64 points it then prints where a cache's time
went, per message against register-per-message in the same run (medians
over the runs, microseconds): the median one-way latency, the time in gets
and puts (reg_us_per_message), realloc's munmap + mmap
(remap_us_per_message) and the CPU of the cache's own threads
(other_threads_us_per_message); "-" where the JSON lacks a field (a tool
older than it).

Usage: compare_pingpong_churn.py [--strict] PINGPONG.json [MORE.json ...]
Exit status: 0; with --strict 1 when a target fails or no point could be
compared; 2 when a file cannot be read or is not the tool's JSON.
"""

import argparse
import json
import statistics
import sys

CHURN = {"realloc": ("register-per-message", 0.97),
         "rotate-64": ("register-per-message", 0.97)}
HITS = {"reuse": ("register-once", 0.95), "rotate-8": ("register-once", 0.95)}
CACHES = ("regcache-kmod", "regcache-uffd")
# Per-message fields of a point, and their column names in the breakdown.
BREAKDOWN = {"latency_us": "latency", "reg_us_per_message": "reg",
             "remap_us_per_message": "remap",
             "other_threads_us_per_message": "threads"}
SAFE_MODES = ("register-per-message", "register-once", "regcache-kmod",
              "regcache-uffd", "odp")


def size_label(n):
    for shift, unit in ((20, "M"), (10, "K")):
        if n >= (1 << shift) and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


def not_pingpong_json(run):
    """Why `run` is not a regcache-pingpong --json document, or None."""
    if not isinstance(run, dict) or not isinstance(run.get("points"), list):
        return "no \"points\" list"
    for p in run["points"]:
        if not isinstance(p, dict):
            return "a point that is not an object"
        for key, kind, what in (("workload", str, "a string"),
                                ("mode", str, "a string"),
                                ("size", int, "an integer")):
            if not isinstance(p.get(key), kind) or isinstance(p[key], bool):
                return f"a point whose \"{key}\" is not {what}"
        for key in ("bandwidth_mbs", "messages_checked", "data_errors"):
            v = p.get(key, 0)
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                return f"a point whose \"{key}\" is not a number"
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--strict", action="store_true")
    args = parser.parse_args()
    runs = []
    for path in args.files:
        try:
            with open(path) as f:
                run = json.load(f)
        except (OSError, ValueError) as e:
            print(f"compare_pingpong_churn: cannot read {path}: {e}",
                  file=sys.stderr)
            return 2
        why = not_pingpong_json(run)
        if why:
            print(f"compare_pingpong_churn: {path} is not regcache-pingpong's "
                  f"JSON: {why}", file=sys.stderr)
            return 2
        runs.append(run)

    ratios = {}  # (workload, size, mode) -> [ratio per run]
    added = {}  # (workload, size, mode) -> {field: [cache - peer per run]}
    errors, checked = 0, 0
    bad = []
    for run in runs:
        points = {(p["workload"], p["mode"], p["size"]): p
                  for p in run["points"]}
        for (workload, mode, size), p in points.items():
            if p.get("status") == "ok" and mode in SAFE_MODES:
                checked += p.get("messages_checked", 0)
                errors += p.get("data_errors", 0)
                if p.get("data_errors", 0):
                    bad.append(f"{workload} {size_label(size)} {mode}")
            target = CHURN.get(workload) or HITS.get(workload)
            if target is None or mode not in CACHES:
                continue
            peer = points.get((workload, target[0], size))
            if (not p.get("bandwidth_mbs") or peer is None or
                    not peer.get("bandwidth_mbs")):
                continue
            ratios.setdefault((workload, size, mode), []).append(
                p["bandwidth_mbs"] / peer["bandwidth_mbs"])
            if workload in CHURN:
                fields = added.setdefault((workload, size, mode), {})
                for field in BREAKDOWN:
                    a, b = p.get(field), peer.get(field)
                    if (isinstance(a, (int, float)) and
                            isinstance(b, (int, float))):
                        fields.setdefault(field, []).append(a - b)

    failed = []
    print(f"{'workload':10} {'size':>5} {'mode':14} {'peer':21} "
          f"{'ratio':>6} {'target':>7} verdict  runs")
    order = list(CHURN) + list(HITS)
    for key in sorted(ratios, key=lambda k: (order.index(k[0]), k[1], k[2])):
        workload, size, mode = key
        peer, bound = (CHURN.get(workload) or HITS.get(workload))
        r = statistics.median(ratios[key])
        verdict = "PASS" if r >= bound else "FAIL"
        if verdict == "FAIL":
            failed.append(f"{workload} {size_label(size)} {mode}")
        each = " ".join(f"{x:.2f}" for x in ratios[key])
        print(f"{workload:10} {size_label(size):>5} {mode:14} {peer:21} "
              f"{r:6.3f} {'>= ' + format(bound, '.2f'):>7} {verdict:7}  {each}")
    if added:
        print("\nadded per message against register-per-message (us, "
              "median over the runs): latency (median one way), reg (gets "
              "and puts), remap (munmap + mmap), threads (the cache's own)")
        print(f"{'workload':10} {'size':>5} {'mode':14} "
              + " ".join(f"{BREAKDOWN[f]:>9}" for f in BREAKDOWN))
        for key in sorted(added, key=lambda k: (order.index(k[0]), k[1], k[2])):
            workload, size, mode = key
            cells = []
            for field in BREAKDOWN:
                values = added[key].get(field)
                cells.append(f"{statistics.median(values):+9.1f}" if values
                             else f"{'-':>9}")
            print(f"{workload:10} {size_label(size):>5} {mode:14} "
                  + " ".join(cells))
        print()
    print(f"data errors in modes with invalidation: {errors} of {checked} "
          f"messages checked" + (" (" + "; ".join(bad) + ")" if bad else ""))
    if errors:
        failed.append("data errors")
    if not ratios:
        # Nothing compared is not a pass: the runs lacked the cache modes or
        # their peers (e.g. --modes without per-message or once).
        failed.append("no point had regcache-kmod or regcache-uffd next to "
                      "its peer (register-per-message for realloc and "
                      "rotate-64, register-once for reuse and rotate-8)")
    print("FAILED: " + "; ".join(failed) if failed else
          "All targets that could be checked passed.")
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""Ratio table for hit_path_bench: regcache against UCX's ucs_rcache.

Reads Google Benchmark JSON (--benchmark_out_format=json) and prints, per
case, both sides' numbers, their ratio and PASS/FAIL against the targets in
docs/benchmarks.md. Single-thread cases compare CPU time per get+put
(robust on a shared machine; equal to real time on an idle one); threaded
cases compare aggregate items_per_second (real time). With
--benchmark_repetitions the median aggregate is used.

Usage: compare_ratios.py [--strict] hit_path.json
Exit status: 0, or 1 with --strict when a target fails or a case is
missing; 2 when the file cannot be read.
"""

import argparse
import json
import sys

_NS_PER_UNIT = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}

# (label, regcache case, ucx case, how, bound)
#   how "time": regcache time / ucx time must be <= bound
#   how "info": printed, no target
_SINGLE = [
    ("same 64 KiB buffer", "BM_HitSame/regcache", "BM_HitSame/ucx",
     "time", 1 / 4),
    ("random of 100", "BM_HitRandom/regcache/100", "BM_HitRandom/ucx/100",
     "info", None),
    ("random of 10 000", "BM_HitRandom/regcache/10000",
     "BM_HitRandom/ucx/10000", "time", 1 / 2),
    ("random of 1 000 000", "BM_HitRandom/regcache/1000000",
     "BM_HitRandom/ucx/1000000", "time", 1 / 3),
]

# (label, family prefix without the side, suffix after the side)
_THREADED = [
    ("same buffer", "BM_HitSameThreads", ""),
    ("random of 10 000", "BM_HitRandomThreads", "/10000"),
]
_SCALING_BOUND = 1.8  # regcache threads:2 / threads:1 throughput, at least
_VS_UCX_BOUND = 10.0  # regcache threads:2 / ucx threads:2 throughput, at least


def load_runs(path):
    """Maps run name to the run that represents it (median if repeated)."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    runs = {}
    medians = {}
    for bench in data.get("benchmarks", []):
        name = bench.get("run_name", bench["name"])
        if bench.get("run_type") == "aggregate":
            if bench.get("aggregate_name") == "median":
                medians[name] = bench
            continue
        runs.setdefault(name, bench)  # first repetition if no aggregate
    runs.update(medians)
    return data.get("context", {}), runs


def ns_per_op(run):
    return run["cpu_time"] * _NS_PER_UNIT[run.get("time_unit", "ns")]


def usable(run):
    return run is not None and not run.get("error_occurred", False)


def describe_missing(name, run):
    if run is None:
        return f"{name}: not in the file"
    return f"{name}: {run.get('error_message', 'error')}"


def fmt_time(run):
    return f"{ns_per_op(run):.1f} ns" if usable(run) else "-"


def fmt_rate(run):
    if not usable(run) or "items_per_second" not in run:
        return "-"
    return f"{run['items_per_second'] / 1e6:.1f} M/s"


def machine_warnings(runs):
    """Signs that the machine was shared during the run.

    A single-thread run whose real time exceeds its CPU time was preempted.
    A threads:2 run whose CPU time is not about twice its real time did not
    have its two threads on two CPUs at once; neither side's hit path ever
    sleeps (regcache takes no lock; UCX's read lock never waits without a
    writer and its spinlocks spin), so only preemption makes that happen,
    and the 2-thread rows then say nothing about scaling.
    """
    warnings = []
    for name, run in sorted(runs.items()):
        if not usable(run) or run.get("threads", 1) != 1:
            continue
        if run["real_time"] > 1.1 * run["cpu_time"]:
            warnings.append(f"{name}: real time {run['real_time']:.1f} > "
                            f"CPU time {run['cpu_time']:.1f}: preempted")
    for name, run in sorted(runs.items()):
        if not usable(run) or run.get("threads", 1) != 2:
            continue
        parallelism = run["cpu_time"] / run["real_time"]
        if parallelism < 1.8:
            warnings.append(f"{name}: CPU/real time {parallelism:.2f}, not "
                            f"~2: the threads did not run in parallel (busy "
                            f"machine?)")
    return warnings


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", help="hit_path_bench --benchmark_out file")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 if any target fails")
    args = parser.parse_args()

    try:
        context, runs = load_runs(args.json)
    except (OSError, ValueError, KeyError) as e:
        print(f"compare_ratios: cannot read {args.json}: {e}", file=sys.stderr)
        return 2

    rows = []  # (case, regcache, ucx, ratio, target, verdict)
    problems = []

    for label, ours, theirs, how, bound in _SINGLE:
        r, u = runs.get(ours), runs.get(theirs)
        ratio = target = "-"
        verdict = "info"
        if usable(r) and usable(u):
            value = ns_per_op(r) / ns_per_op(u)
            ratio = f"{value:.2f}x"
            if how == "time":
                target = f"<= {bound:.2f}x"
                verdict = "PASS" if value <= bound else "FAIL"
        else:
            if how == "time":
                target = f"<= {bound:.2f}x"
                verdict = "FAIL"
            for name, run in ((ours, r), (theirs, u)):
                if not usable(run):
                    problems.append(describe_missing(name, run))
        rows.append((f"{label} (time)", fmt_time(r), fmt_time(u), ratio,
                     target, verdict))

    for label, family, suffix in _THREADED:
        def run_of(side, threads):
            name = f"{family}/{side}{suffix}/real_time/threads:{threads}"
            run = runs.get(name)
            if not usable(run):
                problems.append(describe_missing(name, run))
            return run
        r1, r2 = run_of("regcache", 1), run_of("regcache", 2)
        u1, u2 = run_of("ucx", 1), run_of("ucx", 2)

        def rate(run):
            return run["items_per_second"] if usable(run) else None

        def scaling(one, two):
            if not (rate(one) and rate(two) is not None):
                return None, "-"
            value = rate(two) / rate(one)
            return value, f"{fmt_rate(one)} -> {fmt_rate(two)}"

        # regcache: 2 threads against 1 thread (UCX's shown for reference).
        value, ours_text = scaling(r1, r2)
        ucx_value, theirs_text = scaling(u1, u2)
        if ucx_value is not None:
            theirs_text += f" ({ucx_value:.2f}x)"
        rows.append((f"{label}, 1T -> 2T (rate)", ours_text, theirs_text,
                     "-" if value is None else f"{value:.2f}x",
                     f">= {_SCALING_BOUND:.1f}x",
                     "PASS" if value is not None and value >= _SCALING_BOUND
                     else "FAIL"))
        # 2 threads: regcache against ucx.
        ratio, verdict = "-", "FAIL"
        if rate(r2) is not None and rate(u2):
            value = rate(r2) / rate(u2)
            ratio = f"{value:.2f}x"
            verdict = "PASS" if value >= _VS_UCX_BOUND else "FAIL"
        rows.append((f"{label}, 2 threads (rate)", fmt_rate(r2),
                     fmt_rate(u2), ratio, f">= {_VS_UCX_BOUND:.0f}x",
                     verdict))

    header = ("case", "regcache", "ucx", "ratio", "target", "result")
    widths = [max(len(str(row[i])) for row in rows + [header])
              for i in range(len(header))]
    line = "  ".join("{:<%d}" % w for w in widths)
    print(f"hit_path_bench: {context.get('date', '?')} on "
          f"{context.get('num_cpus', '?')} CPUs, build "
          f"{context.get('regcache_build_type', '?')}")
    print(line.format(*header))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))
    for problem in problems:
        print(f"missing: {problem}")
    for warning in machine_warnings(runs):
        print(f"warning: {warning}")

    failed = [row for row in rows if row[5] == "FAIL"]
    print(f"{len(failed)} target(s) failed"
          if failed else "all targets met")
    return 1 if (failed and args.strict) else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""Ratio tables for the monitor-cost benchmarks (munmap_bench, miss_path_bench).

Reads Google Benchmark JSON and prints, with PASS/FAIL against the targets
of docs/benchmarks.md ("Monitor costs"):

  munmap:    per case the median time of one munmap(), the cost added over
             BM_Munmap/plain of the same run, that cost relative to plain,
             and for the kmod cases relative to the cost UCX's hooks add
             (BM_Munmap/ucx_hooks). Target: kmod's added cost at most 1/4 of
             UCX's. When the cases report `paired_added_ns` (each iteration
             also timed a control munmap), the verdict uses it: a case's
             paired cost less plain's, against ucx_hooks' paired cost less
             plain's, which the machine's drift between cases does not move.
             Otherwise it is taken from one run when it holds both, else
             each side relative to its own run's plain munmap, i.e.
             (kmod_added / plain)_guest / (ucx_added / plain)_host.
  miss path: per size the median of regcache_get+put (a miss) against the
             raw calls that miss makes, in its order (ibv_dereg_mr of the
             previous buffer, then ibv_reg_mr of the next), measured
             interleaved in one run (BM_RegDeregPaired; the plain
             ibv_reg_mr+ibv_dereg_mr pair and the separate BM_RegDereg runs
             are shown too). These cases force admission: the miss is kept.
             Targets: kmod at most 3 % more, uffd at most 5 %. Then where
             the time goes: inside the cache's registrar calls, and around
             them.
  uncached:  the adaptive admission's uncached get (a range that churns)
             against a raw ibv_reg_mr + ibv_dereg_mr, interleaved
             (BM_UncachedPaired), with the same targets; for information
             the same right after a process switch
             (BM_UncachedPairedSwitched).

Times are the per-operation medians the benchmarks report as counters
(`munmap_median_ns`, `iteration_median_ns`); with --benchmark_repetitions
the median over the repetitions is used. Runs without the counter fall back
to Google Benchmark's real_time.

Usage: compare_monitor_costs.py [--strict] [--munmap-host F] [--munmap-guest F]
                                [--miss-path F] [--miss-host F]
Exit status: 0; with --strict 1 when a target fails or a case it needs is
missing; 2 when a file cannot be read.
"""

import argparse
import json
import re
import sys

_NS_PER_UNIT = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
_SUFFIXES = ("/manual_time", "/real_time")

KMOD_VS_UCX_BOUND = 0.25  # kmod's added munmap cost / UCX hooks' added cost
# regcache miss (or uncached get) / raw reg+dereg - 1, per monitor
MISS_OVERHEAD_BOUND = {"kmod": 0.03, "uffd": 0.05}
MUNMAP_OTHERS = (0, 1000, 100000)
MISS_SIZES = ((4096, "4 KiB"), (1 << 20, "1 MiB"), (64 << 20, "64 MiB"))


def base_name(name):
    """The case name without Google Benchmark's /min_time:X and
    /manual_time or /real_time parts."""
    name = re.sub(r"/min_time:[^/]*", "", name)
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def load(path):
    """Returns (context, {case name: run}); the run is the median aggregate
    when repetitions were run, else the first run of that name."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    runs, medians = {}, {}
    for bench in data.get("benchmarks", []):
        name = base_name(bench.get("run_name", bench["name"]))
        if bench.get("run_type") == "aggregate":
            if bench.get("aggregate_name") == "median":
                medians[name] = bench
            continue
        # A skipped case has only error runs; keep the first, with its reason.
        if name not in runs or (runs[name].get("error_occurred") and
                                not bench.get("error_occurred")):
            runs[name] = bench
    for name, bench in medians.items():
        if not runs.get(name, {}).get("error_occurred"):
            runs[name] = bench
    return data.get("context", {}), runs


def usable(run):
    return run is not None and not run.get("error_occurred", False)


def op_ns(run, counter):
    """Median time of one operation in ns, or None."""
    if not usable(run):
        return None
    if counter in run:
        return float(run[counter])
    return run["real_time"] * _NS_PER_UNIT[run.get("time_unit", "ns")]


def paired_ns(run):
    """The case's munmap less the control munmap of the same iterations
    (median of the differences), in ns, or None."""
    if not usable(run) or "paired_added_ns" not in run:
        return None
    return float(run["paired_added_ns"])


def why_missing(name, run):
    if run is None:
        return f"{name}: not in the file"
    return f"{name}: {run.get('error_message', 'error')}"


def fmt_us(ns):
    return "-" if ns is None else f"{ns / 1e3:.2f} us"


def fmt_signed_us(ns):
    return "-" if ns is None else f"{ns / 1e3:+.2f} us"


def fmt_ratio(x):
    return "-" if x is None else f"{x:.2f}"


def fmt_pct(x):
    return "-" if x is None else f"{100 * x:+.1f} %"


def print_table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows)
              for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


def describe_context(label, context):
    keys = ("host_name", "num_cpus", "load_avg", "regcache_build_type",
            "ucm_mmap_hook_mode", "dev_regcache", "rdma_device")
    parts = []
    for key in keys:
        if key in context:
            value = context[key]
            if isinstance(value, list):
                value = "/".join(f"{v:.1f}" for v in value)
            parts.append(f"{key}={value}")
    print(f"[{label}] " + ", ".join(parts))


class Verdicts:
    def __init__(self):
        self.failed = []
        self.missing = []

    def check(self, label, value, bound):
        if value is None:
            return "n/a"
        if value <= bound:
            return "PASS"
        self.failed.append(label)
        return "FAIL"


def munmap_section(label, runs, host_runs, expect_kmod, verdicts):
    """Prints one munmap table. host_runs: the host's runs, for the ratio
    normalised to each run's own plain munmap (None when not given).
    expect_kmod: the kmod cases must have run (in the VM, not on the host,
    which has no /dev/regcache)."""
    plain = op_ns(runs.get("BM_Munmap/plain"), "munmap_median_ns")
    ucx = op_ns(runs.get("BM_Munmap/ucx_hooks"), "munmap_median_ns")
    ucx_added = None if plain is None or ucx is None else ucx - plain
    plain_paired = paired_ns(runs.get("BM_Munmap/plain"))
    ucx_paired = paired_ns(runs.get("BM_Munmap/ucx_hooks"))
    ucx_paired_added = (None if plain_paired is None or ucx_paired is None
                        else ucx_paired - plain_paired)
    host_ucx_rel = None
    if host_runs is not None:
        hp = op_ns(host_runs.get("BM_Munmap/plain"), "munmap_median_ns")
        hu = op_ns(host_runs.get("BM_Munmap/ucx_hooks"), "munmap_median_ns")
        if hp and hu is not None:
            host_ucx_rel = (hu - hp) / hp

    cases = ["BM_Munmap/plain"]
    cases += [f"BM_Munmap/kmod/{n}" for n in MUNMAP_OTHERS]
    cases += [f"BM_Munmap/uffd/{n}" for n in MUNMAP_OTHERS]
    cases += [n for n in sorted(runs) if n.startswith("BM_Munmap/kmod_abi")]
    cases += ["BM_Munmap/ucx_hooks"]

    rows, notes = [], []
    for name in cases:
        run = runs.get(name)
        t = op_ns(run, "munmap_median_ns")
        if t is None:
            if (name.startswith("BM_Munmap/kmod/") and expect_kmod) or name in (
                    "BM_Munmap/plain", "BM_Munmap/ucx_hooks"):
                notes.append(why_missing(name, run))
            elif name.startswith("BM_Munmap/kmod/"):
                notes.append(why_missing(name, run) + " (expected: the host has no module)")
            continue
        added = None if plain is None else t - plain
        rel = None if added is None or not plain else added / plain
        vs_ucx = (None if added is None or not ucx_added or
                  name in ("BM_Munmap/plain", "BM_Munmap/ucx_hooks")
                  else added / ucx_added)
        vs_host = (None if rel is None or not host_ucx_rel or
                   name in ("BM_Munmap/plain", "BM_Munmap/ucx_hooks")
                   else rel / host_ucx_rel)
        p = paired_ns(run)
        p_added = None if p is None or plain_paired is None else p - plain_paired
        p_vs_ucx = (None if p_added is None or not ucx_paired_added or
                    name in ("BM_Munmap/plain", "BM_Munmap/ucx_hooks")
                    else p_added / ucx_paired_added)
        target, verdict = "", ""
        if name.startswith("BM_Munmap/kmod/"):
            target = f"added <= {KMOD_VS_UCX_BOUND:.2f} x ucx's"
            # Paired when both sides have it; else the same run's medians
            # when it has UCX; else normalised to the host's UCX.
            basis = next((b for b in (p_vs_ucx, vs_ucx, vs_host)
                          if b is not None), None)
            verdict = verdicts.check(f"{label} {name}", basis,
                                     KMOD_VS_UCX_BOUND)
        rows.append([name.replace("BM_Munmap/", ""), fmt_us(t),
                     fmt_signed_us(added), fmt_pct(rel), fmt_ratio(vs_ucx),
                     fmt_ratio(vs_host), fmt_signed_us(p_added),
                     fmt_ratio(p_vs_ucx), target, verdict])
    print()
    print(f"munmap() of 64 KiB, {label}: median per munmap")
    header = ["case", "time", "added", "added/plain", "added/ucx_added",
              "vs host ucx", "paired added", "paired/ucx", "target",
              "verdict"]
    if rows:
        print_table(header, rows)
    for note in notes:
        print(f"  missing {note}")
    if plain is None:
        verdicts.missing.append(f"{label}: BM_Munmap/plain")
    if expect_kmod and not any(r[0].startswith("kmod/") for r in rows):
        verdicts.missing.append(f"{label}: no BM_Munmap/kmod case ran")


def miss_section(runs, verdicts):
    """The verdict uses BM_RegDeregPaired (raw and cache interleaved in one
    run); the separate BM_RegDereg runs are printed next to it."""
    rows, notes = [], []
    for size, size_label in MISS_SIZES:
        raw_name = f"BM_RegDereg/raw/{size}"
        raw = op_ns(runs.get(raw_name), "iteration_median_ns")
        for monitor in ("kmod", "uffd"):
            side = f"regcache-{monitor}"
            name = f"BM_RegDereg/{side}/{size}"
            t = op_ns(runs.get(name), "iteration_median_ns")
            sep_over = None if raw is None or t is None else t / raw - 1
            paired_name = f"BM_RegDeregPaired/{monitor}/{size}"
            paired = runs.get(paired_name)
            p_raw = p_cache = p_over = p_order = p_plain = None
            if usable(paired) and "overhead_pct" in paired:
                p_raw = float(paired["raw_cache_order_median_ns"])
                p_cache = float(paired["cache_median_ns"])
                p_over = float(paired["overhead_pct"]) / 100
                if "order_overhead_pct" in paired:
                    p_order = float(paired["order_overhead_pct"]) / 100
                if "plain_overhead_pct" in paired:
                    p_plain = float(paired["plain_overhead_pct"]) / 100
            elif usable(paired) or paired is not None:
                notes.append(why_missing(paired_name, paired))
            basis = p_over if p_over is not None else sep_over
            if basis is None:
                notes.append(why_missing(name, runs.get(name)))
                verdicts.missing.append(name)
            bound = MISS_OVERHEAD_BOUND[monitor]
            verdict = verdicts.check(f"miss {size_label} {side}", basis, bound)
            rows.append([size_label, side, fmt_us(p_raw), fmt_us(p_cache),
                         fmt_pct(p_over), fmt_pct(p_plain), fmt_pct(p_order),
                         fmt_us(raw), fmt_us(t), fmt_pct(sep_over),
                         f"<= +{100 * bound:.0f} %", verdict])
    print()
    print("Miss path: regcache_get (a miss) + regcache_put vs ibv_reg_mr + "
          "ibv_dereg_mr, median per iteration")
    print("  paired = BM_RegDeregPaired (interleaved in one run); raw = "
          "ibv_dereg_mr of the previous buffer then ibv_reg_mr of the next, "
          "the calls a full cache makes on a miss, in its order; overhead = "
          "cache vs that raw (the verdict); vs plain = cache vs ibv_reg_mr + "
          "ibv_dereg_mr of one buffer; order = that raw vs plain; separate = "
          "BM_RegDereg/raw vs BM_RegDereg/<cache>")
    if rows:
        print_table(["size", "cache", "raw", "cache time", "overhead",
                     "vs plain", "order", "separate raw",
                     "separate cache", "separate overhead", "target",
                     "verdict"], rows)
    for note in notes:
        print(f"  missing {note}")
    split_section(runs)
    uncached_section(runs, verdicts)
    overhead_section("VM", runs)


def uncached_section(runs, verdicts):
    """BM_UncachedPaired: an uncached get + put against raw reg + dereg."""
    rows, notes = [], []
    for size, size_label in MISS_SIZES:
        for monitor in ("kmod", "uffd", "none"):
            name = f"BM_UncachedPaired/{monitor}/{size}"
            run = runs.get(name)
            if not usable(run) or "overhead_pct" not in run:
                if run is not None or monitor != "none":
                    notes.append(why_missing(name, run))
                if monitor != "none":
                    verdicts.missing.append(name)
                continue
            over = float(run["overhead_pct"]) / 100
            raw = float(run["raw_median_ns"])
            around = float(run["around_registrar_median_ns"])
            bound = MISS_OVERHEAD_BOUND.get(monitor)
            verdict = ("(information)" if bound is None else
                       verdicts.check(f"uncached {size_label} {monitor}", over,
                                      bound))
            rows.append([size_label, monitor, fmt_us(raw),
                         fmt_us(float(run["cache_median_ns"])), fmt_pct(over),
                         fmt_signed_us(around),
                         f"{100 * float(run.get('uncached_per_iter', 0)):.0f} %",
                         "" if bound is None else f"<= +{100 * bound:.0f} %",
                         verdict])
            switched = runs.get(f"BM_UncachedPairedSwitched/{monitor}/{size}")
            if usable(switched) and "overhead_pct" in switched:
                rows.append([
                    size_label, monitor + ", switched",
                    fmt_us(float(switched["raw_median_ns"])),
                    fmt_us(float(switched["cache_median_ns"])),
                    fmt_pct(float(switched["overhead_pct"]) / 100),
                    fmt_signed_us(float(switched["around_registrar_median_ns"])),
                    f"{100 * float(switched.get('uncached_per_iter', 0)):.0f} %",
                    "", "(information)"])
    if not rows and not notes:
        return
    print()
    print("Adaptive path: an uncached get + put (a range that churns: "
          "BM_UncachedPaired) vs ibv_reg_mr + ibv_dereg_mr, medians, "
          "interleaved in one run; around = per get, its time less its reg "
          "and dereg calls; switched = each right after a switch to another "
          "process and back (BM_UncachedPairedSwitched), as between the main "
          "job's endpoints")
    if rows:
        print_table(["size", "monitor", "raw", "uncached", "overhead",
                     "around", "served uncached", "target", "verdict"], rows)
    for note in notes:
        print(f"  missing {note}")


def split_section(runs):
    """Where a paired miss's time goes: inside the cache's own ibv_reg_mr
    and ibv_dereg_mr (against the raw calls in the cache's order), and around them."""
    rows = []
    for size, size_label in MISS_SIZES:
        for monitor in ("none", "kmod", "uffd"):
            paired = runs.get(f"BM_RegDeregPaired/{monitor}/{size}")
            if not usable(paired) or "registrar_pct" not in paired:
                continue
            raw_calls = (float(paired["raw_reg_median_ns"]) +
                         float(paired["raw_dereg_median_ns"]))
            cache_calls = (float(paired["cache_reg_median_ns"]) +
                           float(paired["cache_dereg_median_ns"]))
            raw = float(paired["raw_cache_order_median_ns"])
            around = float(paired["around_registrar_median_ns"])
            rows.append([size_label, monitor, fmt_pct(float(paired["overhead_pct"]) / 100),
                         fmt_us(raw_calls), fmt_us(cache_calls),
                         fmt_pct(float(paired["registrar_pct"]) / 100),
                         fmt_signed_us(around), fmt_pct(around / raw if raw else None)])
    if not rows:
        return
    print()
    print("Where the paired miss's time goes (medians): the cache's own "
          "ibv_reg_mr + ibv_dereg_mr against those of the raw calls in its "
          "order, and the rest "
          "(around = per miss, its time less its reg and dereg calls: watch, "
          "unwatch, index, fence), for information; monitor none = the cache core alone")
    print_table(["size", "monitor", "overhead", "raw reg+dereg",
                 "cache reg+dereg", "inside registrar", "around",
                 "around / raw"], rows)


def overhead_section(label, runs):
    info = []
    for monitor in ("none", "kmod", "uffd"):
        name = f"BM_MissOverhead/{monitor}"
        t = op_ns(runs.get(name), "iteration_median_ns")
        if t is not None:
            info.append([monitor, fmt_us(t)])
    if info:
        print()
        print(f"Cache cost per miss with the fake no-op registrar "
              f"(BM_MissOverhead, 4 KiB), {label}, for information")
        print_table(["monitor", "per miss"], info)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--munmap-host", help="munmap_bench JSON from the host")
    parser.add_argument("--munmap-guest", help="munmap_bench JSON from the VM")
    parser.add_argument("--miss-path", help="miss_path_bench JSON from the VM")
    parser.add_argument("--miss-host",
                        help="miss_path_bench JSON from the host "
                             "(BM_MissOverhead only)")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when a target fails or a case is missing")
    args = parser.parse_args()
    if not (args.munmap_host or args.munmap_guest or args.miss_path or
            args.miss_host):
        parser.error("give at least one of --munmap-host, --munmap-guest, "
                     "--miss-path, --miss-host")

    loaded = {}
    for key, path in (("host", args.munmap_host), ("guest", args.munmap_guest),
                      ("miss", args.miss_path), ("miss_host", args.miss_host)):
        if not path:
            continue
        try:
            loaded[key] = load(path)
        except (OSError, ValueError, KeyError) as e:
            print(f"compare_monitor_costs: cannot read {path}: {e}",
                  file=sys.stderr)
            return 2

    verdicts = Verdicts()
    for key, label in (("host", "host"), ("guest", "guest (VM)"),
                       ("miss", "miss path (VM)")):
        if key in loaded:
            describe_context(label, loaded[key][0])
    host_runs = loaded["host"][1] if "host" in loaded else None
    if "host" in loaded:
        munmap_section("host", loaded["host"][1], None, False, verdicts)
    if "guest" in loaded:
        munmap_section("guest (VM)", loaded["guest"][1], host_runs, True,
                       verdicts)
    if "miss_host" in loaded:
        overhead_section("host", loaded["miss_host"][1])
    if "miss" in loaded:
        miss_section(loaded["miss"][1], verdicts)

    print()
    print("Columns: added = case - plain of the same run; added/ucx_added: "
          "same run; vs host ucx = (added/plain) / (host ucx added / host "
          "plain); paired added = the case's munmap less its control munmap "
          "in the same iterations, less the same for plain; paired/ucx = "
          "that against ucx_hooks' paired added. The kmod verdict uses "
          "paired/ucx when the cases have it, else added/ucx_added when the "
          "run has ucx_hooks, else the host-normalised ratio. The paired "
          "figures leave out what the module's notifier costs every munmap "
          "of the process, the control's included (kmod/0's added).")
    if verdicts.failed:
        print("FAILED: " + "; ".join(verdicts.failed))
    for m in verdicts.missing:
        print(f"MISSING: {m}")
    if not verdicts.failed:
        print("All targets that could be checked passed.")
    if args.strict and (verdicts.failed or verdicts.missing):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

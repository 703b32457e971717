#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""Tests of compare_pingpong_churn.py on hand-made regcache-pingpong JSON:
its verdicts, the median over several runs, data errors, and bad input."""

import json
import os
import subprocess
import sys
import tempfile
import unittest

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      "compare_pingpong_churn.py")
K4 = 4096


def point(workload, mode, size, mbs, errors=0):
    return {"workload": workload, "mode": mode, "size": size,
            "status": "ok", "bandwidth_mbs": mbs,
            "messages_checked": 100, "data_errors": errors}


def run_json(realloc_kmod=1.0, reuse_kmod=1.0, errors=0):
    """One run: realloc and reuse at 4 KiB, kmod and uffd, and their peers
    at 10 MB/s; the cache modes at the given fractions of their peer."""
    return {"points": [
        point("realloc", "register-per-message", K4, 10.0),
        point("realloc", "regcache-kmod", K4, 10.0 * realloc_kmod, errors),
        point("realloc", "regcache-uffd", K4, 10.0),
        point("reuse", "register-once", K4, 10.0),
        point("reuse", "regcache-kmod", K4, 10.0 * reuse_kmod),
        point("reuse", "regcache-uffd", K4, 10.0),
    ]}


class ComparePingpongChurn(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        self.n = 0

    def write(self, doc):
        self.n += 1
        path = os.path.join(self.dir.name, f"run{self.n}.json")
        with open(path, "w") as f:
            f.write(doc if isinstance(doc, str) else json.dumps(doc))
        return path

    def compare(self, *args):
        r = subprocess.run([sys.executable, SCRIPT, *args],
                           capture_output=True, text=True)
        return r.returncode, r.stdout, r.stderr

    def test_every_target_met_passes(self):
        rc, out, _ = self.compare("--strict", self.write(run_json()))
        self.assertEqual(rc, 0, out)
        self.assertIn("All targets that could be checked passed.", out)
        self.assertEqual(out.count("PASS"), 4, out)

    def test_a_cache_slower_than_registering_per_message_fails(self):
        path = self.write(run_json(realloc_kmod=0.96))
        rc, out, _ = self.compare("--strict", path)
        self.assertEqual(rc, 1, out)
        self.assertIn("FAILED: realloc 4K regcache-kmod", out)
        # Without --strict the verdict is printed, the status stays 0.
        rc, out, _ = self.compare(path)
        self.assertEqual(rc, 0, out)
        self.assertIn("FAIL", out)

    def test_reuse_is_judged_against_register_once_within_5_percent(self):
        rc, out, _ = self.compare("--strict",
                                  self.write(run_json(reuse_kmod=0.96)))
        self.assertEqual(rc, 0, out)
        rc, out, _ = self.compare("--strict",
                                  self.write(run_json(reuse_kmod=0.94)))
        self.assertEqual(rc, 1, out)
        self.assertIn("FAILED: reuse 4K regcache-kmod", out)

    def test_several_runs_are_judged_by_their_median(self):
        paths = [self.write(run_json(realloc_kmod=r))
                 for r in (0.90, 0.99, 0.98)]
        rc, out, _ = self.compare("--strict", *paths)
        self.assertEqual(rc, 0, out)
        line = next(l for l in out.splitlines()
                    if l.startswith("realloc") and "regcache-kmod" in l)
        self.assertIn("0.980", line)
        self.assertIn("0.90 0.99 0.98", line)

    def test_the_breakdown_is_the_median_of_what_each_run_added(self):
        paths = []
        for reg, remap in ((30.0, 5.0), (10.0, 9.0), (11.0, 6.0)):
            doc = run_json()
            for p in doc["points"]:
                p.update(latency_us=100.0, reg_us_per_message=50.0,
                         remap_us_per_message=40.0,
                         other_threads_us_per_message=0.0)
                if p["workload"] == "realloc" and p["mode"] == "regcache-kmod":
                    p.update(latency_us=130.0, reg_us_per_message=50.0 + reg,
                             remap_us_per_message=40.0 + remap,
                             other_threads_us_per_message=2.5)
                if p["mode"] == "regcache-uffd":
                    del p["remap_us_per_message"]  # as from an older tool
            paths.append(self.write(doc))
        rc, out, _ = self.compare(*paths)
        self.assertEqual(rc, 0, out)
        rows = {tuple(l.split()[:3]): l.split()[3:] for l in
                out.split("added per message")[1].splitlines()[2:] if l}
        self.assertEqual(rows[("realloc", "4K", "regcache-kmod")],
                         ["+30.0", "+11.0", "+6.0", "+2.5"])
        self.assertEqual(rows[("realloc", "4K", "regcache-uffd")],
                         ["+0.0", "+0.0", "-", "+0.0"])
        # Only the points a cache cannot help have a breakdown.
        self.assertNotIn(("reuse", "4K", "regcache-kmod"), rows)

    def test_a_data_error_fails_whatever_the_ratios(self):
        rc, out, _ = self.compare("--strict", self.write(run_json(errors=1)))
        self.assertEqual(rc, 1, out)
        self.assertIn("1 of 600 messages checked (realloc 4K regcache-kmod)",
                      out)
        self.assertIn("data errors", out.splitlines()[-1])

    def test_nothing_to_compare_is_not_a_pass(self):
        doc = {"points": [point("realloc", "regcache-kmod", K4, 10.0)]}
        rc, out, _ = self.compare("--strict", self.write(doc))
        self.assertEqual(rc, 1, out)
        self.assertIn("no point had regcache-kmod or regcache-uffd", out)

    def test_bad_input_is_refused_with_the_reason(self):
        for doc, why in (("{", "cannot read"),
                         ({"tool": "x"}, 'no "points" list'),
                         ({"points": [{"workload": "realloc"}]},
                          '"mode" is not a string'),
                         ({"points": [{"workload": "realloc",
                                       "mode": "regcache-kmod",
                                       "size": "4K"}]},
                          '"size" is not an integer'),
                         ({"points": [point("realloc", "regcache-kmod", K4,
                                            "fast")]},
                          '"bandwidth_mbs" is not a number')):
            rc, out, err = self.compare(self.write(doc))
            self.assertEqual(rc, 2, (doc, out, err))
            self.assertIn(why, err)
        rc, _, err = self.compare(os.path.join(self.dir.name, "missing.json"))
        self.assertEqual(rc, 2)
        self.assertIn("cannot read", err)


if __name__ == "__main__":
    unittest.main()

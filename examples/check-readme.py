#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""Checks that README.md's C and C++ code is the examples' code.

Every fenced block marked c, cpp or c++ in README.md must be a verbatim
run of whole lines of the example the README names last before it (a link
or mention of examples/NAME), so that what users copy is what the tests
build and run.

Usage: check-readme.py README.md
Exit status: 0 when every block is an excerpt; 1 with one line per block
that is not (or names no example).
"""

import os
import re
import sys


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: check-readme.py README.md")
    readme = sys.argv[1]
    root = os.path.dirname(os.path.abspath(readme))
    text = open(readme, encoding="utf-8").read()
    bad = 0
    checked = 0
    fence = re.compile(r"^```(c|cpp|c\+\+)\n(.*?)^```$", re.M | re.S)
    for m in fence.finditer(text):
        before = text[: m.start()]
        line = before.count("\n") + 1
        names = re.findall(r"examples/([A-Za-z0-9_.-]+\.(?:cc|cpp|c))\b", before)
        if not names:
            print(f"README.md:{line}: a {m.group(1)} block that names no "
                  "examples/ file before it")
            bad = 1
            continue
        path = os.path.join(root, "examples", names[-1])
        try:
            source = open(path, encoding="utf-8").read().splitlines()
        except OSError as e:
            print(f"README.md:{line}: examples/{names[-1]}: {e.strerror}")
            bad = 1
            continue
        block = m.group(2).splitlines()
        n = len(block)
        if not any(source[i:i + n] == block for i in range(len(source) - n + 1)):
            print(f"README.md:{line}: the block is not a verbatim excerpt of "
                  f"examples/{names[-1]}")
            bad = 1
        checked += 1
    if checked == 0 and not bad:
        print("check-readme: README.md has no C or C++ block")
        return 1
    if not bad:
        print(f"check-readme: {checked} blocks of README.md are excerpts of "
              "examples/")
    return bad


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""Checks that the documentation says what the code does, and nothing dated.

Checks (all by default, or those named):
  render    every man/*.[1-9] renders without a warning (groff -ww, and
            man --warnings when man-db is installed)
  api       man/regcache.3 names every function libregcache exports
            (src/regcache/libregcache.map) and every inline wrapper of the
            public headers, every field of the public structs, every
            constant of their enums and every REGCACHE_* variable of
            src/regcache/config.cc; docs/configuration.md names every
            variable; regcache.3's EXAMPLES is examples/minimal.c
  options   each tool's man page names every option its --help lists
            (needs --pingpong BIN and/or --limits BIN; a tool not given is
            skipped)
  history   docs/, README.md, HACKING.md and tests/vm/README.md hold no
            commit hashes, dates or issue numbers (those go in
            results/README.md)

Usage: check-docs.py [--source DIR] [--pingpong BIN] [--limits BIN] [CHECK...]
Exit status: 0 when every check passed; 1 with one line per problem.
"""

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def roff_text(page):
    """The page's text with roff's escapes for '-' and '\\' undone."""
    return page.replace("\\-", "-").replace("\\e", "\\").replace("\\&", "")


def check_render(src):
    problems = []
    pages = sorted(glob.glob(os.path.join(src, "man", "*.[1-9]")))
    if not pages:
        return ["man/: no manual pages"]
    if not shutil.which("groff"):
        return ["groff is not installed (Debian: groff-base; scripts/install-deps.sh)"]
    env = dict(os.environ, LC_ALL="C.UTF-8", MANWIDTH="80")
    for page in pages:
        name = os.path.relpath(page, src)
        runs = [["groff", "-man", "-Tutf8", "-ww", "-z", page]]
        if shutil.which("man"):
            runs.append(["man", "--warnings", "-E", "UTF-8", "-l", page])
        for cmd in runs:
            r = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if r.returncode != 0 or r.stderr.strip():
                for line in (r.stderr.strip() or f"exit status {r.returncode}").splitlines():
                    problems.append(f"{name}: {cmd[0]}: {line}")
    return problems


def strip_c_comments(text):
    return re.sub(r"/\*.*?\*/|//[^\n]*", " ", text, flags=re.S)


def header_symbols(src):
    """Functions, struct fields and enum constants of the public C headers."""
    headers = [os.path.join(src, "include", "regcache", h)
               for h in ("regcache.h", "ibverbs.h", "libfabric.h")]
    code = strip_c_comments("\n".join(read(h) for h in headers))
    inline = re.findall(r"static inline [^(]*?\b(regcache_\w+)\s*\(", code)
    fields = {}
    for name, body in re.findall(r"struct (regcache_\w+) \{(.*?)\};", code, re.S):
        names = re.findall(r"\(\*(\w+)\)", body)  # callbacks
        body = re.sub(r"[^;]*\(\*\w+\)[^;]*;", " ", body)
        names += re.findall(r"(\w+)\s*(?:\[[^\]]*\])?\s*;", body)
        fields[name] = names
    enums = []
    for body in re.findall(r"enum regcache_\w+ \{(.*?)\};", code, re.S):
        enums += re.findall(r"\b(REGCACHE_[A-Z0-9_]+)\b\s*(?:=[^,]*)?,?", body)
    return inline, fields, enums


def check_api(src):
    problems = []
    page = roff_text(read(os.path.join(src, "man", "regcache.3")))
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", page))
    mapfile = read(os.path.join(src, "src", "regcache", "libregcache.map"))
    exported = re.findall(r"^\s+(regcache_\w+);", mapfile, re.M)
    inline, fields, enums = header_symbols(src)
    for fn in exported + inline:
        if fn not in words:
            problems.append(f"man/regcache.3: function {fn} is not described")
    for struct, names in fields.items():
        for field in names:
            if field not in words:
                problems.append(f"man/regcache.3: field {struct}.{field} is not described")
    for constant in enums:
        if constant not in words:
            problems.append(f"man/regcache.3: {constant} is not described")
    config = read(os.path.join(src, "src", "regcache", "config.cc"))
    variables = re.findall(r'^\s*\{"(REGCACHE_[A-Z_]+)",', config, re.M)
    if not variables:
        problems.append("src/regcache/config.cc: found no REGCACHE_* variable")
    table = read(os.path.join(src, "docs", "configuration.md"))
    for var in variables:
        if var not in words:
            problems.append(f"man/regcache.3: variable {var} is not described")
        if f"`{var}`" not in table:
            problems.append(f"docs/configuration.md: variable {var} is not in the table")
    # EXAMPLES is examples/minimal.c, verbatim.
    m = re.search(r"^\.SH EXAMPLES\n.*?^\.EX\n(.*?)^\.EE\n", read(os.path.join(
        src, "man", "regcache.3")), re.S | re.M)
    example = read(os.path.join(src, "examples", "minimal.c"))
    if not m or roff_text(m.group(1)).strip() != example.strip():
        problems.append("man/regcache.3: EXAMPLES is not examples/minimal.c "
                        "(scripts/check-docs.py --print-example prints it as roff)")
    return problems


def check_options(src, tools):
    problems = []
    for name, binary in tools.items():
        if not binary:
            continue
        r = subprocess.run([binary, "--help"], capture_output=True, text=True)
        if r.returncode != 0:
            problems.append(f"{name} --help: exit status {r.returncode}")
            continue
        options = set(re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", r.stdout))
        page = roff_text(read(os.path.join(src, "man", f"{name}.1")))
        for option in sorted(options):
            if not re.search(r"(?<![\w-])" + re.escape(option) + r"(?![\w-])", page):
                problems.append(f"man/{name}.1: option {option} (in --help) is not described")
    return problems


HASH = re.compile(r"(?<![0-9A-Za-z_x.:/-])(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])"
                  r"[0-9a-f]{7,40}(?![0-9A-Za-z_])")
DATED = re.compile(r"\b20\d\d-\d\d-\d\d\b|\bissue \d+\b|\(issue\b")


def check_history(src):
    problems = []
    files = sorted(glob.glob(os.path.join(src, "docs", "*.md")))
    files += [os.path.join(src, f) for f in ("README.md", "HACKING.md",
                                             os.path.join("tests", "vm", "README.md"))]
    for path in files:
        if not os.path.exists(path):
            continue
        for n, line in enumerate(read(path).splitlines(), 1):
            for m in list(HASH.finditer(line)) + list(DATED.finditer(line)):
                problems.append(f"{os.path.relpath(path, src)}:{n}: '{m.group(0)}': "
                                "commit hashes, dates and issue numbers go in "
                                "results/README.md")
    return problems


def print_example(src):
    for line in read(os.path.join(src, "examples", "minimal.c")).rstrip("\n").split("\n"):
        line = line.replace("\\", "\\e")
        print("\\&" + line if line.startswith((".", "'")) else line)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    parser.add_argument("--pingpong")
    parser.add_argument("--limits")
    parser.add_argument("--print-example", action="store_true",
                        help="print examples/minimal.c as roff for regcache.3")
    parser.add_argument("checks", nargs="*",
                        choices=["render", "api", "options", "history", []])
    args = parser.parse_args()
    if args.print_example:
        print_example(args.source)
        return 0
    checks = args.checks or ["render", "api", "options", "history"]
    problems = []
    for check in checks:
        if check == "render":
            problems += check_render(args.source)
        elif check == "api":
            problems += check_api(args.source)
        elif check == "options":
            problems += check_options(args.source, {"regcache-pingpong": args.pingpong,
                                                    "regcache-limits": args.limits})
        elif check == "history":
            problems += check_history(args.source)
    for p in problems:
        print(p)
    if problems:
        return 1
    print(f"check-docs: {', '.join(checks)}: no problems")
    return 0


if __name__ == "__main__":
    sys.exit(main())

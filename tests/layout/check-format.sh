#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# Checks that the project's C++ and userspace C are formatted as
# .clang-format says (Google style). The kernel module (src/kmod_notifier/)
# and its ABI header (include/regcache/kmod_uapi.h) are kernel style and
# are checked by scripts/checkpatch.sh instead.
#
# Usage: check-format.sh [SOURCE_DIR]      check; one line per file to fix
#        check-format.sh --fix [SOURCE_DIR] reformat those files in place
# Exit status: 0 when all is well; 1 when a file needs formatting; 77 (skip)
# without clang-format or outside a git checkout.
set -euo pipefail
fix=0
if [[ ${1:-} == --fix ]]; then fix=1; shift; fi
root=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root"
command -v git >/dev/null && [[ -e .git ]] ||
  { echo "check-format: SKIP: $root is not a git checkout"; exit 77; }
command -v clang-format >/dev/null ||
  { echo "check-format: SKIP: no clang-format (Debian package clang-format)"; exit 77; }

mapfile -t files < <(git ls-files '*.cc' '*.h' '*.hpp' '*.c' |
  grep -v -e '^src/kmod_notifier/' -e '^include/regcache/kmod_uapi.h$')
if ((fix)); then
  clang-format -i --style=file "${files[@]}"
  exit 0
fi
bad=0
for f in "${files[@]}"; do
  if ! clang-format --style=file --dry-run --Werror "$f" >/dev/null 2>&1; then
    echo "$f: not formatted as .clang-format says (tests/layout/check-format.sh --fix)"
    bad=1
  fi
done
exit "$bad"

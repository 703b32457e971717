#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# Checks that every source, script and build file the project tracks opens
# with an SPDX-License-Identifier line, and that every licence (and
# exception) it names has its text in LICENSES/.
#
# Usage: check-licences.sh [SOURCE_DIR]
# Exit status: 0 when all is well; 1 with one line per problem.
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root"
command -v git >/dev/null && [[ -e .git ]] ||
  { echo "check-licences: SKIP: $root is not a git checkout"; exit 77; }

bad=0
while IFS= read -r f; do
  case $f in
    *.c|*.h|*.cc|*.hpp|*.sh|*.py|*.in|*.cmake|CMakeLists.txt|*/CMakeLists.txt|*.map|Makefile|*/Makefile|Kbuild|*/Kbuild) ;;
    *) continue ;;
  esac
  line=$(head -5 "$f" | grep -m1 -o 'SPDX-License-Identifier: .*' || true)
  if [[ -z $line ]]; then
    echo "$f: no SPDX-License-Identifier in its first lines"
    bad=1
    continue
  fi
  expr=${line#SPDX-License-Identifier: }
  expr=${expr%%\*/*}
  for id in $(tr '()' '  ' <<<"$expr"); do
    [[ $id == OR || $id == AND || $id == WITH ]] && continue
    [[ -f LICENSES/$id.txt ]] || { echo "$f: licence $id has no text in LICENSES/"; bad=1; }
  done
done < <(git ls-files)
((bad == 0)) || exit 1
echo "check-licences: every tracked source file names a licence whose text is in LICENSES/"

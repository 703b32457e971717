#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# Host test of scripts/run-main.sh's command line (ctest run_main_command_line):
# --help prints a usage text, not the script's source; an option that neither
# the script nor regcache-pingpong has, or a kernel the rig does not boot, is
# exit status 2 with one message on stderr and nothing run; and the options
# the script passes on are exactly regcache-pingpong's, as its --help lists
# them.
# usage: run-main-test.sh PATH/TO/run-main.sh PATH/TO/regcache-pingpong
set -euo pipefail
script=${1:?usage: run-main-test.sh PATH/TO/run-main.sh PATH/TO/regcache-pingpong}
bin=${2:?usage: run-main-test.sh PATH/TO/run-main.sh PATH/TO/regcache-pingpong}
fail() { echo "FAIL: $*"; exit 1; }

help=$("$script" --help) || fail "--help exited with status $?"
[[ $help == "usage: scripts/run-main.sh "* ]] ||
  fail "--help does not start with a usage line: ${help%%$'\n'*}"
if grep -qE '^#|set -euo' <<<"$help"; then
  fail "--help prints the script's source"
fi

err=$(mktemp)
trap 'rm -f "$err"' EXIT
# Each must stop before installing or building anything (which would print
# "main job: ..." on stdout); the timeout is for a script that goes on.
for bad in --bogus extra --quick=1 --sizes --device -x9 --frob=1 --kernel \
           --kernel=5.10 --kernel=7.3; do
  status=0
  out=$(timeout 60 "$script" "$bad" 2>"$err") || status=$?
  ((status == 2)) || fail "$bad: exit status $status, not 2"
  [[ -z $out ]] || fail "$bad: it went on: $out"
  [[ $(wc -l <"$err") == 2 ]] || fail "$bad: not one message and a hint: $(cat "$err")"
  grep -qF -- "${bad%%=*}" "$err" || fail "$bad: the message does not name it: $(cat "$err")"
done
# --kernel is the rig's; with a device there is no rig.
status=0
out=$(timeout 60 "$script" --kernel 7 --device mlx5_0 2>"$err") || status=$?
if ((status != 2)) || [[ -n $out ]] || ! grep -qF -- "--kernel" "$err"; then
  fail "--kernel with --device: status $status, $out $(cat "$err")"
fi
grep -qE -- '--kernel K' <<<"$help" || fail "--help does not describe --kernel"
status=0
REGCACHE_PINGPONG_ARGS="--quick --bogus-from-env" timeout 60 "$script" >/dev/null 2>"$err" ||
  status=$?
if ((status != 2)) || ! grep -qF -- --bogus-from-env "$err"; then
  fail "REGCACHE_PINGPONG_ARGS is not checked: status $status, $(cat "$err")"
fi

# Option names: the tool's (but -h/--help and --version, the script's own
# or pointless in a VM) and those the script's --help says it passes on.
tool=$("$bin" --help | grep -oE '^  (-[a-z], )?--[a-z-]+' |
       tr -d ' ' | tr ',' '\n' | grep -vxE -- '-h|--help|--version' | sort)
passed=$(sed -n '/before those of the command line:/,/^Examples:/p' <<<"$help" |
         sed '1d;$d' | tr ' ' '\n' | grep -v '^$' | sort)
[[ -n $tool ]] || fail "no options in regcache-pingpong --help"
if [[ $tool != "$passed" ]]; then
  fail "the options run-main.sh passes on are not regcache-pingpong's:
$(diff <(echo "$passed") <(echo "$tool") || true)"
fi
echo "PASS: run-main.sh --help is a usage text, bad options are status 2," \
     "and it passes on regcache-pingpong's $(wc -l <<<"$tool") options"

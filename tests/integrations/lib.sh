# SPDX-License-Identifier: BSD-2-Clause
# Shared by the integration scripts that run in the VM (tests/vm rig): the
# settings unmodified clients need on rxe0, a two-process runner, and
# result lines. Sourced, not run. Needs BUILD (the build folder).

# What the clients need on rxe0 (docs/integrations.md, tests/vm/README.md).
UCX_ENV=(UCX_NET_DEVICES=rxe0:1 UCX_TLS=rc_verbs,ud_verbs,self UCX_UD_ETH_DGID_CHECK=n)
UCX_DIRECT=(UCX_IB_REG_METHODS=direct UCX_RCACHE_ENABLE=n)
FI_ENV=(FI_UNIVERSE_SIZE=16)
SERVER_ADDR=192.168.77.1
PRELOAD_LIB=$BUILD/lib/libregcache-preload.so
FI_PLUGIN_DIR=$BUILD/lib/libfabric

failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
pass() { echo "PASS: $*"; }
# Skips the whole script with the reason (ctest's SKIP_RETURN_CODE 77).
skip() { echo "SKIP: $*"; exit 77; }

need() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || skip "$tool is not installed (scripts/install-deps.sh installs it)"
  done
}

# run_pair DIR TIMEOUT -- SERVER_CMD... -- CLIENT_CMD...
# Starts the server, waits until it listens (a short pause: these tools
# print nothing before they accept), runs the client, waits for both.
# Output in DIR/{server,client}.{out,err}; statuses in DIR/status.
run_pair() {
  local dir=$1 limit=$2
  shift 3
  local server=() client=()
  while [[ $1 != -- ]]; do server+=("$1"); shift; done
  shift
  client=("$@")
  mkdir -p "$dir"
  timeout "$limit" "${server[@]}" >"$dir/server.out" 2>"$dir/server.err" &
  local spid=$!
  sleep 2
  timeout "$limit" "${client[@]}" >"$dir/client.out" 2>"$dir/client.err"
  local crc=$?
  wait "$spid"
  local src=$?
  echo "server=$src client=$crc" >"$dir/status"
  [[ $src == 0 && $crc == 0 ]]
}

# sent_pkts of rxe0 (moves only when traffic crosses the device).
rxe_sent_pkts() {
  cat /sys/class/infiniband/rxe0/ports/1/hw_counters/sent_pkts 2>/dev/null || echo 0
}

finish() {
  if ((failures == 0)); then
    echo "$1: all checks passed"
    exit 0
  fi
  echo "$1: $failures check(s) failed"
  exit 1
}

# SPDX-License-Identifier: BSD-2-Clause
# shellcheck shell=bash
# Helpers for the guest-side smoke tests (sourced).

# pingpong_pair [WRAPPER...] -- [ibv_rc_pingpong options]
# Runs an ibv_rc_pingpong server and a client to 192.168.77.1 on rxe0 and
# fails unless both exit 0.  The port is picked per call so that several
# pairs in one guest never collide.
PINGPONG_PORT=${PINGPONG_PORT:-18515}
pingpong_pair() {
  local wrapper=() opts port server status=0
  while (($#)) && [[ $1 != -- ]]; do wrapper+=("$1"); shift; done
  shift || true
  opts=(-d rxe0 -g 1 "$@")
  port=$PINGPONG_PORT
  PINGPONG_PORT=$((PINGPONG_PORT + 1))
  "${wrapper[@]}" timeout 120 ibv_rc_pingpong "${opts[@]}" -p "$port" > "/tmp/pp-server.$port" 2>&1 &
  server=$!
  # The client gives up at once if nobody listens yet.
  for _ in $(seq 200); do
    ss -ltn "sport = :$port" | grep -q LISTEN && break
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
  done
  "${wrapper[@]}" timeout 120 ibv_rc_pingpong "${opts[@]}" -p "$port" 192.168.77.1 \
    > "/tmp/pp-client.$port" 2>&1 || status=$?
  wait "$server" || status=$((status ? status : $?))
  sed 's/^/server: /' "/tmp/pp-server.$port"
  sed 's/^/client: /' "/tmp/pp-client.$port"
  return "$status"
}

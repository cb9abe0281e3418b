#!/usr/bin/env bash
# Process helpers the benchmark and fuzz scripts share (sourced, not run).

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# stop_pids TICKS PID...: SIGTERM to every PID (last started first), then waits up to TICKS
# tenths of a second for each to exit before a SIGKILL.
stop_pids() {
  local ticks="$1"
  shift
  local all=("$@") i
  for ((i=${#all[@]}-1; i>=0; i--)); do
    kill -TERM "${all[$i]}" 2>/dev/null || true
  done
  for ((i=${#all[@]}-1; i>=0; i--)); do
    for _ in $(seq "$ticks"); do
      kill -0 "${all[$i]}" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "${all[$i]}" 2>/dev/null || true
  done
}

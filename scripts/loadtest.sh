#!/usr/bin/env bash
# Scenario 1 of the gateway benchmarks at a small scale, for a quick look: starts its own
# Apache Kafka (scripts/kafka.sh) and ws-gateway on free loopback ports, creates the topics, runs the loadtest
# (TRADING bundle, 3 of 100 tokens per client), prints the report, stops everything.
# Bounded: the whole run is killed after LOADTEST_SCRIPT_TIMEOUT seconds (default 300).
#
# Any loadtest flag can be changed through its env variable, e.g.
#   LOADTEST_TARGET=3000 LOADTEST_PRODUCE_RATE=100 LOADTEST_DURATION=60 scripts/loadtest.sh
# Exit status: the loadtest's (0 clean, 1 something lost or failed, 2 setup error).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/procs.sh
source scripts/lib/procs.sh

export LOADTEST_TARGET="${LOADTEST_TARGET:-1200}"
export LOADTEST_RAMP_RATE="${LOADTEST_RAMP_RATE:-600}"
export LOADTEST_SUBSCRIPTION_MODE="${LOADTEST_SUBSCRIPTION_MODE:-bundle}"
export LOADTEST_BUNDLE="${LOADTEST_BUNDLE:-TRADING}"
export LOADTEST_TOKEN_COUNT="${LOADTEST_TOKEN_COUNT:-100}"
export LOADTEST_TOKENS_PER_CLIENT="${LOADTEST_TOKENS_PER_CLIENT:-3}"
# 28 events/s × 36 subscribers per channel ≈ 1,000 deliveries/s per 1,000 connections.
export LOADTEST_PRODUCE_RATE="${LOADTEST_PRODUCE_RATE:-28}"
export LOADTEST_DURATION="${LOADTEST_DURATION:-20}"
export LOADTEST_WARMUP="${LOADTEST_WARMUP:-2s}"
export LOADTEST_DRAIN="${LOADTEST_DRAIN:-10s}"
export LOG_LEVEL="${LOG_LEVEL:-warn}"
SCRIPT_TIMEOUT="${LOADTEST_SCRIPT_TIMEOUT:-300}"


scripts/install-kafka.sh >/dev/null
if [[ -z "${LOADTEST_SKIP_BUILD:-}" ]]; then
  echo "==> building ws-gateway and loadtest (release)" >&2
  cargo build --release -p ws-gateway -p loadtest >&2
fi
BIN="${LOADTEST_BIN_DIR:-target/release}"

WORK="$(mktemp -d -t odin-loadtest.XXXXXX)"
pids=()
cleanup() {
  trap - INT TERM EXIT
  stop_pids 50 "${pids[@]}"
  rm -rf "$WORK"
}
trap cleanup INT TERM EXIT

KAFKA_PORT="$(free_port)"
WS_PORT="$(free_port)"
export KAFKA_BROKERS="127.0.0.1:${KAFKA_PORT}"

echo "==> Kafka on ${KAFKA_BROKERS} (heap ${LOADTEST_KAFKA_HEAP:-1g})" >&2
# --foreground: the pid is the broker's JVM, stopped by cleanup with the rest.
scripts/kafka.sh start --foreground --dir "$WORK/kafka" --port "$KAFKA_PORT" \
  --heap "${LOADTEST_KAFKA_HEAP:-1g}" >"$WORK/kafka.log" 2>&1 &
pids+=($!)
echo "$!" >"$WORK/kafka.pid"

# Waits up to 30 s for the broker, then creates every topic.
"$BIN/loadtest" --create-topics >&2

echo "==> ws-gateway on 127.0.0.1:${WS_PORT}" >&2
# One gateway worker: broker, gateway and loadtest share this machine's cores, and a single
# worker saves a cross-thread wake-up per delivery (docs/benchmarks.md compares 1 and 2).
WS_ADDR="127.0.0.1:${WS_PORT}" WS_MAX_CONNECTIONS="$((LOADTEST_TARGET + 100))" \
  WS_WORKER_THREADS="${WS_WORKER_THREADS:-1}" \
  "$BIN/ws-gateway" >"$WORK/gateway.log" 2>&1 &
GW_PID=$!
pids+=("$GW_PID")

ready=""
for _ in $(seq 150); do
  if curl -fsS "http://127.0.0.1:${WS_PORT}/health" >/dev/null 2>&1; then
    ready=1
    break
  fi
  kill -0 "$GW_PID" 2>/dev/null || break
  sleep 0.2
done
if [[ -z "$ready" ]]; then
  echo "loadtest.sh: the gateway did not become healthy; its log:" >&2
  tail -n 30 "$WORK/gateway.log" >&2
  exit 2
fi

echo "==> loadtest: ${LOADTEST_TARGET} connections, ${LOADTEST_PRODUCE_RATE} events/s for ${LOADTEST_DURATION}s" >&2
set +e
timeout --kill-after=10 "$SCRIPT_TIMEOUT" "$BIN/loadtest" \
  --server "ws://127.0.0.1:${WS_PORT}/ws" \
  --gateway-pid "$GW_PID" "$@"
status=$?
set -e
if [[ $status -ne 0 ]]; then
  echo "loadtest.sh: loadtest exited with $status; last gateway log lines:" >&2
  tail -n 10 "$WORK/gateway.log" >&2
fi
exit "$status"

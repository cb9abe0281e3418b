#!/usr/bin/env bash
# The whole pipeline on one machine: installs Apache Kafka if needed (scripts/install-kafka.sh),
# builds in release mode, starts Kafka on 127.0.0.1:19092 with its data in .dev/kafka (kept
# across runs: a restart finds the topics and what they still retain; DEV_KAFKA_FRESH=1 starts
# from an empty log), creates every topic with its partitions and configs, starts every
# service, prints the URLs and a client command, and on Ctrl-C stops everything it started.
#
# Ports (override with env): KAFKA 19092, publisher API_PORT 3001, gateway 3002, aggregator 3004.
set -euo pipefail
cd "$(dirname "$0")/.."

KAFKA_PORT="${DEV_KAFKA_PORT:-19092}"
export KAFKA_BROKERS="127.0.0.1:${KAFKA_PORT}"
API_PORT="${API_PORT:-3001}"
WS_PORT="${DEV_WS_PORT:-3002}"
AGG_PORT="${DEV_AGGREGATOR_PORT:-3004}"
SIM_RATE="${DEV_SIM_RATE:-100}"
SIM_TOKENS="${DEV_SIM_TOKENS:-BTC,ETH,SOL,DOGE}"
# Ticks every 10 s locally so aggregates show up quickly (production default: 30s).
export AGGREGATE_PUBLISH_INTERVAL="${AGGREGATE_PUBLISH_INTERVAL:-10s}"
export LOG_FORMAT="${LOG_FORMAT:-pretty}"
export LOG_LEVEL="${LOG_LEVEL:-info}"
DEV_DIR="${DEV_DIR:-.dev}"
LOGS="$DEV_DIR/logs"
mkdir -p "$LOGS"

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$KAFKA_PORT" "$API_PORT" "$WS_PORT" "$AGG_PORT"; do
  if port_busy "$p"; then
    echo "dev.sh: port $p is already in use (another dev.sh running?)" >&2
    exit 1
  fi
done

scripts/install-kafka.sh >/dev/null

echo "==> building (release)" >&2
bins=()
for b in publisher ws-gateway aggregator; do
  if grep -q '^fn main() {}$' "crates/$b/src/main.rs" 2>/dev/null; then
    echo "    $b is not implemented yet; skipping" >&2
  else
    bins+=("$b")
  fi
done
build_args=(--bins -p odin-service)
for b in "${bins[@]}"; do build_args+=(-p "$b"); done
cargo build --release "${build_args[@]}"
BIN=target/release

pids=()
names=()
cleanup() {
  trap - INT TERM EXIT
  echo >&2
  echo "==> stopping" >&2
  # Services first (they flush to the broker), then the broker.
  for ((i=${#pids[@]}-1; i>=0; i--)); do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
  done
  for ((i=${#pids[@]}-1; i>=0; i--)); do
    local waited=0
    while kill -0 "${pids[$i]}" 2>/dev/null && ((waited < 150)); do sleep 0.1; waited=$((waited+1)); done
    if kill -0 "${pids[$i]}" 2>/dev/null; then
      echo "    ${names[$i]} did not stop in 15 s; killing" >&2
      kill -KILL "${pids[$i]}" 2>/dev/null || true
    fi
    wait "${pids[$i]}" 2>/dev/null || true
  done
  echo "==> stopped; logs in $LOGS" >&2
}
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
trap cleanup EXIT

start() { # name command...
  local name=$1; shift
  "$@" >"$LOGS/$name.log" 2>&1 &
  pids+=("$!")
  names+=("$name")
  echo "    $name started (pid $!, log $LOGS/$name.log)" >&2
}

echo "==> starting Kafka on $KAFKA_BROKERS (data in $DEV_DIR/kafka)" >&2
if [[ -n "${DEV_KAFKA_FRESH:-}" ]]; then rm -rf "$DEV_DIR/kafka"; fi
# --foreground: the pid is the broker's JVM, stopped last by cleanup like every service.
start kafka scripts/kafka.sh start --foreground --dir "$DEV_DIR/kafka" --port "$KAFKA_PORT"

echo "==> creating topics" >&2
# Quiet while it waits for the JVM to come up: rskafka logs every refused connection at info.
LOG_LEVEL=warn "$BIN/odin-topics" --wait 60s

has() { [[ " ${bins[*]} " == *" $1 "* ]]; }

if has aggregator; then
  start aggregator env AGGREGATOR_ADDR="127.0.0.1:${AGG_PORT}" "$BIN/aggregator"
fi
if has ws-gateway; then
  start ws-gateway env WS_ADDR="127.0.0.1:${WS_PORT}" "$BIN/ws-gateway"
fi
if has publisher; then
  start publisher env API_PORT="$API_PORT" API_HOST=127.0.0.1 "$BIN/publisher"
fi

wait_http() { # url seconds
  local url=$1 tries=$(( $2 * 10 ))
  for ((i=0; i<tries; i++)); do
    if curl -fsS -o /dev/null "$url" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

if has publisher; then
  if wait_http "http://127.0.0.1:${API_PORT}/health" 30; then
    tokens_json=$(printf '"%s",' ${SIM_TOKENS//,/ }); tokens_json="[${tokens_json%,}]"
    curl -fsS -X POST "http://127.0.0.1:${API_PORT}/start" -H 'content-type: application/json' \
      -d "{\"rate\":${SIM_RATE},\"tokenIds\":${tokens_json}}" >/dev/null \
      && echo "    simulator started: ${SIM_RATE} events/s over ${SIM_TOKENS}" >&2
  else
    echo "    publisher did not become healthy; see $LOGS/publisher.log" >&2
  fi
fi

cat >&2 <<INFO

Odin Stream is running.
  Kafka           ${KAFKA_BROKERS}   (data in ${DEV_DIR}/kafka, log ${LOGS}/kafka.log)
  Publisher API   http://127.0.0.1:${API_PORT}   (/health /status /stats /metrics, POST /events /start /rate /stop)
  WS gateway      ws://127.0.0.1:${WS_PORT}/ws   (/health /metrics; live console http://127.0.0.1:${WS_PORT}/)
  Aggregator      http://127.0.0.1:${AGG_PORT}   (/health /stats /metrics, POST /publish)

Try a client (subscribe to the TRADING bundle for BTC and ETH):
  cargo run --release -q -p ws-gateway --example client -- --url ws://127.0.0.1:${WS_PORT}/ws --bundle TRADING --tokens BTC,ETH

Read the aggregates (one record per active token every ${AGGREGATE_PUBLISH_INTERVAL}):
  scripts/kafka/bin/kafka-console-consumer.sh --bootstrap-server localhost:${KAFKA_PORT} --topic aggregate-info --from-beginning

Publish one event yourself:
  curl -s -X POST http://127.0.0.1:${API_PORT}/events -H 'content-type: application/json' \\
    -d '{"eventType":"TRADE_EXECUTED","tokenId":"BTC","data":{"price":101.5,"amount":2,"side":"buy"}}'

Press Ctrl-C to stop everything.
INFO

# Exit (and clean up) when any process dies, or on Ctrl-C.
set +e
wait -n "${pids[@]}"
status=$?
for i in "${!pids[@]}"; do
  if ! kill -0 "${pids[$i]}" 2>/dev/null; then
    echo "dev.sh: ${names[$i]} exited (status $status); see $LOGS/${names[$i]}.log" >&2
  fi
done
exit "$status"

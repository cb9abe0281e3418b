#!/usr/bin/env bash
# The TypeScript client's integration test on the real thing: a private Apache Kafka in a
# temporary directory on a free port (scripts/kafka.sh), the topics (odin-topics), the
# publisher, and — spawned, SIGKILLed and restarted by the test itself
# (clients/typescript/test/cluster.test.ts) — two ws-gateway instances on free loopback
# ports with a JWT secret. Events are produced through POST /events the whole time; the
# test prints the figures (produced, received, missing, duplicates per restart) and fails
# unless every acknowledged event reached each client exactly once, in order.
#
#   scripts/test-client-it.sh            (ODIN_IT_RATE=N events/s, default 100)
#
# Uses the debug binaries (target/debug or $CARGO_TARGET_DIR/debug), building them when
# missing. Everything it starts is stopped on exit (trap), also on failure or Ctrl-C; the
# logs are kept in the temp directory only when the test failed (its path is printed).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/lib/procs.sh
source "$ROOT/scripts/lib/procs.sh"

log() { echo "test-client-it: $*" >&2; }

command -v node >/dev/null || { log "node not found (node >= 20 and npm are needed)"; exit 1; }
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
if [[ ! -x "$BIN/ws-gateway" || ! -x "$BIN/publisher" || ! -x "$BIN/odin-topics" ]]; then
  log "building the debug binaries"
  (cd "$ROOT" && cargo build -p ws-gateway -p publisher -p odin-service --bins)
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/odin-client-it.XXXXXX")"
mkdir -p "$WORK/pids"
pids=()
test_pid=""
kafka_started=0
ok=0

cleanup() {
  local rc=$?
  set +e
  # The test process first (so it spawns nothing more), then the gateways it spawned and did
  # not reap (it was interrupted, or crashed): by pid file.
  [[ -n "$test_pid" ]] && stop_pids 30 "$test_pid"
  # Gateways the test spawned and did not reap (it was killed, or crashed): by pid file.
  for f in "$WORK"/pids/*.pid; do
    [[ -f "$f" ]] || continue
    kill -KILL "$(cat "$f")" 2>/dev/null
  done
  ((${#pids[@]})) && stop_pids 50 "${pids[@]}"
  ((kafka_started)) && "$ROOT/scripts/kafka.sh" stop --dir "$WORK/kafka" >/dev/null 2>&1
  if ((ok)); then
    rm -rf "$WORK"
  else
    log "failed (exit $rc); logs kept in $WORK (gateway-*.log, publisher.log, kafka/node-1/server.log)"
    for f in "$WORK"/gateway-*.log "$WORK"/publisher.log; do
      [[ -f "$f" ]] && { echo "--- tail of $f" >&2; tail -n 20 "$f" >&2; }
    done
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting Kafka in $WORK/kafka"
kafka_started=1
BROKERS="$("$ROOT/scripts/kafka.sh" start --dir "$WORK/kafka" --port "$(free_port)" | tail -n 1)"
log "Kafka on $BROKERS; creating the topics"
KAFKA_BROKERS="$BROKERS" LOG_LEVEL=warn "$BIN/odin-topics" >"$WORK/topics.log" 2>&1 \
  || { cat "$WORK/topics.log" >&2; exit 1; }

PUB_PORT="$(free_port)"
API_HOST=127.0.0.1 API_PORT="$PUB_PORT" KAFKA_BROKERS="$BROKERS" LOG_LEVEL=warn \
  "$BIN/publisher" >"$WORK/publisher.log" 2>&1 &
pids+=("$!")
for _ in $(seq 300); do
  curl -fsS -o /dev/null "http://127.0.0.1:$PUB_PORT/health" 2>/dev/null && break
  kill -0 "${pids[0]}" 2>/dev/null || { log "the publisher exited"; exit 1; }
  sleep 0.1
done
curl -fsS -o /dev/null "http://127.0.0.1:$PUB_PORT/health" || { log "the publisher is not healthy"; exit 1; }
log "publisher on 127.0.0.1:$PUB_PORT"

cd "$ROOT/clients/typescript"
[[ -d node_modules ]] || npm ci --no-audit --no-fund
GW_A="$(free_port)"
GW_B="$(free_port)"
while [[ "$GW_B" == "$GW_A" ]]; do GW_B="$(free_port)"; done
log "gateways A 127.0.0.1:$GW_A and B 127.0.0.1:$GW_B (started by the test)"
node_modules/.bin/tsc -p tsconfig.test.json
# Run directly (not through npm or `node --test`, which add processes): $test_pid is the test.
ODIN_IT_GATEWAY_BIN="$BIN/ws-gateway" \
ODIN_IT_KAFKA_BROKERS="$BROKERS" \
ODIN_IT_PUBLISH_URL="http://127.0.0.1:$PUB_PORT" \
ODIN_IT_GATEWAY_PORTS="$GW_A,$GW_B" \
ODIN_IT_JWT_SECRET="client-it-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
ODIN_IT_WORK="$WORK" \
  node --test-reporter=spec build-test/test/cluster.test.js &
test_pid=$!
wait "$test_pid"
test_pid=""
ok=1
log "ok"

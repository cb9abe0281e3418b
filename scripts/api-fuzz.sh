#!/usr/bin/env bash
# Fuzzes the publisher's and the aggregator's HTTP APIs from their own OpenAPI documents
# (/openapi.json, generated from the code with utoipa) with schemathesis (issue 10).
#
# Installs schemathesis from PyPI into a venv under ${XDG_CACHE_HOME:-$HOME/.cache}/odin-stream/,
# starts a private tansu (memory storage) on a free loopback port, creates the topics,
# starts both services (debug builds) on free ports, runs schemathesis against each for at
# most API_FUZZ_EXAMPLES examples per operation, with the checks: no 5xx
# (not_a_server_error) and every response matches the documented schema
# (response_schema_conformance). Everything it started is stopped on exit.
#
# The publisher runs with an API key, which schemathesis sends, so the mutating endpoints
# are fuzzed past the key check (the 401 path is covered by crates/publisher/tests/api.rs).
#
#   scripts/api-fuzz.sh                       # 100 examples per operation
#   API_FUZZ_EXAMPLES=1000 scripts/api-fuzz.sh
#
# Last line: `api-fuzz: N passed, M failed` (operations over both services); exit status 0
# only when M is 0. Reports (JUnit XML, logs) stay in $API_FUZZ_OUT (default target/api-fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/procs.sh
source scripts/lib/procs.sh

EXAMPLES="${API_FUZZ_EXAMPLES:-100}"
OUT="$(mkdir -p "${API_FUZZ_OUT:-target/api-fuzz}" && cd "${API_FUZZ_OUT:-target/api-fuzz}" && pwd)"
CHECKS="${API_FUZZ_CHECKS:-not_a_server_error,response_schema_conformance}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/odin-stream"
VENV="$CACHE/api-fuzz-venv"
SCHEMATHESIS_VERSION="${SCHEMATHESIS_VERSION:-4.32.5}"
API_KEY="api-fuzz-key"
BIN=target/debug
mkdir -p "$OUT"
rm -f "$OUT"/*.xml

if [[ ! -x "$VENV/bin/schemathesis" ]]; then
  echo "==> installing schemathesis ${SCHEMATHESIS_VERSION} into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "schemathesis==${SCHEMATHESIS_VERSION}"
fi

scripts/install-kafka.sh >/dev/null
if [[ -z "${API_FUZZ_SKIP_BUILD:-}" ]]; then
  echo "==> building publisher, aggregator, odin-topics" >&2
  cargo build -p publisher -p aggregator -p odin-service --bins >&2
fi


pids=()
cleanup() {
  trap - INT TERM EXIT
  stop_pids 50 "${pids[@]}"
}
trap cleanup INT TERM EXIT

wait_http() { # url pid log
  for _ in $(seq 150); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    if ! kill -0 "$2" 2>/dev/null; then break; fi
    sleep 0.2
  done
  echo "api-fuzz: $1 did not come up; log:" >&2
  tail -n 30 "$3" >&2
  exit 2
}

KAFKA_PORT="$(free_port)"
PUB_PORT="$(free_port)"
AGG_PORT="$(free_port)"
export KAFKA_BROKERS="127.0.0.1:${KAFKA_PORT}"
export LOG_LEVEL="${LOG_LEVEL:-warn}"

# --foreground: the pid is the broker's JVM, which cleanup stops like the services.
rm -rf "$OUT/kafka"
scripts/kafka.sh start --foreground --dir "$OUT/kafka" --port "$KAFKA_PORT" >"$OUT/kafka.log" 2>&1 &
pids+=($!)
TOPICS_WAIT=30s "$BIN/odin-topics" >"$OUT/topics.log" 2>&1

# A low simulator ceiling: schemathesis will call /start and /rate with large numbers.
API_HOST=127.0.0.1 API_PORT="$PUB_PORT" PUBLISHER_API_KEY="$API_KEY" PUBLISHER_MAX_RATE=200 \
  "$BIN/publisher" >"$OUT/publisher.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:${PUB_PORT}/openapi.json" "${pids[-1]}" "$OUT/publisher.log"

AGGREGATOR_ADDR="127.0.0.1:${AGG_PORT}" "$BIN/aggregator" >"$OUT/aggregator.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:${AGG_PORT}/openapi.json" "${pids[-1]}" "$OUT/aggregator.log"

fuzz() { # name port [extra schemathesis args]
  local name="$1" port="$2"
  shift 2
  echo "==> schemathesis: ${name} (${EXAMPLES} examples per operation; checks ${CHECKS})" >&2
  set +e
  # From $OUT: schemathesis keeps its example database in ./.schemathesis.
  (cd "$OUT" && "$VENV/bin/schemathesis" run "http://127.0.0.1:${port}/openapi.json" \
    --checks "$CHECKS" --max-examples "$EXAMPLES" --workers 1 --seed "${API_FUZZ_SEED:-1}" \
    --request-timeout 10 --report junit --report-junit-path "${name}.xml" \
    --warnings off "$@" >"schemathesis-${name}.log" 2>&1)
  local status=$?
  set -e
  tail -n 25 "$OUT/schemathesis-${name}.log" >&2
  echo "schemathesis ${name}: exit ${status}" >&2
}
fuzz publisher "$PUB_PORT" -H "x-api-key: ${API_KEY}"
fuzz aggregator "$AGG_PORT"

# The services must have survived the run.
for p in "${pids[@]}"; do
  if ! kill -0 "$p" 2>/dev/null; then
    echo "api-fuzz: a process died during the run (pid $p); see $OUT/*.log" >&2
    echo "api-fuzz: 0 passed, 1 failed"
    exit 1
  fi
done

# Operations (JUnit test cases) over both services, failed = with a failure or an error.
read -r passed failed < <(python3 - "$OUT"/publisher.xml "$OUT"/aggregator.xml <<'PY'
import sys
import xml.etree.ElementTree as ET
passed = failed = 0
for path in sys.argv[1:]:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        failed += 1  # no report: schemathesis itself failed
        continue
    cases = root.iter("testcase")
    n = 0
    for case in cases:
        n += 1
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
        else:
            passed += 1
    if n == 0:
        failed += 1
print(passed, failed)
PY
)
echo "api-fuzz: ${passed} passed, ${failed} failed"
[[ "$failed" -eq 0 ]]

#!/usr/bin/env bash
# Soak run of the gateway: a private Apache Kafka (scripts/kafka.sh), a release ws-gateway, the loadtest
# holding SOAK_TARGET connections on the TRADING bundle with steady events for SOAK_DURATION
# seconds. Every SOAK_INTERVAL seconds the gateway's RSS, open file descriptors, threads,
# open connections (one task each), channels, consumer lag and deliveries are appended to
# a CSV; at the end the series are plotted to a PNG (matplotlib in a venv under
# ${XDG_CACHE_HOME:-$HOME/.cache}/odin-stream/). Everything it starts is stopped on exit.
#
#   scripts/soak.sh                      # 12,000 connections, 30 minutes
#   SOAK_TARGET=2000 SOAK_DURATION=120 scripts/soak.sh
#
# Outputs: $SOAK_OUT/soak.csv, $SOAK_OUT/loadtest.json, $SOAK_OUT/soak.png (SOAK_OUT
# defaults to target/soak), and the loadtest's exit status.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/procs.sh
source scripts/lib/procs.sh

SOAK_TARGET="${SOAK_TARGET:-12000}"
SOAK_DURATION="${SOAK_DURATION:-1800}"
SOAK_INTERVAL="${SOAK_INTERVAL:-10}"
SOAK_OUT="${SOAK_OUT:-target/soak}"
SOAK_PNG="${SOAK_PNG:-$SOAK_OUT/soak.png}"
# Where the release binaries are (built here unless SOAK_SKIP_BUILD is set).
BIN="${SOAK_BIN_DIR:-target/release}"
export LOADTEST_RAMP_RATE="${LOADTEST_RAMP_RATE:-200}"
export LOADTEST_SUBSCRIPTION_MODE=bundle
export LOADTEST_BUNDLE=TRADING
export LOADTEST_TOKEN_COUNT="${LOADTEST_TOKEN_COUNT:-100}"
export LOADTEST_TOKENS_PER_CLIENT="${LOADTEST_TOKENS_PER_CLIENT:-3}"
export LOADTEST_PRODUCE_RATE="${LOADTEST_PRODUCE_RATE:-20}"
export LOADTEST_WARMUP="${LOADTEST_WARMUP:-5s}"
export LOADTEST_DRAIN="${LOADTEST_DRAIN:-15s}"
export LOG_LEVEL="${LOG_LEVEL:-warn}"

mkdir -p "$SOAK_OUT"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/odin-stream"
scripts/install-kafka.sh >/dev/null
if [[ -z "${SOAK_SKIP_BUILD:-}" ]]; then
  cargo build --release -p ws-gateway -p loadtest >&2
fi


pids=()
cleanup() {
  trap - INT TERM EXIT
  stop_pids 100 "${pids[@]}"
}
trap cleanup INT TERM EXIT

KAFKA_PORT="$(free_port)"
WS_PORT="$(free_port)"
export KAFKA_BROKERS="127.0.0.1:${KAFKA_PORT}"
rm -rf "$SOAK_OUT/kafka"
scripts/kafka.sh start --foreground --dir "$SOAK_OUT/kafka" --port "$KAFKA_PORT" \
  --heap "${SOAK_KAFKA_HEAP:-1g}" >"$SOAK_OUT/kafka.log" 2>&1 &
pids+=($!)
"$BIN/loadtest" --create-topics >&2

WS_ADDR="127.0.0.1:${WS_PORT}" WS_MAX_CONNECTIONS="$((SOAK_TARGET + 100))" \
  "$BIN/ws-gateway" >"$SOAK_OUT/gateway.log" 2>&1 &
GW_PID=$!
pids+=("$GW_PID")
for _ in $(seq 150); do
  curl -fsS "http://127.0.0.1:${WS_PORT}/health" >/dev/null 2>&1 && break
  kill -0 "$GW_PID" 2>/dev/null || { tail -n 30 "$SOAK_OUT/gateway.log" >&2; exit 2; }
  sleep 0.2
done

# The sampler: one row per interval until the loadtest ends.
CSV="$SOAK_OUT/soak.csv"
echo "elapsed_s,rss_kib,fds,threads,connections,channels,lag_total,deliveries_total,drops_total" >"$CSV"
sample() {
  local start now stats
  start=$(date +%s)
  while kill -0 "$GW_PID" 2>/dev/null; do
    now=$(date +%s)
    stats="$(curl -fsS --max-time 5 "http://127.0.0.1:${WS_PORT}/stats" 2>/dev/null || echo '{}')"
    python3 - "$GW_PID" "$((now - start))" "$stats" >>"$CSV" <<'PY' || true
import json, os, sys
pid, elapsed, stats = sys.argv[1], sys.argv[2], json.loads(sys.argv[3] or "{}")
status = dict(l.split(":", 1) for l in open(f"/proc/{pid}/status") if ":" in l)
rss = status["VmRSS"].split()[0]
threads = status["Threads"].strip()
fds = len(os.listdir(f"/proc/{pid}/fd"))
g = lambda k: stats.get(k, "")
print(f"{elapsed},{rss},{fds},{threads},{g('connections')},{g('channels')},{g('lagTotal')},{g('deliveriesTotal')},{g('dropsTotal')}")
PY
    sleep "$SOAK_INTERVAL"
  done
}
sample &
pids+=($!)

echo "soak: ${SOAK_TARGET} connections, ${LOADTEST_PRODUCE_RATE} events/s, ${SOAK_DURATION}s; gateway pid ${GW_PID}; samples in ${CSV}" >&2
set +e
timeout --kill-after=30 "$((SOAK_DURATION + 600))" "$BIN/loadtest" \
  --server "ws://127.0.0.1:${WS_PORT}/ws" --gateway-pid "$GW_PID" \
  --target "$SOAK_TARGET" --duration "$SOAK_DURATION" --json \
  >"$SOAK_OUT/loadtest.json" 2>"$SOAK_OUT/loadtest.log"
status=$?
set -e
tail -n 40 "$SOAK_OUT/loadtest.log" >&2

# The plot.
VENV="$CACHE/plot-venv"
if [[ ! -x "$VENV/bin/python" ]]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet matplotlib
fi
"$VENV/bin/python" - "$CSV" "$SOAK_PNG" "$SOAK_TARGET" "$LOADTEST_PRODUCE_RATE" <<'PY'
import csv, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
path, png, target, rate = sys.argv[1:5]
rows = [r for r in csv.DictReader(open(path)) if r["connections"] != ""]
t = [int(r["elapsed_s"]) / 60 for r in rows]
series = [
    ("RSS (MiB)", [int(r["rss_kib"]) / 1024 for r in rows]),
    ("open file descriptors", [int(r["fds"]) for r in rows]),
    ("connections (one task each)", [int(r["connections"]) for r in rows]),
    ("threads", [int(r["threads"]) for r in rows]),
    ("consumer lag (records)", [int(r["lag_total"]) for r in rows]),
]
fig, axes = plt.subplots(len(series), 1, figsize=(9, 11), sharex=True)
for ax, (name, ys) in zip(axes, series):
    ax.plot(t, ys, lw=1.2)
    ax.set_ylabel(name, fontsize=8)
    ax.set_ylim(bottom=0, top=max(ys + [1]) * 1.15)
    ax.grid(alpha=0.3)
axes[-1].set_xlabel("minutes")
fig.suptitle(f"ws-gateway soak: {target} connections (TRADING bundle), {rate} events/s, sampled every 10 s")
fig.tight_layout()
fig.savefig(png, dpi=90)
print(f"plot: {png}", file=sys.stderr)
PY
echo "soak: loadtest exit status ${status}; ${CSV}, ${SOAK_OUT}/loadtest.json, ${SOAK_PNG}" >&2
exit "$status"

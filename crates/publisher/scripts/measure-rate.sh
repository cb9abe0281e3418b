#!/usr/bin/env bash
# Measures how closely the simulator holds requested rates: starts a private Kafka on a free
# loopback port and the release publisher, then for each rate runs the simulator, waits
# WARMUP seconds and counts acknowledged events over WINDOW seconds (from GET /stats).
# Usage: crates/publisher/scripts/measure-rate.sh [RATE ...]   (default: 1 100 1000 10000 50000 75000 100000)
# Needs: cargo build -p publisher --release, curl, jq; installs Kafka (scripts/install-kafka.sh).
set -euo pipefail
cd "$(dirname "$0")/../../.."
RATES=("${@:-1 100 1000 10000 50000 75000 100000}")
read -r -a RATES <<<"${RATES[*]}"
WINDOW=${WINDOW:-10}
# Half a second off the whole seconds so, at low rates, no event sits on a window edge.
WARMUP=${WARMUP:-3.5}
BIN=target/release/publisher
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
KPORT=$(free_port); APORT=$(free_port)
LOG=$(mktemp -d)
scripts/kafka.sh start --foreground --dir "$LOG/kafka" --port "$KPORT" --heap 1g >"$LOG/kafka.log" 2>&1 &
TPID=$!
PPID_=""
cleanup() { [ -n "$PPID_" ] && kill "$PPID_" 2>/dev/null; kill "$TPID" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 300); do grep -q "Kafka Server started" "$LOG/kafka.log" 2>/dev/null && break; sleep 0.2; done
API_HOST=127.0.0.1 API_PORT=$APORT KAFKA_BROKERS=127.0.0.1:$KPORT LOG_LEVEL=warn \
  "$BIN" --create-topics >"$LOG/publisher.log" 2>&1 &
PPID_=$!
URL=http://127.0.0.1:$APORT
for _ in $(seq 100); do curl -sf "$URL/health" >/dev/null && break; sleep 0.2; done
curl -sf "$URL/health" >/dev/null || { echo "publisher not healthy; logs in $LOG"; exit 1; }
printf '%-10s %-12s %-10s %-8s %s\n' requested measured error failed cpu-publisher
for r in "${RATES[@]}"; do
  curl -sf -XPOST "$URL/start" -H 'content-type: application/json' \
    -d "{\"rate\":$r,\"tokenIds\":[\"BTC\",\"ETH\",\"SOL\",\"DOGE\",\"PEPE\"]}" >/dev/null
  sleep "$WARMUP"
  s0=$(curl -sf "$URL/stats"); t0=$(date +%s.%N); c0=$(awk '{print $14+$15}' /proc/$PPID_/stat)
  sleep "$WINDOW"
  s1=$(curl -sf "$URL/stats"); t1=$(date +%s.%N); c1=$(awk '{print $14+$15}' /proc/$PPID_/stat)
  curl -sf -XPOST "$URL/stop" >/dev/null
  p0=$(jq .messagesPublished <<<"$s0"); p1=$(jq .messagesPublished <<<"$s1")
  f1=$(jq .messagesFailed <<<"$s1")
  python3 - "$r" "$p0" "$p1" "$t0" "$t1" "$f1" "$c0" "$c1" <<'PY'
import sys, os
r, p0, p1, t0, t1, f, c0, c1 = sys.argv[1:]
r=float(r); dt=float(t1)-float(t0); m=(int(p1)-int(p0))/dt
cpu=(int(c1)-int(c0))/os.sysconf('SC_CLK_TCK')/dt
print(f"{r:<10.0f} {m:<12.1f} {100*(m-r)/r:+.2f}%{'':3} {f:<8} {cpu*100:.0f}%")
PY
done

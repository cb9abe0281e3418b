#!/usr/bin/env bash
# A local Apache Kafka in KRaft mode (each node is broker and controller at once) for
# development, tests and benchmarks. Installs Kafka first if needed (scripts/install-kafka.sh).
#
#   scripts/kafka.sh start [--dir DIR] [--port PORT] [--nodes N] [--heap SIZE]
#                          [--config key=value]... [--foreground]
#       Formats DIR (once; a later start keeps the data), starts N nodes on 127.0.0.1 (client
#       ports PORT, PORT+1, ... or free ones), waits until every node has started and prints
#       the bootstrap address (host:port,...) on the last line of stdout. --foreground (one
#       node only) runs the broker in this process instead, for supervisors.
#   scripts/kafka.sh stop [--dir DIR]
#       Stops the nodes started from DIR (SIGTERM, then SIGKILL after KAFKA_STOP_GRACE seconds).
#   scripts/kafka.sh node DIR/node-K
#       Runs one node, configured by an earlier `start --prepare-only`, in the foreground (used
#       by the Rust test kit, which supervises each node itself).
#
# DIR defaults to .dev/kafka in the repository. Logs: DIR/node-K/server.log. Extra broker
# settings: --config key=value (repeatable; later wins), e.g. --config log.retention.check.interval.ms=1000.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/lib/procs.sh
source "$ROOT/scripts/lib/procs.sh"

cmd="${1:-}"
[[ -n "$cmd" ]] && shift
dir="$ROOT/.dev/kafka"
port=""
nodes=1
heap="${KAFKA_HEAP:-512m}"
foreground=0
prepare_only=0
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --nodes) nodes="$2"; shift 2 ;;
    --heap) heap="$2"; shift 2 ;;
    --config) extra+=("$2"); shift 2 ;;
    --foreground) foreground=1; shift ;;
    --prepare-only) prepare_only=1; shift ;;
    *) if [[ "$cmd" == node && -z "${node_dir:-}" ]]; then node_dir="$1"; shift
       else echo "kafka.sh: unknown argument '$1'" >&2; exit 64; fi ;;
  esac
done

kafka_home() { "$ROOT/scripts/install-kafka.sh" | tail -n 1; }

# java with Kafka's classpath and this node's settings; exec'd so the pid is the JVM's.
run_node() { # node_dir
  local nd="$1" home
  home="$(kafka_home)"
  [[ -f "$nd/server.properties" ]] || { echo "kafka.sh: $nd/server.properties missing (run start first)" >&2; exit 1; }
  local nheap
  nheap="$(cat "$nd/heap" 2>/dev/null || echo "$heap")"
  # KAFKA_OPTS: extra JVM flags, as in the Apache scripts (e.g. -Xlog:gc:file=gc.log).
  # shellcheck disable=SC2086
  exec java -Xms"$nheap" -Xmx"$nheap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true ${KAFKA_OPTS:-} \
    -Dlog4j2.configurationFile="$home/config/log4j2.properties" \
    -cp "$home/libs/*" kafka.Kafka "$nd/server.properties"
}

prepare() {
  local home n ports=() cports=() voters="" rf
  home="$(kafka_home)"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  for ((n=1; n<=nodes; n++)); do
    if [[ -n "$port" ]]; then ports+=("$((port + n - 1))"); else ports+=("$(free_port)"); fi
    cports+=("$(free_port)")
    voters+="${voters:+,}$n@127.0.0.1:${cports[$((n-1))]}"
  done
  rf=$(( nodes < 3 ? nodes : 3 ))
  local cluster_id
  if [[ -f "$dir/cluster-id" ]]; then cluster_id="$(cat "$dir/cluster-id")"
  else
    # What `kafka-storage.sh random-uuid` prints: 16 random bytes, URL-safe base64, no padding.
    # (Drawn again while it starts with '-', which the tool would take for an option.)
    cluster_id="-"
    while [[ "$cluster_id" == -* ]]; do
      cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
    done
    echo "$cluster_id" >"$dir/cluster-id"
  fi
  local bootstrap=""
  for ((n=1; n<=nodes; n++)); do
    local nd="$dir/node-$n" p="${ports[$((n-1))]}" c="${cports[$((n-1))]}"
    mkdir -p "$nd/data"
    echo "$heap" >"$nd/heap"
    {
      echo "# Written by scripts/kafka.sh on every start; edit the script, not this file."
      echo "process.roles=broker,controller"
      echo "node.id=$n"
      echo "controller.quorum.voters=$voters"
      echo "listeners=PLAINTEXT://127.0.0.1:$p,CONTROLLER://127.0.0.1:$c"
      echo "advertised.listeners=PLAINTEXT://127.0.0.1:$p"
      echo "controller.listener.names=CONTROLLER"
      echo "inter.broker.listener.name=PLAINTEXT"
      echo "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"
      echo "log.dirs=$nd/data"
      # Topics are created by odin-topics with their configs; a typo must not create one.
      echo "auto.create.topics.enable=false"
      echo "num.partitions=1"
      echo "default.replication.factor=$rf"
      echo "offsets.topic.replication.factor=$rf"
      echo "offsets.topic.num.partitions=4"
      echo "transaction.state.log.replication.factor=$rf"
      echo "transaction.state.log.min.isr=1"
      echo "share.coordinator.state.topic.replication.factor=$rf"
      echo "share.coordinator.state.topic.min.isr=1"
      echo "group.initial.rebalance.delay.ms=0"
      # Short topic retentions (30 s for trades) only free disk if the cleaner looks often.
      echo "log.retention.check.interval.ms=5000"
      echo "log.segment.delete.delay.ms=1000"
      local kv
      for kv in "${extra[@]+"${extra[@]}"}"; do echo "$kv"; done
    } >"$nd/server.properties"
    if [[ ! -f "$nd/data/meta.properties" ]]; then
      java -cp "$home/libs/*" -Dlog4j2.configurationFile="$home/config/log4j2.properties" \
        kafka.tools.StorageTool format --ignore-formatted -t "$cluster_id" -c "$nd/server.properties" >"$nd/format.log" 2>&1 \
        || { echo "kafka.sh: formatting $nd failed:" >&2; cat "$nd/format.log" >&2; exit 1; }
    fi
    bootstrap+="${bootstrap:+,}127.0.0.1:$p"
  done
  echo "$bootstrap" >"$dir/bootstrap"
}

start() {
  if [[ "$foreground" == 1 && "$nodes" != 1 ]]; then
    echo "kafka.sh: --foreground runs one node; use it without --nodes" >&2; exit 64
  fi
  prepare
  if [[ "$prepare_only" == 1 ]]; then cat "$dir/bootstrap"; return; fi
  if [[ "$foreground" == 1 ]]; then
    echo "kafka.sh: starting Kafka on $(cat "$dir/bootstrap") (data in $dir)" >&2
    run_node "$dir/node-1"
  fi
  local n
  for ((n=1; n<=nodes; n++)); do
    local nd="$dir/node-$n"
    if [[ -f "$nd/pid" ]] && kill -0 "$(cat "$nd/pid")" 2>/dev/null; then
      echo "kafka.sh: node $n is already running (pid $(cat "$nd/pid")); stop it first" >&2; exit 1
    fi
    : >"$nd/server.log"
    nohup "$0" node "$nd" >"$nd/server.log" 2>&1 </dev/null &
    echo $! >"$nd/pid"
  done
  local deadline=$(( $(date +%s) + ${KAFKA_START_TIMEOUT:-90} ))
  for ((n=1; n<=nodes; n++)); do
    local nd="$dir/node-$n"
    until grep -q "Kafka Server started" "$nd/server.log" 2>/dev/null; do
      if ! kill -0 "$(cat "$nd/pid")" 2>/dev/null; then
        echo "kafka.sh: node $n exited while starting; its log:" >&2; tail -n 30 "$nd/server.log" >&2; exit 1
      fi
      if (( $(date +%s) > deadline )); then
        echo "kafka.sh: node $n did not start within ${KAFKA_START_TIMEOUT:-90} s; log $nd/server.log" >&2; exit 1
      fi
      sleep 0.2
    done
  done
  echo "kafka.sh: Kafka is up ($nodes node(s), data in $dir)" >&2
  cat "$dir/bootstrap"
}

stop() {
  [[ -d "$dir" ]] || return 0
  local pids=() f
  for f in "$dir"/node-*/pid; do
    [[ -f "$f" ]] || continue
    pids+=("$(cat "$f")")
  done
  if [[ ${#pids[@]} -gt 0 ]]; then
    stop_pids "$(( ${KAFKA_STOP_GRACE:-30} * 10 ))" "${pids[@]}"
    rm -f "$dir"/node-*/pid
    echo "kafka.sh: stopped ${#pids[@]} node(s) of $dir" >&2
  fi
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  node) [[ -n "${node_dir:-}" ]] || { echo "usage: kafka.sh node DIR/node-K" >&2; exit 64; }; run_node "$node_dir" ;;
  *) sed -n '2,22p' "$0" >&2; exit 64 ;;
esac

#!/usr/bin/env bash
# Runs a Kafka main class on the installed classpath, like the Apache distribution's script
# of the same name: kafka-run-class.sh <main class> [args...]. Installs Kafka if needed.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
home="$("$ROOT/scripts/install-kafka.sh" | tail -n 1)"
[[ $# -ge 1 ]] || { echo "usage: kafka-run-class.sh <main class> [args...]" >&2; exit 64; }
exec java ${KAFKA_TOOLS_HEAP_OPTS:--Xmx256m} -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
  -Dlog4j2.configurationFile="$home/config/tools-log4j2.properties" \
  -cp "$home/libs/*" "$@"

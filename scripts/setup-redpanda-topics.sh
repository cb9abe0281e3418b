#!/usr/bin/env bash
# Creates every Odin topic on a Redpanda (or Kafka) cluster with rpk: the event topics,
# trade-info, aggregate-info and a dead-letter topic for each, with the partitions, retention
# and configs of crates/odin-events/src/topics.rs (TopicSpec::configs): retention.ms,
# segment.ms (10 s on topics kept an hour or less, a twelfth of the retention on the others),
# cleanup.policy=delete, compression.type=snappy, max.message.bytes=1048576, and
# min.insync.replicas. Replication and configs come from the environment below.
# Idempotent: topics that exist get their configuration re-applied (never their partition
# count or replication: adding partitions moves tokens to other partitions, and changing
# replication is a partition reassignment, so a mismatch is reported and left to a person).
#
# Usage: scripts/setup-redpanda-topics.sh [--print]
#   --print   print the plan (`name partitions retention_ms` per line) and exit; no rpk needed.
#             The configs of each topic go to stderr (`name key=value …`), as odin-topics does.
#
# Environment (defaults in brackets):
#   KAFKA_BROKERS [localhost:19092]   comma-separated brokers
#   TOPIC_MODE [per-category]         per-category | single
#   SINGLE_TOPIC [odin.events]        the one event topic in single mode
#   TOPIC_PREFIX []                   prefix of the event topics (as the services apply it)
#   TRADE_INFO_TOPIC [trade-info]     AGGREGATE_TOPIC [aggregate-info]
#   TOPIC_REPLICAS [1]                3 on a three-broker cluster (TOPIC_REPLICATION_FACTOR,
#                                     the services' name for it, wins when set)
#   TOPIC_MIN_INSYNC_REPLICAS [1; 2 with 3+ replicas]
#   TOPIC_COMPRESSION [snappy]        compression.type (`producer` keeps what producers sent)
#   TOPIC_MAX_MESSAGE_BYTES [1048576]
#   TOPIC_EVENT_SEGMENT_MS [10000]    segment.ms of the topics kept an hour or less (the
#                                     cluster's log_segment_ms_min must allow it:
#                                     deploy/redpanda/bootstrap*.yaml set 10000)
#   TOPIC_CLEANUP_POLICY [delete]
#   TOPICS_WAIT_SECONDS [60]          how long to wait for the cluster to answer
#   RPK [rpk]                         the rpk binary
# SASL/TLS: rpk reads RPK_USER, RPK_PASS, RPK_SASL_MECHANISM, RPK_TLS_ENABLED, … itself.
set -euo pipefail

BROKERS="${KAFKA_BROKERS:-localhost:19092}"
MODE="${TOPIC_MODE:-per-category}"
SINGLE="${SINGLE_TOPIC:-odin.events}"
PREFIX="${TOPIC_PREFIX:-}"
TRADE_INFO="${TRADE_INFO_TOPIC:-trade-info}"
AGGREGATE_INFO="${AGGREGATE_TOPIC:-aggregate-info}"
REPLICAS="${TOPIC_REPLICATION_FACTOR:-${TOPIC_REPLICAS:-1}}"
COMPRESSION="${TOPIC_COMPRESSION:-snappy}"
MAX_MESSAGE_BYTES="${TOPIC_MAX_MESSAGE_BYTES:-1048576}"
EVENT_SEGMENT_MS="${TOPIC_EVENT_SEGMENT_MS:-10000}"
CLEANUP_POLICY="${TOPIC_CLEANUP_POLICY:-delete}"
if [[ ! "$REPLICAS" =~ ^[1-9][0-9]*$ ]]; then
  echo "setup-redpanda-topics: the replication factor must be a positive number, not '$REPLICAS'" >&2
  exit 2
fi
# With three copies, an acknowledged write is on two of them (acks=all): one broker may fail.
if ((REPLICAS >= 3)); then MIN_INSYNC="${TOPIC_MIN_INSYNC_REPLICAS:-2}"; else MIN_INSYNC="${TOPIC_MIN_INSYNC_REPLICAS:-1}"; fi
if ((MIN_INSYNC > REPLICAS)); then
  echo "setup-redpanda-topics: min.insync.replicas $MIN_INSYNC > replication factor $REPLICAS: no write could succeed" >&2
  exit 2
fi
WAIT_SECONDS="${TOPICS_WAIT_SECONDS:-60}"
RPK="${RPK:-rpk}"

SEC=1000
MIN=$((60 * SEC))
HOUR=$((60 * MIN))
PARTITIONS=12
DLQ_PARTITIONS=1
DLQ_RETENTION=$((7 * 24 * HOUR))

# name partitions retention_ms, in the order of TopicNames::all_specs().
plan() {
  local specs=()
  case "$MODE" in
    per-category | per_category | percategory)
      specs+=(
        "${PREFIX}odin.trades $PARTITIONS $((30 * SEC))"
        "${PREFIX}odin.liquidity $PARTITIONS $MIN"
        "${PREFIX}odin.metadata $PARTITIONS $HOUR"
        "${PREFIX}odin.social $PARTITIONS $HOUR"
        "${PREFIX}odin.community $PARTITIONS $((5 * MIN))"
        "${PREFIX}odin.creation $PARTITIONS $HOUR"
        "${PREFIX}odin.analytics $PARTITIONS $((5 * MIN))"
        "${PREFIX}odin.balances $PARTITIONS $((30 * SEC))"
      )
      ;;
    single)
      # One topic carries every category: it keeps the longest category retention.
      specs+=("${PREFIX}${SINGLE} $PARTITIONS $HOUR")
      ;;
    *)
      echo "setup-redpanda-topics: TOPIC_MODE=$MODE is neither per-category nor single" >&2
      return 1
      ;;
  esac
  # trade-info is replayed on aggregator start over the largest window: two hours.
  specs+=("$TRADE_INFO $PARTITIONS $((2 * HOUR))" "$AGGREGATE_INFO $PARTITIONS $((24 * HOUR))")
  local spec
  for spec in "${specs[@]}"; do echo "$spec"; done
  for spec in "${specs[@]}"; do echo "${spec%% *}.dlq $DLQ_PARTITIONS $DLQ_RETENTION"; done
}

# When a partition rolls to a new segment (odin-events' TopicSpec::segment_ms): retention
# deletes whole closed segments, so the short topics roll every 10 s; longer-lived ones at a
# twelfth of their retention, because every segment is an open file on the broker.
segment_ms() { local r=$1; if ((r <= HOUR)); then echo "$EVENT_SEGMENT_MS"; else echo $((r / 12)); fi; }

# The topic-level configs of a topic, in odin-events' order, then min.insync.replicas.
configs_of() { # retention_ms
  echo "retention.ms=$1" "segment.ms=$(segment_ms "$1")" "cleanup.policy=$CLEANUP_POLICY" \
    "compression.type=$COMPRESSION" "max.message.bytes=$MAX_MESSAGE_BYTES" \
    "min.insync.replicas=$MIN_INSYNC"
}

if [[ $# -gt 1 || ( $# -eq 1 && "$1" != "--print" ) ]]; then
  echo "usage: $0 [--print]" >&2
  exit 2
fi
# Validates TOPIC_MODE before anything is created (the loop below reads plan's output through
# a process substitution, whose failure it would not see).
plan_text="$(plan)"
if [[ "${1:-}" == "--print" ]]; then
  echo "$plan_text"
  while read -r name _ retention; do
    echo "$name $(configs_of "$retention")" >&2
  done <<<"$plan_text"
  exit 0
fi

if ! command -v "$RPK" >/dev/null 2>&1; then
  echo "setup-redpanda-topics: '$RPK' not found; run this inside the redpanda container" \
    "(docker compose run --rm topics) or install rpk" >&2
  exit 1
fi

rpk_() { "$RPK" -X "brokers=$BROKERS" "$@"; }

# The one-shot compose service can start before the cluster accepts Kafka requests.
deadline=$((SECONDS + WAIT_SECONDS))
until existing="$(rpk_ topic list 2>/dev/null)"; do
  if ((SECONDS >= deadline)); then
    echo "setup-redpanda-topics: brokers $BROKERS did not answer within ${WAIT_SECONDS}s" >&2
    rpk_ topic list >&2 || true
    exit 1
  fi
  sleep 1
done

created=0
updated=0
warnings=0
while read -r name partitions retention; do
  read -r -a configs <<<"$(configs_of "$retention")"
  current="$(awk -v t="$name" 'NR > 1 && $1 == t { print $2 }' <<<"$existing")"
  current_replicas="$(awk -v t="$name" 'NR > 1 && $1 == t { print $3 }' <<<"$existing")"
  if [[ -z "$current" ]]; then
    args=()
    for c in "${configs[@]}"; do args+=(-c "$c"); done
    rpk_ topic create "$name" -p "$partitions" -r "$REPLICAS" "${args[@]}" >/dev/null
    echo "created $name partitions=$partitions retention.ms=$retention"
    created=$((created + 1))
  else
    args=()
    for c in "${configs[@]}"; do args+=(--set "$c"); done
    rpk_ topic alter-config "$name" "${args[@]}" >/dev/null
    echo "exists  $name partitions=$current retention.ms=$retention (config re-applied)"
    updated=$((updated + 1))
    if [[ "$current" != "$partitions" ]]; then
      echo "WARNING: $name has $current partitions, expected $partitions; not changed" \
        "(repartitioning moves tokens between partitions: recreate it deliberately)" >&2
      warnings=$((warnings + 1))
    fi
    if [[ -n "$current_replicas" && "$current_replicas" != "$REPLICAS" ]]; then
      echo "WARNING: $name has $current_replicas replicas, expected $REPLICAS; not changed" \
        "(raise it with a partition reassignment: rpk topic alter-config cannot)" >&2
      warnings=$((warnings + 1))
    fi
  fi
done <<<"$plan_text"

echo "setup-redpanda-topics: $created created, $updated already existed, $warnings warnings," \
  "replication $REPLICAS, min.insync.replicas $MIN_INSYNC, brokers $BROKERS"

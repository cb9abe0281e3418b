#!/usr/bin/env bash
# The seeds' capacity test on GCP. The loadtest tool only loads its own machine (it refuses
# non-loopback targets), so it runs ON the first gateway VM against ws://127.0.0.1:3002/ws
# and produces its events to the backend's Redpanda over the VPC. It shares the VM's vCPUs with
# the gateway: read the gateway's CPU next to the report. Defaults follow issue 6's scenario 1
# (12,000 connections, TRADING, 3 of 100 tokens, ~100,000 deliveries/s); LOADTEST_ARGS
# replaces them.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=deploy/gcp/config.sh
. "$HERE/config.sh"
require_gcloud

first_gw="${GATEWAY_INSTANCES%% *}"
backend_ip="$(internal_ip "$BACKEND_INSTANCE")"
[[ -n "$backend_ip" ]] || die "no internal IP for $BACKEND_INSTANCE"
args="${LOADTEST_ARGS:---server ws://127.0.0.1:3002/ws --target 12000 --ramp-rate 500 --duration 300 --subscription-mode bundle --bundle TRADING --token-count 100 --tokens-per-client 3 --produce-rate 300}"
echo "capacity test on $first_gw: loadtest $args"
ssh_vm "$first_gw" "set -e; cd $REMOTE_DIR/current \
  && sudo docker build --target loadtest -t odin-stream/loadtest:current . \
  && sudo docker run --rm --network host --ulimit nofile=1048576:1048576 \
       -e KAFKA_BROKERS=$backend_ip:19092 odin-stream/loadtest:current $args"

#!/usr/bin/env bash
# The seeds' capacity test against the GCP gateways: the loadtest image (Dockerfile target
# `loadtest`) runs on the backend VM, close to Redpanda, and drives the first gateway over the
# VPC. Defaults follow issue 6's scenario 1 (12,000 connections, TRADING, 3 of 100 tokens);
# LOADTEST_ARGS replaces them.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=deploy/gcp/config.sh
. "$HERE/config.sh"
require_gcloud

first_gw="${GATEWAY_INSTANCES%% *}"
gw_ip="$(internal_ip "$first_gw")"
[[ -n "$gw_ip" ]] || die "no internal IP for $first_gw"
args="${LOADTEST_ARGS:---server ws://$gw_ip:3002/ws --target 12000 --ramp-rate 500 --duration 300 --subscription-mode bundle --bundle TRADING --token-count 100 --tokens-per-client 3}"
echo "capacity test against $first_gw ($gw_ip): loadtest $args"
ssh_vm "$BACKEND_INSTANCE" "set -e; cd $REMOTE_DIR/current \
  && sudo docker build --target loadtest -t odin-stream/loadtest:current . \
  && sudo docker run --rm --network host --ulimit nofile=1048576:1048576 \
       -e KAFKA_BROKERS=localhost:19092 odin-stream/loadtest:current $args"

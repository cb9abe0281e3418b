#!/usr/bin/env bash
# Shared settings of the deploy/gcp scripts; sourced, never run. Every value can be overridden
# from the environment (the Taskfile passes its variables through).
# shellcheck disable=SC2034  # the scripts that source this file use the variables

GCP_PROJECT="${GCP_PROJECT:-}"
GCP_ZONE="${GCP_ZONE:-us-central1-a}"
GCP_NETWORK="${GCP_NETWORK:-default}"
# VM names: one backend VM, gateways as a space-separated list.
BACKEND_INSTANCE="${BACKEND_INSTANCE:-odin-backend}"
GATEWAY_INSTANCES="${GATEWAY_INSTANCES:-odin-ws-1}"
# Backend: Redpanda (2 vCPU / 4 GB as the seeds size it) + publisher, aggregator, Console,
# Prometheus, Grafana. Gateway: the seeds' 14.5 GB gateway memory budget on 2 vCPUs.
BACKEND_MACHINE_TYPE="${BACKEND_MACHINE_TYPE:-e2-standard-4}"
GATEWAY_MACHINE_TYPE="${GATEWAY_MACHINE_TYPE:-e2-highmem-2}"
BACKEND_DISK_SIZE="${BACKEND_DISK_SIZE:-100GB}"
GATEWAY_DISK_SIZE="${GATEWAY_DISK_SIZE:-20GB}"
VM_IMAGE_FAMILY="${VM_IMAGE_FAMILY:-debian-12}"
VM_IMAGE_PROJECT="${VM_IMAGE_PROJECT:-debian-cloud}"
# Who may reach the gateways' WebSocket port (put a load balancer in front in production).
CLIENT_CIDR="${CLIENT_CIDR:-0.0.0.0/0}"
# Where the code lives on the VMs.
REMOTE_DIR="${REMOTE_DIR:-/opt/odin-stream}"
# Services of docker-compose.yml that run on the backend VM (everything but ws-gateway).
BACKEND_SERVICES="${BACKEND_SERVICES:-redpanda console topics publisher aggregator prometheus grafana}"

die() { echo "deploy/gcp: $*" >&2; exit 1; }

require_gcloud() {
  command -v gcloud >/dev/null 2>&1 || die "gcloud is not installed (https://cloud.google.com/sdk)"
  [[ -n "$GCP_PROJECT" ]] || die "set GCP_PROJECT (task gcp:create GCP_PROJECT=my-project)"
}

gc() { gcloud --project "$GCP_PROJECT" "$@"; }

ssh_vm() {
  local vm=$1; shift
  gc compute ssh "$vm" --zone "$GCP_ZONE" --command "$*"
}

internal_ip() {
  gc compute instances describe "$1" --zone "$GCP_ZONE" \
    --format='get(networkInterfaces[0].networkIP)'
}

external_ip() {
  gc compute instances describe "$1" --zone "$GCP_ZONE" \
    --format='get(networkInterfaces[0].accessConfigs[0].natIP)'
}

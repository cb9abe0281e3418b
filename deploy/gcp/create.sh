#!/usr/bin/env bash
# Creates the firewall rules, the backend VM and the gateway VMs (idempotent: what exists is
# left alone). Docker is installed by startup.sh at first boot (~2 minutes).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=deploy/gcp/config.sh
. "$HERE/config.sh"
require_gcloud

rule() {
  local name=$1; shift
  if gc compute firewall-rules describe "$name" >/dev/null 2>&1; then
    echo "firewall rule $name exists"
  else
    gc compute firewall-rules create "$name" --network "$GCP_NETWORK" "$@"
  fi
}
# Gateways and the backend talk over the VPC only: Kafka (external listener 19092) to the
# backend, Prometheus from the backend to the gateways' /metrics.
rule odin-kafka-internal --direction INGRESS --allow tcp:19092 \
  --source-tags odin-gateway --target-tags odin-backend
rule odin-gateway-metrics --direction INGRESS --allow tcp:3002 \
  --source-tags odin-backend --target-tags odin-gateway
# WebSocket clients reach the gateways. Console, Grafana and Prometheus are NOT exposed: use
# the SSH tunnels of `task gcp:redpanda:console` / docs/deploy.md.
rule odin-gateway-clients --direction INGRESS --allow tcp:3002 \
  --source-ranges "$CLIENT_CIDR" --target-tags odin-gateway
# Three-broker Redpanda (REDPANDA_INSTANCES): Kafka from the services, and the brokers'
# own traffic (Kafka, RPC 33145, admin 9644) among themselves and from the backend (Prometheus).
if [[ -n "$REDPANDA_INSTANCES" ]]; then
  rule odin-redpanda-kafka --direction INGRESS --allow tcp:9092 \
    --source-tags odin-gateway,odin-backend --target-tags odin-redpanda
  rule odin-redpanda-cluster --direction INGRESS --allow tcp:9092,tcp:33145,tcp:9644 \
    --source-tags odin-redpanda --target-tags odin-redpanda
  rule odin-redpanda-admin --direction INGRESS --allow tcp:9644 \
    --source-tags odin-backend --target-tags odin-redpanda
fi

vm() { # name type boot-disk tag [extra gcloud flags…]
  local name=$1 type=$2 disk=$3 tag=$4
  shift 4
  if gc compute instances describe "$name" --zone "$GCP_ZONE" >/dev/null 2>&1; then
    echo "instance $name exists"
    return
  fi
  gc compute instances create "$name" --zone "$GCP_ZONE" --machine-type "$type" \
    --image-family "$VM_IMAGE_FAMILY" --image-project "$VM_IMAGE_PROJECT" \
    --boot-disk-size "$disk" --boot-disk-type pd-ssd --network "$GCP_NETWORK" \
    --tags "$tag" --metadata-from-file "startup-script=$HERE/startup.sh" "$@"
}

vm "$BACKEND_INSTANCE" "$BACKEND_MACHINE_TYPE" "$BACKEND_DISK_SIZE" odin-backend
for gw in $GATEWAY_INSTANCES; do
  vm "$gw" "$GATEWAY_MACHINE_TYPE" "$GATEWAY_DISK_SIZE" odin-gateway
done
# Each broker's data lives on its own pd-ssd (device name redpanda-data, kept when the VM is
# deleted); startup.sh formats it XFS and mounts it at /mnt/disks/redpanda.
for b in $REDPANDA_INSTANCES; do
  vm "$b" "$REDPANDA_MACHINE_TYPE" 20GB odin-redpanda \
    --create-disk "name=$b-data,size=$REDPANDA_DISK_SIZE,type=pd-ssd,device-name=redpanda-data,auto-delete=no"
done
echo "created; Docker installs at first boot. Next: task gcp:deploy"

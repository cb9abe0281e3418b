#!/usr/bin/env bash
# Deletes the Odin VMs (and their disks: Redpanda's data is gone) and the firewall rules.
# Asks first unless CONFIRM=yes.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=deploy/gcp/config.sh
. "$HERE/config.sh"
require_gcloud

# shellcheck disable=SC2206  # word splitting of the instance list is intended
vms=("$BACKEND_INSTANCE" $GATEWAY_INSTANCES)
if [[ "${CONFIRM:-}" != yes ]]; then
  read -r -p "delete ${vms[*]} in $GCP_PROJECT/$GCP_ZONE with their disks? [y/N] " answer
  [[ "$answer" == y || "$answer" == Y ]] || die "aborted"
fi
for vm in "${vms[@]}"; do
  if gc compute instances describe "$vm" --zone "$GCP_ZONE" >/dev/null 2>&1; then
    gc compute instances delete "$vm" --zone "$GCP_ZONE" --quiet
  fi
done
for rule in odin-kafka-internal odin-gateway-metrics odin-gateway-clients; do
  if gc compute firewall-rules describe "$rule" >/dev/null 2>&1; then
    gc compute firewall-rules delete "$rule" --quiet
  fi
done
echo "destroyed"

#!/usr/bin/env bash
# Shows the VMs, the containers on each and each service's /health.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=deploy/gcp/config.sh
. "$HERE/config.sh"
require_gcloud

gc compute instances list --filter="tags.items~^odin-" \
  --format="table(name,zone.basename(),machineType.basename(),status,networkInterfaces[0].networkIP,networkInterfaces[0].accessConfigs[0].natIP)"
echo "== $BACKEND_INSTANCE"
ssh_vm "$BACKEND_INSTANCE" "cd $REMOTE_DIR/current && sudo docker compose ps \
  && for p in 3001 3004; do echo \"health :\$p \$(curl -s -m 3 localhost:\$p/health)\"; done" || true
for gw in $GATEWAY_INSTANCES; do
  echo "== $gw"
  ssh_vm "$gw" "cd $REMOTE_DIR/current/deploy/gcp && sudo docker compose -f gateway-compose.yml ps \
    && echo \"health :3002 \$(curl -s -m 3 localhost:3002/health)\"" || true
done

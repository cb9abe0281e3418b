#!/usr/bin/env bash
# Puts the VMs back on the release they ran before the last deploy (`task gcp:rollback`):
# on each VM the `current` and `previous` links of deploy.sh are swapped and compose restarts
# from the previous release's files and .env (its image digests or its locally built tag), so
# nothing is shipped, pulled or built. Gateways first, one at a time, each gated on
# readiness like a deploy; then the backend. ONLY=gateways|backend limits it. Running it twice
# rolls forward again. To go back further: ODIN_REF=<tag|commit> task gcp:deploy.
# Redpanda brokers are never rolled back (their data format may not go back a feature release).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=deploy/gcp/config.sh
. "$HERE/config.sh"
require_gcloud

ONLY="${ONLY:-all}" # all | gateways | backend

if [[ "$ONLY" == all || "$ONLY" == gateways ]]; then
  for gw in $GATEWAY_INSTANCES; do
    echo "== $gw"
    ssh_vm "$gw" "$(rollback_cmd "-f gateway-compose.yml" deploy/gcp) && $(wait_ready_cmd "$GATEWAY_PORT")" \
      || die "$gw is not ready after the rollback; the gateways after it are untouched"
  done
fi
if [[ "$ONLY" == all || "$ONLY" == backend ]]; then
  echo "== $BACKEND_INSTANCE"
  # Never the broker: an older release may name an older Redpanda, and its data does not go
  # back a feature release. --no-deps keeps compose from recreating it for the others.
  services="--no-deps ${BACKEND_SERVICES//redpanda /}"
  ssh_vm "$BACKEND_INSTANCE" "$(rollback_cmd "" "" "--remove-orphans $services")"
fi
echo "rolled back. Check: task gcp:status"

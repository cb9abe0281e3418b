#!/usr/bin/env bash
# Entry point of the Redpanda containers (docker-compose.yml's `redpanda`, and
# broker-compose.yml on dedicated broker VMs): production mode, never `dev-container`.
#   - `rpk redpanda mode production`: developer_mode false (fsync on every acknowledged
#     write, memory and core rules enforced), overprovisioned false;
#   - cluster properties on first start from /etc/redpanda/.bootstrap.yaml (no topic
#     auto-creation, no write caching, short segments allowed; see bootstrap*.yaml);
#   - REDPANDA_OVERPROVISIONED=true adds --overprovisioned back, for a broker that shares
#     its cores with other containers (the single backend VM): it stops Seastar pinning
#     threads and busy-polling, and changes nothing about durability.
# Arguments are passed to `rpk redpanda start`.
set -euo pipefail

rpk redpanda mode production >&2
args=(redpanda start "$@")
if [[ "${REDPANDA_OVERPROVISIONED:-false}" == true ]]; then
  args+=(--overprovisioned)
fi
echo "redpanda-start: rpk ${args[*]}" >&2
exec rpk "${args[@]}"

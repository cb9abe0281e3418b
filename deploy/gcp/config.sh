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
# Optional three-broker Redpanda cluster on VMs of its own (deploy/redpanda/broker-compose.yml),
# e.g. "odin-redpanda-1 odin-redpanda-2 odin-redpanda-3". Empty: the backend VM's one broker.
REDPANDA_INSTANCES="${REDPANDA_INSTANCES:-}"
REDPANDA_MACHINE_TYPE="${REDPANDA_MACHINE_TYPE:-n2-standard-4}"
# The persistent data disk of each broker (pd-ssd, kept when the VM is deleted).
REDPANDA_DISK_SIZE="${REDPANDA_DISK_SIZE:-200GB}"
# Artifact Registry: images are built once (deploy/gcp/images.sh, `task images`), pushed
# there and deployed by digest.
GCP_REGION="${GCP_REGION:-${GCP_ZONE%-*}}"
AR_REPOSITORY="${AR_REPOSITORY:-odin-stream}"
REGISTRY="${REGISTRY:-$GCP_REGION-docker.pkg.dev/$GCP_PROJECT/$AR_REPOSITORY}"
# Where images.sh records the digests of each release (git-ignored): releases/<commit>.env.
RELEASES_DIR="${RELEASES_DIR:-$(dirname "${BASH_SOURCE[0]}")/releases}"
# The gateway's client port and readiness path (the rolling deploy waits for 200 on it).
GATEWAY_PORT="${GATEWAY_PORT:-3002}"
READY_PATH="${READY_PATH:-/readyz}"
READY_TIMEOUT="${READY_TIMEOUT:-120}"
# The first gateway of a deploy is the canary: it must stay ready this long before the others.
CANARY_SECONDS="${CANARY_SECONDS:-300}"

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

# A remote shell snippet that waits until http://127.0.0.1:PORT/PATH answers 200, or fails
# after READY_TIMEOUT seconds. Usage: ssh_vm "$vm" "…; $(wait_ready_cmd 3002)"
wait_ready_cmd() {
  local port=$1
  echo "{ ok=0; for _ in \$(seq 1 $READY_TIMEOUT); do if curl -fsS -m 2 -o /dev/null http://127.0.0.1:$port$READY_PATH; then ok=1; break; fi; sleep 1; done; [ \$ok = 1 ] || { echo '$READY_PATH on :$port not ready within ${READY_TIMEOUT}s' >&2; exit 1; }; }"
}

# A remote shell snippet that puts a VM back on its previous release (swaps the `current`
# and `previous` links of deploy.sh) and restarts compose there without building.
# Usage: rollback_cmd "<compose -f args>" "<dir of the compose file in the release>" [services]
rollback_cmd() {
  local files=$1 dir=$2 services=${3:-}
  echo "set -e; cd $REMOTE_DIR; prev=\$(readlink previous) || { echo 'no previous release on this VM' >&2; exit 1; }; cur=\$(readlink current); sudo ln -sfn \"\$prev\" current; sudo ln -sfn \"\$cur\" previous; echo \"now on \$prev (was \$cur)\"; cd current/$dir && sudo docker compose $files up -d --no-build $services"
}

internal_ip() {
  gc compute instances describe "$1" --zone "$GCP_ZONE" \
    --format='get(networkInterfaces[0].networkIP)'
}

external_ip() {
  gc compute instances describe "$1" --zone "$GCP_ZONE" \
    --format='get(networkInterfaces[0].accessConfigs[0].natIP)'
}

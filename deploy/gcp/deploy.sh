#!/usr/bin/env bash
# Ships the current commit to the VMs and (re)starts the stack: the backend VM runs
# docker-compose.yml without ws-gateway, each gateway VM runs deploy/gcp/gateway-compose.yml.
# Images are tagged with the commit (ODIN_TAG), so a rollback is a deploy of an older commit:
#   deploy/gcp/deploy.sh            deploy HEAD
#   ODIN_REF=v1.2.0 deploy/gcp/deploy.sh   deploy (or roll back to) a tag or commit
# Needs deploy/gcp/backend.env and deploy/gcp/gateway.env (copy the .template files).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source=deploy/gcp/config.sh
. "$HERE/config.sh"
require_gcloud

ODIN_REF="${ODIN_REF:-HEAD}"
ONLY="${ONLY:-all}" # all | backend | gateways
# Other environments keep their files elsewhere: BACKEND_ENV_FILE=~/odin/staging-backend.env …
BACKEND_ENV_FILE="${BACKEND_ENV_FILE:-$HERE/backend.env}"
GATEWAY_ENV_FILE="${GATEWAY_ENV_FILE:-$HERE/gateway.env}"
for f in "$BACKEND_ENV_FILE" "$GATEWAY_ENV_FILE"; do
  [[ -f "$f" ]] || die "missing $f: cp deploy/gcp/$(basename "$f").template $f and edit it"
done
tag="$(git -C "$ROOT" rev-parse --short=12 "$ODIN_REF^{commit}")" || die "unknown ref $ODIN_REF"
archive="$(mktemp -t odin-stream-XXXXXX.tar.gz)"
trap 'rm -f "$archive"' EXIT
git -C "$ROOT" archive --format=tar.gz -o "$archive" "$tag"
echo "deploying $ODIN_REF ($tag)"

ship() { # vm env-file
  local vm=$1 env=$2
  gc compute scp --zone "$GCP_ZONE" "$archive" "$vm:/tmp/odin-stream.tar.gz"
  gc compute scp --zone "$GCP_ZONE" "$env" "$vm:/tmp/odin.env"
  ssh_vm "$vm" "set -e; sudo mkdir -p $REMOTE_DIR/releases/$tag \
    && sudo tar -xzf /tmp/odin-stream.tar.gz -C $REMOTE_DIR/releases/$tag \
    && sudo ln -sfn $REMOTE_DIR/releases/$tag $REMOTE_DIR/current"
}

backend_ip="$(internal_ip "$BACKEND_INSTANCE")"
[[ -n "$backend_ip" ]] || die "no internal IP for $BACKEND_INSTANCE (task gcp:create first)"

if [[ "$ONLY" == all || "$ONLY" == backend ]]; then
  ship "$BACKEND_INSTANCE" "$BACKEND_ENV_FILE"
  # Prometheus scrapes every gateway VM's /metrics through file_sd targets.
  targets="["
  sep=""
  for gw in $GATEWAY_INSTANCES; do
    targets+="$sep{\"targets\":[\"$(internal_ip "$gw"):3002\"],\"labels\":{\"vm\":\"$gw\"}}"
    sep=","
  done
  targets+="]"
  # .env: compose interpolation (advertised Kafka address = this VM's internal IP, image tag).
  ssh_vm "$BACKEND_INSTANCE" "set -e; cd $REMOTE_DIR/current \
    && { sudo cat /tmp/odin.env; echo REDPANDA_ADVERTISE_HOST=$backend_ip; echo ODIN_TAG=$tag; } | sudo tee .env >/dev/null \
    && echo '$targets' | sudo tee deploy/prometheus/targets/ws-gateway-gcp.json >/dev/null \
    && sudo docker compose build publisher aggregator \
    && sudo docker compose up -d --remove-orphans $BACKEND_SERVICES \
    && sudo docker compose ps"
fi

if [[ "$ONLY" == all || "$ONLY" == gateways ]]; then
  for gw in $GATEWAY_INSTANCES; do
    ship "$gw" "$GATEWAY_ENV_FILE"
    # KAFKA_BROKERS defaults to the backend's external listener unless gateway.env sets it.
    ssh_vm "$gw" "set -e; cd $REMOTE_DIR/current/deploy/gcp \
      && { grep -q '^KAFKA_BROKERS=' /tmp/odin.env || echo KAFKA_BROKERS=$backend_ip:19092; sudo cat /tmp/odin.env; } | sudo tee gateway.env >/dev/null \
      && echo ODIN_TAG=$tag | sudo tee .env >/dev/null \
      && sudo docker compose -f gateway-compose.yml up -d --build \
      && sudo docker compose -f gateway-compose.yml ps"
  done
fi
echo "deployed $tag. Check: task gcp:status"

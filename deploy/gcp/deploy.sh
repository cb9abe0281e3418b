#!/usr/bin/env bash
# Ships a commit to the VMs and (re)starts the stack: the backend VM runs docker-compose.yml
# without ws-gateway, each gateway VM runs deploy/gcp/gateway-compose.yml, and (optional)
# each broker VM of REDPANDA_INSTANCES runs deploy/redpanda/broker-compose.yml.
#   deploy/gcp/deploy.sh                   deploy HEAD
#   ODIN_REF=v1.2.0 deploy/gcp/deploy.sh   deploy (or roll forward/back to) a tag or commit
#
# Images: when deploy/gcp/releases/<commit>.env exists (written by images.sh, `task images`),
# every VM pulls those digests from Artifact Registry: the bytes that were built once and
# tested are the bytes that run. Without it the VMs build the images themselves (the old way,
# one build per VM; REQUIRE_IMAGES=yes refuses that).
#
# Gateways roll one at a time, each gated on its readiness (READY_PATH, 200 within
# READY_TIMEOUT s); the first one is a canary that must stay ready for CANARY_SECONDS before
# the next is touched, and is put back on the previous release when it does not. A gateway
# draining on SIGTERM fails /readyz first, so the load balancer stops sending it clients.
# Each VM keeps releases/<commit>, `current` and `previous` (task gcp:rollback swaps them).
# Needs deploy/gcp/backend.env and deploy/gcp/gateway.env (copy the .template files).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source=deploy/gcp/config.sh
. "$HERE/config.sh"
require_gcloud

ODIN_REF="${ODIN_REF:-HEAD}"
ONLY="${ONLY:-all}" # all | redpanda | backend | gateways
# Other environments keep their files elsewhere: BACKEND_ENV_FILE=~/odin/staging-backend.env …
BACKEND_ENV_FILE="${BACKEND_ENV_FILE:-$HERE/backend.env}"
GATEWAY_ENV_FILE="${GATEWAY_ENV_FILE:-$HERE/gateway.env}"
for f in "$BACKEND_ENV_FILE" "$GATEWAY_ENV_FILE"; do
  [[ -f "$f" ]] || die "missing $f: cp deploy/gcp/$(basename "$f").template $f and edit it"
done
tag="$(git -C "$ROOT" rev-parse --short=12 "$ODIN_REF^{commit}")" || die "unknown ref $ODIN_REF"

release_env="$RELEASES_DIR/$tag.env"
image_lines=""
if [[ -f "$release_env" ]]; then
  image_lines="$(grep -E '^ODIN_[A-Z_]+_IMAGE=' "$release_env" | tr '\n' ' ')"
  echo "deploying $ODIN_REF ($tag) by digest: $image_lines"
elif [[ "${REQUIRE_IMAGES:-no}" == yes ]]; then
  die "no $release_env: run 'ODIN_REF=$tag task images' first (REQUIRE_IMAGES=yes)"
else
  echo "deploying $ODIN_REF ($tag); no release images ($release_env), so each VM builds its own" >&2
fi
archive="$(mktemp -t odin-stream-XXXXXX.tar.gz)"
trap 'rm -f "$archive"' EXIT
git -C "$ROOT" archive --format=tar.gz -o "$archive" "$tag"

# Remote snippets: the .env lines naming the images, and how to get them onto the VM.
images_env="for l in $image_lines; do echo \$l; done"
if [[ -n "$image_lines" ]]; then
  get_images() { echo "{ sudo gcloud auth configure-docker $GCP_REGION-docker.pkg.dev --quiet >/dev/null 2>&1 || true; } && sudo docker compose $1 pull $2"; }
  backend_up_flag=--no-build
  gateway_up_flag=--no-build
else
  get_images() { echo "sudo docker compose $1 build $2"; }
  backend_up_flag=""
  gateway_up_flag=--build
fi

ship() { # vm [env-file]
  local vm=$1 env=${2:-}
  gc compute scp --zone "$GCP_ZONE" "$archive" "$vm:/tmp/odin-stream.tar.gz"
  if [[ -n "$env" ]]; then
    gc compute scp --zone "$GCP_ZONE" "$env" "$vm:/tmp/odin.env"
  fi
  # `previous` remembers what ran before, for task gcp:rollback.
  ssh_vm "$vm" "set -e; sudo mkdir -p $REMOTE_DIR/releases/$tag \
    && sudo tar -xzf /tmp/odin-stream.tar.gz -C $REMOTE_DIR/releases/$tag \
    && prev=\$(readlink $REMOTE_DIR/current || true) \
    && if [ -n \"\$prev\" ] && [ \"\$prev\" != $REMOTE_DIR/releases/$tag ]; then sudo ln -sfn \"\$prev\" $REMOTE_DIR/previous; fi \
    && sudo ln -sfn $REMOTE_DIR/releases/$tag $REMOTE_DIR/current"
}

backend_ip="$(internal_ip "$BACKEND_INSTANCE")"
[[ -n "$backend_ip" ]] || die "no internal IP for $BACKEND_INSTANCE (task gcp:create first)"

# ---- optional three-broker Redpanda ----------------------------------------------------
broker_list=""
broker_targets=""
if [[ -n "$REDPANDA_INSTANCES" ]]; then
  seeds=""
  for b in $REDPANDA_INSTANCES; do
    ip="$(internal_ip "$b")"
    [[ -n "$ip" ]] || die "no internal IP for $b (task gcp:create first)"
    seeds+="${seeds:+,}$ip:33145"
    broker_list+="${broker_list:+,}$ip:9092"
    broker_targets+="${broker_targets:+,}{\"targets\":[\"$ip:9644\"],\"labels\":{\"vm\":\"$b\"}}"
  done
fi
if [[ -n "$REDPANDA_INSTANCES" && ( "$ONLY" == all || "$ONLY" == redpanda ) ]]; then
  for b in $REDPANDA_INSTANCES; do
    ip="$(internal_ip "$b")"
    ship "$b"
    # One broker at a time; on a running cluster wait until it is healthy again before the
    # next (a new cluster forms only once all three are up, so then there is nothing to wait for).
    ssh_vm "$b" "set -e; cd $REMOTE_DIR/current/deploy/redpanda \
      && printf 'REDPANDA_ADVERTISE_HOST=%s\nREDPANDA_SEEDS=%s\n' $ip $seeds | sudo tee broker.env >/dev/null \
      && was=\$(sudo docker exec redpanda rpk cluster health 2>/dev/null | grep -cE 'Healthy:.+true' || true) \
      && sudo docker compose -f broker-compose.yml --env-file broker.env up -d \
      && if [ \"\$was\" = 1 ]; then ok=0; for _ in \$(seq 1 60); do if sudo docker exec redpanda rpk cluster health | grep -qE 'Healthy:.+true'; then ok=1; break; fi; sleep 5; done; [ \$ok = 1 ] || { echo 'cluster not healthy after restarting $b' >&2; exit 1; }; fi"
  done
fi

# ---- backend ---------------------------------------------------------------------------
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
  if [[ -z "$REDPANDA_INSTANCES" ]]; then
    # .env: compose interpolation (advertised Kafka address = this VM's internal IP, images).
    ssh_vm "$BACKEND_INSTANCE" "set -e; cd $REMOTE_DIR/current \
      && { sudo cat /tmp/odin.env; echo REDPANDA_ADVERTISE_HOST=$backend_ip; echo ODIN_TAG=$tag; $images_env; } | sudo tee .env >/dev/null \
      && echo '$targets' | sudo tee deploy/prometheus/targets/ws-gateway-gcp.json >/dev/null \
      && $(get_images "" "publisher aggregator") \
      && sudo docker compose up -d --remove-orphans $BACKEND_SERVICES $backend_up_flag \
      && sudo docker compose ps"
  else
    # The brokers are elsewhere: topics first (replication 3, min.insync 2), then the rest,
    # without the local redpanda (--no-deps).
    ssh_vm "$BACKEND_INSTANCE" "set -e; cd $REMOTE_DIR/current \
      && { sudo cat /tmp/odin.env; echo ODIN_KAFKA_BROKERS=$broker_list; echo TOPIC_REPLICAS=3; echo TOPIC_MIN_INSYNC_REPLICAS=2; echo REDPANDA_ADMIN_URLS=http://${broker_list%%:*}:9644; echo ODIN_TAG=$tag; $images_env; } | sudo tee .env >/dev/null \
      && echo '$targets' | sudo tee deploy/prometheus/targets/ws-gateway-gcp.json >/dev/null \
      && echo '[$broker_targets]' | sudo tee deploy/prometheus/targets/redpanda-gcp.json >/dev/null \
      && $(get_images "" "publisher aggregator") \
      && sudo docker compose run --rm --no-deps topics \
      && sudo docker compose up -d --no-deps --remove-orphans ${BACKEND_SERVICES//redpanda /} $backend_up_flag \
      && sudo docker compose ps"
  fi
fi

# ---- gateways: canary first, then one at a time, each gated on readiness ---------------
if [[ "$ONLY" == all || "$ONLY" == gateways ]]; then
  kafka_default="$backend_ip:19092"
  [[ -z "$broker_list" ]] || kafka_default="$broker_list"
  canary=""
  for gw in $GATEWAY_INSTANCES; do
    ship "$gw" "$GATEWAY_ENV_FILE"
    # KAFKA_BROKERS defaults to the backend's external listener (or the three brokers)
    # unless gateway.env sets it.
    ssh_vm "$gw" "set -e; cd $REMOTE_DIR/current/deploy/gcp \
      && { grep -q '^KAFKA_BROKERS=' /tmp/odin.env || echo KAFKA_BROKERS=$kafka_default; sudo cat /tmp/odin.env; } | sudo tee gateway.env >/dev/null \
      && { echo ODIN_TAG=$tag; $images_env; } | sudo tee .env >/dev/null \
      && $(get_images "-f gateway-compose.yml" "") \
      && sudo docker compose -f gateway-compose.yml up -d $gateway_up_flag \
      && sudo docker compose -f gateway-compose.yml ps \
      && $(wait_ready_cmd "$GATEWAY_PORT")" \
      || die "$gw did not become ready on $tag; the gateways after it are untouched. Put it back: ONLY=gateways GATEWAY_INSTANCES=$gw task gcp:rollback"
    if [[ -z "$canary" ]]; then
      canary="$gw"
      if ((CANARY_SECONDS > 0)) && [[ "$GATEWAY_INSTANCES" != "$gw" ]]; then
        echo "canary $gw: watching $READY_PATH for ${CANARY_SECONDS}s before the other gateways"
        if ! ssh_vm "$gw" "end=\$((SECONDS + $CANARY_SECONDS)); while [ \$SECONDS -lt \$end ]; do curl -fsS -m 2 -o /dev/null http://127.0.0.1:$GATEWAY_PORT$READY_PATH || { echo 'canary lost readiness' >&2; exit 1; }; sleep 5; done"; then
          ssh_vm "$gw" "$(rollback_cmd "-f gateway-compose.yml" "deploy/gcp")" || true
          die "canary $gw failed on $tag and was put back on its previous release; the other gateways are untouched"
        fi
      fi
    fi
  done
fi
echo "deployed $tag. Check: task gcp:status"

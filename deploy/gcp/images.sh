#!/usr/bin/env bash
# Builds the three service images once, from the exact bytes of a commit, pushes them to
# Artifact Registry and records their digests, so that every VM runs the same bytes:
#   deploy/gcp/images.sh                 build and push HEAD
#   ODIN_REF=v1.2.0 deploy/gcp/images.sh build and push a tag or commit
# Writes deploy/gcp/releases/<commit>.env with ODIN_PUBLISHER_IMAGE, ODIN_WS_GATEWAY_IMAGE
# and ODIN_AGGREGATOR_IMAGE = REGISTRY/<service>@sha256:…; deploy.sh deploys that release by
# digest (the VMs pull, nothing compiles on them). Needs Docker with buildx and gcloud;
# creates the Artifact Registry repository (AR_REPOSITORY in GCP_REGION) when missing.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source=deploy/gcp/config.sh
. "$HERE/config.sh"
require_gcloud
command -v docker >/dev/null 2>&1 || die "docker (with buildx) is needed to build the images"

ODIN_REF="${ODIN_REF:-HEAD}"
SERVICES="${IMAGE_SERVICES:-publisher ws-gateway aggregator}"
commit="$(git -C "$ROOT" rev-parse "$ODIN_REF^{commit}")" || die "unknown ref $ODIN_REF"
tag="${commit:0:12}"
if [[ "$ODIN_REF" == HEAD ]] && [[ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no)" ]]; then
  echo "images: the work tree has uncommitted changes; building the commit $tag, not them" >&2
fi

if ! gc artifacts repositories describe "$AR_REPOSITORY" --location "$GCP_REGION" >/dev/null 2>&1; then
  gc artifacts repositories create "$AR_REPOSITORY" --repository-format docker \
    --location "$GCP_REGION" --description "Odin Stream service images"
fi
gcloud auth configure-docker "$GCP_REGION-docker.pkg.dev" --quiet >/dev/null

# The build context is the commit itself (git archive), never the work tree.
ctx="$(mktemp -d -t odin-images-XXXXXX)"
trap 'rm -rf "$ctx"' EXIT
git -C "$ROOT" archive "$commit" | tar -x -C "$ctx"

mkdir -p "$RELEASES_DIR"
release="$RELEASES_DIR/$tag.env"
tmp="$release.tmp"
: >"$tmp"
for svc in $SERVICES; do
  var="ODIN_$(tr 'a-z-' 'A-Z_' <<<"$svc")_IMAGE"
  meta="$ctx/.metadata-$svc.json"
  # One builder stage compiles all three binaries; BuildKit reuses it for the other targets.
  docker buildx build --target "$svc" \
    --label "org.opencontainers.image.revision=$commit" \
    --label "org.opencontainers.image.source=odin-stream" \
    --tag "$REGISTRY/$svc:$tag" --push --metadata-file "$meta" "$ctx"
  digest="$(sed -n 's/.*"containerimage.digest": *"\(sha256:[0-9a-f]*\)".*/\1/p' "$meta" | head -n1)"
  [[ -n "$digest" ]] || die "no digest for $svc in $meta"
  echo "$var=$REGISTRY/$svc@$digest" | tee -a "$tmp"
done
echo "ODIN_TAG=$tag" >>"$tmp"
mv "$tmp" "$release"
echo "images: release $tag recorded in $release; deploy it with: ODIN_REF=$tag task gcp:deploy" >&2

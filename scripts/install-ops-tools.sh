#!/usr/bin/env bash
# Installs the tools of scripts/check-ops.sh, idempotently, and prints where they are:
#   promtool     Debian's `prometheus` package (apt-get); else `go install` from the Go
#                module proxy (github.com/prometheus/prometheus/cmd/promtool)
#   kubeconform  `go install github.com/yannh/kubeconform/cmd/kubeconform@KUBECONFORM_VERSION`
#   kustomize    `go install sigs.k8s.io/kustomize/kustomize/v5@KUSTOMIZE_VERSION`
#   schemas      Kubernetes JSON schemas for kubeconform, offline: the PyPI package
#                kubernetes-validate ships them (draft 2020-12, one shared _definitions.json);
#                they are rewritten into kubeconform's "standalone" layout under
#                $CACHE/k8s-schemas/v<K8S_VERSION>-standalone[-strict]/<kind>-<group>-<version>.json
#                (kubeconform's default location is GitHub, which CI may not reach).
# Binaries go to $CACHE/bin, the schema venv to $CACHE/ops-venv
# (CACHE = $ODIN_CACHE_DIR, default ~/.cache/odin-stream). Once installed, it works offline.
# Output (stdout, one `name=path` per line): promtool, kubeconform, kustomize, schemas, python.
set -euo pipefail

CACHE_DIR="${ODIN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/odin-stream}"
BIN="$CACHE_DIR/bin"
VENV="$CACHE_DIR/ops-venv"
KUBECONFORM_VERSION="${KUBECONFORM_VERSION:-v0.7.0}"
KUSTOMIZE_VERSION="${KUSTOMIZE_VERSION:-v5.8.1}"
PROMTOOL_GO_VERSION="${PROMTOOL_GO_VERSION:-v0.316.0}" # the Go module version of Prometheus 3.x
KUBERNETES_VALIDATE_VERSION="${KUBERNETES_VALIDATE_VERSION:-1.35.0}"
K8S_VERSION="${K8S_VERSION:-1.33.0}"
# The kinds deploy/k8s uses (and a few an overlay may add).
K8S_KINDS="${K8S_KINDS:-deployment-apps-v1 service-v1 configmap-v1 secret-v1 namespace-v1 serviceaccount-v1 poddisruptionbudget-policy-v1 networkpolicy-networking-v1 horizontalpodautoscaler-autoscaling-v2 statefulset-apps-v1 ingress-networking-v1}"
PYTHON="${PYTHON:-python3}"

mkdir -p "$BIN"
exec 9>"$CACHE_DIR/.ops-tools.lock"
flock 9
log() { echo "install-ops-tools: $*" >&2; }

go_install() { # binary module@version
  local bin=$1 mod=$2 stamp="$BIN/.$1.version"
  if [[ -x "$BIN/$bin" && -f "$stamp" && "$(cat "$stamp")" == "$mod" ]]; then
    return 0
  fi
  command -v go >/dev/null 2>&1 || { log "go is needed to install $mod"; return 1; }
  log "go install $mod (a few minutes on 2 cores)"
  GOBIN="$BIN" GOFLAGS=-mod=mod nice -n 10 go install "$mod" >&2
  echo "$mod" >"$stamp"
}

# ---- promtool -------------------------------------------------------------------------------
promtool="$(command -v promtool || true)"
if [[ -z "$promtool" && -x "$BIN/promtool" ]]; then
  promtool="$BIN/promtool"
fi
if [[ -z "$promtool" ]]; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "apt-get install prometheus (for promtool)"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >&2; then
      apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >&2 || true
    fi
    promtool="$(command -v promtool || true)"
  fi
  if [[ -z "$promtool" ]]; then
    go_install promtool "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_GO_VERSION"
    promtool="$BIN/promtool"
  fi
fi

# ---- kubeconform, kustomize -----------------------------------------------------------------
go_install kubeconform "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
go_install kustomize "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"

# ---- Kubernetes schemas ---------------------------------------------------------------------
want="kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
if [[ ! -f "$VENV/.odin-requirements" || "$(cat "$VENV/.odin-requirements")" != "$want" ]]; then
  log "pip install $want into $VENV"
  "$PYTHON" -m venv "$VENV" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$want" >&2
  echo "$want" >"$VENV/.odin-requirements"
fi
SCHEMAS="$CACHE_DIR/k8s-schemas"
stamp="$SCHEMAS/.v$K8S_VERSION-$KUBERNETES_VALIDATE_VERSION"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$K8S_KINDS" ]]; then
  log "writing standalone schemas for Kubernetes $K8S_VERSION into $SCHEMAS"
  "$VENV/bin/python" - "$SCHEMAS" "$K8S_VERSION" $K8S_KINDS <<'PY'
import json, os, sys
import kubernetes_validate

out_root, version, kinds = sys.argv[1], sys.argv[2], sys.argv[3:]
src_root = os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema")
for strict in ("", "-strict"):
    src = os.path.join(src_root, f"v{version}-local{strict}")
    if not os.path.isdir(src):
        sys.exit(f"kubernetes-validate has no schemas for v{version} (has: {sorted(os.listdir(src_root))})")
    with open(os.path.join(src, "_definitions.json")) as f:
        defs = json.load(f)["$defs"]
    dst = os.path.join(out_root, f"v{version}-standalone{strict}")
    os.makedirs(dst, exist_ok=True)
    for kind in kinds:
        with open(os.path.join(src, kind + ".json")) as f:
            text = f.read()
        # References into the shared file become local ones, and the remote $id goes, so
        # that nothing is fetched: one self-contained schema per kind.
        schema = json.loads(text.replace('"/api/_definitions.json#/$defs/', '"#/$defs/'))
        schema.pop("$id", None)
        schema["$defs"] = defs
        with open(os.path.join(dst, kind + ".json"), "w") as f:
            json.dump(schema, f)
PY
  echo "$K8S_KINDS" >"$stamp"
fi

echo "promtool=$promtool"
echo "kubeconform=$BIN/kubeconform"
echo "kustomize=$BIN/kustomize"
echo "schemas=$SCHEMAS/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json"
echo "k8s_version=$K8S_VERSION"
echo "python=$VENV/bin/python"

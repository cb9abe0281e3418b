#!/usr/bin/env bash
# Checks the operations files without a cluster, a Prometheus or Docker:
#   - deploy/prometheus: `promtool check rules` (alerts.yml, limits/*.yml), `promtool test rules`
#     (alerts_test.yml), `promtool check config` (prometheus.yml with its rule files);
#   - deploy/k8s: `kustomize build`, validated by kubeconform -strict against Kubernetes'
#     JSON schemas (offline, from scripts/install-ops-tools.sh), then the operational rules
#     of deploy/check/check_ops.py (probes, drain timing, PDBs, admin ports not in Services).
# Each validator is also shown a broken input, which it must refuse.
# Tools: scripts/install-ops-tools.sh (first run needs the package registries; then offline).
# Last line: `check-ops: N passed, M failed`; exit 1 on failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$(bash "$ROOT/scripts/install-ops-tools.sh")"
tool() { sed -n "s/^$1=//p" <<<"$tools"; }
PROMTOOL="$(tool promtool)"
KUBECONFORM="$(tool kubeconform)"
KUSTOMIZE="$(tool kustomize)"
SCHEMAS="$(tool schemas)"
K8S_VERSION="$(tool k8s_version)"
PY="$(tool python)"

passed=0
failed=0
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

check() { # name command...
  local name=$1; shift
  if "$@" >"$WORK/out" 2>&1; then
    passed=$((passed + 1))
    echo "ok   $name"
  else
    failed=$((failed + 1))
    echo "FAIL $name"
    sed 's/^/     /' "$WORK/out" | tail -40
  fi
}
refuses() { ! "$@"; } # a check that must fail

cd "$ROOT"
PROM=deploy/prometheus

# ---- Prometheus -----------------------------------------------------------------------------
check "promtool check rules alerts.yml" "$PROMTOOL" check rules "$PROM/alerts.yml"
for f in "$PROM"/limits/*.yml; do
  check "promtool check rules ${f#"$PROM"/}" "$PROMTOOL" check rules "$f"
done
check "promtool test rules alerts_test.yml" "$PROMTOOL" test rules "$PROM/alerts_test.yml"
# prometheus.yml names its rule files relative to itself, as they are mounted in the container.
mkdir -p "$WORK/prom"
cp "$PROM/prometheus.yml" "$PROM/alerts.yml" "$WORK/prom/"
cp "$PROM/limits/compose.yml" "$WORK/prom/limits.yml"
check "promtool check config prometheus.yml (with alerts.yml and limits.yml)" "$PROMTOOL" check config "$WORK/prom/prometheus.yml"
# Every alert has a runbook section: the anchor in its annotation is a heading of docs/operations.md.
check "every alert's runbook anchor is a heading in docs/operations.md" \
  "$PY" "$ROOT/deploy/check/check_ops.py" runbooks "$PROM/alerts.yml" docs/operations.md
# The unit tests can fail: a threshold moved by a factor of three breaks them.
mkdir -p "$WORK/mutant/limits"
sed 's/> 0.01$/> 0.03/' "$PROM/alerts.yml" >"$WORK/mutant/alerts.yml"
cp "$PROM/alerts_test.yml" "$WORK/mutant/"
cp "$PROM/limits/compose.yml" "$WORK/mutant/limits/"
check "promtool test rules fails when an alert's threshold changes" refuses "$PROMTOOL" test rules "$WORK/mutant/alerts_test.yml"

# ---- Kubernetes -----------------------------------------------------------------------------
KC=("$KUBECONFORM" -strict -summary -kubernetes-version "$K8S_VERSION" -schema-location "$SCHEMAS")
check "kustomize build deploy/k8s" sh -c "'$KUSTOMIZE' build deploy/k8s >'$WORK/k8s.yaml'"
check "kubeconform -strict (Kubernetes $K8S_VERSION) accepts the rendered manifests" "${KC[@]}" "$WORK/k8s.yaml"
# Strictness is real: an unknown field in a container is refused.
sed 's/^\(\s*\)imagePullPolicy: IfNotPresent/\1imagePullPolicy: IfNotPresent\n\1imagePullPolicyy: Always/' "$WORK/k8s.yaml" >"$WORK/k8s-bad.yaml"
check "kubeconform refuses a misspelt field" refuses "${KC[@]}" "$WORK/k8s-bad.yaml"
check "deploy/k8s operational rules (probes, drain, PDB, admin ports)" \
  "$PY" "$ROOT/deploy/check/check_ops.py" k8s "$WORK/k8s.yaml"

echo "check-ops: $passed passed, $failed failed"
((failed == 0))

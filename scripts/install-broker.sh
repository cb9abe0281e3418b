#!/usr/bin/env bash
# Installs the local Kafka-API broker (tansu) into a cache outside the clone, so fresh
# clones and CI runs on the same machine reuse it. Idempotent; instant when installed.
# Prints the path of the binary on its last line of stdout.
set -euo pipefail

TANSU_VERSION="${TANSU_VERSION:-0.6.0}"
# dynostore: the in-memory engine (dev, most tests). libsql: the sqlite engine, for tests
# whose log must survive a broker restart.
TANSU_FEATURES="${TANSU_FEATURES:-dynostore,libsql}"
CACHE_DIR="${ODIN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/odin-stream}"
ROOT="$CACHE_DIR/tansu-$TANSU_VERSION-${TANSU_FEATURES//,/_}"
BIN="$ROOT/bin/tansu"

if [[ -n "${TANSU_BIN:-}" ]]; then
  if [[ -x "$TANSU_BIN" ]]; then echo "$TANSU_BIN"; exit 0; fi
  echo "TANSU_BIN=$TANSU_BIN is not an executable" >&2; exit 1
fi

if [[ -x "$BIN" ]]; then echo "$BIN"; exit 0; fi

mkdir -p "$CACHE_DIR"
# A lock so two concurrent callers (dev.sh and test.sh) do not build twice.
exec 9>"$CACHE_DIR/.install-tansu.lock"
flock 9
if [[ -x "$BIN" ]]; then echo "$BIN"; exit 0; fi

echo "installing tansu $TANSU_VERSION ($TANSU_FEATURES) into $ROOT (takes 8-10 minutes on 2 cores)..." >&2
# A separate target dir keeps the broker build out of the workspace's target/.
CARGO_TARGET_DIR="$CACHE_DIR/build-$TANSU_FEATURES" cargo install --locked tansu --version "$TANSU_VERSION" \
  --features "$TANSU_FEATURES" --root "$ROOT" >&2
rm -rf "$CACHE_DIR/build-$TANSU_FEATURES"
echo "$BIN"

#!/usr/bin/env bash
# Builds and tests the TypeScript client (clients/typescript): installs its npm dependencies,
# builds it (tsc, and the one-file browser build dist/odin-client.js), checks that the live
# console's embedded copy (crates/ws-gateway/assets/console/odin-client.js) is that build,
# runs its unit tests (and the integration test, which skips itself unless
# ODIN_IT_GATEWAY_URL and ODIN_IT_PUBLISH_URL are set), then packs it and uses the tarball
# from a fresh project. With ODIN_CLIENT_IT=1 it then runs scripts/test-client-it.sh (a
# private Kafka, the publisher and two gateways; gateway kills, moves, token refresh).
# Needs node >= 20 and npm.
set -euo pipefail

cd "$(dirname "$0")/../clients/typescript"

command -v npm >/dev/null || { echo "test-client: npm not found (node >= 20 and npm are needed)" >&2; exit 1; }
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "test-client: node $(node --version) is too old, >= 20 is needed" >&2
  exit 1
fi

if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund
else
  npm install --no-audit --no-fund
fi
npm run build
npm run bundle:check
npm test
npm run test:pack
if [ "${ODIN_CLIENT_IT:-0}" = "1" ]; then
  ../../scripts/test-client-it.sh
fi
echo "test-client: ok"

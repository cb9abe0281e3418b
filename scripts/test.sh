#!/usr/bin/env bash
# Every check and test of the project, from nothing: installs what it needs (Apache Kafka
# from Maven Central included), then formatting, lints, and all tests against real brokers
# (each test binary starts its own Kafka through crates/testkit and stops it).
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
step() { echo "==> $* ($(( $(date +%s) - started ))s)" >&2; }

step "installing Apache Kafka"
scripts/install-kafka.sh >/dev/null

if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  step "installing rustfmt and clippy"
  rustup component add rustfmt clippy
fi

step "installing the browser for the console's end-to-end test"
scripts/install-browser.sh || echo "browser install failed: the console browser test will report SKIPPED" >&2

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test"
cargo test --workspace --no-fail-fast

step "TypeScript client (clients/typescript: build, unit tests, npm pack, integration with Kafka and two gateways)"
ODIN_CLIENT_IT=1 scripts/test-client.sh

step "API fuzzing (schemathesis against publisher and aggregator)"
scripts/api-fuzz.sh

step "deployment checks"
scripts/check-deploy.sh

step "operations checks (Prometheus rules and their tests, Kubernetes manifests)"
scripts/check-ops.sh

step "all checks passed"

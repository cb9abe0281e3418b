#!/usr/bin/env bash
# Installs Debian's chromium and chromium-driver for the console's end-to-end test
# (crates/ws-gateway/tests/console_e2e.rs). Idempotent; instant when both are installed.
# Exits 0 with a "skipped" message when they cannot be installed (no root, no apt, no
# network), so callers can run it unconditionally; the test then skips with its own message.
set -uo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

if have chromium && have chromedriver; then
  echo "install-browser: chromium and chromedriver already installed ($(chromium --version 2>/dev/null | head -1))"
  exit 0
fi

skip() {
  echo "install-browser: skipped: $* (the console end-to-end test will skip itself)" >&2
  exit 0
}

have apt-get || skip "apt-get not found (not a Debian-like system)"
if [[ "$(id -u)" -ne 0 ]]; then
  if have sudo && sudo -n true 2>/dev/null; then SUDO=(sudo -n); else skip "not root and no passwordless sudo"; fi
else
  SUDO=()
fi

export DEBIAN_FRONTEND=noninteractive
# A lock so two concurrent callers (test.sh and a developer) do not race apt.
LOCK_DIR="${ODIN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/odin-stream}"
mkdir -p "$LOCK_DIR"
exec 9>"$LOCK_DIR/.install-browser.lock"
flock 9
if have chromium && have chromedriver; then exit 0; fi

echo "install-browser: installing chromium and chromium-driver with apt-get..." >&2
# apt-cache may know nothing before the first update on a fresh machine.
"${SUDO[@]}" apt-get update -qq >&2 || skip "apt-get update failed"
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >&2 \
  || skip "apt-get install chromium chromium-driver failed"

if have chromium && have chromedriver; then
  echo "install-browser: installed $(chromium --version 2>/dev/null | head -1)"
else
  skip "packages installed but chromium/chromedriver are not on PATH"
fi

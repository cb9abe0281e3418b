#!/usr/bin/env bash
# Container HEALTHCHECK for the Odin services: GET /health on the service's own port over
# bash's /dev/tcp, so the runtime image needs neither curl nor wget. Healthy = HTTP 200
# (the services answer 503 with a reason while the broker is unreachable).
#
# The port comes from HEALTH_PORT, else from the service's own listen variable, chosen by
# ODIN_SERVICE (set per image): publisher API_PORT, ws-gateway WS_ADDR, aggregator
# AGGREGATOR_ADDR. Usage: odin-healthcheck [PORT]
set -euo pipefail

port="${1:-${HEALTH_PORT:-}}"
if [[ -z "$port" ]]; then
  case "${ODIN_SERVICE:-}" in
    publisher) port="${API_PORT:-3001}" ;;
    ws-gateway) addr="${WS_ADDR:-:3002}"; port="${addr##*:}" ;;
    aggregator) addr="${AGGREGATOR_ADDR:-:3004}"; port="${addr##*:}" ;;
    *) echo "odin-healthcheck: set HEALTH_PORT or ODIN_SERVICE" >&2; exit 2 ;;
  esac
fi
if [[ ! "$port" =~ ^[0-9]+$ ]]; then
  echo "odin-healthcheck: port '$port' is not a number" >&2
  exit 2
fi

if ! exec 3<>"/dev/tcp/127.0.0.1/$port"; then
  echo "odin-healthcheck: nothing listens on 127.0.0.1:$port" >&2
  exit 1
fi
printf 'GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
status_line=""
IFS= read -r -t "${HEALTH_TIMEOUT_SECONDS:-4}" status_line <&3 || true
exec 3<&-
# "HTTP/1.1 200 OK" -> 200
code="$(cut -d' ' -f2 <<<"$status_line")"
if [[ "$code" != "200" ]]; then
  echo "odin-healthcheck: /health on :$port answered '${status_line%$'\r'}'" >&2
  exit 1
fi

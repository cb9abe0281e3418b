#!/usr/bin/env bash
# The Apache distribution's kafka-broker-api-versions.sh: same arguments.
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.BrokerApiVersionsCommand "$@"

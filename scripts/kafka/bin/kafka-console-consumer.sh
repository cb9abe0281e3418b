#!/usr/bin/env bash
# The Apache distribution's kafka-console-consumer.sh: same arguments.
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.consumer.ConsoleConsumer "$@"

#!/usr/bin/env bash
# The Apache distribution's kafka-consumer-groups.sh: same arguments.
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.consumer.group.ConsumerGroupCommand "$@"

#!/usr/bin/env bash
# The Apache distribution's kafka-leader-election.sh: same arguments.
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.LeaderElectionCommand "$@"

#!/usr/bin/env bash
# The Apache distribution's kafka-storage.sh: same arguments.
exec "$(dirname "$0")/kafka-run-class.sh" kafka.tools.StorageTool "$@"

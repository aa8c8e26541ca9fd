#!/bin/sh
# Runs "$@" (thv proxy stdio ...) with this shell's stdin/stdout, then writes
# "<exit code> <wall clock seconds>" to the file $1 names: a stdio client hides its server
# process, so this is how the interop stdio checks learn how and when the bridge exited.
# Writes nothing when it is itself signalled (the client escalated to SIGTERM/SIGKILL).
record="$1"
shift
"$@"
code=$?
echo "$code $(date +%s.%N)" >"$record"
exit "$code"

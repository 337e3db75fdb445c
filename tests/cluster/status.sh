#!/usr/bin/env bash
# Stand-in for a scheduler's status query (sacct): running until the job's exit code is
# written, then success or failed.
set -euo pipefail
rc="${CIMFLOW_QUEUE:?}/$1.rc"
if [[ ! -f "$rc" ]]; then
    echo running
elif [[ "$(cat "$rc")" == 0 ]]; then
    echo success
else
    echo failed
fi

#!/usr/bin/env bash
# Stand-in for sbatch in the cluster-executor test: starts the job script as its own
# process in the background and prints a job id, as a scheduler would. Records the
# resources Snakemake asked for (the arguments before the script) beside it.
set -euo pipefail
queue="${CIMFLOW_QUEUE:?set CIMFLOW_QUEUE to the queue folder}"
jobscript="${*: -1}"
id="job-$(date +%s%N)-$$"
printf '%s\n' "${@:1:$#-1}" > "$queue/$id.args"
(
    rc=0
    bash "$jobscript" > "$queue/$id.log" 2>&1 || rc=$?
    echo "$rc" > "$queue/$id.rc.tmp" && mv "$queue/$id.rc.tmp" "$queue/$id.rc"
) < /dev/null > /dev/null 2>&1 &
echo "$id"

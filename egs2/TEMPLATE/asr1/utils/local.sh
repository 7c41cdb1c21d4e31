#!/usr/bin/env bash
# Local job backend: utils/local.sh [--gpu N] [--mem M] [--time T] LOG command args...
# Runs the command here, output appended to LOG; the resource options (which the Slurm backend
# honours) are accepted and ignored so that cmd.sh can switch backends without other changes.
while [[ ${1:-} == --* ]]; do shift 2; done
log=$1; shift
mkdir -p "$(dirname "$log")"
echo "# $(date '+%F %T') $*" >> "$log"
"$@" >> "$log" 2>&1
rc=$?
echo "# $(date '+%F %T') exit $rc" >> "$log"
exit $rc

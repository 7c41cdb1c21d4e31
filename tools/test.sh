#!/usr/bin/env bash
# Run the test suite in the project's venv (installed on first use).
# Usage: tools/test.sh [pytest args]   e.g. tools/test.sh -m slow   for the long end-to-end runs
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/tools/install.sh" >/dev/null
cd "$root"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} PYTHONUNBUFFERED=1
exec "$root/tools/venv/bin/python" -m pytest "$@"

# Sourced by asr.sh from a recipe dir (egs2/<corpus>/<task>): the project's venv first on PATH.
# tools/install.sh builds it on first use and is a no-op (a marker check) afterwards.
PINCH_ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../../.." && pwd)
PINCH_VENV=${PINCH_VENV:-$PINCH_ROOT/tools/venv}
"$PINCH_ROOT/tools/install.sh" --venv "$PINCH_VENV" >/dev/null || {
  echo "path.sh: tools/install.sh failed" >&2; exit 1; }
export PATH=$PINCH_VENV/bin:$PATH
export PINCH_PYTHON=$PINCH_VENV/bin/python
export PYTHONUNBUFFERED=1
# OpenMP threads spin-wait by default; with another process on a core that slows training many
# times over (see ../shared/docs/DEPENDENCIES.md). Passive waiting costs little when alone.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

#!/usr/bin/env bash
# Build espnet_pinch's virtual environment from the pinned set in tools/requirements.lock.
#
# Usage: tools/install.sh [--venv DIR] [--torch_backend pypi|cpu|cu126|cu128|...]
#
#   --venv DIR         where the venv goes (default: tools/venv, or $PINCH_VENV)
#   --torch_backend    pypi (default): torch/torchaudio 2.8.0 wheels from PyPI. These are CUDA 12.8
#                      builds; they run on the CPU at CPU-build speed, so this is the default both
#                      here (CPU only, PyPI only) and on GPU clusters with CUDA 12.8 drivers.
#                      cpu | cu126 | cu118 | ...: take torch from the PyTorch index for that backend
#                      (networked machines only): `cpu` is a much smaller CPU-only install,
#                      `cuXYZ` matches older cluster drivers.
#
# Re-running is a no-op when nothing changed: a marker in the venv holds the hash of the lock
# file, this script and the backend. Uses uv (installed with pip if missing): 51 s cold and
# 25 s from uv's warm cache here (hard links, so a fresh clone costs little disk).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
venv=${PINCH_VENV:-$here/venv}
backend=pypi
while [ $# -gt 0 ]; do
  case $1 in
    --venv) venv=$2; shift 2 ;;
    --torch_backend) backend=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "$0: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

lock=$here/requirements.lock
key=$(cat "$lock" "$0" | sha256sum | cut -c1-16)-$backend
marker=$venv/.pinch_installed
if [ -f "$marker" ] && [ "$(cat "$marker")" = "$key" ] && [ -x "$venv/bin/python" ]; then
  echo "tools/install.sh: $venv is up to date ($key)"
  exit 0
fi

log() { echo "$(date '+%F %T') tools/install.sh: $*"; }
if ! command -v uv >/dev/null 2>&1; then
  log "installing uv with pip"
  python3 -m pip install --quiet "uv==0.13.9"
fi
py=$(command -v python3.11 || command -v python3)
log "creating $venv with $py (torch backend: $backend)"
rm -f "$marker"
uv venv --quiet --allow-existing --python "$py" "$venv"
extra=()
[ "$backend" != pypi ] && extra=(--torch-backend "$backend")
uv pip install --quiet --python "$venv/bin/python" "${extra[@]}" -r "$lock"
uv pip install --quiet --python "$venv/bin/python" --no-deps -e "$root"
"$venv/bin/python" -c "import espnet2.tasks.asr, s3prl.nn, torch, espnet_pinch; print('torch', torch.__version__)" 2>/dev/null
echo "$key" > "$marker"
log "done: $venv ($(du -sh "$venv" 2>/dev/null | cut -f1))"

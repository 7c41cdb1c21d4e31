"""Write-then-rename: a reader (or a re-run after a crash) never sees a half-written output."""
from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import yaml


@contextmanager
def atomic_dir(out: str | Path) -> Iterator[Path]:
    """Yields ``<out>.tmp`` (fresh); on success it replaces ``out``, on error it is removed and
    ``out`` is untouched. A complete ``out`` exists at every instant after the first success:
    the old one is renamed to ``<out>.old`` before the new one is renamed in, and a kill between
    the two renames is repaired by the next call (``<out>.old`` back to ``out``)."""
    out = Path(out)
    tmp, old = out.with_name(out.name + ".tmp"), out.with_name(out.name + ".old")
    if old.exists() and not out.exists():
        os.replace(old, out)  # killed between the renames: the old output was complete
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yields ``<path>.tmp`` to write; on success it is renamed to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    yield tmp
    os.replace(tmp, path)


def write_json(path: str | Path, obj) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")


def write_yaml(path: str | Path, obj: dict) -> None:
    with atomic_file(path) as tmp, open(tmp, "w") as f:
        yaml.safe_dump(obj, f, sort_keys=False, allow_unicode=True)

"""Pretrained upstreams from S3PRL's hub, kept as local checkpoints.

A recipe that starts from ``wav2vec2`` or ``hubert_large_ll60k`` fetches S3PRL's converted
checkpoint once (S3PRL's own downloader and cache) and copies it into the experiment dir. From
then on every stage loads it as a local checkpoint (``wav2vec2_local`` / ``hubert_local``): the
same code path as a user's own checkpoint, and the size config that compaction needs is in the
file. The names and URLs are S3PRL's (s3prl/upstream/<family>/hubconf.py, 0.4.18), kept by each
family's adapter (``espnet_pinch.adapters``); a test checks them against the installed S3PRL.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from espnet_pinch.adapters import ADAPTERS
from espnet_pinch.utils.atomic import atomic_file


def hub_names() -> dict:
    """S3PRL hub name -> (architecture, converted checkpoint URL), over every family's adapter."""
    return {n: (a.arch, url) for a in ADAPTERS.values() for n, url in a.hub.items()}


LOCAL_SUFFIXES = ("_local", "_url", "_custom")


def is_hub_name(upstream: str) -> bool:
    return not upstream.endswith(LOCAL_SUFFIXES)


def local_loader(upstream: str, ckpt_arch: str) -> str:
    """S3PRL name that loads a local checkpoint of ``ckpt_arch`` given as ``upstream``.

    ``wav2vec2`` + a local wav2vec2 file -> ``wav2vec2_local``; a name of the other family is an
    error (a HuBERT checkpoint given to a wav2vec2 config is a mistake worth stopping for).
    """
    if not is_hub_name(upstream):
        return upstream
    hub = hub_names()
    if upstream in hub and hub[upstream][0] != ckpt_arch:
        raise ValueError(f"frontend_conf: upstream {upstream!r} is a {hub[upstream][0]} model but "
                         f"the local checkpoint holds a {ckpt_arch} model")
    return f"{ckpt_arch}_local"


def fetch(name: str, out: str | Path) -> Path:
    """Download (or take from S3PRL's cache) the converted checkpoint of hub ``name`` -> ``out``."""
    hub = hub_names()
    if name not in hub:
        raise ValueError(f"hub upstream {name!r} is not one of {sorted(hub)}; give a local "
                         "checkpoint with --upstream_ckpt instead")
    from s3prl.util.download import _urls_to_filepaths

    arch, url = hub[name]
    logging.getLogger(__name__).info("fetching %s (%s) from %s", name, arch, url)
    cached = Path(_urls_to_filepaths(url))
    with atomic_file(out) as tmp:
        shutil.copyfile(cached, tmp)
    return Path(out)

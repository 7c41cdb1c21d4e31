"""One adapter per S3PRL upstream family (``base.FamilyAdapter``): building, prunable layers,
unit groups, architecture and compaction of that family, in one module each.

Adding a family: write ``adapters/<family>.py`` (a ``FamilyAdapter`` subclass; see
``wav2vec2.py``) and add one line to ``ADAPTERS``; size configs then take ``arch: <family>``, its
hub names are fetched like the others, and every pruning method works on it.
"""
from __future__ import annotations

from typing import Dict

import torch

from espnet_pinch.adapters.base import FamilyAdapter
from espnet_pinch.adapters.hubert import HubertAdapter
from espnet_pinch.adapters.wav2vec2 import Wav2Vec2Adapter
from espnet_pinch.adapters.wavlm import WavLMAdapter

ADAPTERS: Dict[str, FamilyAdapter] = {
    "wav2vec2": Wav2Vec2Adapter(),
    "hubert": HubertAdapter(),
    "wavlm": WavLMAdapter(),
}


def adapter(arch: str) -> FamilyAdapter:
    """The adapter of a size config's ``arch``."""
    if arch not in ADAPTERS:
        raise ValueError(f"arch must be one of {sorted(ADAPTERS)}, got {arch!r}")
    return ADAPTERS[arch]


def adapter_for(model: torch.nn.Module) -> FamilyAdapter:
    """The adapter of an SSL model (``frontend.ssl_model``)."""
    for a in ADAPTERS.values():  # each family's own S3PRL model class
        if a.owns_model(model):
            return a
    raise ValueError(f"no adapter for a {type(model).__name__} model; families: {sorted(ADAPTERS)}")


def adapter_for_checkpoint(ckpt: dict) -> FamilyAdapter:
    """The adapter of a loaded S3PRL local checkpoint."""
    for a in ADAPTERS.values():
        if a.owns_checkpoint(ckpt):
            return a
    raise ValueError("not an S3PRL local checkpoint of a known family "
                     f"({sorted(ADAPTERS)}); convert a fairseq checkpoint with S3PRL's "
                     "upstream/<arch>/convert.py first")


def hub_entry(name: str):
    """(adapter, URL) of an S3PRL hub name, or None."""
    for a in ADAPTERS.values():
        if name in a.hub:
            return a, a.hub[name]
    return None

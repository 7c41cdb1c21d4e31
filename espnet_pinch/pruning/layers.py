"""Choosing which layers a pruner gates: glob patterns over layer names.

Names are those of ``PinchS3prlFrontend.prunable_layers()`` (relative to the wav2vec2/HuBERT
model, e.g. ``encoder.layers.3.self_attn.q_proj``) plus ``ctc.ctc_lo`` for the CTC head.
"""
from __future__ import annotations

import fnmatch
from collections import OrderedDict
from typing import Iterable

import torch

# What the SPG paper gates: CNN feature-extractor convs, feature projection, q/k/v/out of every
# attention layer and both FFN layers.
DEFAULT_PATTERNS = (
    "feature_extractor.conv_layers.*",
    "post_extract_proj",
    "encoder.layers.*.self_attn.q_proj",
    "encoder.layers.*.self_attn.k_proj",
    "encoder.layers.*.self_attn.v_proj",
    "encoder.layers.*.self_attn.out_proj",
    "encoder.layers.*.fc1",
    "encoder.layers.*.fc2",
)


def select_layers(
    available: "OrderedDict[str, torch.nn.Module]", patterns: Iterable[str], key: str = "layers"
) -> "OrderedDict[str, torch.nn.Module]":
    """Layers whose name matches any pattern, in model order.

    A pattern that matches nothing is an error naming the config ``key``: a typo would otherwise
    silently leave layers unpruned.
    """
    patterns = list(patterns)
    if not patterns:
        raise ValueError(f"pruner_conf.{key}: empty list of layer patterns")
    out: "OrderedDict[str, torch.nn.Module]" = OrderedDict()
    for p in patterns:
        hits = [n for n in available if fnmatch.fnmatchcase(n, p)]
        if not hits:
            some = ", ".join(list(available)[:4])
            raise ValueError(f"pruner_conf.{key}: pattern {p!r} matches no prunable layer "
                             f"(names look like: {some}, ...)")
    for n, m in available.items():
        if any(fnmatch.fnmatchcase(n, p) for p in patterns):
            out[n] = m
    return out

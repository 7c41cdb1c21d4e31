"""Choosing which layers a pruner gates: glob patterns over layer names.

Names are those of ``PinchS3prlFrontend.prunable_layers()`` (relative to the wav2vec2/HuBERT
model, e.g. ``encoder.layers.3.self_attn.q_proj``) plus ``ctc.ctc_lo`` for the CTC head.
"""
from __future__ import annotations

import fnmatch
from collections import OrderedDict
from typing import Iterable, Optional

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

# Where the SSL model's layers sit in an ESPnet ASR model's state dict
# (model.frontend = PinchS3prlFrontend -> S3PRLUpstream -> expert -> Wav2Vec2Model/HubertModel).
SSL_STATE_PREFIX = "frontend.upstream.upstream.model."


def weight_key(layer_name: str) -> str:
    """State-dict key of a prunable layer's weight (names as in ``prunable_layers()``)."""
    return f"{layer_name}.weight" if layer_name.startswith("ctc.") else f"{SSL_STATE_PREFIX}{layer_name}.weight"


def layer_of_weight_key(key: str) -> Optional[str]:
    """Inverse of ``weight_key`` for the SSL model's weights; None for any other key."""
    if key.startswith(SSL_STATE_PREFIX) and key.endswith(".weight"):
        return key[len(SSL_STATE_PREFIX):-len(".weight")]
    return None


def matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


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
        hits = [n for n in available if matches(n, [p])]
        if not hits:
            some = ", ".join(list(available)[:4])
            raise ValueError(f"pruner_conf.{key}: pattern {p!r} matches no prunable layer "
                             f"(names look like: {some}, ...)")
    for n, m in available.items():
        if matches(n, patterns):
            out[n] = m
    return out

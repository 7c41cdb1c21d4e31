"""Choosing which layers a pruner gates: glob patterns over layer names.

Names are those of ``PinchESPnetASRModel.prunable_layers()``: the frontend's (relative to the SSL
model, e.g. ``encoder.layers.3.self_attn.q_proj``) plus ``ctc.ctc_lo`` for the CTC head. Without
``pruner_conf.layers``, a fine-grained method gates its family's ``default_patterns``
(``espnet_pinch.adapters``; ``PinchASRTask.build_model`` fills them in).
"""
from __future__ import annotations

import fnmatch
from collections import OrderedDict
from typing import Iterable, Optional, Sequence

import torch

def matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def select_layers(
    available: "OrderedDict[str, torch.nn.Module]", patterns: Optional[Sequence[str]], key: str = "layers"
) -> "OrderedDict[str, torch.nn.Module]":
    """Layers whose name matches any pattern, in model order.

    A pattern that matches nothing is an error naming the config ``key``: a typo would otherwise
    silently leave layers unpruned.
    """
    if patterns is None:
        raise ValueError(f"pruner_conf.{key}: no layer patterns given (a model builds its "
                         "family's defaults in; a bare pruner needs them)")
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

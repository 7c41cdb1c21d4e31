"""Prunable units of a wav2vec2 / HuBERT model, shared by every structured pruning method.

A *unit group* is a set of interchangeable units inside one layer that can be removed without
touching the residual width:
  ``conv.<i>``          output channels of feature-extractor conv i (all but the last conv,
                        whose output feeds a LayerNorm over channels: removing a channel there
                        would change every other channel's normalised value)
  ``layers.<l>.heads``  attention heads of Transformer layer l
  ``layers.<l>.ffn``    intermediate units of the FFN of layer l
Each unit has *producer* rows (the rows of conv i / q,k,v / fc1 that compute it) and *consumer*
columns (the input columns of conv i+1 / out_proj / fc2 that read it). Zeroing a unit's consumer
columns is exactly removing the unit, which is why masks sit on the consumer (``ColumnMask``) and
compaction can slice both sides (``compaction.compact``). Extractor mode ``layer_norm``
(HuBERT-large) normalises every conv output over channels, so conv channels are not units there.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import torch

KINDS = ("conv", "heads", "ffn")


@dataclass
class UnitGroup:
    name: str
    kind: str                              # conv | heads | ffn
    num_units: int
    unit_size: int                         # producer rows per unit (head_dim for heads)
    producers: List[torch.nn.Module]       # rows (weight dim 0, bias) computing the units
    consumer: torch.nn.Module              # columns (weight dim 1) reading them
    norm: Optional[torch.nn.Module] = None  # per-channel norm between producer and consumer
    owner: Optional[torch.nn.Module] = None  # the MultiheadAttention of a heads group
    # weights (by layer name) whose size depends on this group's width: for size accounting
    weight_names: List[str] = field(default_factory=list)


def _conv_blocks(ssl_model) -> List[torch.nn.Sequential]:
    return list(ssl_model.feature_extractor.conv_layers)


def _per_channel_norm(block: torch.nn.Sequential) -> tuple[Optional[torch.nn.Module], bool]:
    """(GroupNorm with one group per channel or None, whether another norm mixes channels)."""
    for m in block.modules():
        if isinstance(m, torch.nn.GroupNorm):
            if m.num_groups != m.num_channels:
                return None, True
            return m, False
        if isinstance(m, torch.nn.LayerNorm):
            return None, True
    return None, False


def unit_groups(ssl_model: torch.nn.Module, kinds: Sequence[str] = KINDS) -> "OrderedDict[str, UnitGroup]":
    """Every unit group of the given kinds, in forward order."""
    bad = sorted(set(kinds) - set(KINDS))
    if bad:
        raise ValueError(f"unit kinds {bad} unknown; choose from {list(KINDS)}")
    out: "OrderedDict[str, UnitGroup]" = OrderedDict()
    if "conv" in kinds:
        blocks = _conv_blocks(ssl_model)
        for i in range(len(blocks) - 1):
            norm, mixing = _per_channel_norm(blocks[i])
            if mixing:
                continue
            conv, nxt = blocks[i][0], blocks[i + 1][0]
            out[f"conv.{i}"] = UnitGroup(
                f"conv.{i}", "conv", conv.out_channels, 1, [conv], nxt, norm=norm,
                weight_names=[f"feature_extractor.conv_layers.{i}.0",
                              f"feature_extractor.conv_layers.{i + 1}.0"])
    for l, layer in enumerate(ssl_model.encoder.layers):
        p = f"encoder.layers.{l}"
        if "heads" in kinds:
            att = layer.self_attn
            out[f"layers.{l}.heads"] = UnitGroup(
                f"layers.{l}.heads", "heads", att.num_heads, att.head_dim,
                [att.q_proj, att.k_proj, att.v_proj], att.out_proj, owner=att,
                weight_names=[f"{p}.self_attn.{n}_proj" for n in "qkv"] + [f"{p}.self_attn.out_proj"])
        if "ffn" in kinds:
            out[f"layers.{l}.ffn"] = UnitGroup(
                f"layers.{l}.ffn", "ffn", layer.fc1.out_features, 1, [layer.fc1], layer.fc2,
                weight_names=[f"{p}.fc1", f"{p}.fc2"])
    return out


@torch.no_grad()
def unit_scores(group: UnitGroup) -> torch.Tensor:
    """L1 magnitude of each unit's producer rows (weights and biases): the ranking of units."""
    score = torch.zeros(group.num_units)
    for prod in group.producers:
        w = prod.weight.detach().abs().reshape(group.num_units, -1)
        score += w.sum(1).cpu()
        if prod.bias is not None:
            score += prod.bias.detach().abs().reshape(group.num_units, -1).sum(1).cpu()
    return score


def ranked_units(group: UnitGroup) -> torch.Tensor:
    """Unit indices from the largest magnitude to the smallest (ties: lower index first)."""
    return torch.sort(unit_scores(group), descending=True, stable=True).indices


class ColumnMask(torch.nn.Module):
    """Parametrization of a consumer's weight: input columns of unit u scaled by mask[u].

    ``mask`` (num_units,) is set by the pruning method before each forward (soft or 0/1);
    units of ``unit_size`` consecutive columns share one value.
    """

    def __init__(self, num_units: int, unit_size: int):
        super().__init__()
        self.unit_size = unit_size
        self.register_buffer("mask", torch.ones(num_units), persistent=False)
        self.soft: Optional[torch.Tensor] = None  # a differentiable mask for this forward

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        m = self.soft if self.soft is not None else self.mask
        m = m.repeat_interleave(self.unit_size) if self.unit_size > 1 else m
        shape = [1, -1] + [1] * (w.dim() - 2)
        return w * m.to(w.dtype).view(shape)


def architecture(ssl_model: torch.nn.Module) -> dict:
    """The explicit (possibly pruned) architecture: widths of every prunable dimension."""
    return {
        "conv_channels": [b[0].out_channels for b in _conv_blocks(ssl_model)],
        "attention_heads": [l.self_attn.num_heads for l in ssl_model.encoder.layers],
        "ffn_dims": [l.fc1.out_features for l in ssl_model.encoder.layers],
    }

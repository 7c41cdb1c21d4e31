"""Unit groups, shared by every structured pruning method and every model family.

A *unit group* is a set of interchangeable units inside one layer that can be removed without
touching the residual width; a family's adapter (``espnet_pinch.adapters``) lists its groups:
  ``conv.<i>``          output channels of feature-extractor conv i
  ``layers.<l>.heads``  attention heads of Transformer layer l
  ``layers.<l>.ffn``    intermediate units of the FFN of layer l
Each unit has *producer* rows (the rows of conv i / q,k,v / fc1 that compute it) and *consumer*
columns (the input columns of conv i+1 / out_proj / fc2 that read it). Zeroing a unit's consumer
columns is exactly removing the unit, which is why masks sit on the consumer (``ColumnMask``) and
compaction can slice both sides (``compaction.compact``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional

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
    owner: Optional[torch.nn.Module] = None  # the attention module of a heads group
    # Called by compaction after the tensors are sliced, with the kept unit indices: the family's
    # adapter updates what else depends on the width (an attention module's head count).
    resize_owner: Optional[Callable[[torch.Tensor], None]] = None


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

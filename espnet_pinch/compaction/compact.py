"""Physical compaction of one unit group, in place, for any model family.

``compact_group_(group, keep)`` replaces the group's producer rows, consumer columns and
per-channel norm entries with smaller tensors (Conv1d / Linear / GroupNorm modules get new
sizes), then lets the family's adapter update what else depends on the width
(``UnitGroup.resize_owner``: an attention module's head count). The residual width never changes,
so nothing outside the group is touched. Whole-model compaction and the rebuild of an explicit
architecture are ``FamilyAdapter.compact_`` / ``apply_architecture_`` (``espnet_pinch.adapters``).
A group may keep zero units (a removed FFN or attention block outputs its bias only), except
conv groups, which keep at least one channel.
"""
from __future__ import annotations

from typing import Sequence

import torch

from espnet_pinch.compaction.units import UnitGroup


def _rows(unit_idx: torch.Tensor, unit_size: int) -> torch.Tensor:
    if unit_size == 1:
        return unit_idx
    base = unit_idx[:, None] * unit_size + torch.arange(unit_size)[None, :]
    return base.reshape(-1)


def _param(t: torch.Tensor, like: torch.nn.Parameter) -> torch.nn.Parameter:
    return torch.nn.Parameter(t.detach().clone().contiguous(), requires_grad=like.requires_grad)


def _slice_out(mod: torch.nn.Module, rows: torch.Tensor) -> None:
    mod.weight = _param(mod.weight.index_select(0, rows), mod.weight)
    if getattr(mod, "bias", None) is not None:
        mod.bias = _param(mod.bias.index_select(0, rows), mod.bias)
    if isinstance(mod, torch.nn.Conv1d):
        mod.out_channels = len(rows)
    elif isinstance(mod, torch.nn.Linear):
        mod.out_features = len(rows)
    elif isinstance(mod, torch.nn.GroupNorm):
        mod.num_groups = mod.num_channels = len(rows)


def _slice_in(mod: torch.nn.Module, cols: torch.Tensor) -> None:
    mod.weight = _param(mod.weight.index_select(1, cols), mod.weight)
    if isinstance(mod, torch.nn.Conv1d):
        mod.in_channels = len(cols)
    else:
        mod.in_features = len(cols)


@torch.no_grad()
def compact_group_(group: UnitGroup, keep: Sequence[int]) -> None:
    keep = torch.as_tensor(sorted(int(k) for k in keep), dtype=torch.long)
    if len(keep) and (keep[0] < 0 or keep[-1] >= group.num_units):
        raise ValueError(f"{group.name}: unit indices must be in [0, {group.num_units})")
    if group.kind == "conv" and len(keep) == 0:
        raise ValueError(f"{group.name}: a conv layer must keep at least one channel")
    idx = _rows(keep, group.unit_size)
    for prod in group.producers:
        _slice_out(prod, idx)
    if group.norm is not None:
        _slice_out(group.norm, keep)
    _slice_in(group.consumer, idx)
    if group.resize_owner is not None:
        group.resize_owner(keep)

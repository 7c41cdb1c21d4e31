"""Size and MACs of a model as differentiable functions of its unit-group widths.

A prunable weight between two groups (conv i+1 reads conv i and is read by conv i+2) shrinks in
both dimensions, so its size is rows x cols x (kernel entries); with independent groups the
expected size is E[rows] x E[cols] exactly, so widths may be expected counts (tensors) as well
as ints. MACs come from one traced forward (``profiling.macs.trace_positions``: the output
positions of every Conv/Linear, the query/key lengths of every attention module), counted as
``profiling.macs`` counts a real pass: one MAC per weight per output position, plus the two
attention matmuls, 2 * T_q * T_k * heads * head_dim per batch element (and WavLM's per-head gate).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch

from espnet_pinch.compaction.units import UnitGroup
from espnet_pinch.profiling.macs import head_gate, trace_positions

Widths = Dict[str, object]  # group name -> kept units (int, or an expected count as a tensor)


def _width(group: Optional[UnitGroup], widths: Widths, full: int):
    return full if group is None else widths[group.name] * group.unit_size


@dataclass(frozen=True)
class WeightCost:
    """One prunable weight: (rows, cols, entries per row x col), rows computing ``out_group``'s
    units and columns reading ``in_group``'s (either may be None: not prunable that way)."""
    name: str
    out_group: Optional[UnitGroup]
    in_group: Optional[UnitGroup]
    rows: int
    cols: int
    per_entry: int

    @classmethod
    def of(cls, name: str, layer: torch.nn.Module, by_producer: dict, by_consumer: dict) -> "WeightCost":
        w = layer.weight
        return cls(name, by_producer.get(id(layer)), by_consumer.get(id(layer)),
                   w.shape[0], w.shape[1], w[0, 0].numel())

    @property
    def dense(self) -> int:
        return self.rows * self.cols * self.per_entry

    def size(self, widths: Widths):
        return (_width(self.out_group, widths, self.rows) * _width(self.in_group, widths, self.cols)
                * self.per_entry)


@dataclass(frozen=True)
class LayerMacs:
    """A Conv/Linear run at ``positions`` output positions (batch included)."""
    weight: WeightCost
    positions: int

    def macs(self, widths: Widths):
        return self.positions * self.weight.size(widths)


@dataclass(frozen=True)
class AttentionMacs:
    """An attention module: q/k/v/out projections and the QK^T and AV matmuls, over ``batch``
    sequences of ``t_q`` queries and ``t_k`` keys, ``heads`` heads of ``head_dim`` on a residual
    stream of ``d_model`` (``group``: its heads group, or None)."""
    t_q: int
    t_k: int
    batch: int
    group: Optional[UnitGroup]
    heads: int
    head_dim: int
    d_model: int
    gate_weights: int = 0  # a per-head gate Linear on each head's input (WavLM), else 0

    def macs(self, widths: Widths):
        h = widths[self.group.name] if self.group is not None else self.heads
        hd = h * self.head_dim
        return ((2 * self.t_q + 2 * self.t_k) * self.batch * self.d_model * hd
                + 2 * self.batch * self.t_q * self.t_k * hd
                + self.batch * self.t_q * h * self.gate_weights)


class CostModel:
    """Prunable parameters and MACs of a model for any widths of its unit groups.

    Args:
        groups: the unit groups (``FamilyAdapter.unit_groups``).
        layers: the prunable layers counted for size, by name.
        part_of: name -> part (``FamilyAdapter.part_of``), for per-part sizes.
    """

    def __init__(self, groups: "OrderedDict[str, UnitGroup]",
                 layers: "OrderedDict[str, torch.nn.Module]", part_of: Callable[[str], Optional[str]]):
        self.groups = groups
        self.by_producer = {id(p): g for g in groups.values() for p in g.producers}
        self.by_consumer = {id(g.consumer): g for g in groups.values()}
        self.weights: List[WeightCost] = [
            WeightCost.of(n, l, self.by_producer, self.by_consumer) for n, l in layers.items()]
        self.part_of = part_of
        self.macs_terms: Optional[list] = None
        self.dense_macs: Optional[float] = None

    def _weights(self, part: Optional[str]) -> List[WeightCost]:
        return [w for w in self.weights if part is None or self.part_of(w.name) == part]

    def dense_params(self, part: Optional[str] = None) -> int:
        return sum(w.dense for w in self._weights(part))

    def params(self, widths: Widths, part: Optional[str] = None):
        """Prunable weights left, of all layers or of one ``part`` (cnn, transformer)."""
        return sum((w.size(widths) for w in self._weights(part)), 0)

    def sparsity(self, widths: Widths, part: Optional[str] = None):
        return 1.0 - self.params(widths, part) / self.dense_params(part)

    def per_layer_sparsity(self, widths: Dict[str, int]) -> "OrderedDict[str, float]":
        return OrderedDict((w.name, 1.0 - float(w.size(widths)) / w.dense) for w in self.weights)

    # -- MACs --------------------------------------------------------------------------------
    def trace_macs(self, model: torch.nn.Module, forward: Callable[[], object]) -> None:
        """Record the shapes of one run of ``forward()`` (which runs ``model``)."""
        modules = dict(model.named_modules())
        by_owner = {id(g.owner): g for g in self.groups.values() if g.owner is not None}
        terms = []
        for name, t in trace_positions(model, forward).items():
            m = modules[name]
            if t[0] == "layer":
                terms.append(LayerMacs(WeightCost.of(name, m, self.by_producer, self.by_consumer), t[1]))
            else:
                _, t_q, t_k, b = t
                gate = head_gate(m)
                terms.append(AttentionMacs(t_q, t_k, b, by_owner.get(id(m)), m.num_heads, m.head_dim,
                                           m.q_proj.in_features, 0 if gate is None else gate.weight.numel()))
        self.macs_terms = terms
        self.dense_macs = float(self.macs({n: g.num_units for n, g in self.groups.items()}))

    def macs(self, widths: Widths):
        if self.macs_terms is None:
            raise RuntimeError("CostModel.macs: call trace_macs first")
        return sum((t.macs(widths) for t in self.macs_terms), 0)

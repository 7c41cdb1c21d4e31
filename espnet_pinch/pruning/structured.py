"""Shared machinery of structured pruners (NAS-CP now, HJ-Pruning next).

A structured pruner decides, for every unit group of the SSL model (``compaction.units``: conv
channels, attention heads, FFN units), which units to keep. This base:
  - puts a ``ColumnMask`` on each group's consumer (the method sets the mask every forward);
  - accounts for size: the prunable weights (the same layer set as the fine-grained methods,
    ``pruning.layers.DEFAULT_PATTERNS``) as a function of the group widths; a weight between two
    groups (conv i+1 reads conv i and is read by conv i+2) shrinks in both dimensions, so its size
    is rows x cols, and with independent groups the expected size is E[rows] x E[cols] exactly;
  - finalizes: the method's ``keep`` (unit indices per group) becomes exact zeros in the consumer
    columns (the *masked* model); ``bin.finalize`` then slices them out (``compaction.compact_``).
Sparsity is reported like the fine-grained methods': removed weights over the dense prunable
weights, so methods compare on one axis.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, Sequence

import torch
from torch.nn.utils import parametrize

from espnet_pinch.compaction.units import KINDS, ColumnMask, ranked_units, unit_groups
from espnet_pinch.pruning.abs_pruner import AbsPruner
from espnet_pinch.pruning.layers import DEFAULT_PATTERNS, select_layers
from espnet_pinch.pruning.masked import check_target


class StructuredPruner(AbsPruner):
    needs_ssl_model = True  # PinchASRTask passes ssl_model= (the units live there)

    def __init__(self, prunable: "OrderedDict[str, torch.nn.Module]", ssl_model: torch.nn.Module,
                 target_sparsity: float, units: Sequence[str] = KINDS):
        target = check_target(target_sparsity)
        ssl_layers = OrderedDict((n, m) for n, m in prunable.items() if not n.startswith("ctc."))
        super().__init__(select_layers(ssl_layers, DEFAULT_PATTERNS, key="layers"))
        self.target_sparsity = target
        self.__dict__["groups"] = unit_groups(ssl_model, list(units))
        if not self.groups:
            raise ValueError(f"pruner_conf.units {list(units)}: the model has no such unit groups")
        # Size model: for each prunable weight, (out group, in group, numel per row x col).
        by_producer = {id(p): g for g in self.groups.values() for p in g.producers}
        by_consumer = {id(g.consumer): g for g in self.groups.values()}
        self.__dict__["size_terms"] = []
        for name, layer in self.layers.items():
            w = layer.weight
            self.size_terms.append((name, by_producer.get(id(layer)), by_consumer.get(id(layer)),
                                    w.shape[0], w.shape[1], w[0, 0].numel()))
        self.total_params = sum(r * c * k for _, _, _, r, c, k in self.size_terms)

    # -- masks -----------------------------------------------------------------------------
    def attach(self) -> None:
        for g in self.groups.values():
            if not parametrize.is_parametrized(g.consumer, "weight"):
                parametrize.register_parametrization(
                    g.consumer, "weight", ColumnMask(g.num_units, g.unit_size))

    def column_mask(self, name: str) -> ColumnMask:
        return self.groups[name].consumer.parametrizations.weight[0]

    def keep_mask(self, name: str, width: int) -> torch.Tensor:
        """0/1 mask keeping the ``width`` units of largest magnitude."""
        g = self.groups[name]
        m = torch.zeros(g.num_units)
        m[ranked_units(g)[:width]] = 1.0
        return m

    def set_hard_widths(self, widths: Dict[str, int]) -> None:
        for name, w in widths.items():
            cm = self.column_mask(name)
            cm.soft = None
            cm.mask = self.keep_mask(name, w).to(cm.mask.device)

    # -- size ------------------------------------------------------------------------------
    def remaining_params(self, widths: Dict[str, object]):
        """Prunable weights left for group widths (ints, or expected widths as tensors)."""
        total = 0
        for _, g_out, g_in, rows, cols, k in self.size_terms:
            r = widths[g_out.name] * g_out.unit_size if g_out is not None else rows
            c = widths[g_in.name] * g_in.unit_size if g_in is not None else cols
            total = total + r * c * k
        return total

    def sparsity_of(self, widths: Dict[str, object]):
        return 1.0 - self.remaining_params(widths) / self.total_params

    def per_layer_sparsity(self, widths: Dict[str, int]) -> "OrderedDict[str, float]":
        out = OrderedDict()
        for name, g_out, g_in, rows, cols, k in self.size_terms:
            r = widths[g_out.name] * g_out.unit_size if g_out is not None else rows
            c = widths[g_in.name] * g_in.unit_size if g_in is not None else cols
            out[name] = 1.0 - (r * c) / (rows * cols)
        return out

    def full_widths(self) -> Dict[str, int]:
        return {n: g.num_units for n, g in self.groups.items()}

    # -- the method supplies ----------------------------------------------------------------
    def chosen_widths(self) -> Dict[str, int]:
        """The widths the method currently selects (deterministic)."""
        raise NotImplementedError

    def sparsity(self) -> Dict[str, object]:
        w = self.chosen_widths()
        return {"overall": float(self.sparsity_of(w)), "per_layer": self.per_layer_sparsity(w)}

    def before_finalize(self, widths: Dict[str, int]) -> Dict[str, int]:
        """Last adjustment of the widths (e.g. onto the target); returns the widths to keep."""
        return widths

    @torch.no_grad()
    def finalize(self) -> Dict[str, object]:
        widths = self.before_finalize(self.chosen_widths())
        self.set_hard_widths(widths)
        keep: Dict[str, List[int]] = {
            n: sorted(ranked_units(g)[: widths[n]].tolist()) for n, g in self.groups.items()}
        extra_params = self.num_extra_params()
        for g in self.groups.values():
            parametrize.remove_parametrizations(g.consumer, "weight", leave_parametrized=True)
        return {"sparsity": float(self.sparsity_of(widths)),
                "per_layer_sparsity": self.per_layer_sparsity(widths),
                "gated_layers": list(self.layers), "gated_params": self.total_params,
                "extra_params": extra_params, "target_sparsity": self.target_sparsity,
                "structured": True, "widths": widths, "keep": keep}

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
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch.nn.utils import parametrize

from espnet_pinch.compaction.units import KINDS, ColumnMask, ranked_units, unit_groups
from espnet_pinch.profiling.macs import trace_positions
from espnet_pinch.pruning.abs_pruner import AbsPruner
from espnet_pinch.pruning.layers import DEFAULT_PATTERNS, select_layers
from espnet_pinch.pruning.masked import check_target


class StructuredPruner(AbsPruner):
    needs_ssl_model = True  # PinchASRTask passes ssl_model= (the units live there)

    def __init__(self, prunable: "OrderedDict[str, torch.nn.Module]", ssl_model: torch.nn.Module,
                 target_sparsity: float, units: Sequence[str] = KINDS,
                 finalize_tolerance: float = 0.01, finetune_epochs: int = 0):
        target = check_target(target_sparsity)
        if finalize_tolerance < 0:
            raise ValueError(f"pruner_conf.finalize_tolerance must be >= 0, got {finalize_tolerance!r}")
        if finetune_epochs < 0:
            raise ValueError(f"pruner_conf.finetune_epochs must be >= 0, got {finetune_epochs!r}")
        ssl_layers = OrderedDict((n, m) for n, m in prunable.items() if not n.startswith("ctc."))
        super().__init__(select_layers(ssl_layers, DEFAULT_PATTERNS, key="layers"))
        self.target_sparsity = target
        self.finalize_tolerance = float(finalize_tolerance)
        self.finetune_epochs = int(finetune_epochs)  # read by the recipe (bin/epochs.py)
        self.__dict__["groups"] = unit_groups(ssl_model, list(units))
        if not self.groups:
            raise ValueError(f"pruner_conf.units {list(units)}: the model has no such unit groups")
        # Size model: for each prunable weight, (out group, in group, numel per row x col).
        by_producer = {id(p): g for g in self.groups.values() for p in g.producers}
        by_consumer = {id(g.consumer): g for g in self.groups.values()}
        self.__dict__["_maps"] = (by_producer, by_consumer)
        self.__dict__["ssl_model"] = ssl_model
        self.__dict__["macs_terms"] = None
        self.__dict__["size_terms"] = []
        for name, layer in self.layers.items():
            w = layer.weight
            self.size_terms.append((name, by_producer.get(id(layer)), by_consumer.get(id(layer)),
                                    w.shape[0], w.shape[1], w[0, 0].numel()))
        self.total_params = sum(r * c * k for _, _, _, r, c, k in self.size_terms)

    @staticmethod
    def _key(name: str) -> str:
        """A group name as a ModuleDict / ParameterDict key (no dots)."""
        return name.replace(".", "_")

    # -- masks -----------------------------------------------------------------------------
    def attach(self) -> None:
        for g in self.groups.values():
            if not parametrize.is_parametrized(g.consumer, "weight"):
                parametrize.register_parametrization(
                    g.consumer, "weight", ColumnMask(g.num_units, g.unit_size))

    def column_mask(self, name: str) -> ColumnMask:
        return self.groups[name].consumer.parametrizations.weight[0]

    def keep_masks(self, name: str, widths: Sequence[int]) -> torch.Tensor:
        """(len(widths), units) 0/1 masks, each keeping that many units of largest magnitude
        (the units are ranked once for all widths)."""
        g = self.groups[name]
        rank = torch.empty(g.num_units, dtype=torch.long)
        rank[ranked_units(g)] = torch.arange(g.num_units)  # position of each unit in the ranking
        return (rank[None, :] < torch.tensor(list(widths))[:, None]).float()

    def set_hard_widths(self, widths: Dict[str, int]) -> None:
        for name, w in widths.items():
            cm = self.column_mask(name)
            cm.soft = None
            cm.mask = self.keep_masks(name, [w])[0].to(cm.mask.device)

    # -- size ------------------------------------------------------------------------------
    PARTS = {"cnn": "feature_extractor.", "transformer": "encoder."}

    def _terms(self, part: Optional[str]):
        prefix = self.PARTS[part] if part else ""
        return [t for t in self.size_terms if t[0].startswith(prefix)]

    def remaining_params(self, widths: Dict[str, object], part: Optional[str] = None):
        """Prunable weights left for group widths (ints, or expected widths as tensors), of the
        whole prunable set or of one ``part`` (cnn: the conv layers; transformer: its layers)."""
        total = 0
        for _, g_out, g_in, rows, cols, k in self._terms(part):
            r = widths[g_out.name] * g_out.unit_size if g_out is not None else rows
            c = widths[g_in.name] * g_in.unit_size if g_in is not None else cols
            total = total + r * c * k
        return total

    def sparsity_of(self, widths: Dict[str, object], part: Optional[str] = None):
        dense = self.total_params if part is None else sum(r * c * k for _, _, _, r, c, k in self._terms(part))
        return 1.0 - self.remaining_params(widths, part) / dense

    def per_layer_sparsity(self, widths: Dict[str, int]) -> "OrderedDict[str, float]":
        out = OrderedDict()
        for name, g_out, g_in, rows, cols, k in self.size_terms:
            r = widths[g_out.name] * g_out.unit_size if g_out is not None else rows
            c = widths[g_in.name] * g_in.unit_size if g_in is not None else cols
            out[name] = 1.0 - (r * c) / (rows * cols)
        return out

    # -- MACs ------------------------------------------------------------------------------
    def build_macs_model(self, seconds: float = 1.0) -> None:
        """Trace one forward of ``seconds`` of audio through the SSL model (shapes only) so that
        ``macs_of`` gives its MACs for any widths, differentiably; counted as in
        ``profiling.macs`` (one MAC per weight per output position, attention matmuls)."""
        model = self.ssl_model
        wav = torch.randn(1, int(16000 * seconds), generator=torch.Generator().manual_seed(0))
        was_training = model.training
        model.eval()
        try:
            trace = trace_positions(model, lambda: model.extract_features(
                wav.to(next(model.parameters()).device), padding_mask=None, mask=False))
        finally:
            model.train(was_training)
        by_producer, by_consumer = self._maps
        by_owner = {id(g.owner): g for g in self.groups.values() if g.owner is not None}
        modules = dict(model.named_modules())
        terms = []
        for name, t in trace.items():
            m = modules[name]
            if t[0] == "layer":
                w = m.weight
                terms.append(("layer", t[1], by_producer.get(id(m)), by_consumer.get(id(m)),
                              w.shape[0], w.shape[1], w[0, 0].numel()))
            else:
                _, t_q, t_k, b = t
                terms.append(("attention", t_q, t_k, b, by_owner.get(id(m)), m.num_heads,
                              m.head_dim, m.q_proj.in_features))
        self.__dict__["macs_terms"] = terms
        self.dense_macs = float(self.macs_of(self.full_widths()))
        self.macs_seconds = seconds

    def macs_of(self, widths: Dict[str, object]):
        if self.macs_terms is None:
            self.build_macs_model()
        total = 0
        for term in self.macs_terms:
            if term[0] == "layer":
                _, pos, g_out, g_in, rows, cols, k = term
                r = widths[g_out.name] * g_out.unit_size if g_out is not None else rows
                c = widths[g_in.name] * g_in.unit_size if g_in is not None else cols
                total = total + pos * r * c * k
            else:
                _, t_q, t_k, b, g, heads, dh, d = term
                hd = (widths[g.name] if g is not None else heads) * dh
                total = total + (2 * t_q + 2 * t_k) * b * d * hd + 2 * b * t_q * t_k * hd
        return total

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

    def achieved(self, widths: Dict[str, object]) -> Dict[str, object]:
        """What the target constrains, for given widths (here: the overall sparsity)."""
        return {"all": self.sparsity_of(widths)}

    @torch.no_grad()
    def snapped_widths(self) -> Tuple[Dict[str, int], Dict[str, object]]:
        """(widths to keep, what training reached before finalize adjusted them): the trained
        widths' sparsity and constrained values, and the share of kept units the snap changed
        (sum over groups of |after - before| / sum of before)."""
        before = self.chosen_widths()
        after = self.before_finalize(before)
        changed = sum(abs(int(after[n]) - int(before[n])) for n in before)
        return after, {
            "sparsity_before_snap": float(self.sparsity_of(before)),
            "achieved_before_snap": {p: float(v) for p, v in self.achieved(before).items()},
            "snap_changed_units": changed / max(1, sum(int(w) for w in before.values())),
        }

    @torch.no_grad()
    def finalize(self) -> Dict[str, object]:
        """Keep the ``widths`` units of largest magnitude per group (masks 0/1)."""
        widths, before = self.snapped_widths()
        self.set_hard_widths(widths)
        keep = {n: sorted(ranked_units(g)[: widths[n]].tolist()) for n, g in self.groups.items()}
        return {**self._finalize_with(widths, keep), **before}

    def _finalize_with(self, widths: Dict[str, int], keep: Dict[str, List[int]]) -> Dict[str, object]:
        """Bake the current column masks into the consumers' weights, remove them, summarise."""
        extra_params = self.num_extra_params()
        for g in self.groups.values():
            parametrize.remove_parametrizations(g.consumer, "weight", leave_parametrized=True)
        return {"sparsity": float(self.sparsity_of(widths)),
                "per_layer_sparsity": self.per_layer_sparsity(widths),
                "gated_layers": list(self.layers), "gated_params": self.total_params,
                "extra_params": extra_params, "target_sparsity": self.target_sparsity,
                "structured": True, "widths": widths, "keep": keep}

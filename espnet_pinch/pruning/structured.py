"""Shared machinery of structured pruners (NAS-CP, HJ-Pruning).

A structured pruner decides, for every unit group of the SSL model (its family adapter's
``unit_groups``: conv channels, attention heads, FFN units), how many and which units to keep.
This base:
  - puts a ``ColumnMask`` on each group's consumer (the method sets the mask every forward);
  - prices widths with a ``compaction.cost.CostModel``: the prunable weights (the same layer set
    as the fine-grained methods: the adapter's ``default_patterns``) and, once traced, the MACs;
  - finalizes: the method's widths (``snap_widths`` may move them onto the target) become exact
    zeros in the consumer columns (the *masked* model) and a ``FinalizeResult`` with the kept
    unit indices; ``bin.finalize`` then slices them out through the adapter.
Sparsity is reported like the fine-grained methods': removed weights over the dense prunable
weights, so methods compare on one axis.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import torch
from torch.nn.utils import parametrize

from espnet_pinch.adapters import adapter_for
from espnet_pinch.compaction.cost import CostModel
from espnet_pinch.compaction.units import KINDS, ColumnMask, ranked_units
from espnet_pinch.pruning.abs_pruner import AbsPruner, FinalizeResult
from espnet_pinch.pruning.layers import select_layers
from espnet_pinch.pruning.masked import check_target


def keeps_band(new_gap: float, gap: float, band: float) -> bool:
    """The move band's rule (NAS-CP's and HJ's ``move_band``): a move of a held architecture is
    made if it leaves |achieved - target| within ``band``, or smaller than before the move."""
    return new_gap <= band or new_gap < gap


def units_apart(widths: Dict[str, int], ref: Dict[str, int]) -> float:
    """How far two architectures are: sum over groups of |widths - ref| / sum of ref's units."""
    return sum(abs(int(widths[n]) - int(ref[n])) for n in ref) / max(1, sum(int(w) for w in ref.values()))


class StructuredPruner(AbsPruner):
    needs_ssl_model = True  # PinchASRTask passes ssl_model= (the units live there)
    holds = False  # True: the chosen architecture is held between steps (``unheld_widths`` differs)

    def __init__(self, prunable: "OrderedDict[str, torch.nn.Module]", ssl_model: torch.nn.Module,
                 target_sparsity: float, units: Sequence[str] = KINDS,
                 finalize_tolerance: float = 0.01, finetune_epochs: int = 0):
        target = check_target(target_sparsity)
        if finalize_tolerance < 0:
            raise ValueError(f"pruner_conf.finalize_tolerance must be >= 0, got {finalize_tolerance!r}")
        if finetune_epochs < 0:
            raise ValueError(f"pruner_conf.finetune_epochs must be >= 0, got {finetune_epochs!r}")
        family = adapter_for(ssl_model)
        inside = {id(m) for m in ssl_model.modules()}  # the SSL model's layers (not the CTC head)
        ssl_layers = OrderedDict((n, m) for n, m in prunable.items() if id(m) in inside)
        super().__init__(select_layers(ssl_layers, family.default_patterns, key="layers"))
        self.target_sparsity = target
        self.finalize_tolerance = float(finalize_tolerance)
        self.finetune_epochs = int(finetune_epochs)  # read by the recipe (bin/epochs.py)
        self.__dict__["adapter"] = family
        self.__dict__["groups"] = family.unit_groups(ssl_model, list(units))
        if not self.groups:
            raise ValueError(f"pruner_conf.units {list(units)}: the model has no such unit groups")
        self.__dict__["ssl_model"] = ssl_model
        self.__dict__["cost"] = CostModel(self.groups, self.layers, family.part_of)
        self.total_params = self.cost.dense_params()

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

    # -- size and MACs (``compaction.cost``) ---------------------------------------------------
    def remaining_params(self, widths: Dict[str, object], part: Optional[str] = None):
        """Prunable weights left for group widths (ints, or expected widths as tensors), of the
        whole prunable set or of one ``part`` (cnn: the conv layers; transformer: its layers)."""
        return self.cost.params(widths, part)

    def sparsity_of(self, widths: Dict[str, object], part: Optional[str] = None):
        return self.cost.sparsity(widths, part)

    def per_layer_sparsity(self, widths: Dict[str, int]) -> "OrderedDict[str, float]":
        return self.cost.per_layer_sparsity(widths)

    def build_macs_model(self, seconds: float = 1.0) -> None:
        """Trace one forward of ``seconds`` of audio through the SSL model (shapes only) so that
        ``macs_of`` gives its MACs for any widths, differentiably."""
        model = self.ssl_model
        wav = torch.randn(1, int(16000 * seconds), generator=torch.Generator().manual_seed(0))
        was_training = model.training
        model.eval()
        try:
            wav = wav.to(next(model.parameters()).device)
            self.cost.trace_macs(model, lambda: self.adapter.extract(model, wav))
        finally:
            model.train(was_training)
        self.dense_macs = self.cost.dense_macs
        self.macs_seconds = seconds

    def macs_of(self, widths: Dict[str, object]):
        if self.cost.macs_terms is None:
            self.build_macs_model()
        return self.cost.macs(widths)

    def unheld_widths(self) -> Dict[str, int]:
        """The architecture the method's own parameters choose, before any hold between steps
        (NAS-CP: the argmax candidates, HJ: the rounded expected counts); methods that hold
        nothing: ``chosen_widths``."""
        return self.chosen_widths()

    def full_widths(self) -> Dict[str, int]:
        return {n: g.num_units for n, g in self.groups.items()}

    def end_step(self, term, stats: Dict[str, torch.Tensor], update: bool):
        """(term, stats) at the end of a training forward's sparsity term: the step counted
        (``update``: a gradient step follows), this forward's soft masks dropped."""
        if update:
            self.step.add_(1)
        for n in self.groups:
            self.column_mask(n).soft = None
        stats["loss_sparsity"] = term.detach()
        return term, stats

    # -- the method supplies ----------------------------------------------------------------
    def chosen_widths(self) -> Dict[str, int]:
        """The widths the method currently selects (deterministic)."""
        raise NotImplementedError

    def sparsity(self) -> Dict[str, object]:
        w = self.chosen_widths()
        return {"overall": float(self.sparsity_of(w)), "per_layer": self.per_layer_sparsity(w)}

    def snap_widths(self, widths: Dict[str, int]) -> Dict[str, int]:
        """Last adjustment of the trained widths (e.g. onto the target); returns the widths to keep."""
        return widths

    @torch.no_grad()
    def snap_by_common_factor(self, widths: Dict[str, int]) -> Dict[str, int]:
        """Snap onto ``self.targets`` ({part: target}, parts ``all`` or ``cnn``/``transformer``,
        as ``achieved`` reports them) with one common factor on the kept counts of each part's
        groups, found by bisection, if any part is further than ``finalize_tolerance`` off: the
        split between layers that training learned is kept. Conv groups keep at least one unit."""
        def off(w):
            got = self.achieved(w)
            return max(abs(float(got[p]) - self.targets[p]) for p in self.targets)

        if off(widths) <= self.finalize_tolerance:
            return widths
        floor = {n: (1 if g.kind == "conv" else 0) for n, g in self.groups.items()}

        def scaled(c: float, names) -> Dict[str, int]:
            return {n: (max(floor[n], min(self.groups[n].num_units, round(widths[n] * c)))
                        if n in names else w) for n, w in widths.items()}

        for part in self.targets:  # each part on its own (one part: all groups)
            names = [n for n in self.groups if part == "all"
                     or (self.groups[n].kind == "conv") == (part == "cnn")]
            lo, hi = 0.0, 1.0
            while float(self.achieved(scaled(hi, names))[part]) > self.targets[part] and hi < 64:
                lo, hi = hi, hi * 2
            for _ in range(40):  # achieved sparsity falls as the factor grows
                mid = (lo + hi) / 2
                if float(self.achieved(scaled(mid, names))[part]) > self.targets[part]:
                    lo = mid
                else:
                    hi = mid
            a, b = scaled(lo, names), scaled(hi, names)
            widths = min((a, b), key=lambda w: abs(float(self.achieved(w)[part]) - self.targets[part]))
        return widths

    def achieved(self, widths: Dict[str, object]) -> Dict[str, object]:
        """What the target constrains, for given widths (here: the overall sparsity)."""
        return {"all": self.sparsity_of(widths)}

    def achieved_values(self, widths: Dict[str, object]) -> Dict[str, float]:
        """``achieved`` as plain floats (what stats and records report)."""
        return {p: float(v) for p, v in self.achieved(widths).items()}

    def method_entries(self, widths: Dict[str, int]) -> Dict[str, object]:
        """The method's own entries of its ``FinalizeResult`` for the final widths."""
        return {}

    def keep_units(self, widths: Dict[str, int]) -> Dict[str, List[int]]:
        """Which units each group keeps (sorted indices), with the final widths already set on the
        column masks: by default the ``widths`` units of largest magnitude."""
        return {n: sorted(ranked_units(g)[: widths[n]].tolist()) for n, g in self.groups.items()}

    def set_final_masks(self, widths: Dict[str, int]) -> None:
        """Put the 0/1 masks of the final widths on the consumers (the values that get baked in)."""
        self.set_hard_widths(widths)

    @torch.no_grad()
    def finalize(self) -> FinalizeResult:
        """Snap the trained widths (``snap_widths``), bake the final masks into the consumers'
        weights, remove the masks; the result lists the units to keep. Also reports what training
        reached: the trained widths' sparsity and constrained values, and the share of kept
        units the snap changed (sum over groups of |after - before| / sum of before). A method that
        holds its architecture between steps (``holds``) also reports the unheld one's constrained
        values and how far the held one is from it (sum of |held - unheld| / sum of unheld)."""
        before = self.chosen_widths()
        free = self.unheld_widths() if self.holds else None
        widths = self.snap_widths(before)
        self.set_final_masks(widths)
        keep = self.keep_units(widths)
        extra_params = self.num_extra_params()
        for g in self.groups.values():
            parametrize.remove_parametrizations(g.consumer, "weight", leave_parametrized=True)
        return FinalizeResult(
            sparsity=float(self.sparsity_of(widths)), per_layer_sparsity=self.per_layer_sparsity(widths),
            gated_layers=list(self.layers), gated_params=self.total_params,
            extra_params=extra_params, target_sparsity=self.target_sparsity,
            sparsity_before_snap=float(self.sparsity_of(before)),
            achieved_before_snap=self.achieved_values(before),
            snap_changed_units=units_apart(widths, before),
            unheld_achieved=None if free is None else self.achieved_values(free),
            unheld_apart_units=None if free is None else units_apart(before, free),
            keep=keep, widths=widths, method=self.method_entries(widths))

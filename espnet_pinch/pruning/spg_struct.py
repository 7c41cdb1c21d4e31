"""Structured SPG (``pruner: spg_struct``, ours): SPG's self-pinching gate applied to units.

SPG (``spg.py``) keeps a weight when its magnitude clears its layer's learned threshold. Here the
same gate decides whole units, so the result compacts into a smaller dense model (``FamilyAdapter
.compact_``) that runs faster on any runtime, not only with sparse kernels:
  units      the family adapter's unit groups: conv channels, attention heads, FFN neurons
             (``units``: any subset)
  score      u_j = L1 norm of unit j's producer rows (weights and biases, as ``compaction.units``
             ranks units), standardised over the group at that step (mean and std not
             differentiated): scale- and spread-free, so one ``tau`` means the same for every group
  threshold  one learnable parameter per group, theta_g (the only extra parameters: one per
             group), t_g = theta_g * threshold_gain in the group's score std; gain acts as a
             learning-rate multiplier, as in SPG; calibrated on the first training step to 2 tau
             below the group's lowest score (all units kept, the soft masks alive)
  masks      hard H_j = 1[u_j >= t_g] (every forward, training and inference) and soft
             M_j = sigmoid((u_j - t_g) / tau); straight-through as in SPG: the unit's output is
             scaled by H + M - stopgrad(M) (value H, gradient that of M), so the ASR loss reaches
             t_g and the producer weights through M
  kept count k_g = sum(H) with the gradient of sum(M): the widths the cost model prices
  target     on the prunable weights (``target_on: size``) or on the SSL model's MACs per second
             of audio (``macs``), with the sparsity term of SPG and HJ-Pruning
             (``lagrangian.py``: lambda1 by dual ascent, fixed quadratic penalty, the target
             ramped over ``warmup_steps``)
  finalize   the hard masks' widths; if they miss the target by more than
             ``finalize_tolerance``, one common factor on the kept counts (as HJ-Pruning);
             the kept units are the largest by score; no gate value is baked in (H is 0/1).
             Scores read each producer's weight as trained (a producer can be another group's
             consumer: its masked columns must not move this group's scores)

Against HJ-Pruning (hard-concrete gates, one parameter per unit, sampled masks in training):
one parameter per group instead of one per unit, and deterministic masks, so training sees the
architecture it will get.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch.nn.utils import parametrize

from espnet_pinch.compaction.units import KINDS
from espnet_pinch.pruning.lagrangian import init_term, sparsity_term, warmed_up_target
from espnet_pinch.pruning.structured import StructuredPruner

TARGETS_ON = ("size", "macs")


class SPGStructPruner(StructuredPruner):
    """Args (``pruner_conf``):
        target_sparsity: fraction to remove, in [0, 1): of the prunable weights (``size``) or of
            the SSL model's MACs (``macs``).
        target_on: size | macs.
        units: conv, heads, ffn (any subset).
        tau: soft-mask temperature, in units of the group's mean score (> 0).
        threshold_gain: learning-rate multiplier of the thresholds (> 0).
        warmup_steps, dual_lr, penalty, budget_ref_steps, dual_gap_clip: the sparsity term (``lagrangian.py``).
        finalize_tolerance: largest |achieved - target| finalize leaves as it is.
        finetune_epochs: epochs of fine-tuning the compact model after pruning (the recipe).
    """

    def __init__(
        self,
        prunable: "OrderedDict[str, torch.nn.Module]",
        ssl_model: torch.nn.Module,
        target_sparsity: float = 0.5,
        target_on: str = "macs",
        units: Sequence[str] = KINDS,
        tau: float = 0.1,
        threshold_gain: float = 20.0,
        warmup_steps: int = 0,
        dual_lr: float = 0.5,
        penalty: float = 50.0,
        finalize_tolerance: float = 0.01,
        finetune_epochs: int = 0,
        budget_ref_steps: Optional[int] = None,
        dual_gap_clip: Optional[float] = None,
    ):
        if target_on not in TARGETS_ON:
            raise ValueError(f"pruner_conf.target_on must be one of {TARGETS_ON}, got {target_on!r}")
        if not tau > 0:
            raise ValueError(f"pruner_conf.tau must be > 0, got {tau!r}")
        if not threshold_gain > 0:
            raise ValueError(f"pruner_conf.threshold_gain must be > 0, got {threshold_gain!r}")
        super().__init__(prunable, ssl_model, target_sparsity, units, finalize_tolerance, finetune_epochs)
        self.target_on = target_on
        self.targets: Dict[str, float] = {"all": self.target_sparsity}
        self.tau, self.gain = float(tau), float(threshold_gain)
        init_term(self, warmup_steps, dual_lr, penalty, multipliers=("lambda1_all",),
                  budget_ref_steps=budget_ref_steps, dual_gap_clip=dual_gap_clip)
        self.thresholds = torch.nn.ParameterDict(
            {self._key(n): torch.nn.Parameter(torch.zeros(())) for n in self.groups})
        if target_on == "macs":
            self.build_macs_model()
        self.register_buffer("calibrated", torch.zeros((), dtype=torch.bool))
        self._kept = None
        self.attach()

    # -- gates ------------------------------------------------------------------------------
    def scores(self, name: str) -> torch.Tensor:
        """u_j of the group's units (differentiable in the producer weights), standardised over
        the group (mean 0, std 1; the statistics are not differentiated)."""
        g = self.groups[name]
        s = 0.0
        for prod in g.producers:
            # the weight as trained: a producer can be another group's consumer, whose masked
            # columns must not move this group's scores (or finalize, masks reset, would differ)
            w = (prod.parametrizations.weight.original if parametrize.is_parametrized(prod, "weight")
                 else prod.weight)
            s = s + w.abs().reshape(g.num_units, -1).sum(1)
            if prod.bias is not None:
                s = s + prod.bias.abs().reshape(g.num_units, -1).sum(1)
        d = s.detach()
        return (s - d.mean()) / d.std().clamp_min(1e-12) if g.num_units > 1 else s - d

    @torch.no_grad()
    def calibrate(self) -> None:
        """Start every threshold 2 tau below its group's lowest score: every unit kept, and every
        soft mask still sensitive to its threshold (a threshold far below all scores would get
        no gradient). Done once, on the first training step (the pretrained weights are loaded
        after the model is built); saved with the model, so a resumed run does not redo it."""
        for n in self.groups:
            self.thresholds[self._key(n)].fill_(float(self.scores(n).min() - 2 * self.tau) / self.gain)
        self.calibrated.fill_(True)

    def threshold(self, name: str) -> torch.Tensor:
        return self.thresholds[self._key(name)] * self.gain

    @torch.no_grad()
    def chosen_widths(self) -> Dict[str, int]:
        return {n: int((self.scores(n) >= self.threshold(n)).sum()) for n in self.groups}

    def before_forward(self) -> None:
        if self.training and not bool(self.calibrated):
            self.calibrate()
        kept = {}
        for n in self.groups:
            cm = self.column_mask(n)
            u, t = self.scores(n), self.threshold(n)
            hard = (u >= t).to(u.dtype)
            if not self.training:
                cm.soft, cm.mask = None, hard.detach().to(cm.mask.device)
                continue
            soft = torch.sigmoid((u - t) / self.tau)
            # (soft - soft) is exactly 0: the value is exactly H (1 + s - s can round off 1)
            cm.soft = hard.detach() + (soft - soft.detach())
            kept[n] = hard.sum().detach() + (soft.sum() - soft.sum().detach())
        self._kept = kept if self.training else None

    # -- sparsity ----------------------------------------------------------------------------
    def achieved(self, widths: Dict[str, object]) -> Dict[str, object]:
        if self.target_on == "macs":
            return {"all": 1.0 - self.macs_of(widths) / self.dense_macs}
        return {"all": self.sparsity_of(widths)}

    def loss(self) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        # a training forward's kept counts are the hard widths already (no second scoring)
        widths = ({n: int(round(float(k.detach()))) for n, k in self._kept.items()} if self._kept is not None
                  else self.chosen_widths())
        stats = {"sparsity": torch.tensor(float(self.sparsity_of(widths)))}
        if self.target_on == "macs":
            stats["macs_sparsity"] = torch.tensor(float(self.achieved(widths)["all"]))
        if self._kept is None:  # evaluation: report only
            zero = self.step.new_zeros((), dtype=torch.float32)
            return zero, {**stats, "loss_sparsity": zero}
        update = torch.is_grad_enabled()
        s = self.achieved(self._kept)["all"]  # value: the hard widths'; gradient: the soft ones'
        target = warmed_up_target(self.targets["all"], self.step, self.warmup_steps)
        term = sparsity_term(s - target, self.lambda1_all, torch.zeros((), dtype=torch.long),
                             self.penalty, self.dual_lr, update, gap_clip=self.dual_gap_clip)
        stats.update({"achieved_all": s.detach(), "target_all": torch.tensor(target)})
        self._kept = None
        return self.end_step(term, stats, update)  # each forward's masks are used once

    def trace_stats(self, stats: Dict[str, torch.Tensor]) -> Dict[str, float]:
        """The constrained value (size or MACs reduction) of the hard masks, and its target."""
        if "target_all" not in stats:
            return {}
        return {"achieved": float(stats["achieved_all"]), "target": float(stats["target_all"])}

    # -- finalize ---------------------------------------------------------------------------
    def snap_widths(self, widths: Dict[str, int]) -> Dict[str, int]:
        return self.snap_by_common_factor(widths)

    @torch.no_grad()
    def _kept_units(self, widths: Dict[str, int]) -> Dict[str, torch.Tensor]:
        """The ``widths[n]`` units of largest score per group (what the hard masks keep)."""
        return {n: torch.sort(self.scores(n), descending=True, stable=True).indices[: widths[n]].cpu()
                for n in self.groups}

    def set_final_masks(self, widths: Dict[str, int]) -> None:
        for n, idx in self._kept_units(widths).items():
            cm = self.column_mask(n)
            mask = torch.zeros_like(cm.mask)
            mask[idx.to(mask.device)] = 1.0
            cm.soft, cm.mask = None, mask

    def keep_units(self, widths: Dict[str, int]) -> Dict[str, List[int]]:
        return {n: sorted(idx.tolist()) for n, idx in self._kept_units(widths).items()}

    def method_entries(self, widths: Dict[str, int]) -> Dict[str, object]:
        out = {"achieved": self.achieved_values(widths),
               "targets": dict(self.targets), "target_on": self.target_on,
               "thresholds": {n: round(float(self.threshold(n)), 4) for n in self.groups}}
        if self.cost.macs_terms is not None:
            out["macs_sparsity"] = float(1.0 - self.macs_of(widths) / self.dense_macs)
        return out

"""HJ-Pruning: hard-concrete structured pruning of the CNN frontend and the Transformer
(Peng, Kim, Wu, Sridhar, Watanabe, ICASSP 2023, arXiv 2302.14132).

Units (``compaction.units``): output channels of the CNN's conv layers, attention heads, FFN
intermediate units; with ``prune_layers`` also one gate per whole attention block and per whole
FFN block (the block's units are multiplied by it). Every unit has a hard-concrete gate
(Louizos et al., 2018) with parameter log_alpha, beta = 2/3, stretch (l, r) = (-0.1, 1.1):
  training   u ~ U(0,1), s = sigmoid((log u - log(1-u) + log_alpha) / beta),
             z = clamp(s * (r - l) + l, 0, 1)
  P(z != 0)  = sigmoid(log_alpha - beta * log(-l / r))
  evaluation deterministic: of each group the round(sum P(z != 0)) units with the largest
             log_alpha are kept, with value sigmoid(log_alpha / beta * 0.8) (DPHuBERT's choice;
             finalize bakes the values into the consumer weights, so the compact model equals it).
The gate value scales the unit's consumer columns (``units.ColumnMask``), i.e. the unit's output.

Targets, the paper's three variants (``target_on``):
  separate  CNN and Transformer each hold their own target (``cnn_target``,
            ``transformer_target``; default both ``target_sparsity``), one sparsity term each
  size      one target on the size of all prunable weights
  macs      one target on the MACs of the SSL model per second of audio
              (``StructuredPruner.macs_of``: the same counting as ``profiling.macs``)
Expected size and MACs are exact functions of the gates' P(z != 0) for independent groups; the
deterministic architecture rounds each group's expected count, so its size can sit a steady
offset from the expected one (``hard_gap`` puts the deterministic value in the term).
Held architecture (``move_band``, ours): the kept count of each group is held between training
steps and moves to round(E[count]) only where the move leaves the constrained value within the
band of the step's ramped target, or closer to it; the gates still choose which units are kept.
Sparsity term: lambda1 * gap + penalty * gap^2 with lambda1 by dual ascent and a linear warm-up
of the target (``pruning/lagrangian.py``; the paper trains lambda2 by ascent too, we keep it
fixed as in SPG, see there). Finalize: if the deterministic architecture misses the target by
more than ``finalize_tolerance``, every group's kept count is scaled by one common factor (found
by bisection) until it meets it: the split between layers that training learned is kept.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from espnet_pinch.compaction.units import KINDS
from espnet_pinch.pruning.lagrangian import (init_term, sparsity_term, straight_through,
                                              warmed_up_target)
from espnet_pinch.pruning.masked import check_target
from espnet_pinch.pruning.structured import StructuredPruner, keeps_band

BETA, LEFT, RIGHT = 2.0 / 3.0, -0.1, 1.1
VARIANTS = ("separate", "size", "macs")


class HardConcrete(torch.nn.Module):
    """Hard-concrete gates for ``n`` units.

    log_alpha is stored divided by ``lr_scale`` (a learning-rate multiplier: Adam moves a
    parameter by about lr per step, and at a fine-tuning lr of 5e-4 log_alpha would need
    thousands of steps to cross from "keep" to "prune").
    """

    def __init__(self, n: int, init_log_alpha: float = 1.0, lr_scale: float = 1.0):
        super().__init__()
        self.lr_scale = float(lr_scale)
        self.raw = torch.nn.Parameter(
            (torch.full((n,), float(init_log_alpha)) + 0.01 * torch.randn(n)) / self.lr_scale)

    @property
    def log_alpha(self) -> torch.Tensor:
        return self.raw * self.lr_scale

    @torch.no_grad()
    def set_log_alpha(self, value) -> None:
        self.raw.copy_(torch.as_tensor(value, dtype=self.raw.dtype).expand_as(self.raw) / self.lr_scale)

    def sample(self) -> torch.Tensor:
        u = torch.rand_like(self.log_alpha).clamp(1e-6, 1 - 1e-6)
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + self.log_alpha) / BETA)
        return (s * (RIGHT - LEFT) + LEFT).clamp(0.0, 1.0)

    def prob_nonzero(self) -> torch.Tensor:
        return torch.sigmoid(self.log_alpha - BETA * math.log(-LEFT / RIGHT))

    def expected_count(self) -> torch.Tensor:
        return self.prob_nonzero().sum()

    @torch.no_grad()
    def deterministic(self, keep: Optional[int] = None) -> torch.Tensor:
        """Eval mask: the ``keep`` (default round(E[count])) largest log_alpha, DPHuBERT values."""
        n = self.log_alpha.numel()
        keep = int(round(float(self.expected_count()))) if keep is None else keep
        mask = torch.zeros(n, device=self.log_alpha.device)
        if keep > 0:
            idx = torch.topk(self.log_alpha, min(keep, n)).indices
            mask[idx] = torch.sigmoid(self.log_alpha[idx] / BETA * 0.8)
        return mask


class HJPruner(StructuredPruner):
    """Args (``pruner_conf``):
        target_sparsity: fraction to remove, in [0, 1): of the prunable weights (``size``), of
            the SSL model's MACs (``macs``), or the default of both parts (``separate``).
        target_on: separate | size | macs (the paper's variants a, b, c).
        cnn_target, transformer_target: the two targets of ``separate``.
        units: conv, heads, ffn (any subset).
        prune_layers: also gate whole attention and FFN blocks.
        init_log_alpha: initial log_alpha (1.0: P(z != 0) = 0.93, i.e. start near dense).
        alpha_lr_scale: learning-rate multiplier of log_alpha (> 0), see ``HardConcrete``.
        warmup_steps: steps over which the targets ramp up linearly from 0
            (a value in (0, 1): that fraction of the whole compression's steps, ``lagrangian.py``).
        dual_lr, penalty, budget_ref_steps, dual_gap_clip: the sparsity term (``lagrangian.py``).
        hard_gap: the term's value is the deterministic (chosen) architecture's size or MACs,
            its gradient the expectation's (straight-through, as NAS-CP's ``hard_gap``); false:
            the expectation under the gates' P(z != 0) (the paper's). The two differ by the
            rounding of each group's kept count, an offset a penalty-dominant term holds.
        move_band (ours): the deterministic architecture's kept counts are held from one training
            step to the next; a group moves to its round(E[count]) only if the move leaves
            what is constrained (size, MACs, or each part's sparsity) within this distance of
            the step's ramped target, or closer to it than before (groups with the largest
            relative change first; a refused move leaves the others free). Once in the band
            the architecture stays in it: the gates' rounding and their noise around the target
            cannot carry it out (on AN4, 3 of 16 budget runs had under 40 % of their steps at
            the target without it; README, "HJ's move band"). 0: off (the paper's).
        finalize_tolerance: largest |achieved - target| finalize leaves as it is.
        finetune_epochs: epochs of fine-tuning the compact model after pruning (read by the
            recipe; 0 = the pruning run is the whole compression, as in the paper).
    """

    def __init__(
        self,
        prunable: "OrderedDict[str, torch.nn.Module]",
        ssl_model: torch.nn.Module,
        target_sparsity: float = 0.5,
        target_on: str = "size",
        cnn_target: Optional[float] = None,
        transformer_target: Optional[float] = None,
        units: Sequence[str] = KINDS,
        prune_layers: bool = False,
        init_log_alpha: float = 1.0,
        alpha_lr_scale: float = 1.0,
        warmup_steps: int = 0,
        dual_lr: float = 0.5,
        penalty: float = 50.0,
        finalize_tolerance: float = 0.01,
        finetune_epochs: int = 0,
        budget_ref_steps: Optional[int] = None,
        dual_gap_clip: Optional[float] = None,
        hard_gap: bool = False,
        move_band: float = 0.0,
    ):
        if not alpha_lr_scale > 0:
            raise ValueError(f"pruner_conf.alpha_lr_scale must be > 0, got {alpha_lr_scale!r}")
        if not move_band >= 0:
            raise ValueError(f"pruner_conf.move_band must be >= 0, got {move_band!r}")
        if target_on not in VARIANTS:
            raise ValueError(f"pruner_conf.target_on must be one of {VARIANTS}, got {target_on!r}")
        super().__init__(prunable, ssl_model, target_sparsity, units, finalize_tolerance,
                         finetune_epochs)
        self.target_on, self.hard_gap = target_on, bool(hard_gap)
        self.targets: Dict[str, float] = {"all": self.target_sparsity}
        if target_on == "separate":
            self.targets = {
                "cnn": check_target(self.target_sparsity if cnn_target is None else cnn_target),
                "transformer": check_target(
                    self.target_sparsity if transformer_target is None else transformer_target)}
        init_term(self, warmup_steps, dual_lr, penalty,
                  multipliers=tuple(f"lambda1_{part}" for part in self.targets),
                  budget_ref_steps=budget_ref_steps, dual_gap_clip=dual_gap_clip)
        self.gates = torch.nn.ModuleDict({
            self._key(n): HardConcrete(g.num_units, init_log_alpha, alpha_lr_scale)
            for n, g in self.groups.items()})
        self.layer_gates = torch.nn.ModuleDict({
            self._key(n): HardConcrete(1, init_log_alpha, alpha_lr_scale)
            for n, g in self.groups.items() if prune_layers and g.kind != "conv"})
        if target_on == "macs":
            self.build_macs_model()
        self.move_band = float(move_band)
        self.holds = bool(self.move_band)
        if self.holds:  # -1: nothing held yet (the first training step sets every group)
            self.register_buffer("held", torch.full((len(self.groups),), -1, dtype=torch.long))
        self._expected = None
        self.attach()

    # -- gates ------------------------------------------------------------------------------
    def expected_widths(self) -> Dict[str, torch.Tensor]:
        out = {}
        for n in self.groups:
            e = self.gates[self._key(n)].expected_count()
            lg = self.layer_gates[self._key(n)] if self._key(n) in self.layer_gates else None
            out[n] = e * lg.prob_nonzero()[0] if lg is not None else e
        return out

    def deterministic_masks(self, widths: Optional[Dict[str, int]] = None) -> Dict[str, torch.Tensor]:
        """Each group's ``widths[n]`` (default: ``chosen_widths()``) largest-log_alpha units."""
        widths = self.chosen_widths() if widths is None else widths
        return {n: self.gates[self._key(n)].deterministic(widths[n]) for n in self.groups}

    def unheld_widths(self) -> Dict[str, int]:
        """The gates' own architecture: round(E[count]) per group, 0 where the whole block's
        gate is pruned (its deterministic value 0)."""
        out = {}
        for n in self.groups:
            k = self._key(n)
            lg = self.layer_gates[k] if k in self.layer_gates else None
            pruned = lg is not None and float(lg.deterministic()[0]) == 0
            out[n] = 0 if pruned else int(round(float(self.gates[k].expected_count())))
        return out

    def chosen_widths(self, hold: bool = False) -> Dict[str, int]:
        """The deterministic architecture's kept counts: the gates' rounded ones, or with
        ``move_band`` the held ones, which ``hold`` (a training step) moves towards the rounded
        ones as far as the band allows. Evaluation and finalize see what training last held."""
        held = dict(zip(self.groups, self.held.tolist())) if self.holds else {}
        if held and not hold and min(held.values()) >= 0:
            return held
        free = self.unheld_widths()
        if not held:
            return free
        if min(held.values()) < 0:  # nothing held yet: the gates' architecture
            choice = free
        else:
            target = {p: warmed_up_target(t, self.step, self.warmup_steps) for p, t in self.targets.items()}
            choice, gap = dict(held), self._gap_at(held, target)
            moves = sorted(((abs(free[n] - held[n]) / g.num_units, n) for n, g in self.groups.items()
                            if free[n] != held[n]), reverse=True)
            for _, n in moves:
                move = {**choice, n: free[n]}
                new = self._gap_at(move, target)
                if keeps_band(new, gap, self.move_band):
                    choice, gap = move, new
        if hold:
            self.held.copy_(torch.tensor([choice[n] for n in self.groups]))
        return choice

    def _gap_at(self, widths: Dict[str, int], target: Dict[str, float]) -> float:
        """The largest |achieved - target| over the constrained parts at ``widths``."""
        return max(abs(float(v) - target[p]) for p, v in self.achieved(widths).items())

    def before_forward(self) -> None:
        if not self.training:
            for n, m in self.deterministic_masks().items():
                cm = self.column_mask(n)
                cm.soft, cm.mask = None, m.to(cm.mask.device)
            self._expected = None
            return
        for n in self.groups:
            k = self._key(n)
            z = self.gates[k].sample()
            if k in self.layer_gates:
                z = z * self.layer_gates[k].sample()
            self.column_mask(n).soft = z
        self._expected = self.expected_widths()

    # -- sparsity ----------------------------------------------------------------------------
    def achieved(self, widths: Dict[str, object]) -> Dict[str, object]:
        """What each target constrains, for given (expected or chosen) widths."""
        if self.target_on == "separate":
            return {p: self.sparsity_of(widths, p) for p in self.targets}
        if self.target_on == "macs":
            return {"all": 1.0 - self.macs_of(widths) / self.dense_macs}
        return {"all": self.sparsity_of(widths)}

    def loss(self) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        update = torch.is_grad_enabled()
        # one deterministic-architecture evaluation per step (a training step moves the held one)
        widths = self.chosen_widths(hold=self._expected is not None and update)
        chosen = self.achieved_values(widths)
        stats = {"sparsity": torch.tensor(float(self.sparsity_of(widths)))}
        if self.target_on == "macs":
            stats["macs_sparsity"] = torch.tensor(chosen["all"])
        if self._expected is None:  # evaluation: report only
            zero = self.step.new_zeros((), dtype=torch.float32)
            return zero, {**stats, "loss_sparsity": zero}
        term = 0.0
        for part, expected in self.achieved(self._expected).items():
            target = warmed_up_target(self.targets[part], self.step, self.warmup_steps)
            # with hard_gap the chosen architecture's value, the expectation's gradient
            s = straight_through(expected, chosen[part]) if self.hard_gap else expected
            term = term + sparsity_term(s - target, getattr(self, f"lambda1_{part}"),
                                        torch.zeros((), dtype=torch.long), self.penalty,
                                        self.dual_lr, update, gap_clip=self.dual_gap_clip)
            stats[f"expected_{part}"] = expected.detach()
            stats[f"achieved_{part}"] = torch.tensor(chosen[part])  # deterministic masks
            stats[f"target_{part}"] = torch.tensor(target)
        self._expected = None
        return self.end_step(term, stats, update)  # each forward's samples are used once

    def trace_stats(self, stats: Dict[str, torch.Tensor]) -> Dict[str, float]:
        """The deterministic-mask value of what is constrained (size or MACs reduction: "all"; for
        ``separate`` the mean over the parts, whose targets ramp alike) and its target."""
        parts = [p for p in self.targets if f"target_{p}" in stats]
        if not parts:
            return {}
        return {k: sum(float(stats[f"{k}_{p}"]) for p in parts) / len(parts)
                for k in ("achieved", "target")}

    # -- finalize ---------------------------------------------------------------------------
    def snap_widths(self, widths: Dict[str, int]) -> Dict[str, int]:
        return self.snap_by_common_factor(widths)

    def set_final_masks(self, widths: Dict[str, int]) -> None:
        for n, m in self.deterministic_masks(widths).items():  # the gate values are baked in
            cm = self.column_mask(n)
            cm.soft, cm.mask = None, m.to(cm.mask.device)

    def keep_units(self, widths: Dict[str, int]) -> Dict[str, List[int]]:
        return {n: sorted(torch.nonzero(self.column_mask(n).mask).flatten().tolist()) for n in self.groups}

    def method_entries(self, widths: Dict[str, int]) -> Dict[str, object]:
        out = {"achieved": self.achieved_values(widths),
               "targets": dict(self.targets), "target_on": self.target_on}
        if self.cost.macs_terms is not None:
            out["macs_sparsity"] = float(1.0 - self.macs_of(widths) / self.dense_macs)
        return out

"""The sparsity term every method with a size target shares (SPG, NAS-CP, HJ-Pruning).

Augmented Lagrangian with a fixed quadratic weight:
  L = lambda1 * gap + penalty * gap^2,   gap = s - s*(k)
where s is the method's (differentiable) sparsity and s*(k) the target at step k (linear
warm-up over ``warmup_steps``; a value in (0, 1) is a fraction of the whole compression's
optimizer steps, resolved by the trainer from the lr schedule's budget (``bind_budget``), so one
config ramps over the same share of any budget). lambda1 is a buffer updated by dual ascent, lambda1 += dual_lr * gap, after each
training step: it integrates the gap until its pull balances the task loss. Why the fixed
quadratic weight: see the SPG module docstring.

Budget-relative controller (``budget_ref_steps``, optional). The controller's rates are per
optimizer step: lambda1 integrates the gap once a step, and the method's own parameters
(thresholds, gates, architecture logits) move about lr x their learning-rate multiplier a step
(Adam). The target ramp, though, is a fraction of the budget, so its slope per step grows as the
budget shrinks. On AN4 at 0.65 (budget sweep, 2026-12-03, ``trace.tsv``), SPG's sparsity rose at
most ~0.023 per step at every budget of 47-188 steps: on 47 steps the ramp asked 0.043 per step and
training ended at 0.539; on 94 steps (0.022 per step) it lagged, lambda1 wound up and it overshot to
0.739 before settling at 0.702; on 188 steps (0.011) it followed. With ``budget_ref_steps`` = R
(the steps the controller was tuned on), a compression of N steps scales both rates by R / N:
dual_lr here (``bind_budget``), and the learning rate of the method's parameters (the trainer
scales the ``budget_scaled`` optimizer groups, ``tasks/asr.py``, ``train/schedule.py``), so the
controller covers the same distance per fraction of the budget at any budget. At N = R nothing
changes. None: rates per step, as tuned (no scaling).

Anti-windup (``dual_gap_clip``, optional): lambda1 integrates the gap clipped to [-c, c], so a lag
the method's parameters cannot close faster (HJ's gates stall for ~20 steps while the lr warms
up: 0.05 where the ramp asks 0.23-0.32) winds lambda1 up by at most dual_lr x c a step; the loss
term itself still sees the whole gap. None: no clip. Not enough alone for HJ on AN4 (clip 0.02,
dual_lr 100: 0.65 overshoots to 0.721, 0.9 ends at 0.853; README), so no AN4 config sets it.
Neither option scales SPG's ``threshold_max_step`` (a per-step cap) with the budget.
Is HJ's early stall (0.05 for ~20 steps where the ramp asks 0.23-0.32) the lr warm-up's doing? No.
A trial (2026-12-06, commit 41a82e1, removed since) let the gates skip the schedule's lr warm-up
while the model kept it: HJ size at 0.65 (seed 0, dual_lr 30, alpha_lr_scale 200, search only)
still sat at 0.042-0.057 up to step 24 and overshot as before (0.718 at step 90, 0.759 at 102).
The gates wait for lambda1: a unit's share of the size term is ~1/2000 of the model, so its pull
outweighs its own ASR gradient only once lambda1 has integrated the gap for ~20-30 steps, and that
windup is what overshoots later. What works is a penalty-dominant term (a large ``penalty`` that
pulls from the first step, a small ``dual_lr``): README, "Reaching the target in training".
"""
from __future__ import annotations

import torch

from espnet_pinch.train.schedule import steps_of, unbound_budget

NEEDS_BUDGETLR = "train with `scheduler: budgetlr` (espnet_pinch/train/schedule.py)"


def init_term(module: torch.nn.Module, warmup_steps, dual_lr, penalty,
              multipliers: tuple = ("lambda1",), budget_ref_steps=None,
              dual_gap_clip=None) -> None:
    """Validate the term's ``pruner_conf`` entries and give ``module`` the term's state: the
    settings, a ``step`` counter and one multiplier buffer per name in ``multipliers`` (buffers:
    saved and resumed with the model)."""
    check_term_conf(warmup_steps, dual_lr, penalty, budget_ref_steps, dual_gap_clip)
    module.dual_gap_clip = None if dual_gap_clip is None else float(dual_gap_clip)
    module.dual_lr, module.penalty = float(dual_lr), float(penalty)
    module.tuned_dual_lr = module.dual_lr
    module.budget_ref_steps = None if budget_ref_steps is None else int(budget_ref_steps)
    module.budget_factor = 1.0  # R / N once the budget is bound
    fraction = 0 < warmup_steps < 1
    module.warmup_fraction = float(warmup_steps) if fraction else None
    module.warmup_steps = None if fraction else int(warmup_steps)
    module.register_buffer("step", torch.zeros((), dtype=torch.long))
    for name in multipliers:
        module.register_buffer(name, torch.zeros(()))


def check_term_conf(warmup_steps, dual_lr, penalty, budget_ref_steps=None,
                    dual_gap_clip=None) -> None:
    """Validate the term's ``pruner_conf`` entries (every method that uses it takes them)."""
    if dual_gap_clip is not None and not dual_gap_clip > 0:
        raise ValueError(f"pruner_conf.dual_gap_clip must be > 0 or null, got {dual_gap_clip!r}")
    if budget_ref_steps is not None and (int(budget_ref_steps) != budget_ref_steps
                                         or budget_ref_steps < 1):
        raise ValueError(f"pruner_conf.budget_ref_steps must be a whole number >= 1 or null, "
                         f"got {budget_ref_steps!r}")
    if warmup_steps < 0:
        raise ValueError(f"pruner_conf.warmup_steps must be >= 0, got {warmup_steps!r}")
    if not dual_lr > 0:
        raise ValueError(f"pruner_conf.dual_lr must be > 0, got {dual_lr!r}")
    if penalty < 0:
        raise ValueError(f"pruner_conf.penalty must be >= 0, got {penalty!r}")


def bind_budget(module: torch.nn.Module, total_steps: int) -> None:
    """Resolve a fractional ``warmup_steps`` against the compression's total optimizer steps and,
    with ``budget_ref_steps``, set ``budget_factor`` = R / N and dual_lr = the tuned one x it."""
    if getattr(module, "warmup_fraction", None) is not None:
        module.warmup_steps = steps_of(module.warmup_fraction, total_steps)
    if getattr(module, "budget_ref_steps", None) is not None:
        module.budget_factor = module.budget_ref_steps / int(total_steps)
        module.dual_lr = module.tuned_dual_lr * module.budget_factor


def warmed_up_target(target: float, step: torch.Tensor, warmup_steps: int | None) -> float:
    """s*(k): linear ramp from 0 to ``target`` over ``warmup_steps`` (none if 0)."""
    if warmup_steps is None:
        raise unbound_budget("pruner_conf.warmup_steps", NEEDS_BUDGETLR)
    if warmup_steps == 0:
        return target
    return target * min(1.0, float(step) / warmup_steps)


def straight_through(soft: torch.Tensor, hard: float) -> torch.Tensor:
    """``hard``'s value with ``soft``'s gradient: the term sees the architecture the method would
    keep (its deterministic or argmax one) and moves it through the differentiable estimate."""
    return soft + (hard - soft.detach())


def sparsity_term(gap: torch.Tensor, lambda1: torch.Tensor, step: torch.Tensor, penalty: float,
                  dual_lr: float, update: bool, gap_clip: float | None = None) -> torch.Tensor:
    """The loss term; with ``update`` also the dual-ascent step of lambda1 (on the gap clipped to
    [-gap_clip, gap_clip] if given) and ``step += 1``."""
    # lambda1 enters as a constant of this step (cloned: it is updated in place below).
    term = lambda1.clone() * gap + penalty * gap ** 2
    if update:
        with torch.no_grad():
            g = gap.detach() if gap_clip is None else gap.detach().clamp(-gap_clip, gap_clip)
            lambda1.add_(dual_lr * g)
            step.add_(1)
    return term

"""A plain-SGD parameter group inside any torch optimizer (for a pruner's own parameters).

``add_plain_sgd_group(optimizer, params, lr)`` moves ``params`` out of the optimizer's groups into
a group of their own, flagged ``plain_sgd``, whose parameters the optimizer's own rule (Adam's
per-parameter normalisation, its weight decay, its state) never touches: a step pre-hook hides
their gradients from it, and the post-hook applies ``p -= group["lr"] * grad``. Everything else
about an optimizer step stays ESPnet's: the gradient is the one after accumulation, AMP
unscaling and clipping (the whole model's norm), a skipped step (non-finite norm) skips this
group too, ``zero_grad`` clears it, and the group's learning rate follows the run's scheduler
like every other group's (``BudgetLR`` scales each group's base rate by one common factor, and
ESPnet logs it as ``optim0_lr<group>``). Plain SGD has no state, so nothing is added to the
checkpoint beyond the group's hyper-parameters.

``add_budget_scaled_group(optimizer, params)`` moves ``params`` into a group of their own with the
hyper-parameters of the group they were in, flagged ``budget_scaled``: the optimizer's rule is
unchanged (Adam is per parameter), but ``BudgetLR.scale_groups`` can then scale that group's rate
alone (a pruner's parameters under a budget-relative controller, ``pruning/lagrangian.py``).
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence

import torch

FLAG = "plain_sgd"
BUDGET_FLAG = "budget_scaled"


def _take_out(groups: list, own: set) -> None:
    """Remove the parameters whose id is in ``own`` from ``groups`` (in place), and the groups
    left empty."""
    for g in groups:
        g["params"] = [p for p in g["params"] if id(p) not in own]
    groups[:] = [g for g in groups if g["params"]]


def add_budget_scaled_group(optimizer: torch.optim.Optimizer,
                            params: Iterable[torch.nn.Parameter]) -> None:
    """Move ``params`` (those the optimizer's ordinary groups hold) into one group flagged
    ``budget_scaled`` with their former group's hyper-parameters; a plain-SGD group is flagged
    too. Call before the scheduler is built (it records each group's base rate)."""
    own = {id(p) for p in params}
    for g in optimizer.param_groups:
        if g.get(FLAG) and any(id(p) in own for p in g["params"]):
            g[BUDGET_FLAG] = True
    src = [g for g in optimizer.param_groups if not g.get(FLAG) and any(id(p) in own for p in g["params"])]
    if not src:
        return
    if len({tuple(sorted((k, repr(v)) for k, v in g.items() if k != "params")) for g in src}) > 1:
        raise RuntimeError("the pruner's parameters sit in optimizer groups with different "
                           "settings: one budget-scaled group cannot keep them")
    moved = [p for g in src for p in g["params"] if id(p) in own]
    settings = {k: v for k, v in src[0].items() if k != "params"}
    _take_out(optimizer.param_groups, own)
    optimizer.add_param_group({**settings, "params": moved, BUDGET_FLAG: True})


def add_plain_sgd_group(optimizer: torch.optim.Optimizer, params: Iterable[torch.nn.Parameter],
                        lr: float, max_steps: Optional[Sequence[float]] = None) -> None:
    """``max_steps`` (optional, one per parameter): the largest change of that parameter in one
    step (a trust region: the step is the gradient's until it would exceed it)."""
    params = list(params)
    if max_steps is not None and len(max_steps) != len(params):
        raise ValueError(f"{len(max_steps)} max_steps for {len(params)} parameters")
    if not params:
        return
    if not lr > 0:
        raise ValueError(f"plain SGD learning rate must be > 0, got {lr!r}")
    if any(g.get(FLAG) for g in optimizer.param_groups):
        raise RuntimeError("this optimizer already has a plain-SGD group")
    own = {id(p) for p in params}
    _take_out(optimizer.param_groups, own)  # built over model.parameters(): take ours out
    # the optimizer's defaults fill the group's other keys (betas, eps, ...): unused here
    optimizer.add_param_group({"params": params, "lr": float(lr), "weight_decay": 0.0, FLAG: True})
    caps = {p: float(m) for p, m in zip(params, max_steps)} if max_steps is not None else {}
    hidden = {}

    def hide(opt, args, kwargs):  # before the optimizer's own rule: it sees no gradient here
        for g in opt.param_groups:
            if g.get(FLAG):
                for p in g["params"]:
                    hidden[p] = p.grad
                    p.grad = None

    @torch.no_grad()
    def sgd(opt, args, kwargs):
        for g in opt.param_groups:
            if g.get(FLAG):
                for p in g["params"]:
                    grad = hidden.pop(p, None)
                    if grad is not None:
                        step = grad * -g["lr"]
                        if p in caps:
                            step.clamp_(-caps[p], caps[p])
                        p.add_(step)
                        p.grad = grad  # zero_grad clears it as usual
        hidden.clear()

    optimizer.register_step_pre_hook(hide)
    optimizer.register_step_post_hook(sgd)

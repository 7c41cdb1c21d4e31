"""One learning-rate schedule over a whole compression budget, and its per-step trace.

``BudgetLR`` (``scheduler: budgetlr`` in a config; registered into ESPnet's scheduler choices by
``espnet_pinch.tasks.asr``) suits continuing from a trained model: a short linear warm-up, then
a linear decay to ``final_lr_scale`` x the base rate at the end of the budget,

    k <= w:      lr(k) = lr0 * k / w
    w < k <= K:  lr(k) = lr0 * (1 - (1 - final_lr_scale) * (k - w) / (K - w))

where k (1-based) is the optimizer step of the *whole* compression and K = ``budget_epochs`` x
steps per epoch. ``warmup_steps`` w is a number of steps, or a fraction of K when in (0, 1)
(``steps_of``), so the schedule keeps its shape on any budget: the AN4 recipe's 0.1 is 19 of 188
steps at 4 epochs, and 5 / 9 / 38 at 1 / 2 / 8 epochs (a fixed 19 steps was 40 % of a 1-epoch
budget, longer than the pruning targets' ramp; README, budget sweep). A structured method trains
twice (search, then the compact model in a new ESPnet run); its fine-tuning run is given
``start_epoch`` = the search epochs, so k continues from ``start_epoch`` x steps per epoch: the
schedule goes on where the search stopped, with no second warm-up. Every method and the matched dense baseline (dense_cont) therefore see the same lr at
the same step. Steps per epoch are the number of batches of ESPnet's training iterator, bound by
``PinchTrainer`` before training (ESPnet's batches are fixed for a data set and ``batch_bins``;
only their order changes between epochs), so the config needs no step counts of its own.

Trace: every optimizer step appends ``step lr <pruning stats>`` to ``<output_dir>/trace.tsv``
(tab-separated, a header first): the global step k, the lr the step used, and, when there is a
pruner, the hard value of what its target constrains (sparsity, size or MACs reduction) and that
step's target (``AbsPruner.trace_stats``). A resumed run re-appends the
steps of the epoch it redoes; ``read_trace`` keeps the last record of each step. A pruner that
instruments its layers (SPG, every ``probe_interval`` steps: each layer's threshold, sparsity and
the ASR and sparsity-term parts of the threshold's gradient; ``AbsPruner.take_probe``) adds one
JSON line per probe to ``<output_dir>/layers.jsonl`` (``read_probes``).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
from espnet2.schedulers.abs_scheduler import AbsBatchStepScheduler
from torch.optim.lr_scheduler import _LRScheduler

TRACE = "trace.tsv"
PROBES = "layers.jsonl"
TRACE_COLUMNS = ("step", "lr", "achieved", "target")


def steps_of(value: float, total_steps: int) -> int | None:
    """A schedule length given as steps or as a fraction of the budget: ``value`` in (0, 1) is
    that share of ``total_steps`` (at least 1), anything else a whole number of steps; None: a
    fraction with no budget yet (``total_steps`` None)."""
    if 0 < value < 1:
        return None if total_steps is None else max(1, round(value * int(total_steps)))
    return int(value)


def unbound_budget(key: str, fix: str) -> ValueError:
    """The error for a schedule length ``key`` given as a share of a budget nobody bound."""
    return ValueError(f"{key} is a fraction of the budget, but no budget was bound: {fix}")


class BudgetLR(_LRScheduler, AbsBatchStepScheduler):
    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int = 20,
                 final_lr_scale: float = 0.05, budget_epochs: Optional[int] = None,
                 start_epoch: int = 0, last_epoch: int = -1):
        if not (warmup_steps >= 0 and (warmup_steps < 1 or int(warmup_steps) == warmup_steps)):
            raise ValueError(f"scheduler_conf.warmup_steps must be a whole number of steps >= 0 "
                             f"or a fraction of the budget in (0, 1), got {warmup_steps!r}")
        if not 0.0 <= float(final_lr_scale) <= 1.0:
            raise ValueError(f"scheduler_conf.final_lr_scale must be in [0, 1], got {final_lr_scale!r}")
        if int(start_epoch) < 0:
            raise ValueError(f"scheduler_conf.start_epoch must be >= 0, got {start_epoch!r}")
        if budget_epochs is not None and int(budget_epochs) <= int(start_epoch):
            raise ValueError(f"scheduler_conf.budget_epochs ({budget_epochs}) must exceed "
                             f"start_epoch ({start_epoch})")
        self.warmup = float(warmup_steps)  # as configured; warmup_steps: resolved by ``bind``
        self.warmup_steps = steps_of(self.warmup, None)
        self.final_lr_scale = float(final_lr_scale)
        self.budget_epochs = None if budget_epochs is None else int(budget_epochs)
        self.start_epoch = int(start_epoch)
        self.steps_per_epoch: Optional[int] = None  # bound by PinchTrainer (``bind``)
        self.trace_path: Optional[Path] = None
        self.observe: Callable[[], Dict[str, float]] = dict
        super().__init__(optimizer, last_epoch)

    def state_dict(self) -> dict:
        # the trace hook and its path belong to this process, not to the checkpoint
        return {k: v for k, v in super().state_dict().items() if k not in ("observe", "probe", "trace_path")}

    def bind(self, steps_per_epoch: int, max_epoch: int, trace_path: Optional[Path] = None,
             observe: Optional[Callable[[], Dict[str, float]]] = None,
             probe: Optional[Callable[[], Dict[str, object]]] = None) -> None:
        """Set the steps per epoch (and the budget, ``max_epoch`` of this run if the config gives
        none) and re-apply the lr of the coming step; optionally start the per-step trace."""
        if steps_per_epoch < 1:
            raise ValueError(f"BudgetLR: the training iterator has no batches ({steps_per_epoch})")
        self.steps_per_epoch = int(steps_per_epoch)
        if self.budget_epochs is None:
            self.budget_epochs = self.start_epoch + int(max_epoch)
        if self.start_epoch + int(max_epoch) > self.budget_epochs:
            raise ValueError(f"BudgetLR: start_epoch {self.start_epoch} + max_epoch {max_epoch} "
                             f"exceeds budget_epochs {self.budget_epochs}")
        self.warmup_steps = steps_of(self.warmup, self.budget_epochs * self.steps_per_epoch)
        self._apply_lr()
        self.trace_path, self.observe, self.probe = trace_path, observe or dict, probe or dict
        if trace_path is not None and not Path(trace_path).exists():
            Path(trace_path).write_text("\t".join(TRACE_COLUMNS) + "\n")

    def _apply_lr(self) -> None:
        """Set every group's lr to the schedule's for the coming step (after a change of the
        budget or of a group's base rate)."""
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def scale_groups(self, flag: str, factor: float) -> None:
        """The groups flagged ``flag`` get ``factor`` x the base rate they were built with
        (``initial_lr``: idempotent, and a resumed scheduler's saved base rates agree); the lr of
        the coming step is re-applied. For a budget-relative controller (``pruning/lagrangian.py``)."""
        if not factor > 0:
            raise ValueError(f"BudgetLR: a group's rate factor must be > 0, got {factor!r}")
        for i, g in enumerate(self.optimizer.param_groups):
            if g.get(flag):
                self.base_lrs[i] = g["initial_lr"] * float(factor)
        self._apply_lr()

    def global_step(self) -> int:
        """k of the coming optimizer step (1-based, over the whole compression)."""
        return self.start_epoch * (self.steps_per_epoch or 0) + self.last_epoch + 1

    def factor(self, k: int) -> float:
        w = self.warmup_steps
        if w is None:
            return 1.0  # a fractional warm-up before ``bind``: re-applied there, refused in step()
        if k <= w:
            return k / w
        if self.steps_per_epoch is None or self.budget_epochs is None:
            return 1.0  # not bound yet: only the warm-up is known
        total = self.budget_epochs * self.steps_per_epoch
        if total <= w:
            return 1.0
        return 1.0 - (1.0 - self.final_lr_scale) * min(1.0, (k - w) / (total - w))

    def get_lr(self) -> List[float]:
        f = self.factor(self.global_step())
        return [base * f for base in self.base_lrs]

    def step(self, epoch=None) -> None:
        if self.warmup_steps is None and self.last_epoch >= 0:
            raise unbound_budget("scheduler_conf.warmup_steps",
                                 "train with espnet_pinch's trainer (train/trainer.py)")
        if self.trace_path is not None and self.last_epoch >= 0:
            stats = self.observe()
            row = [str(self.global_step()), repr(self.optimizer.param_groups[0]["lr"])]
            row += ["" if stats.get(c) is None else f"{float(stats[c]):.6f}" for c in TRACE_COLUMNS[2:]]
            with open(self.trace_path, "a") as f:
                f.write("\t".join(row) + "\n")
            rec = self.probe()
            if rec:
                with open(Path(self.trace_path).with_name(PROBES), "a") as f:
                    f.write(json.dumps({**rec, "step": self.global_step()}) + "\n")
        super().step(epoch)


def read_trace(*paths: str | Path) -> List[Dict[str, float]]:
    """The per-step records of one compression (its runs' trace.tsv files in order), one per
    global step (the last record of a step a resumed run repeated), sorted by step."""
    by_step: Dict[int, Dict[str, float]] = {}
    for path in paths:
        with open(path, newline="") as f:
            for i, rec in enumerate(csv.DictReader(f, delimiter="\t"), start=2):
                try:
                    row = {k: (float(v) if v not in ("", None) else None) for k, v in rec.items()}
                    by_step[int(row["step"])] = row
                except (TypeError, ValueError) as e:
                    raise ValueError(f"{path}:{i}: not a trace record ({e})") from e
    return [by_step[k] for k in sorted(by_step)]


def read_probes(path: str | Path) -> List[Dict[str, object]]:
    """The probes of one run's ``layers.jsonl``, one per step (the last record of a step a resumed
    run repeated), sorted by step."""
    by_step: Dict[int, Dict[str, object]] = {}
    with open(path) as f:
        for i, line in enumerate(f, start=1):
            try:
                rec = json.loads(line)
                by_step[int(rec["step"])] = rec
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{i}: not a probe record ({e})") from e
    return [by_step[k] for k in sorted(by_step)]

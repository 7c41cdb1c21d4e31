"""ESPnet's trainer plus what pruning needs on a cluster: resumable, rank-consistent pruning state.

``PinchTrainer`` is ESPnet's ``Trainer`` (selected by ``PinchASRTask.trainer``; ESPnet is not
edited) with these additions:

- **Pruning state in the log.** After every training epoch each rank logs a one-line summary of
  the pruning state (step counter, Lagrange multipliers, number of values and a checksum), and
  on resume the restored state is logged the same way, so a log shows whether a resumed run
  continued (step > 0) or restarted.
- **Identical state across ranks.** With ``--ngpu N > 1`` (ESPnet's DistributedDataParallel),
  the gates, thresholds and multipliers must stay the same on every rank: gradients are averaged
  by DDP, buffers are broadcast from rank 0 at each forward. After every epoch the ranks compare
  their flattened pruning state (all_gather) and training stops with an error if they differ;
  each rank also saves its state to ``pruning_state/rank<r>.pt`` for inspection.
- **A checkpoint a rerun can trust.** ESPnet writes ``checkpoint.pth`` in place, so a job killed
  while saving leaves a truncated file that the next ``--resume true`` run fails on. Before each
  epoch, rank 0 copies the last complete checkpoint to ``checkpoint.prev.pth`` (write, then
  rename); on resume a checkpoint that is not a complete zip archive is moved aside to
  ``checkpoint.pth.corrupt`` and the run resumes from ``checkpoint.prev.pth`` instead.
Preemption therefore costs at most the epoch in progress (ESPnet saves once per epoch).
- **Where the gradient clip applies** (``--grad_clip_scope``). ESPnet clips the norm of all
  gradients together (``grad_clip``). A pruning method's own parameters (thresholds, gates,
  architecture logits) carry large gradients (their lr multipliers and the size term): on AN4
  the clipped norm is 22-26 for dense_cont and 10^3-10^4 in a pruning run's ramp, so the clip
  scales the weights' ASR gradient by a factor the method's controller sets, step by step
  (README, "The method's own parameters share the gradient clip"). ``all`` (default): ESPnet's
  rule. ``separate``: the weights and the method's parameters are clipped each by their own norm
  to ``grad_clip``; the logged ``grad_norm`` is then the weights' (comparable with dense_cont),
  and a non-finite norm of either skips the step as before.
- **One schedule per compression, traced per step.** A ``BudgetLR`` scheduler
  (``train/schedule.py``) is bound to the number of batches per epoch before training, and rank 0
  writes ``trace.tsv`` (global step, lr, training sparsity and target) beside the checkpoints,
  and ``layers.jsonl`` (per-layer instrumentation, e.g. SPG's thresholds and their gradients).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Dict

import torch
from espnet2.train.trainer import Trainer, TrainerOptions
from espnet2.utils.build_dataclass import build_dataclass
from torch.nn.utils import parametrize

from espnet_pinch.train.optim import BUDGET_FLAG
from espnet_pinch.train.schedule import TRACE, BudgetLR

CHECKPOINT = "checkpoint.pth"
PREVIOUS = "checkpoint.prev.pth"
RANK_TOLERANCE = 1e-6  # max |difference| of the pruning state between ranks


def pruning_state(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """Parameters and buffers of the pruner and of its gates (the parametrizations on its layers,
    not the layers' own weights), by their names in the model's state dict; empty without a
    pruner."""
    model = getattr(model, "module", model)  # DDP / DataParallel wrapper
    pruner = getattr(model, "pruner", None)
    if pruner is None:
        return {}
    owned = {id(t) for t in pruner.state_dict(keep_vars=True).values()}
    for layer in pruner.layers.values():
        if parametrize.is_parametrized(layer, "weight"):
            for gate in layer.parametrizations.weight:
                owned.update(id(t) for t in gate.state_dict(keep_vars=True).values())
    return {k: t.detach() for k, t in model.state_dict(keep_vars=True).items() if id(t) in owned}


def _flat(state: Dict[str, torch.Tensor]) -> torch.Tensor:
    """Every value of ``state`` as one float64 vector (sorted by name, so ranks agree on order)."""
    if not state:
        return torch.zeros(0, dtype=torch.float64)
    return torch.cat([state[k].reshape(-1).to(torch.float64).cpu() for k in sorted(state)])


def summarize(state: Dict[str, torch.Tensor]) -> str:
    """``step=.. lambda1=.. | 42 tensors, 1234 values, checksum ..`` (scalars named, rest summed)."""
    scalars = []
    for k in sorted(state):
        short = k.rsplit(".", 1)[-1]
        if state[k].numel() == 1 and k.startswith("pruner.") and short.startswith(("step", "lambda")):
            scalars.append(f"{short}={state[k].item():.6g}")
    flat = _flat(state)
    checksum = float(flat.abs().sum()) if flat.numel() else 0.0
    return (" ".join(scalars) + (" | " if scalars else "")
            + f"{len(state)} tensors, {flat.numel()} values, checksum {checksum:.10g}")


def max_rank_difference(state: Dict[str, torch.Tensor], device: torch.device) -> float:
    """Max |state on rank r - state on rank 0| over all ranks (a collective: every rank calls it)."""
    flat = _flat(state).to(device)
    gathered = [torch.empty_like(flat) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(gathered, flat)
    return max(float((g - gathered[0]).abs().max()) if flat.numel() else 0.0 for g in gathered)


def checkpoint_is_complete(path: Path) -> bool:
    """torch.save writes a zip archive: complete iff its central directory and CRCs check out."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.testzip() is None
    except (zipfile.BadZipFile, OSError, EOFError):
        return False


def _save_previous(output_dir: Path) -> None:
    """Copy the last checkpoint to checkpoint.prev.pth (copy, then rename). At the start of an
    epoch checkpoint.pth is complete: this process wrote it, or resume() checked and loaded it."""
    ckpt, prev = output_dir / CHECKPOINT, output_dir / PREVIOUS
    if not ckpt.exists() or (prev.exists() and prev.stat().st_mtime >= ckpt.stat().st_mtime):
        return
    tmp = prev.with_name(prev.name + ".tmp")
    shutil.copy2(ckpt, tmp)
    os.replace(tmp, prev)


def _is_rank0(distributed_option) -> bool:
    return not distributed_option.distributed or distributed_option.dist_rank == 0


CLIP_SCOPES = ("all", "separate")


@dataclasses.dataclass
class PinchTrainerOptions(TrainerOptions):
    grad_clip_scope: str = "all"


@contextmanager
def clip_scope(scope: str, own: list):
    """While active, ``torch.nn.utils.clip_grad_norm_`` (as ESPnet's trainer calls it) clips the
    parameters in ``own`` apart from the others when ``scope`` is separate, and returns the
    others' norm (or a non-finite norm of ``own``, so that the step is skipped)."""
    if scope not in CLIP_SCOPES:
        raise ValueError(f"--grad_clip_scope must be one of {CLIP_SCOPES}, got {scope!r}")
    if scope == "all" or not own:
        yield
        return
    original = torch.nn.utils.clip_grad_norm_
    ids = {id(p) for p in own}

    def clip(parameters, max_norm, norm_type=2.0, *args, **kwargs):
        parameters = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
        mine = [p for p in parameters if id(p) in ids]
        rest = [p for p in parameters if id(p) not in ids]
        norm = original(rest, max_norm, norm_type, *args, **kwargs)
        own_norm = original(mine, max_norm, norm_type, *args, **kwargs)
        return norm if torch.isfinite(torch.as_tensor(own_norm)) else own_norm

    torch.nn.utils.clip_grad_norm_ = clip
    try:
        yield
    finally:
        torch.nn.utils.clip_grad_norm_ = original


class PinchTrainer(Trainer):
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser):
        parser.add_argument("--grad_clip_scope", choices=CLIP_SCOPES, default="all",
                            help="all: clip every gradient by one norm (ESPnet's rule); separate: "
                                 "the model's weights and the pruning method's own parameters "
                                 "each by their own norm (espnet_pinch/train/trainer.py)")

    @classmethod
    def build_options(cls, args: argparse.Namespace) -> PinchTrainerOptions:
        return build_dataclass(PinchTrainerOptions, args)

    @classmethod
    def run(cls, model, optimizers, schedulers, train_iter_factory, valid_iter_factory,
            plot_attention_iter_factory, trainer_options, distributed_option) -> None:
        budget = [s for s in schedulers if isinstance(s, BudgetLR)]
        if budget:
            steps = len(train_iter_factory.build_iter(1))
            core = getattr(model, "module", model)
            trace = Path(trainer_options.output_dir) / TRACE if _is_rank0(distributed_option) else None
            for s in budget:
                s.bind(steps, trainer_options.max_epoch, trace,
                       observe=getattr(core, "pruning_trace_stats", None),
                       probe=getattr(core, "pruning_probe", None))
                trace = None  # one trace per run: the first optimizer's
            pruner = getattr(core, "pruner", None)
            if pruner is not None:
                pruner.bind_budget(budget[0].budget_epochs * steps)
                if getattr(pruner, "budget_ref_steps", None) is not None:  # pruning/lagrangian.py
                    for s in budget:
                        s.scale_groups(BUDGET_FLAG, pruner.budget_factor)
                    logging.info(f"pruner: controller tuned on {pruner.budget_ref_steps} steps, "
                                 f"this budget has {budget[0].budget_epochs * steps}: dual_lr and "
                                 f"the pruner's learning rate x {pruner.budget_factor:.4g}")
                logging.info(f"pruner: target ramp over {getattr(pruner, 'warmup_steps', None)} "
                             f"of {budget[0].budget_epochs * steps} steps")
            logging.info(f"lr schedule: {budget[0].__class__.__name__} over "
                         f"{budget[0].budget_epochs} epochs x {steps} steps (this run starts at "
                         f"epoch {budget[0].start_epoch}, warm-up {budget[0].warmup_steps} steps)")
        super().run(model=model, optimizers=optimizers, schedulers=schedulers,
                    train_iter_factory=train_iter_factory, valid_iter_factory=valid_iter_factory,
                    plot_attention_iter_factory=plot_attention_iter_factory,
                    trainer_options=trainer_options, distributed_option=distributed_option)

    @staticmethod
    def resume(checkpoint, model, reporter, optimizers, schedulers, scaler, ngpu: int = 0,
               strict: bool = True):
        checkpoint = Path(checkpoint)
        if not checkpoint_is_complete(checkpoint):
            prev = checkpoint.with_name(PREVIOUS)
            bad = checkpoint.with_name(checkpoint.name + ".corrupt")
            os.replace(checkpoint, bad)
            if not checkpoint_is_complete(prev):
                raise RuntimeError(
                    f"{bad}: the checkpoint is incomplete (the job was killed while saving it) "
                    f"and there is no complete {prev.name} to fall back to; remove the experiment "
                    f"directory's checkpoint files to start over")
            logging.warning(f"{bad}: incomplete checkpoint (killed while saving?); "
                            f"resuming from {prev} instead")
            checkpoint = prev
        Trainer.resume(checkpoint, model, reporter, optimizers, schedulers, scaler, ngpu=ngpu,
                       strict=strict)
        state = pruning_state(model)
        if state:
            logging.info(f"pruning state resumed from {checkpoint}: {summarize(state)}")

    @classmethod
    def train_one_epoch(cls, model, iterator, optimizers, schedulers, scaler, reporter,
                        summary_writer, options, distributed_option) -> bool:
        if _is_rank0(distributed_option):
            _save_previous(Path(options.output_dir))
        pruner = getattr(getattr(model, "module", model), "pruner", None)
        own = pruner.own_parameters() if pruner is not None else []
        with clip_scope(options.grad_clip_scope, own):
            all_steps_are_invalid = super().train_one_epoch(
                model=model, iterator=iterator, optimizers=optimizers, schedulers=schedulers,
                scaler=scaler, reporter=reporter, summary_writer=summary_writer, options=options,
                distributed_option=distributed_option)
        state = pruning_state(model)
        if state:
            rank = distributed_option.dist_rank if distributed_option.distributed else 0
            logging.info(f"pruning state after epoch {reporter.epoch} (rank {rank}): "
                         f"{summarize(state)}")
            if distributed_option.distributed:
                out = Path(options.output_dir) / "pruning_state" / f"rank{rank}.pt"
                out.parent.mkdir(parents=True, exist_ok=True)
                torch.save({k: v.cpu() for k, v in state.items()}, out.with_suffix(".tmp"))
                os.replace(out.with_suffix(".tmp"), out)
                device = next(iter(state.values())).device
                if torch.distributed.get_backend() == "nccl":
                    device = torch.device("cuda", torch.cuda.current_device())
                diff = max_rank_difference(state, device)
                logging.info(f"pruning state across {torch.distributed.get_world_size()} ranks: "
                             f"max |rank r - rank 0| = {diff:.3g}")
                if diff > RANK_TOLERANCE:
                    raise RuntimeError(f"pruning state differs across ranks (max |diff| {diff:.3g}"
                                       f" > {RANK_TOLERANCE}): gates would prune differently")
        return all_steps_are_invalid

"""The interface every pruning method implements.

A pruner is given the model's prunable layers (name -> Linear/Conv1d) when the model is built,
and then:
  - ``attach()``       puts its gates on those layers (it owns no copy of their weights);
  - ``loss()``         returns the extra loss term and stats to log, called after each forward;
  - ``sparsity()``     reports the current sparsity, overall (parameter-weighted) and per layer;
  - ``finalize()``     makes the masks permanent, removes the gates and returns a
                       ``FinalizeResult``; the model is then an ordinary ESPnet model (dense
                       tensors with exact zeros; structured methods' result also lists the units
                       to keep, which ``bin.finalize`` slices out through the family adapter).
The pruner's own state (thresholds, gate parameters, multipliers, step counters) lives in
parameters and buffers of the pruner or of its gates, so it is saved and resumed with the model.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple

import torch


@dataclass
class FinalizeResult:
    """What ``finalize()`` made of the model, and what training reached before any snap.

    ``keep`` (unit indices per group) is set by structured methods only: the masked model then
    still has to be compacted. ``method`` holds a method's own entries (SPG: ``snap_factor``; HJ:
    ``achieved``, ``targets``, ``target_on``, ``macs_sparsity``). ``to_json()`` is the flat
    ``pruning.json`` record."""
    sparsity: float                          # removed / dense prunable weights, after the snap
    per_layer_sparsity: Dict[str, float]
    gated_layers: List[str]                  # names as in the model's ``prunable_layers()``
    gated_params: int                        # dense prunable weights
    extra_params: int                        # the method's own parameters during training
    target_sparsity: float
    sparsity_before_snap: float              # what training reached
    achieved_before_snap: Dict[str, float]   # ... of what the target constrains
    snap_changed_units: float                # share of kept weights / units the snap changed
    # methods that hold their architecture between steps (NAS-CP max_switches, HJ move_band):
    # what the target constrains at the architecture the method's parameters choose unheld, and
    # the share of that architecture's units the held one (what was kept) differs by
    unheld_achieved: Optional[Dict[str, float]] = None
    unheld_apart_units: Optional[float] = None
    keep: Optional[Dict[str, List[int]]] = None
    widths: Optional[Dict[str, int]] = None
    method: Dict[str, object] = field(default_factory=dict)

    @property
    def structured(self) -> bool:
        return self.keep is not None

    def to_json(self) -> Dict[str, object]:
        out = asdict(self)
        out.update(out.pop("method"), structured=self.structured)
        return {k: v for k, v in out.items() if v is not None}


class AbsPruner(torch.nn.Module, ABC):
    def __init__(self, layers: "OrderedDict[str, torch.nn.Module]"):
        super().__init__()
        # A plain dict: the layers belong to the model, not to the pruner's state dict.
        self.__dict__["layers"] = OrderedDict(layers)

    @abstractmethod
    def attach(self) -> None:
        """Put gates on ``self.layers``."""

    @abstractmethod
    def loss(self) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """(extra loss term, stats to log); called once per model forward."""

    @abstractmethod
    def sparsity(self) -> Dict[str, object]:
        """{"overall": float, "per_layer": {name: float}} with the masks used in the forward pass."""

    @abstractmethod
    def finalize(self) -> FinalizeResult:
        """Make masks permanent, remove gates; returns what was made and what training reached."""

    def before_forward(self) -> None:
        """Called before every model forward (set this step's masks); nothing by default."""

    def trace_stats(self, stats: Dict[str, torch.Tensor]) -> Dict[str, float]:
        """From one training step's ``loss()`` stats: ``achieved`` (the hard value of what the
        target constrains) and ``target`` (this step's target, warm-up included), for the
        per-step trace (``train/schedule.py``). By default the overall sparsity and its target."""
        out = {"achieved": stats.get("sparsity"), "target": stats.get("target_sparsity")}
        return {k: float(v) for k, v in out.items() if v is not None}

    def take_probe(self) -> Dict[str, object]:
        """Per-layer instrumentation of the last training step, if the method recorded any
        (SPG: thresholds, sparsities and gradient parts, every ``probe_interval`` steps), for
        ``layers.jsonl`` beside the trace; {} by default and between probes."""
        return {}

    def bind_budget(self, total_steps: int) -> None:
        """Told the compression's total optimizer steps before training (``PinchTrainer``), so that
        schedules given as fractions of the budget (e.g. the target ramp) can be resolved."""
        from espnet_pinch.pruning.lagrangian import bind_budget

        bind_budget(self, total_steps)

    def plain_sgd_parameters(self) -> Tuple[list, float, Optional[list]]:
        """(parameters, learning rate, largest step of each or None) that the model's optimizer
        must step with plain SGD instead of its own rule (``train/optim.py``; the task sets it up
        in ``build_optimizers``), e.g. SPG's thresholds with ``threshold_step: sgd``;
        ([], 0.0, None) by default: every parameter of the method is the optimizer's."""
        return [], 0.0, None

    def own_parameters(self) -> list:
        """The method's own trainable parameters (thresholds, gates, architecture weights),
        wherever they live: the pruner module's by default (a masked method's sit in its layers'
        parametrizations, ``masked.py``)."""
        return list(self.parameters())

    def num_extra_params(self) -> int:
        """Parameters the method adds during training (thresholds, gates, architecture weights)."""
        return sum(p.numel() for p in self.own_parameters())

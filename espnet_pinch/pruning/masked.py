"""Shared machinery of fine-grained (per-weight mask) pruners such as SPG and UMP.

Each gated layer's weight gets a parametrization (the method's gate); this base attaches them,
iterates them, counts zeros per layer, and finalizes (masks baked into the weights, gates
removed). A method supplies ``make_gate``, ``zeros`` and its loss, and may move its masks onto the
target before they are baked in (``snap``).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Iterator, Optional, Sequence, Tuple

import torch
from torch.nn.utils import parametrize

from espnet_pinch.pruning.abs_pruner import AbsPruner, FinalizeResult
from espnet_pinch.pruning.layers import select_layers


def check_target(target_sparsity) -> float:
    if not isinstance(target_sparsity, (int, float)) or not 0.0 <= target_sparsity < 1.0:
        raise ValueError(f"pruner_conf.target_sparsity must be in [0, 1), got {target_sparsity!r}")
    return float(target_sparsity)


class MaskPruner(AbsPruner):
    def __init__(self, prunable: "OrderedDict[str, torch.nn.Module]", target_sparsity: float,
                 layers: Optional[Sequence[str]] = None):
        target = check_target(target_sparsity)
        super().__init__(select_layers(prunable, layers, key="layers"))
        self.target_sparsity = target

    def make_gate(self, layer: torch.nn.Module) -> torch.nn.Module:
        """The parametrization to put on ``layer.weight``."""
        raise NotImplementedError

    def zeros(self, gate: torch.nn.Module, w: torch.Tensor) -> int:
        """Number of weights the gate currently removes from raw weight ``w``."""
        raise NotImplementedError

    def attach(self) -> None:
        for layer in self.layers.values():
            if not parametrize.is_parametrized(layer, "weight"):
                parametrize.register_parametrization(layer, "weight", self.make_gate(layer))

    def gates(self) -> Iterator[Tuple[str, torch.nn.Module, torch.Tensor]]:
        """(layer name, gate, raw weight) for every gated layer."""
        for name, layer in self.layers.items():
            yield name, layer.parametrizations.weight[0], layer.parametrizations.weight.original

    def own_parameters(self) -> list:
        return [p for _, g, _ in self.gates() for p in g.parameters()]

    @torch.no_grad()
    def sparsity(self) -> Dict[str, object]:
        per_layer, zeros, total = OrderedDict(), 0, 0
        for name, gate, w in self.gates():
            z = self.zeros(gate, w)
            per_layer[name] = z / w.numel()
            zeros += z
            total += w.numel()
        return {"overall": zeros / total, "per_layer": per_layer}

    def snap(self) -> Dict[str, object]:
        """Move the gates onto the target before they are baked in (nothing by default); returns
        the method's own entries for ``FinalizeResult.method``."""
        return {}

    @torch.no_grad()
    def finalize(self) -> FinalizeResult:
        """Bake W * mask into each weight (exact zeros), remove the gates. Also reports what
        training reached before ``snap`` adjusted the masks: the sparsity, and the share of kept
        weights the snap changed (a common threshold factor only moves weights at each layer's
        margin, all one way, so per layer that is the change of the kept count)."""
        trained = self.sparsity()
        method = self.snap()
        report = self.sparsity()
        sizes = {n: layer.weight.numel() for n, layer in self.layers.items()}
        changed = sum(abs(trained["per_layer"][n] - report["per_layer"][n]) * k for n, k in sizes.items())
        kept = sum((1.0 - trained["per_layer"][n]) * k for n, k in sizes.items())
        extra_params = self.num_extra_params()
        for layer in self.layers.values():
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
        zeros = sum(int((l.weight == 0).sum()) for l in self.layers.values())
        total = sum(l.weight.numel() for l in self.layers.values())
        return FinalizeResult(
            sparsity=zeros / total, per_layer_sparsity=report["per_layer"],
            gated_layers=list(self.layers), gated_params=total, extra_params=extra_params,
            target_sparsity=self.target_sparsity, sparsity_before_snap=trained["overall"],
            achieved_before_snap={"all": trained["overall"]},
            snap_changed_units=changed / max(kept, 1.0), method=method)

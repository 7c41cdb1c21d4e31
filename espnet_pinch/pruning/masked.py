"""Shared machinery of fine-grained (per-weight mask) pruners such as SPG and UMP.

Each gated layer's weight gets a parametrization (the method's gate); this base attaches them,
iterates them, counts zeros per layer, and finalizes (masks baked into the weights, gates
removed). A method supplies ``make_gate``, ``zeros`` and its loss.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Iterator, Sequence, Tuple

import torch
from torch.nn.utils import parametrize

from espnet_pinch.pruning.abs_pruner import AbsPruner
from espnet_pinch.pruning.layers import DEFAULT_PATTERNS, select_layers


def check_target(target_sparsity) -> float:
    if not isinstance(target_sparsity, (int, float)) or not 0.0 <= target_sparsity < 1.0:
        raise ValueError(f"pruner_conf.target_sparsity must be in [0, 1), got {target_sparsity!r}")
    return float(target_sparsity)


class MaskPruner(AbsPruner):
    def __init__(self, prunable: "OrderedDict[str, torch.nn.Module]", target_sparsity: float,
                 layers: Sequence[str] = DEFAULT_PATTERNS):
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

    def num_extra_params(self) -> int:
        return sum(p.numel() for _, g, _ in self.gates() for p in g.parameters())

    @torch.no_grad()
    def sparsity(self) -> Dict[str, object]:
        per_layer, zeros, total = OrderedDict(), 0, 0
        for name, gate, w in self.gates():
            z = self.zeros(gate, w)
            per_layer[name] = z / w.numel()
            zeros += z
            total += w.numel()
        return {"overall": zeros / total, "per_layer": per_layer}

    def before_finalize(self) -> Dict[str, object]:
        """Last adjustment of the gates before they are baked in; returns extra summary keys."""
        return {}

    @torch.no_grad()
    def finalize(self) -> Dict[str, object]:
        """Bake W * mask into each weight (exact zeros), remove the gates. Also reports what
        training reached before ``before_finalize`` adjusted the masks: the sparsity, and the
        share of kept weights the snap changed (a common threshold factor only moves weights at
        each layer's margin, all one way, so per layer that is the change of the kept count)."""
        trained = self.sparsity()
        extra = self.before_finalize()
        report = self.sparsity()
        sizes = {n: layer.weight.numel() for n, layer in self.layers.items()}
        changed = sum(abs(trained["per_layer"][n] - report["per_layer"][n]) * k for n, k in sizes.items())
        kept = sum((1.0 - trained["per_layer"][n]) * k for n, k in sizes.items())
        extra = {"sparsity_before_snap": trained["overall"],
                 "achieved_before_snap": {"all": trained["overall"]},
                 "snap_changed_units": changed / max(kept, 1.0), **extra}
        extra_params = self.num_extra_params()
        for layer in self.layers.values():
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
        zeros = sum(int((l.weight == 0).sum()) for l in self.layers.values())
        total = sum(l.weight.numel() for l in self.layers.values())
        return {"sparsity": zeros / total, "per_layer_sparsity": report["per_layer"],
                "gated_layers": list(self.layers), "gated_params": total,
                "extra_params": extra_params, "target_sparsity": self.target_sparsity, **extra}

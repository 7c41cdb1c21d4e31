"""UMP: uniform magnitude-based pruning (the SPG paper's baseline, METHODS.md section 2).

Stage 1 (at the first training forward, on the starting weights): every gated layer loses the
same fraction of its weights, the smallest |W| first. Stage 2: fine-tuning with those masks
fixed (the effective weight is W * mask, so pruned weights get no gradient and stay zero).
Both stages run in one trainer invocation, so the experiment's wall time is UMP's whole
compression time.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Sequence, Tuple

import torch
from torch.nn.utils import parametrize

from espnet_pinch.pruning.abs_pruner import AbsPruner
from espnet_pinch.pruning.layers import DEFAULT_PATTERNS, select_layers


class FixedMask(torch.nn.Module):
    """Parametrization W -> W * mask with a stored boolean mask (all ones until pruned)."""

    def __init__(self, shape: torch.Size):
        super().__init__()
        self.register_buffer("mask", torch.ones(shape, dtype=torch.bool))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask


class UMPPruner(AbsPruner):
    """Args (``pruner_conf``): target_sparsity in [0, 1); layers: glob patterns (as SPG)."""

    def __init__(
        self,
        prunable: "OrderedDict[str, torch.nn.Module]",
        target_sparsity: float = 0.5,
        layers: Sequence[str] = DEFAULT_PATTERNS,
    ):
        if not isinstance(target_sparsity, (int, float)) or not 0.0 <= target_sparsity < 1.0:
            raise ValueError(f"pruner_conf.target_sparsity must be in [0, 1), got {target_sparsity!r}")
        super().__init__(select_layers(prunable, layers, key="layers"))
        self.target_sparsity = float(target_sparsity)
        self.register_buffer("pruned", torch.zeros((), dtype=torch.bool))
        self.attach()

    def attach(self) -> None:
        for layer in self.layers.values():
            if not parametrize.is_parametrized(layer, "weight"):
                parametrize.register_parametrization(layer, "weight", FixedMask(layer.weight.shape))

    def _masks(self):
        for name, layer in self.layers.items():
            yield name, layer.parametrizations.weight[0], layer.parametrizations.weight.original

    def num_extra_params(self) -> int:
        return 0

    @torch.no_grad()
    def prune(self) -> None:
        """Stage 1: the same fraction of each layer, smallest magnitudes first."""
        for _, m, w in self._masks():
            k = int(round(self.target_sparsity * w.numel()))
            mask = torch.ones(w.numel(), dtype=torch.bool)
            if k > 0:
                mask[w.abs().flatten().argsort()[:k]] = False
            m.mask.copy_(mask.view_as(w))
        self.pruned.fill_(True)

    def before_forward(self) -> None:
        if not bool(self.pruned):
            self.prune()

    def loss(self) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        s = self.sparsity()["overall"]
        zero = next(iter(self.layers.values())).weight.new_zeros(())
        return zero, {"sparsity": torch.tensor(s)}

    @torch.no_grad()
    def sparsity(self) -> Dict[str, object]:
        per_layer, zeros, total = OrderedDict(), 0, 0
        for name, m, _ in self._masks():
            z = int((~m.mask).sum())
            per_layer[name] = z / m.mask.numel()
            zeros += z
            total += m.mask.numel()
        return {"overall": zeros / total, "per_layer": per_layer}

    @torch.no_grad()
    def finalize(self) -> Dict[str, object]:
        report = self.sparsity()
        for layer in self.layers.values():
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
        zeros = sum(int((l.weight == 0).sum()) for l in self.layers.values())
        total = sum(l.weight.numel() for l in self.layers.values())
        return {"sparsity": zeros / total, "per_layer_sparsity": report["per_layer"],
                "gated_layers": list(self.layers), "gated_params": total,
                "extra_params": 0, "target_sparsity": self.target_sparsity}

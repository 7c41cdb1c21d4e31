"""UMP: uniform magnitude-based pruning (the SPG paper's baseline, METHODS.md section 2).

Stage 1 (at the first training forward, on the starting weights): every gated layer loses the
same fraction of its weights, the smallest |W| first. Stage 2: fine-tuning with those masks
fixed (the effective weight is W * mask, so pruned weights get no gradient and stay zero).
Both stages run in one trainer invocation, so the experiment's wall time is UMP's whole
compression time.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Optional, Sequence, Tuple

import torch

from espnet_pinch.pruning.masked import MaskPruner


class FixedMask(torch.nn.Module):
    """Parametrization W -> W * mask with a stored boolean mask (all ones until pruned)."""

    def __init__(self, shape: torch.Size):
        super().__init__()
        self.register_buffer("mask", torch.ones(shape, dtype=torch.bool))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return torch.where(self.mask, w, w.new_zeros(()))  # +0.0 where pruned, as the export stores


class UMPPruner(MaskPruner):
    """Args (``pruner_conf``): target_sparsity in [0, 1); layers: glob patterns (as SPG)."""

    def __init__(
        self,
        prunable: "OrderedDict[str, torch.nn.Module]",
        target_sparsity: float = 0.5,
        layers: Optional[Sequence[str]] = None,
    ):
        super().__init__(prunable, target_sparsity, layers)
        self.register_buffer("pruned", torch.zeros((), dtype=torch.bool))
        self._overall = None  # the masks are fixed once pruned: sparsity is computed once
        self.attach()

    def make_gate(self, layer: torch.nn.Module) -> FixedMask:
        return FixedMask(layer.weight.shape)

    def zeros(self, gate: FixedMask, w: torch.Tensor) -> int:
        return int((~gate.mask).sum())

    @torch.no_grad()
    def prune(self) -> None:
        """Stage 1: the same fraction of each layer, smallest magnitudes first."""
        for _, m, w in self.gates():
            k = int(round(self.target_sparsity * w.numel()))
            mask = torch.ones(w.numel(), dtype=torch.bool)
            if k > 0:
                mask[w.abs().flatten().argsort()[:k]] = False
            m.mask.copy_(mask.view_as(w))
        self.pruned.fill_(True)
        self._overall = None

    def before_forward(self) -> None:
        if not bool(self.pruned):
            self.prune()

    def loss(self) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        if self._overall is None:
            self._overall = torch.tensor(self.sparsity()["overall"])
        zero = next(iter(self.layers.values())).weight.new_zeros(())
        return zero, {"sparsity": self._overall, "target_sparsity": torch.tensor(self.target_sparsity)}

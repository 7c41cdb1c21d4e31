"""ESPnet's ASR model with an optional pruner (``model: pinch`` in a config).

Without a pruner it is ESPnet's ``ESPnetASRModel`` unchanged. With one, every forward pass adds
the pruner's loss term and logs its stats (ESPnet's reporter averages them per epoch, so the
training log shows the ASR loss, the sparsity term and the current sparsity side by side).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Optional, Tuple

import torch
from espnet2.asr.espnet_model import ESPnetASRModel
from espnet2.torch_utils.device_funcs import force_gatherable
from torch.nn.utils import parametrize

_PARAM_SUFFIX = ".parametrizations.weight.original"
class PinchESPnetASRModel(ESPnetASRModel):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pruner: Optional[torch.nn.Module] = None
        self._pruning_stats: Dict[str, torch.Tensor] = {}  # of the last training forward
        # Dense checkpoints (--init_param, the bundled model) name weights "x.weight"; once a
        # pruner has gated layer x its weight is stored as "x.parametrizations.weight.original".
        self._register_load_state_dict_pre_hook(self._map_dense_keys)

    def prunable_layers(self) -> "OrderedDict[str, torch.nn.Module]":
        """Frontend layers (names relative to the SSL model) plus the CTC head ``ctc.ctc_lo``."""
        out: "OrderedDict[str, torch.nn.Module]" = OrderedDict()
        if hasattr(self.frontend, "prunable_layers"):
            out.update(self.frontend.prunable_layers())
        out["ctc.ctc_lo"] = self.ctc.ctc_lo
        return out

    def set_pruner(self, pruner: torch.nn.Module) -> None:
        self.pruner = pruner

    def pruning_trace_stats(self) -> Dict[str, float]:
        """What the pruner's target constrains and that target, at the last training step (for
        the per-step trace, ``train/schedule.py``); empty without a pruner."""
        if self.pruner is None or not self._pruning_stats:
            return {}
        return self.pruner.trace_stats(self._pruning_stats)

    def pruning_probe(self) -> Dict[str, object]:
        """The pruner's per-layer instrumentation of the last step ({} if none, ``AbsPruner.take_probe``)."""
        return {} if self.pruner is None else self.pruner.take_probe()

    def _map_dense_keys(self, state_dict, prefix, *args) -> None:
        gated = {n for n, m in self.named_modules() if parametrize.is_parametrized(m, "weight")}
        for name in gated:
            dense, param = f"{prefix}{name}.weight", f"{prefix}{name}{_PARAM_SUFFIX}"
            if dense in state_dict:
                state_dict[param] = state_dict.pop(dense)

    def forward(self, speech, speech_lengths, text, text_lengths, **kwargs) -> Tuple[
        torch.Tensor, Dict[str, torch.Tensor], torch.Tensor
    ]:
        if self.pruner is not None:
            self.pruner.before_forward()
        loss, stats, weight = super().forward(speech, speech_lengths, text, text_lengths, **kwargs)
        if self.pruner is None:
            return loss, stats, weight
        extra, pstats = self.pruner.loss()
        if self.training:
            self._pruning_stats = {k: v.detach() for k, v in pstats.items() if torch.is_tensor(v)}
        loss = loss + extra
        stats.update(pstats)
        stats["loss"] = loss.detach()
        # As ESPnet's forward does: 0-dim tensors become (1,) so that DataParallel can gather
        # them and DDP's recursive_average can weight them.
        return force_gatherable((loss, stats, weight), loss.device)

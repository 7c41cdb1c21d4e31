"""HuBERT (S3PRL's ``HubertModel``): wav2vec 2.0's layout and units (``adapters/wav2vec2.py``);
its own config classes, checkpoint entries (the pre-training label dictionary) and hub models.
Extractor mode ``layer_norm`` (HuBERT-large) normalises every conv output over channels, so conv
channels are not units there."""
from __future__ import annotations

import torch

from espnet_pinch.adapters.wav2vec2 import _CONVERTED, Wav2Vec2Adapter

# HuBERT's pretraining head needs a label dictionary; fine-tuning never uses it.
_HUBERT_DICT = [[str(i) for i in range(8)]]


class HubertAdapter(Wav2Vec2Adapter):
    arch = "hubert"
    s3prl_local = "hubert_local"
    hub = {
        "hubert": _CONVERTED + "hubert_base_ls960.pt",
        "hubert_base": _CONVERTED + "hubert_base_ls960.pt",
        "hubert_large_ll60k": _CONVERTED + "hubert_large_ll60k.pt",
    }

    def config_classes(self) -> tuple:
        from s3prl.upstream.hubert.hubert_model import HubertConfig, HubertPretrainingConfig

        return HubertConfig, HubertPretrainingConfig

    def build(self, model_cfg, task_cfg) -> torch.nn.Module:
        from s3prl.upstream.hubert.hubert_model import HubertModel

        return HubertModel(model_cfg, task_cfg, _HUBERT_DICT)

    def checkpoint_extras(self) -> dict:
        return {"dictionaries_symbols": _HUBERT_DICT}

    def owns_checkpoint(self, ckpt: dict) -> bool:
        return "model_cfg" in ckpt and "dictionaries_symbols" in ckpt

    def normalizes_wav(self, expert: torch.nn.Module) -> bool:
        return bool(expert.task_cfg.normalize)

    def owns_model(self, model: torch.nn.Module) -> bool:
        from s3prl.upstream.hubert.hubert_model import HubertModel

        return isinstance(model, HubertModel)

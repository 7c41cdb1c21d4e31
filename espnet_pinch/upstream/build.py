"""Build wav2vec2 / HuBERT-architecture upstreams from a YAML size config and save them as
S3PRL local checkpoints (the ``wav2vec2_local`` / ``hubert_local`` format).

A size config (see ``conf/upstream/*.yaml``)::

    arch: wav2vec2 | hubert
    model_cfg: {...}   # fields of S3PRL's Wav2Vec2Config / HubertConfig
    task_cfg: {...}    # fields of AudioPretrainingConfig / HubertPretrainingConfig

The checkpoint is a ``torch.save`` dict with ``task_cfg``, ``model_cfg`` (plain dicts),
``model_weight`` and, for HuBERT, ``dictionaries_symbols``: exactly what S3PRL's
``load_converted_model`` reads, so ``S3PRLUpstream("wav2vec2_local", path_or_url=ckpt)`` loads it.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from espnet_pinch.utils.atomic import atomic_file
from espnet_pinch.utils.safe_load import load_checkpoint

ARCHES = {"wav2vec2": "wav2vec2_local", "hubert": "hubert_local"}
# HuBERT's pretraining head needs a label dictionary; fine-tuning never uses it.
_HUBERT_DICT = [[str(i) for i in range(8)]]


def load_size_config(path_or_dict: str | Path | dict) -> dict:
    """Read and validate a size config; returns {arch, model_cfg, task_cfg}."""
    if isinstance(path_or_dict, dict):
        cfg, where = dict(path_or_dict), "<dict>"
    else:
        where = str(path_or_dict)
        with open(path_or_dict) as f:
            cfg = yaml.safe_load(f)
    if not isinstance(cfg, dict):
        raise ValueError(f"{where}: size config must be a mapping")
    unknown = set(cfg) - {"arch", "model_cfg", "task_cfg"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    if cfg.get("arch") not in ARCHES:
        raise ValueError(f"{where}: arch must be one of {sorted(ARCHES)}, got {cfg.get('arch')!r}")
    cfg.setdefault("model_cfg", {})
    cfg.setdefault("task_cfg", {})
    _check_fields(cfg, where)
    return cfg


def _config_classes(arch: str):
    if arch == "wav2vec2":
        from s3prl.upstream.wav2vec2.wav2vec2_model import AudioPretrainingConfig, Wav2Vec2Config

        return Wav2Vec2Config, AudioPretrainingConfig
    from s3prl.upstream.hubert.hubert_model import HubertConfig, HubertPretrainingConfig

    return HubertConfig, HubertPretrainingConfig


def _check_fields(cfg: dict, where: str) -> None:
    from dataclasses import fields

    model_cls, task_cls = _config_classes(cfg["arch"])
    for key, cls in (("model_cfg", model_cls), ("task_cfg", task_cls)):
        names = {f.name for f in fields(cls)}
        bad = sorted(set(cfg[key]) - names)
        if bad:
            raise ValueError(f"{where}: {key} has unknown fields {bad} for arch {cfg['arch']}")


def _merge(cls, d: dict):
    from s3prl.upstream.utils import merge_with_parent

    return merge_with_parent(cls, d)


def build_model(cfg: dict, seed: int = 0) -> torch.nn.Module:
    """Random-weight Wav2Vec2Model / HubertModel for a validated size config."""
    model_cls, task_cls = _config_classes(cfg["arch"])
    torch.manual_seed(seed)
    model_cfg = _merge(model_cls, dict(cfg["model_cfg"]))
    task_cfg = _merge(task_cls, dict(cfg["task_cfg"]))
    if cfg["arch"] == "wav2vec2":
        from s3prl.upstream.wav2vec2.wav2vec2_model import Wav2Vec2Model

        return Wav2Vec2Model(model_cfg)
    from s3prl.upstream.hubert.hubert_model import HubertModel

    return HubertModel(model_cfg, task_cfg, _HUBERT_DICT)


def _plain(x: Any) -> Any:
    return asdict(x) if is_dataclass(x) else dict(x)


def checkpoint_dict(cfg: dict, state_dict: dict) -> dict:
    """The S3PRL local-checkpoint dict for a size config and a model state dict."""
    model_cls, task_cls = _config_classes(cfg["arch"])
    ckpt = {
        "task_cfg": _plain(_merge(task_cls, dict(cfg["task_cfg"]))),
        "model_cfg": _plain(_merge(model_cls, dict(cfg["model_cfg"]))),
        "model_weight": state_dict,
    }
    if cfg["arch"] == "hubert":
        ckpt["dictionaries_symbols"] = _HUBERT_DICT
    return ckpt


def save_checkpoint(cfg: dict, state_dict: dict, path: str | Path) -> Path:
    """Write an S3PRL local checkpoint atomically (temp file, then rename)."""
    with atomic_file(path) as tmp:
        torch.save(checkpoint_dict(cfg, state_dict), tmp)
    return Path(path)


def make_upstream(config: str | Path | dict, out: str | Path, seed: int = 0) -> Path:
    """Build a random-weight upstream from a size config and save it as a local checkpoint."""
    cfg = load_size_config(config)
    model = build_model(cfg, seed)
    path = save_checkpoint(cfg, model.state_dict(), out)
    logging.getLogger(__name__).info(
        "%s upstream, %.2f M parameters -> %s (load with S3PRL name %s)", cfg["arch"],
        sum(p.numel() for p in model.parameters()) / 1e6, path, ARCHES[cfg["arch"]])
    return path


def checkpoint_arch(path_or_ckpt: str | Path | dict) -> str:
    """``hubert`` or ``wav2vec2``: the architecture of a local S3PRL checkpoint (a path, read
    memory-mapped, or the already loaded dict)."""
    ckpt = path_or_ckpt
    if not isinstance(ckpt, dict):
        ckpt = load_checkpoint(path_or_ckpt, mmap=True)
    if not isinstance(ckpt, dict) or "model_cfg" not in ckpt:
        raise ValueError(f"{path_or_ckpt if not isinstance(path_or_ckpt, dict) else 'checkpoint'}: "
                         "not an S3PRL local checkpoint (no model_cfg); convert a "
                         "fairseq checkpoint with S3PRL's upstream/<arch>/convert.py first")
    return "hubert" if "dictionaries_symbols" in ckpt else "wav2vec2"


def s3prl_name(config: str | Path | dict) -> str:
    """S3PRL hub name that loads a checkpoint of this size config."""
    return ARCHES[load_size_config(config)["arch"]]

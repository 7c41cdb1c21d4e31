"""Build upstreams of any registered family (``espnet_pinch.adapters``: wav2vec2, HuBERT) from
a YAML size config and save them as S3PRL local checkpoints (``wav2vec2_local``, ...).

A size config (see ``conf/upstream/*.yaml``)::

    arch: wav2vec2 | hubert
    model_cfg: {...}   # fields of the family's S3PRL model config (Wav2Vec2Config, ...)
    task_cfg: {...}    # fields of its task config (AudioPretrainingConfig, ...)

The checkpoint is a ``torch.save`` dict with ``task_cfg``, ``model_cfg`` (plain dicts),
``model_weight`` and the family's extra entries (HuBERT: ``dictionaries_symbols``): exactly what
S3PRL's ``load_converted_model`` reads, so ``S3PRLUpstream("wav2vec2_local", path_or_url=ckpt)``
loads it.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import yaml

from espnet_pinch.adapters import ADAPTERS, adapter, adapter_for_checkpoint
from espnet_pinch.utils.atomic import atomic_file
from espnet_pinch.utils.safe_load import check_evaluated_fields, load_checkpoint


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
    if cfg.get("arch") not in ADAPTERS:
        raise ValueError(f"{where}: arch must be one of {sorted(ADAPTERS)}, got {cfg.get('arch')!r}")
    cfg.setdefault("model_cfg", {})
    cfg.setdefault("task_cfg", {})
    _check_fields(cfg, where)
    check_evaluated_fields(cfg["model_cfg"], where)
    return cfg


def _check_fields(cfg: dict, where: str) -> None:
    for key, names in zip(("model_cfg", "task_cfg"), adapter(cfg["arch"]).config_fields()):
        bad = sorted(set(cfg[key]) - names)
        if bad:
            raise ValueError(f"{where}: {key} has unknown fields {bad} for arch {cfg['arch']}")


def build_model(cfg: dict, seed: int = 0) -> torch.nn.Module:
    """Random-weight model (Wav2Vec2Model, HubertModel, ...) for a validated size config."""
    family = adapter(cfg["arch"])
    torch.manual_seed(seed)
    return family.build(*family.full_configs(cfg["model_cfg"], cfg["task_cfg"]))


def checkpoint_dict(cfg: dict, state_dict: dict) -> dict:
    """The S3PRL local-checkpoint dict for a size config and a model state dict."""
    return adapter(cfg["arch"]).checkpoint(cfg["model_cfg"], cfg["task_cfg"], state_dict)


def save_checkpoint(cfg: dict, state_dict: dict, path: str | Path) -> Path:
    """Write an S3PRL local checkpoint atomically (temp file, then rename)."""
    with atomic_file(path) as tmp:
        torch.save(checkpoint_dict(cfg, state_dict), tmp)
    return Path(path)


def read_checkpoint(path_or_ckpt: str | Path | dict) -> tuple[dict, dict]:
    """(size config, weights) of a local S3PRL checkpoint of any registered family (a path, read
    memory-mapped, or the already loaded dict)."""
    ckpt = path_or_ckpt
    if not isinstance(ckpt, dict):
        ckpt = load_checkpoint(path_or_ckpt, mmap=True)
    where = path_or_ckpt if not isinstance(path_or_ckpt, dict) else "checkpoint"
    if not isinstance(ckpt, dict):
        raise ValueError(f"{where}: not an S3PRL local checkpoint (not a dict)")
    try:
        family = adapter_for_checkpoint(ckpt)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    model_cfg, task_cfg, weights = family.read_checkpoint(ckpt)
    check_evaluated_fields(model_cfg, str(where))
    return {"arch": family.arch, "model_cfg": model_cfg, "task_cfg": task_cfg}, weights


def make_upstream(config: str | Path | dict, out: str | Path, seed: int = 0) -> Path:
    """Build a random-weight upstream from a size config and save it as a local checkpoint."""
    cfg = load_size_config(config)
    model = build_model(cfg, seed)
    path = save_checkpoint(cfg, model.state_dict(), out)
    logging.getLogger(__name__).info(
        "%s upstream, %.2f M parameters -> %s (load with S3PRL name %s)", cfg["arch"],
        sum(p.numel() for p in model.parameters()) / 1e6, path, adapter(cfg["arch"]).s3prl_local)
    return path


def checkpoint_arch(path_or_ckpt: str | Path | dict) -> str:
    """The family (``arch``: wav2vec2, hubert, ...) of a local S3PRL checkpoint."""
    return read_checkpoint(path_or_ckpt)[0]["arch"]


def s3prl_name(config: str | Path | dict) -> str:
    """S3PRL hub name that loads a checkpoint of this size config."""
    return adapter(load_size_config(config)["arch"]).s3prl_local

"""The interface of an upstream-family adapter: everything espnet_pinch knows about one S3PRL
model family (wav2vec2, HuBERT, ...), in one object.

An adapter owns, for its family:
  - building: the S3PRL config classes, a random-weight model from a size config, the extra
    entries of its local checkpoint, which S3PRL name loads it, the hub checkpoints;
  - the forward the toolkit runs (``extract``: features of a batch of waveforms) and
    fine-tuning's time masking in training (``enable_training_mask``);
  - its prunable layers by stable name (``prunable_layers``), which part of the model each is in
    (``part_of``: cnn / transformer), and the layers the fine-grained methods gate by default;
  - its unit groups (``unit_groups``: conv channels, attention heads, FFN units), the explicit
    architecture (``architecture``), compaction (``compact_``) and the rebuild of a compacted
    architecture on a fresh model (``apply_architecture_``).
Pruners see only layers and unit groups; size and MACs as functions of the group widths come
from ``compaction.cost``; compaction and export go through the adapter once, in shared code.
Adding a family: one module here and one line in ``adapters/__init__.py``'s ``ADAPTERS``.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Iterable, Optional, Sequence, Tuple

import torch

from espnet_pinch.compaction.compact import compact_group_
from espnet_pinch.compaction.units import KINDS, UnitGroup


class FamilyAdapter:
    arch: str = ""                   # the size config's ``arch`` value
    s3prl_local: str = ""            # S3PRL name that loads a local checkpoint of the family
    hub: Dict[str, str] = {}         # S3PRL hub name -> S3PRL's converted checkpoint URL
    # What the fine-grained methods gate by default (glob patterns over ``prunable_layers``).
    default_patterns: Tuple[str, ...] = ()
    # (part, name prefix): which part of the model a prunable layer belongs to.
    parts: Tuple[Tuple[str, str], ...] = ()
    # Submodules the fine-tuning forward runs through (the rest is frozen: pre-training heads).
    used_prefixes: Tuple[str, ...] = ()
    # architecture() keys, each a list with one width per layer of the model
    arch_keys: Tuple[str, ...] = ()

    # -- building ----------------------------------------------------------------------------
    def config_classes(self) -> tuple:
        """(model config dataclass, task config dataclass) of S3PRL's implementation."""
        raise NotImplementedError

    def config_fields(self) -> Tuple[set, set]:
        """The field names a size config's ``model_cfg`` and ``task_cfg`` may set."""
        from dataclasses import fields

        return tuple({f.name for f in fields(c)} for c in self.config_classes())

    def full_configs(self, model_cfg: dict, task_cfg: dict) -> tuple:
        """(model config, task config) objects: S3PRL's defaults updated with the given fields."""
        from s3prl.upstream.utils import merge_with_parent

        model_cls, task_cls = self.config_classes()
        return merge_with_parent(model_cls, dict(model_cfg)), merge_with_parent(task_cls, dict(task_cfg))

    def build(self, model_cfg, task_cfg) -> torch.nn.Module:
        """A random-weight model from ``full_configs``."""
        raise NotImplementedError

    def checkpoint_extras(self) -> dict:
        """Entries S3PRL's local loader needs in the checkpoint besides the configs and weights."""
        return {}

    def checkpoint(self, model_cfg: dict, task_cfg: dict, state_dict: dict) -> dict:
        """The S3PRL local-checkpoint dict (by default the layout of S3PRL's converted fairseq
        checkpoints: ``task_cfg``, ``model_cfg`` as plain dicts, ``model_weight``)."""
        from dataclasses import asdict

        model, task = self.full_configs(model_cfg, task_cfg)
        return {"task_cfg": asdict(task), "model_cfg": asdict(model), "model_weight": state_dict,
                **self.checkpoint_extras()}

    def read_checkpoint(self, ckpt: dict) -> Tuple[dict, dict, dict]:
        """(model_cfg, task_cfg, weights) of a loaded local checkpoint of this family."""
        return dict(ckpt["model_cfg"]), dict(ckpt["task_cfg"]), ckpt["model_weight"]

    def owns_checkpoint(self, ckpt: dict) -> bool:
        """Whether a loaded S3PRL local checkpoint holds a model of this family."""
        raise NotImplementedError

    def owns_model(self, model: torch.nn.Module) -> bool:
        raise NotImplementedError

    # -- forward -----------------------------------------------------------------------------
    def extract(self, model: torch.nn.Module, wav: torch.Tensor):
        """The upstream forward the toolkit counts and compares: (B, T) waveforms, no padding,
        no masking."""
        return model.extract_features(wav, padding_mask=None, mask=False)

    def enable_training_mask(self, model: torch.nn.Module) -> None:
        """Time masking during training, as in fine-tuning (S3PRL's experts never ask for it)."""
        raise NotImplementedError

    def normalizes_wav(self, expert: torch.nn.Module) -> bool:
        """Whether S3PRL's expert (``upstream.upstream`` of S3PRLUpstream) standardises each
        waveform before the model (each family keeps the flag in another place)."""
        raise NotImplementedError

    def hidden_states(self, model: torch.nn.Module, wav: torch.Tensor) -> list:
        """The hidden states S3PRL's expert hands the featurizer for ONE unpadded utterance
        (``wav``: (1, samples), already normalised if the task says so), written with tensor
        operations only, so that ONNX export (``espnet_pinch.export``) keeps the time axis
        dynamic; S3PRL's own forward computes sizes in Python. Equal to the expert's within float
        rounding (``tests/adapters/test_families.py``)."""
        raise NotImplementedError

    # -- layers ------------------------------------------------------------------------------
    def prunable_layers(self, model: torch.nn.Module) -> "OrderedDict[str, torch.nn.Module]":
        """Every Linear / Conv1d the forward pass runs, keyed by its name inside ``model``."""
        out: "OrderedDict[str, torch.nn.Module]" = OrderedDict()
        for name, mod in model.named_modules():
            if isinstance(mod, (torch.nn.Linear, torch.nn.Conv1d)) and name.startswith(self.used_prefixes):
                out[name] = mod
        return out

    def part_of(self, layer_name: str) -> Optional[str]:
        """``cnn``, ``transformer`` or None (e.g. the feature projection) for a prunable layer."""
        for part, prefix in self.parts:
            if layer_name.startswith(prefix):
                return part
        return None

    def freeze_unused(self, model: torch.nn.Module, keep: Iterable[str] = ()) -> None:
        """No gradient for parameters outside ``used_prefixes`` (and ``keep``): the fine-tuning
        forward never reaches them, so they take no optimizer state and DDP does not wait for
        their gradients."""
        used = tuple(self.used_prefixes) + tuple(keep)
        for name, p in model.named_parameters():
            if not name.startswith(used):
                p.requires_grad_(False)

    # -- units -------------------------------------------------------------------------------
    def unit_groups(self, model: torch.nn.Module, kinds: Sequence[str] = KINDS
                    ) -> "OrderedDict[str, UnitGroup]":
        """Every unit group of the given kinds, in forward order."""
        raise NotImplementedError

    def architecture(self, model: torch.nn.Module) -> dict:
        """The explicit (possibly pruned) architecture: a width per layer for each ``arch_keys``."""
        raise NotImplementedError

    def group_width_key(self, group: UnitGroup) -> Tuple[str, int]:
        """(``architecture`` key, layer index) that holds this group's width."""
        raise NotImplementedError

    def arch_keep(self, group: UnitGroup, arch: dict, width: int) -> Sequence[int]:
        """Which of a fresh model's units to keep to rebuild ``arch``: the first ``width`` by
        default (units are interchangeable in position); a family whose units are not (WavLM's
        heads read their own slice of the residual stream) names them in ``arch``."""
        return range(width)

    def check_kinds(self, kinds: Sequence[str]) -> None:
        bad = sorted(set(kinds) - set(KINDS))
        if bad:
            raise ValueError(f"unit kinds {bad} unknown; choose from {list(KINDS)}")

    def compact_(self, model: torch.nn.Module, keep: Dict[str, Sequence[int]]) -> dict:
        """Keep only the listed units of each named group, in place; returns the new architecture."""
        groups = self.unit_groups(model)
        unknown = sorted(set(keep) - set(groups))
        if unknown:
            raise ValueError(f"compaction: unknown unit groups {unknown} (have {list(groups)[:4]}, ...)")
        for name, idx in keep.items():
            compact_group_(groups[name], idx)
        return self.architecture(model)

    def apply_architecture_(self, model: torch.nn.Module, arch: dict) -> None:
        """Resize a freshly built model to ``arch`` (weights are placeholders until loaded)."""
        have = self.architecture(model)
        unknown = sorted(set(arch) - set(self.arch_keys))
        if unknown:
            raise ValueError(f"pruned_arch: unknown keys {unknown} for a {self.arch} model "
                             f"(have {list(self.arch_keys)})")
        for key in self.arch_keys:
            if key in arch and len(arch[key]) != len(have[key]):
                raise ValueError(f"pruned_arch.{key}: {len(arch[key])} entries for a model with "
                                 f"{len(have[key])} layers")
        keep = {}
        for name, g in self.unit_groups(model).items():
            key, i = self.group_width_key(g)
            want = arch.get(key, have[key])[i]
            if not 0 <= want <= g.num_units:
                raise ValueError(f"pruned_arch: {name} width {want} not in [0, {g.num_units}]")
            if want != g.num_units:
                keep[name] = self.arch_keep(g, arch, want)
        self.compact_(model, keep)
        got = self.architecture(model)
        for key in arch:
            if got[key] != list(arch[key]):
                raise ValueError(f"pruned_arch.{key}: {arch.get(key)} cannot be built: these widths "
                                 f"are not prunable units of this {self.arch} model (got {got[key]})")

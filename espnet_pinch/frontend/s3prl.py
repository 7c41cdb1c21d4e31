"""Gate-aware S3PRL frontend: owns one S3PRL upstream and exposes its prunable layers.

Differences from ESPnet's ``S3prlFrontend`` (which this replaces for espnet_pinch):
- no deep copy of the pretrained weights (ESPnet keeps a second copy for
  ``reload_pretrained_parameters``; here that re-reads the checkpoint file instead);
- the upstream can be built from an explicit size config (``upstream_config``) with no
  checkpoint at all: a saved or compacted ESPnet model then loads from its own ``model.pth``;
- the CNN feature extractor is trainable (``feature_grad_mult``) and wav2vec2-style time masking
  can be switched on during training (``apply_mask``): both are needed to train or prune it;
- ``prunable_layers()`` lists every Linear/Conv1d that the forward pass uses, by stable name,
  for the pruning methods in ``espnet_pinch.pruning``;
- ``pruned_arch`` gives the upstream the explicit widths of a physically compacted model
  (``espnet_pinch.compaction``): with ``upstream_config`` it loads with no original checkpoint.
"""
from __future__ import annotations

import logging
import os
import tempfile
from collections import OrderedDict
from typing import Optional, Tuple, Union

import torch
from espnet2.asr.frontend.abs_frontend import AbsFrontend

from espnet_pinch.adapters import FamilyAdapter, adapter_for
from espnet_pinch.adapters import adapter as family_adapter
from espnet_pinch.upstream.build import (build_model, checkpoint_arch, load_size_config, read_checkpoint,
                                         s3prl_name, save_checkpoint)
from espnet_pinch.upstream.hub import is_hub_name, local_loader
from espnet_pinch.utils.safe_load import check_evaluated_fields, load_checkpoint, weights_only_loads


def _build_s3prl_upstream(name: str, path_or_url: Optional[str], upstream_config, extra_conf):
    # S3PRL reads the checkpoint with torch's default unpickler, which TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD
    # makes the full one: here every load is weights-only, whichever process builds the frontend.
    with weights_only_loads():
        return _s3prl_upstream(name, path_or_url, upstream_config, extra_conf)


def _s3prl_upstream(name: str, path_or_url: Optional[str], upstream_config, extra_conf):
    from s3prl.nn import S3PRLUpstream

    if path_or_url is not None or upstream_config is None:
        return S3PRLUpstream(name, path_or_url=path_or_url, extra_conf=extra_conf)
    # Architecture only: weights come later from the ESPnet model.pth. S3PRL's local loaders
    # read a file, so write a random-weight checkpoint of this architecture to a temp file.
    cfg = load_size_config(upstream_config)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = os.path.join(tmp, "upstream.pt")
        save_checkpoint(cfg, build_model(cfg).state_dict(), ckpt)
        # A hub name here (the config said `upstream: wav2vec2`) must not download: it is the
        # architecture of this local file.
        name = local_loader(name, cfg["arch"]) if name and is_hub_name(name) else s3prl_name(cfg)
        return S3PRLUpstream(name, path_or_url=ckpt, extra_conf=extra_conf)


class PinchS3prlFrontend(AbsFrontend):
    """S3PRL upstream + Featurizer as an ESPnet frontend.

    Args:
        upstream: S3PRL hub name (``wav2vec2``, ``hubert_large_ll60k``, ``wav2vec2_local``, ...).
        path_or_url: checkpoint for ``*_local``/``*_url``/``*_custom`` names.
        upstream_config: size config (path or dict) to build the architecture with random
            weights when there is no checkpoint (e.g. loading a saved or compacted model).
        pruned_arch: {conv_channels, attention_heads, ffn_dims} per layer of a compacted model.
        multilayer_feature: learnable weighted sum of all hidden states (else the last one).
        layer: a single hidden-state index (-1: see ``multilayer_feature``).
        feature_grad_mult: gradient scale into the CNN feature extractor (0 freezes it).
        apply_mask: wav2vec2/HuBERT time (and channel) masking in training, as in fine-tuning.
        fs: sampling rate; S3PRL upstreams take 16 kHz only.
        input_scale: the scale of the samples the model was trained on (``data.dump.input_scale``)
            when the config no longer lists its training data: ``bin/finalize`` writes it into a
            pruned model's config, whose data entries it drops. Read by the decoder and the
            exporter; the frontend itself does not rescale.
    """

    def __init__(
        self,
        upstream: str = "wav2vec2_local",
        path_or_url: Optional[str] = None,
        upstream_config: Union[str, dict, None] = None,
        pruned_arch: Optional[dict] = None,
        multilayer_feature: bool = False,
        layer: int = -1,
        feature_grad_mult: float = 1.0,
        apply_mask: bool = False,
        extra_conf: Optional[dict] = None,
        fs: int = 16000,
        input_scale: Optional[float] = None,
    ):
        super().__init__()
        # metadata, not used here: see the docstring
        self.input_scale = None if input_scale is None else float(input_scale)
        if fs != 16000:
            raise ValueError(f"frontend_conf.fs: S3PRL upstreams take 16000 Hz audio, got {fs}")
        if path_or_url is not None and not str(path_or_url).startswith("http"):
            if not os.path.isfile(path_or_url):
                raise FileNotFoundError(f"frontend_conf.path_or_url: no file {path_or_url}")
            # Both branches read the file weights-only first, for an error that names it (S3PRL's
            # own load below is weights-only too: _build_s3prl_upstream).
            if is_hub_name(upstream):
                # `upstream: wav2vec2` with a local file (the recipe fetched the hub model, or the
                # user's own checkpoint): load it as wav2vec2_local / hubert_local.
                loader = local_loader(upstream, checkpoint_arch(path_or_url))
                logging.info(f"frontend: upstream {upstream} from the local file {path_or_url} ({loader})")
                upstream = loader
            elif upstream.endswith("_local"):
                # `*_local` says "a local file"; the file says which family: a recipe swaps its
                # upstream with a size config alone (--upstream_config).
                loader = family_adapter(checkpoint_arch(path_or_url)).s3prl_local
                if loader != upstream:
                    logging.info(f"frontend: {path_or_url} holds a {loader[:-6]} model: loaded with "
                                 f"{loader} (the config said {upstream})")
                upstream = loader
            else:  # another S3PRL family: weights-only, and no code in what S3PRL will eval()
                ckpt = load_checkpoint(path_or_url, mmap=True)
                for key in ("model_cfg", "cfg"):
                    if isinstance(ckpt, dict) and isinstance(ckpt.get(key), dict):
                        check_evaluated_fields(ckpt[key], str(path_or_url))
        self.upstream_name = upstream
        self.path_or_url = path_or_url
        self.upstream_config = upstream_config
        self.upstream = _build_s3prl_upstream(upstream, path_or_url, upstream_config, extra_conf)
        if pruned_arch is not None:
            self.adapter.apply_architecture_(self.ssl_model, pruned_arch)
        from s3prl.nn import Featurizer

        if layer != -1 and multilayer_feature:
            raise ValueError("frontend_conf: give either layer or multilayer_feature, not both")
        # One hidden state is taken directly; S3PRL's Featurizer only weighs several.
        self.layer = None if multilayer_feature else layer
        self.featurizer = Featurizer(self.upstream) if multilayer_feature else None
        self._output_size = self.upstream.hidden_sizes[-1]
        self.hop_length = self.upstream.downsample_rates[-1]
        model = self.ssl_model
        if hasattr(model, "feature_grad_mult"):
            model.feature_grad_mult = feature_grad_mult
        if apply_mask:
            self.adapter.enable_training_mask(model)
        # The pre-training heads (quantizer, project_q, final_proj, label embeddings) and, without
        # masking, mask_emb are never reached: frozen (no optimizer state, DDP does not wait).
        self.adapter.freeze_unused(model, keep=("mask_emb",) if apply_mask else ())

    @property
    def ssl_model(self) -> torch.nn.Module:
        """The wrapped Wav2Vec2Model / HubertModel (what the pruning methods operate on)."""
        return self.upstream.upstream.model

    @property
    def adapter(self) -> FamilyAdapter:
        """What espnet_pinch knows about the upstream's family (``espnet_pinch.adapters``)."""
        return adapter_for(self.ssl_model)

    def size_config(self) -> dict:
        """The upstream's size config ({arch, model_cfg, task_cfg}) for an architecture-only rebuild."""
        if self.upstream_config is not None:
            return load_size_config(self.upstream_config)
        local = self.path_or_url is not None and os.path.isfile(str(self.path_or_url))
        if not local:
            raise ValueError(
                f"frontend: the size config of upstream {self.upstream_name!r} is unknown; give "
                "frontend_conf.path_or_url a local S3PRL checkpoint (*_local) or upstream_config")
        return load_size_config(read_checkpoint(self.path_or_url)[0])

    @torch.no_grad()
    def compact_(self, keep: dict) -> dict:
        """Slice the kept units (per group, ``FinalizeResult.keep``) out of the upstream, through
        its family adapter; returns the ``frontend_conf`` entries that rebuild this compact
        upstream with no checkpoint: its size config and the explicit ``pruned_arch``."""
        size_cfg = self.size_config()
        arch = self.adapter.compact_(self.ssl_model, keep)
        return {"path_or_url": None, "upstream_config": size_cfg, "pruned_arch": arch}

    def output_size(self) -> int:
        return self._output_size

    def prunable_layers(self) -> "OrderedDict[str, torch.nn.Module]":
        """Every Linear / Conv1d the forward pass runs, keyed by its name inside ``ssl_model``.

        The positional convolution is listed too; pruners choose their subset by name pattern.
        """
        return self.adapter.prunable_layers(self.ssl_model)

    def forward(
        self, input: torch.Tensor, input_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, T_wav) waveforms -> (B, T_frames, D) features, (B,) frame counts.

        Integer input (int16 PCM from a ``kaldi_ark`` dump) is scaled to [-1, 1).
        """
        if not input.is_floating_point():
            input = input.float() / 32768.0
        hs, hs_len = self.upstream(input, input_lengths)
        if self.featurizer is None:
            return hs[self.layer], hs_len[self.layer]
        return self.featurizer(hs, hs_len)

    def reload_pretrained_parameters(self) -> None:
        """Re-read upstream weights from the checkpoint (ESPnet calls this after ``--init``)."""
        if self.path_or_url is None or str(self.path_or_url).startswith("http"):
            logging.warning("frontend: no local checkpoint to reload pretrained weights from")
            return
        state = read_checkpoint(load_checkpoint(self.path_or_url))[1]
        self.ssl_model.load_state_dict(state)
        logging.info("frontend: reloaded upstream weights from %s", self.path_or_url)

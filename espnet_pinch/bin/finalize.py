"""Finalize a pruned experiment: make the masks permanent and export the compressed model.

Builds the model from ``<exp>/config.yaml`` (with its pruner) and a checkpoint, calls the
pruner's ``finalize()`` (a ``FinalizeResult``), compacts a structured result through the
frontend (``PinchS3prlFrontend.compact_``: the family adapter slices the units), and writes
``<out>/``:
  config.yaml        the training config with ``pruner: null``: an ordinary model
  model.sparse.pt    fine-grained methods: the result stored sparse (``pruning/sparse.py``)
  model.pth          structured methods: the physically smaller dense model
                     (``FamilyAdapter.compact_``); its config.yaml carries the explicit
                     architecture (``frontend_conf.pruned_arch``, also in pruned_arch.yaml) and the
                     upstream's size config, so it loads with no masks and no original checkpoint
  macs.json          MACs per second of audio of the exported model (``profiling.macs``)
  pruning.json       ``FinalizeResult.to_json()`` (achieved sparsity overall and per layer, what
                     training reached, widths), the pruned weights' state-dict keys and model
                     parts (``prunable_keys``, ``layer_parts``: what scoring reads), bytes on disk,
                     and for structured methods the largest |masked - compact| output difference
                     on one random second of audio (``compact_max_abs_diff``)
The masked dense weights are not kept on disk; ``bin.asr_inference`` reads either model file.

Usage: python -m espnet_pinch.bin.finalize --exp exp/asr_spg_0.5 --model latest.pth \
           --out exp/asr_spg_0.5/final
"""
from __future__ import annotations

import argparse
import io
import logging
import sys
from pathlib import Path

import torch
import yaml

from espnet_pinch.data.dump import train_input_scale
from espnet_pinch.profiling.macs import macs_per_second
from espnet_pinch.pruning.sparse import save_sparse
from espnet_pinch.tasks.asr import PinchASRTask
from espnet_pinch.utils.atomic import atomic_dir, write_json, write_yaml

_RUN_KEYS = ("train_data_path_and_name_and_type", "valid_data_path_and_name_and_type",
             "train_shape_file", "valid_shape_file", "output_dir", "init_param")


def _counts(net) -> dict:
    state = net.state_dict()
    return {"params_total_dense": sum(v.numel() for v in state.values() if v.is_floating_point()),
            "params_prunable_dense": int(net.pruner.total_params)
            if hasattr(net.pruner, "total_params") else None}


@torch.no_grad()
def _encode(net, wav: torch.Tensor) -> torch.Tensor:
    net.eval()
    return net.encode(wav, torch.tensor([wav.shape[1]]))[0]


def standalone_config(cfg: dict, frontend_conf: dict) -> dict:
    """The training config as that of an ordinary model: no pruner, the frontend entries given,
    and no run-specific entries (the export is also the --config of a fine-tuning run, where
    ESPnet would append, not replace, list options such as the data paths; entries the trainer
    does not take as options, e.g. ESPnet's "required", go too)."""
    cfg = dict(cfg, pruner=None, pruner_conf={})
    cfg["frontend_conf"] = {**(cfg.get("frontend_conf") or {}), **frontend_conf}
    known = {a.dest for a in PinchASRTask.get_parser()._actions}
    return {k: v for k, v in cfg.items() if k not in _RUN_KEYS and k in known}


def finalize(exp: Path, model: str, out: Path) -> dict:
    net, _ = PinchASRTask.build_model_from_file(exp / "config.yaml", exp / model, "cpu")
    if net.pruner is None:
        raise ValueError(f"{exp}/config.yaml has no pruner: nothing to finalize")
    counts = _counts(net)
    names = {id(m): n for n, m in net.named_modules()}
    keys = [names[id(layer)] + ".weight" for layer in net.pruner.layers.values()]
    parts = {n: net.frontend.adapter.part_of(n) for n in net.pruner.layers}
    result = net.pruner.finalize()
    finetune_epochs = getattr(net.pruner, "finetune_epochs", 0)
    net.pruner = None
    summary = result.to_json()
    frontend_conf = {}
    if result.structured:
        wav = torch.randn(1, 16000, generator=torch.Generator().manual_seed(0))
        masked = _encode(net, wav)
        frontend_conf = net.frontend.compact_(result.keep)
        diff = float((_encode(net, wav) - masked).abs().max())
        summary.update({"arch": frontend_conf["pruned_arch"], "compact_max_abs_diff": diff,
                        "finetune_epochs": finetune_epochs, **counts})
        logging.info("compacted to %s; max |masked - compact| on 1 s of noise: %.3g",
                     frontend_conf["pruned_arch"], diff)
    with open(exp / "config.yaml") as f:
        src = yaml.safe_load(f)
    # the data entries go (see standalone_config); the scale of the audio they held stays
    frontend_conf["input_scale"] = train_input_scale(argparse.Namespace(**src), str(exp / "config.yaml"))
    cfg = standalone_config(src, frontend_conf)
    macs = macs_per_second(net)
    summary["macs_per_second"] = macs["macs_per_second"]
    state = net.state_dict()
    buf = io.BytesIO()  # the dense serialisation: its size, and the structured model's file
    torch.save(state, buf)
    with atomic_dir(out) as tmp:
        if result.structured:
            stored = (tmp / "model.pth").write_bytes(buf.getbuffer())
            write_yaml(tmp / "pruned_arch.yaml", summary["arch"])
        else:
            stored = save_sparse(state, keys, tmp / "model.sparse.pt")
        write_yaml(tmp / "config.yaml", cfg)
        write_json(tmp / "macs.json", macs)
        summary.update({"prunable_keys": keys, "layer_parts": parts, "bytes_sparse": stored,
                        "bytes_dense": buf.getbuffer().nbytes, "source_model": str(exp / model)})
        write_json(tmp / "pruning.json", summary)
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", required=True, type=Path, help="experiment dir (config.yaml inside)")
    p.add_argument("--model", default="latest.pth", help="checkpoint inside --exp")
    p.add_argument("--out", type=Path, help="output dir (default: <exp>/final)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        s = finalize(args.exp, args.model, args.out or args.exp / "final")
    except (OSError, ValueError) as e:
        logging.error("finalize %s: %s", args.exp, e)
        return 1
    logging.info("finalized %s: sparsity %.4f over %d gated weights; %d bytes sparse vs %d dense",
                 args.exp, s["sparsity"], s["gated_params"], s["bytes_sparse"], s["bytes_dense"])
    return 0


if __name__ == "__main__":
    sys.exit(main())

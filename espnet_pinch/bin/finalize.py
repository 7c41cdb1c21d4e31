"""Finalize a pruned experiment: make the masks permanent and export the compressed model.

Builds the model from ``<exp>/config.yaml`` (with its pruner) and a checkpoint, calls the
pruner's ``finalize()``, and writes ``<out>/``:
  config.yaml        the training config with ``pruner: null``: an ordinary model
  model.sparse.pt    fine-grained result stored sparse (``pruning/sparse.py``, bitmask format)
  pruning.json       achieved sparsity (overall, per layer), thresholds, bytes on disk
The masked dense weights are not kept on disk; ``bin.asr_inference`` reads ``model.sparse.pt``.

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

from espnet_pinch.pruning.layers import weight_key
from espnet_pinch.pruning.sparse import save_sparse
from espnet_pinch.tasks.asr import PinchASRTask
from espnet_pinch.utils.atomic import atomic_dir, write_json, write_yaml

def finalize(exp: Path, model: str, out: Path) -> dict:
    net, args = PinchASRTask.build_model_from_file(exp / "config.yaml", exp / model, "cpu")
    if net.pruner is None:
        raise ValueError(f"{exp}/config.yaml has no pruner: nothing to finalize")
    summary = net.pruner.finalize()
    net.pruner = None
    state = net.state_dict()
    keys = [weight_key(n) for n in summary["gated_layers"]]
    buf = io.BytesIO()
    torch.save(state, buf)
    with open(exp / "config.yaml") as f:
        cfg = yaml.safe_load(f)
    cfg["pruner"], cfg["pruner_conf"] = None, {}
    with atomic_dir(out) as tmp:
        sparse_bytes = save_sparse(state, keys, tmp / "model.sparse.pt")
        write_yaml(tmp / "config.yaml", cfg)
        summary.update({"prunable_keys": keys, "bytes_sparse": sparse_bytes,
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

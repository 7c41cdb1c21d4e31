"""MACs per second of audio of an experiment's model (stage 6's ``macs.json``).

Builds the ESPnet model from ``config.yaml`` + ``model.pth`` (or a sparse export) and counts it
with ``espnet_pinch/profiling/macs.py`` (which says what is counted).

Usage: python -m espnet_pinch.bin.macs --config exp/x/config.yaml --model exp/x/model.pth \
           [--seconds 1.0] --out exp/x/macs.json
``--model`` may be a sparse export (``*.sparse.pt`` from ``bin.finalize``).
"""
from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import Optional

import torch

import espnet_pinch.tasks.asr as pinch_asr
from espnet_pinch.profiling.macs import macs_per_second
from espnet_pinch.pruning.sparse import load_sparse
from espnet_pinch.utils.atomic import write_json


def model_macs_from_files(config: str | Path, model: str | Path, seconds: float = 1.0) -> dict:
    """Build an ESPnet model from ``config.yaml`` + ``model.pth`` (or ``*.sparse.pt``) and count."""
    with tempfile.TemporaryDirectory() as tmp:
        if str(model).endswith(".sparse.pt"):  # ESPnet loads dense state dicts only
            dense = Path(tmp) / "model.dense.pth"
            torch.save(load_sparse(model), dense)
            model = dense
        net, _ = pinch_asr.PinchASRTask.build_model_from_file(config, model, "cpu")
    return macs_per_second(net, seconds)


def main(cmd: Optional[list] = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="ESPnet config.yaml of the experiment")
    p.add_argument("--model", required=True, help="model.pth or *.sparse.pt")
    p.add_argument("--seconds", type=float, default=1.0, help="reference audio duration")
    p.add_argument("--out", required=True, help="JSON file to write")
    args = p.parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    result = model_macs_from_files(args.config, args.model, args.seconds)
    write_json(args.out, result)
    logging.info("%s: %.4g MACs/s (%.4g dense-exec) at %.1f s -> %s", args.model,
                 result["macs_per_second"], result["macs_dense_exec_per_second"], args.seconds,
                 args.out)
    return result


if __name__ == "__main__":
    main()

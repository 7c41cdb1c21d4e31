"""ESPnet ASR decoding with espnet_pinch's classes registered.

Usage: python -m espnet_pinch.bin.asr_inference --asr_train_config exp/x/config.yaml \
    --asr_model_file exp/x/valid.cer_ctc.best.pth \
    --data_path_and_name_and_type dump/test/wav.scp,speech,kaldi_ark --output_dir exp/x/decode_test \
    [ESPnet asr_inference options]

Stock ``espnet2.bin.asr_inference`` does not know classes registered from outside ESPnet, so
this registers them first and then runs ESPnet's own inference. The wall time of decoding
(model loading and decoding, not Python start-up and imports) goes to ``<output_dir>/timing.json``.
A sparse export (``*.sparse.pt`` from ``bin.finalize``) is accepted as ``--asr_model_file``: it is
expanded to a dense state dict in ``<output_dir>`` first (ESPnet loads dense state dicts only).
"""
import json
import sys
import time
from pathlib import Path

import torch

import espnet_pinch.tasks.asr  # noqa: F401  (registers our classes)
from espnet_pinch.pruning.sparse import load_sparse
from espnet_pinch.utils.safe_load import check_checkpoint, weights_only_loads
from espnet2.bin.asr_inference import get_parser, inference
from espnet.utils.cli_utils import get_commandline_args


def dense_model_file(model_file: str, out: Path) -> str:
    """The model file ESPnet can load: a sparse export is expanded to ``out/model.dense.pth``;
    any other file is checked to be weights-only (a message that names it) and used as it is."""
    if str(model_file).endswith(".sparse.pt"):
        out.mkdir(parents=True, exist_ok=True)
        dense = out / "model.dense.pth"
        torch.save(load_sparse(model_file), dense)
        return str(dense)
    check_checkpoint(model_file)
    return str(model_file)


def main(cmd=None):
    print(get_commandline_args(), file=sys.stderr)
    kwargs = vars(get_parser().parse_args(cmd))
    kwargs.pop("config", None)
    start = time.perf_counter()
    out = Path(kwargs["output_dir"])
    if kwargs.get("asr_model_file"):
        kwargs["asr_model_file"] = dense_model_file(kwargs["asr_model_file"], out)
    with weights_only_loads():  # ESPnet asks for the full unpickler for the model: not here
        inference(**kwargs)
    (out / "timing.json").write_text(json.dumps({"decode_seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    main()

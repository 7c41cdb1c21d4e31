"""bin/bundle: a bundle drops the training run's data paths but keeps the scale of its audio."""
import argparse
from pathlib import Path

import torch
import yaml

from espnet_pinch.bin.bundle import export
from espnet_pinch.data.dump import train_input_scale
from espnet_pinch.tasks.asr import PinchASRTask
from tests.pruning.test_spg_espnet import build_args

ROOT = Path(__file__).resolve().parents[2]


def test_a_bundle_keeps_the_input_scale_without_the_data_paths(tiny_ckpt, tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    args = build_args(tiny_ckpt, exp, pruner=None)  # trained on kaldi_ark dumps, as the recipe
    (tmp_path / "spm.model").write_bytes(b"not read")
    args.bpemodel = str(tmp_path / "spm.model")
    torch.save(PinchASRTask.build_model(args).state_dict(), exp / "model.pth")
    (exp / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    out = export(exp, "model.pth", tmp_path / "bundle")
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert not [k for k in cfg if k.startswith(("train_data", "valid_data"))]
    assert train_input_scale(argparse.Namespace(**cfg), "bundle") == 32768.0


def test_the_bundled_an4_model_says_its_input_scale():
    cfg = yaml.safe_load((ROOT / "egs2/an4/asr1/pretrained/dense_an4/config.yaml").read_text())
    assert train_input_scale(argparse.Namespace(**cfg), "dense_an4") == 32768.0

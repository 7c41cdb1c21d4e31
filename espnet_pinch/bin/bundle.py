"""Export a trained ESPnet model as a self-contained bundle, or import a bundle into an experiment.

A bundle dir holds ``config.yaml`` (the training config with the upstream written out as an
explicit architecture, ``frontend_conf.upstream_config``, and no checkpoint path), ``model.pth``
(all weights), ``tokens.txt``, ``spm.model`` and ``meta.json`` (how it was trained). It loads with
no other file: not the starting upstream checkpoint, not the experiment dir.

Usage:
  python -m espnet_pinch.bin.bundle export --exp exp/asr_dense --model valid.cer_ctc.best.pth \
      --out pretrained/dense_an4 [--note "command, seed, ..."]
  python -m espnet_pinch.bin.bundle import --bundle pretrained/dense_an4 --exp exp/asr_dense \
      --token_list data/token_list/char/tokens.txt --bpemodel data/token_list/char/spm.model
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path

import yaml

from espnet_pinch.data.dump import train_input_scale
from espnet_pinch.upstream.build import read_checkpoint
from espnet_pinch.utils.atomic import atomic_dir, write_json, write_yaml
from espnet_pinch.utils.safe_load import check_checkpoint


def _read_yaml(path: Path) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def upstream_arch(frontend_conf: dict) -> dict:
    """The explicit size config of the upstream a frontend_conf points to."""
    if frontend_conf.get("upstream_config"):
        return frontend_conf["upstream_config"]
    ckpt = frontend_conf.get("path_or_url")
    if not ckpt or not os.path.isfile(ckpt):
        raise FileNotFoundError(f"frontend_conf.path_or_url: no local checkpoint {ckpt!r} to read")
    return read_checkpoint(ckpt)[0]


def export(exp: Path, model: str, out: Path, note: str = "") -> Path:
    cfg = _read_yaml(exp / "config.yaml")
    fconf = dict(cfg["frontend_conf"])
    fconf["upstream_config"] = upstream_arch(fconf)
    fconf["path_or_url"] = None
    cfg["frontend_conf"] = fconf
    spm = cfg["bpemodel"]
    cfg["bpemodel"] = str(out / "spm.model")
    # Data paths of the training run mean nothing to a user of the bundle; the scale of the
    # audio they held does (decoding and export feed the model at it)
    fconf["input_scale"] = train_input_scale(argparse.Namespace(**cfg), str(exp / "config.yaml"))
    for k in list(cfg):
        if k.startswith(("train_data", "valid_data", "train_shape", "valid_shape")) or k == "output_dir":
            cfg.pop(k)
    meta = json.loads((exp / "meta.json").read_text()) if (exp / "meta.json").is_file() else {}
    meta.update({"source_exp": str(exp), "source_model": model, "note": note})
    meta.pop("model_path", None)
    with atomic_dir(out) as tmp:
        shutil.copy(spm, tmp / "spm.model")
        (tmp / "tokens.txt").write_text("\n".join(cfg["token_list"]) + "\n")
        write_yaml(tmp / "config.yaml", cfg)
        shutil.copy(exp / model, tmp / "model.pth")
        write_json(tmp / "meta.json", meta)
    return out


def import_bundle(bundle: Path, exp: Path, token_list: Path, bpemodel: Path, name: str) -> Path:
    if not (bundle / "model.pth").is_file():
        raise FileNotFoundError(f"{bundle}: not a model bundle (no model.pth)")
    check_checkpoint(bundle / "model.pth")  # ESPnet's --init_param asks for the full unpickler
    if token_list.read_text().split() != (bundle / "tokens.txt").read_text().split():
        raise ValueError(f"{bundle}/tokens.txt differs from {token_list}: the bundle was trained "
                         "with another tokenizer (use its spm.model or retrain)")
    exp.mkdir(parents=True, exist_ok=True)
    cfg = _read_yaml(bundle / "config.yaml")
    cfg["bpemodel"] = str(bpemodel)
    write_yaml(exp / "config.yaml", cfg)
    shutil.copy(bundle / "model.pth", exp / name)
    meta = json.loads((bundle / "meta.json").read_text())
    meta.update({"tag": exp.name.removeprefix("asr_"), "model_path": str(exp / name),
                 "bundle": str(bundle)})
    write_json(exp / "meta.json", meta)
    return exp


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("--exp", required=True, type=Path)
    e.add_argument("--model", default="valid.cer_ctc.best.pth")
    e.add_argument("--out", required=True, type=Path)
    e.add_argument("--note", default="")
    i = sub.add_parser("import")
    i.add_argument("--bundle", required=True, type=Path)
    i.add_argument("--exp", required=True, type=Path)
    i.add_argument("--token_list", required=True, type=Path)
    i.add_argument("--bpemodel", required=True, type=Path)
    i.add_argument("--name", default="valid.cer_ctc.best.pth", help="checkpoint name in --exp")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        if args.cmd == "export":
            out = export(args.exp, args.model, args.out, args.note)
        else:
            out = import_bundle(args.bundle, args.exp, args.token_list, args.bpemodel, args.name)
    except (OSError, ValueError, KeyError) as e:
        logging.error("bundle %s: %s", args.cmd, e)
        return 1
    logging.info("bundle %s -> %s", args.cmd, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Experiment bookkeeping: per-model metadata, decoding speed, and the results report.

Subcommands (each called by a recipe stage):
  meta    after training: ``<exp>/meta.json`` (method, target sparsity, train seconds, model)
  rtf     after decoding one set: ``<decode_dir>/rtf.json`` (wall seconds / audio seconds)
  report  over ``<exp_dir>/asr_*/meta.json``: ``results.json`` (one row per model) and RESULTS.md

Usage: python -m espnet_pinch.scoring.results report --exp_dir exp --test_sets "dev test" \
           --markdown RESULTS.md --json exp/results.json
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

from espnet_pinch.data.kaldi_dir import read_scp
from espnet_pinch.scoring.score import write_json

# Weights of the upstream's Linear/Conv layers (what pruning methods may remove) in an ESPnet
# model state dict; the positional conv (weight-normed) is not among them.
_SSL_PREFIX = "frontend.upstream.upstream.model."
_PRUNABLE_PARTS = ("feature_extractor.", "post_extract_proj.", "encoder.layers.")


def prunable_keys(state: dict) -> list[str]:
    keys = []
    for k, v in state.items():
        if not k.startswith(_SSL_PREFIX) or not k.endswith(".weight") or v.dim() < 2:
            continue
        if k[len(_SSL_PREFIX):].startswith(_PRUNABLE_PARTS):
            keys.append(k)
    return keys


def param_counts(model_path: str | Path, keys: list[str] | None = None) -> dict:
    """Total / non-zero parameters, and sparsity over the prunable weights, of a model.pth."""
    state = torch.load(model_path, map_location="cpu")
    state = {k: v.to_dense() if getattr(v, "is_sparse", False) else v for k, v in state.items()}
    tensors = [v for v in state.values() if torch.is_floating_point(v)]
    keys = keys or prunable_keys(state)
    prunable = sum(state[k].numel() for k in keys)
    zeros = sum(int((state[k] == 0).sum()) for k in keys)
    return {
        "params_total": sum(v.numel() for v in tensors),
        "params_nonzero": sum(int((v != 0).sum()) for v in tensors),
        "params_prunable": prunable,
        "sparsity": zeros / prunable if prunable else 0.0,
    }


def cmd_meta(args) -> None:
    exp = Path(args.exp)
    meta = {
        "tag": exp.name.removeprefix("asr_"), "method": args.method,
        "target_sparsity": args.target_sparsity, "train_seconds": args.train_seconds,
        "model_path": str(exp / args.model),
    }
    write_json(exp / "meta.json", meta)


def cmd_rtf(args) -> None:
    elapsed = time.time() - float(args.start)
    samples = sum(int(v) for v in read_scp(args.num_samples).values())
    audio_s = samples / 16000.0
    write_json(Path(args.decode_dir) / "rtf.json",
               {"decode_seconds": elapsed, "audio_seconds": audio_s, "rtf": elapsed / audio_s})


def collect_rows(exp_dir: str | Path, test_sets: list[str]) -> list[dict]:
    rows = []
    for meta_path in sorted(Path(exp_dir).glob("asr_*/meta.json")):
        exp = meta_path.parent
        row = json.loads(meta_path.read_text())
        if not Path(row["model_path"]).is_file():
            logging.warning("%s: model %s missing, row skipped", exp, row["model_path"])
            continue
        row.update(param_counts(row["model_path"], row.get("prunable_keys")))
        row.pop("prunable_keys", None)
        row["wer"], row["cer"], rtfs = {}, {}, []
        for s in test_sets:
            score = exp / f"decode_{s}" / "score.json"
            if score.is_file():
                sc = json.loads(score.read_text())
                row["wer"][s], row["cer"][s] = round(sc["wer"], 2), round(sc["cer"], 2)
            rtf = exp / f"decode_{s}" / "rtf.json"
            if rtf.is_file():
                rtfs.append(json.loads(rtf.read_text()))
        row["decode_rtf"] = (
            round(sum(r["decode_seconds"] for r in rtfs) / sum(r["audio_seconds"] for r in rtfs), 4)
            if rtfs else None
        )
        rows.append(row)
    return rows


def markdown(rows: list[dict], test_sets: list[str]) -> str:
    head = ["tag", "method", "target", "sparsity", "params", "nonzero"]
    head += [f"WER {s}" for s in test_sets] + [f"CER {s}" for s in test_sets]
    head += ["train s", "decode RTF"]
    lines = ["# Results", "",
             "Written by the recipe's results stage from `exp/results.json`; WER/CER in %, "
             "sparsity over the upstream's prunable Linear/Conv weights, RTF = CPU decode "
             "seconds / audio seconds.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    fmt = lambda v, f="{}": "-" if v is None else f.format(v)  # noqa: E731
    for r in rows:
        cells = [r["tag"], r["method"], fmt(r.get("target_sparsity"), "{:.2f}"),
                 f"{r['sparsity']:.3f}", f"{r['params_total'] / 1e6:.2f} M",
                 f"{r['params_nonzero'] / 1e6:.2f} M"]
        cells += [fmt(r["wer"].get(s), "{:.2f}") for s in test_sets]
        cells += [fmt(r["cer"].get(s), "{:.2f}") for s in test_sets]
        cells += [fmt(r.get("train_seconds"), "{:.0f}"), fmt(r.get("decode_rtf"), "{:.3f}")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def cmd_report(args) -> None:
    sets = args.test_sets.split()
    rows = collect_rows(args.exp_dir, sets)
    if not rows:
        raise SystemExit(f"results: no trained models (asr_*/meta.json) under {args.exp_dir}")
    write_json(args.json, rows)
    md = Path(args.markdown)
    md.write_text(markdown(rows, sets))
    logging.info("results: %d rows -> %s, %s", len(rows), args.json, md)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("meta", help="write <exp>/meta.json after training")
    m.add_argument("--exp", required=True)
    m.add_argument("--method", required=True)
    m.add_argument("--target_sparsity", type=float, default=0.0)
    m.add_argument("--train_seconds", type=float, required=True)
    m.add_argument("--model", required=True, help="checkpoint file name inside --exp")
    r = sub.add_parser("rtf", help="write <decode_dir>/rtf.json after decoding")
    r.add_argument("--decode_dir", required=True)
    r.add_argument("--start", required=True, help="decode start, seconds since the epoch")
    r.add_argument("--num_samples", required=True, help="utt2num_samples of the decoded set")
    rep = sub.add_parser("report", help="RESULTS.md and results.json over all models")
    rep.add_argument("--exp_dir", required=True)
    rep.add_argument("--test_sets", default="dev test")
    rep.add_argument("--markdown", required=True)
    rep.add_argument("--json", required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    {"meta": cmd_meta, "rtf": cmd_rtf, "report": cmd_report}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

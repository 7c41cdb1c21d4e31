"""Experiment bookkeeping: per-model metadata, decoding speed, and the results report.

Subcommands (each called by a recipe stage):
  meta    after training: ``<exp>/meta.json`` (method, target sparsity, train seconds, model)
  rtf     after decoding one set: ``<decode_dir>/rtf.json`` (decode wall seconds / audio seconds)
  report  over ``<exp_dir>/asr_*/meta.json``: ``results.json`` (one row per model) and RESULTS.md

Usage: python -m espnet_pinch.scoring.results report --exp_dir exp --test_sets "dev test" \
           --markdown RESULTS.md --json exp/results.json
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path

import torch

from espnet_pinch.data.kaldi_dir import read_scp
from espnet_pinch.pruning.layers import DEFAULT_PATTERNS, layer_of_weight_key, matches
from espnet_pinch.pruning.sparse import from_sparse
from espnet_pinch.utils.atomic import write_json

def prunable_keys(state: dict) -> list[str]:
    """Weights of the layers pruning methods gate by default (``pruning.layers``), for models
    that carry no list of their own (dense ones). Norm weights (1-d) are not layers' weights."""
    keys = []
    for k, v in state.items():
        name = layer_of_weight_key(k)
        if name is not None and v.dim() >= 2 and matches(name, DEFAULT_PATTERNS):
            keys.append(k)
    return keys


def param_counts(model_path: str | Path, keys: list[str] | None = None) -> dict:
    """Total / non-zero parameters of a model.pth; sparsity over the prunable weights
    (``sparsity``) and over the whole model (``sparsity_model``)."""
    state = torch.load(model_path, map_location="cpu")
    if state.get("format") == "bitmask-v1":  # sparse export of a fine-grained pruned model
        state = from_sparse(state)
    tensors = [v for v in state.values() if torch.is_floating_point(v)]
    keys = keys or prunable_keys(state)
    prunable = sum(state[k].numel() for k in keys)
    zeros = sum(int((state[k] == 0).sum()) for k in keys)
    total = sum(v.numel() for v in tensors)
    nonzero = sum(int((v != 0).sum()) for v in tensors)
    return {
        "params_total": total,
        "params_nonzero": nonzero,
        "params_prunable": prunable,
        "sparsity": zeros / prunable if prunable else 0.0,
        "sparsity_model": 1.0 - nonzero / total,
    }


_SPAN = re.compile(r"([0-9.]+) (hour|minute|second)s?")
_EPOCH = re.compile(r"(\d+)epoch results: .*?time=([^,]+), total_count.*?\[valid\].*?time=([^,]+),")


def _seconds(span: str) -> float:
    unit = {"hour": 3600.0, "minute": 60.0, "second": 1.0}
    return sum(float(v) * unit[u] for v, u in _SPAN.findall(span))


def espnet_training_seconds(log: str | Path) -> float:
    """Training + validation time of every completed epoch in an ESPnet train.log.

    Robust to resumption: an epoch cut off by a crash has no results line, a re-run epoch
    counts once (its last results line).
    """
    per_epoch = {}
    for m in _EPOCH.finditer(Path(log).read_text(errors="replace")):
        per_epoch[int(m[1])] = _seconds(m[2]) + _seconds(m[3])
    if not per_epoch:
        raise ValueError(f"{log}: no completed epoch found")
    return sum(per_epoch.values())


def cmd_meta(args) -> None:
    exp = Path(args.exp)
    train_s = espnet_training_seconds(args.train_log)
    meta = {
        "tag": exp.name.removeprefix("asr_"), "method": args.method,
        "target_sparsity": args.target_sparsity, "train_seconds": round(train_s, 1),
        "model_path": str(exp / args.model),
    }
    if args.pruning:  # written by bin.finalize
        p = json.loads(Path(args.pruning).read_text())
        meta.update({
            # one pass: training with the gates plus finalize is the whole compression time
            "compression_seconds": round(train_s + args.extra_seconds, 1),
            "per_layer_sparsity": {k: round(v, 4) for k, v in p["per_layer_sparsity"].items()},
            "prunable_keys": p["prunable_keys"], "extra_params": p["extra_params"],
            "bytes_dense_equivalent": p["bytes_dense"],
        })
    write_json(exp / "meta.json", meta)


def cmd_rtf(args) -> None:
    elapsed = json.loads(Path(args.timing).read_text())["decode_seconds"]
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
        row["bytes_on_disk"] = Path(row["model_path"]).stat().st_size
        row.setdefault("compression_seconds", None)
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
    head = ["tag", "method", "target", "sparsity", "model sparsity", "params", "nonzero"]
    head += [f"WER {s}" for s in test_sets] + [f"CER {s}" for s in test_sets]
    head += ["train s", "compress s", "MB on disk", "decode RTF"]
    lines = ["# Results", "",
             "Written by the recipe's results stage from `exp/results.json`. WER/CER in %; "
             "sparsity = exact zeros over the upstream's prunable Linear/Conv weights (model "
             "sparsity: over all parameters); train s = ESPnet epoch times (train + valid); "
             "compress s = the whole compression (for SPG: the one pruning+fine-tuning pass "
             "and finalize); MB on disk = the stored model file; decode RTF = CPU decode "
             "seconds / audio seconds.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    fmt = lambda v, f="{}": "-" if v is None else f.format(v)  # noqa: E731
    for r in rows:
        cells = [r["tag"], r["method"], fmt(r.get("target_sparsity"), "{:.2f}"),
                 f"{r['sparsity']:.3f}", f"{r['sparsity_model']:.3f}", f"{r['params_total'] / 1e6:.2f} M",
                 f"{r['params_nonzero'] / 1e6:.2f} M"]
        cells += [fmt(r["wer"].get(s), "{:.2f}") for s in test_sets]
        cells += [fmt(r["cer"].get(s), "{:.2f}") for s in test_sets]
        cells += [fmt(r.get("train_seconds"), "{:.0f}"), fmt(r.get("compression_seconds"), "{:.0f}"),
                  f"{r['bytes_on_disk'] / 1e6:.2f}", fmt(r.get("decode_rtf"), "{:.3f}")]
        lines.append("| " + " | ".join(cells) + " |")
    pruned = [r for r in rows if r.get("per_layer_sparsity")]
    if pruned:
        lines += ["", "## Per-layer sparsity", "",
                  "Fraction of exact zeros in each gated layer of the final model "
                  "(chart: `per_layer_sparsity.png`).", "",
                  "| layer | " + " | ".join(r["tag"] for r in pruned) + " |",
                  "|---|" + "---|" * len(pruned)]
        names = list(pruned[0]["per_layer_sparsity"])
        for n in names:
            vals = [fmt(r["per_layer_sparsity"].get(n), "{:.3f}") for r in pruned]
            lines.append(f"| {n} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def plot_per_layer(rows: list[dict], path: Path) -> bool:
    """Grouped bar chart of per-layer sparsity, one colour per pruned model."""
    pruned = [r for r in rows if r.get("per_layer_sparsity")]
    if not pruned:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(pruned[0]["per_layer_sparsity"])
    width = 0.8 / len(pruned)
    fig, ax = plt.subplots(figsize=(max(8, 0.35 * len(names)), 4.5))
    for i, r in enumerate(pruned):
        xs = [j + i * width for j in range(len(names))]
        ax.bar(xs, [r["per_layer_sparsity"].get(n, 0) for n in names], width,
               label=f"{r['tag']} (overall {r['sparsity']:.3f})")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))])
    ax.set_xticklabels([n.replace("encoder.layers.", "L").replace("self_attn.", "")
                        .replace("feature_extractor.conv_layers.", "conv") for n in names],
                       rotation=90, fontsize=7)
    ax.set_ylabel("sparsity (fraction of zeros)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("Per-layer sparsity of the pruned models")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def cmd_report(args) -> None:
    sets = args.test_sets.split()
    rows = collect_rows(args.exp_dir, sets)
    if not rows:
        raise SystemExit(f"results: no trained models (asr_*/meta.json) under {args.exp_dir}")
    write_json(args.json, rows)
    md = Path(args.markdown)
    md.write_text(markdown(rows, sets))
    plot_per_layer(rows, md.parent / "per_layer_sparsity.png")
    logging.info("results: %d rows -> %s, %s", len(rows), args.json, md)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("meta", help="write <exp>/meta.json after training")
    m.add_argument("--exp", required=True)
    m.add_argument("--method", required=True)
    m.add_argument("--target_sparsity", type=float, default=0.0)
    m.add_argument("--train_log", required=True, help="ESPnet train.log: train seconds = its epoch times")
    m.add_argument("--extra_seconds", type=float, default=0.0, help="added to compression time")
    m.add_argument("--model", required=True, help="checkpoint file name inside --exp")
    m.add_argument("--pruning", help="pruning.json of a finalized pruned model")
    r = sub.add_parser("rtf", help="write <decode_dir>/rtf.json after decoding")
    r.add_argument("--decode_dir", required=True)
    r.add_argument("--timing", required=True, help="timing.json written by bin.asr_inference")
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

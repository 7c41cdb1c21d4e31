"""Experiment bookkeeping: per-model metadata, decoding speed, and the results report.

Subcommands (each called by a recipe stage):
  meta    after training: ``<exp>/meta.json`` (method, target sparsity, train seconds, model,
          MACs per second of audio)
  rtf     after decoding one set: ``<decode_dir>/rtf.json`` (decode wall seconds / audio seconds)
  report  over ``<exp_dir>/asr_*/meta.json``: ``results.json`` (one row per model, with a paired
          bootstrap test of each model's WER against the dense model's), RESULTS.md and its
          figures (``plots.py``) next to it

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
from espnet_pinch.scoring.plots import plot_per_layer, plot_wer_vs_sparsity
from espnet_pinch.scoring.significance import paired_bootstrap
from espnet_pinch.utils.atomic import atomic_file, write_json

# pruning.json keys that meta.json copies when present: counts of the dense model before a
# structured method removed rows/heads/layers, and the pruned architecture
OPTIONAL_PRUNING_KEYS = ("params_prunable_dense", "params_total_dense", "arch")
N_BOOT = 1000


def prunable_keys(state: dict) -> list[str]:
    """Weights of the layers pruning methods gate by default (``pruning.layers``), for models
    that carry no list of their own (dense ones). Norm weights (1-d) are not layers' weights."""
    keys = []
    for k, v in state.items():
        name = layer_of_weight_key(k)
        if name is not None and v.dim() >= 2 and matches(name, DEFAULT_PATTERNS):
            keys.append(k)
    return keys


def param_counts(model_path: str | Path, keys: list[str] | None = None,
                 prunable_dense: int | None = None, total_dense: int | None = None) -> dict:
    """Total / non-zero parameters of a model.pth; sparsity over the prunable weights
    (``sparsity``) and over the whole model (``sparsity_model``).

    A physically compacted model (structured pruning) has smaller tensors under the same keys:
    given the dense model's counts, sparsity is measured against those, so removed rows count
    as pruned. Without them, sparsity = exact zeros / parameters of this model.
    """
    state = torch.load(model_path, map_location="cpu")
    if state.get("format") == "bitmask-v1":  # sparse export of a fine-grained pruned model
        state = from_sparse(state)
    tensors = [v for v in state.values() if torch.is_floating_point(v)]
    keys = [k for k in keys or prunable_keys(state) if k in state]  # a layer may be removed whole
    prunable = sum(state[k].numel() for k in keys)
    prunable_nonzero = sum(int((state[k] != 0).sum()) for k in keys)
    total = sum(v.numel() for v in tensors)
    nonzero = sum(int((v != 0).sum()) for v in tensors)
    prunable_dense = prunable_dense or prunable
    return {
        "params_total": total,
        "params_nonzero": nonzero,
        "params_prunable": prunable,
        "sparsity": 1.0 - prunable_nonzero / prunable_dense if prunable_dense else 0.0,
        "sparsity_model": 1.0 - nonzero / (total_dense or total),
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
    # a structured method trains twice (search, then fine-tuning): both count
    train_s = sum(espnet_training_seconds(log) for log in args.train_log)
    meta = {
        "tag": exp.name.removeprefix("asr_"), "method": args.method,
        "target_sparsity": args.target_sparsity, "train_seconds": round(train_s, 1),
        "model_path": str(exp / args.model),
    }
    if args.macs:  # written by espnet_pinch.profiling.macs
        meta["macs_per_second"] = float(json.loads(Path(args.macs).read_text())["macs_per_second"])
    if args.pruning:  # written by bin.finalize
        p = json.loads(Path(args.pruning).read_text())
        meta.update({
            # all training runs plus finalize are the whole compression time
            "compression_seconds": round(train_s + args.extra_seconds, 1),
            "per_layer_sparsity": {k: round(v, 4) for k, v in p["per_layer_sparsity"].items()},
            "prunable_keys": p["prunable_keys"], "extra_params": p.get("extra_params"),
            "bytes_dense_equivalent": p.get("bytes_dense"),
        })
        meta.update({k: p[k] for k in OPTIONAL_PRUNING_KEYS if k in p})
    write_json(exp / "meta.json", meta)


def cmd_rtf(args) -> None:
    elapsed = json.loads(Path(args.timing).read_text())["decode_seconds"]
    samples = sum(int(v) for v in read_scp(args.num_samples).values())
    audio_s = samples / 16000.0
    write_json(Path(args.decode_dir) / "rtf.json",
               {"decode_seconds": elapsed, "audio_seconds": audio_s, "rtf": elapsed / audio_s})


def _per_utt(exp: Path, test_set: str) -> dict | None:
    f = exp / f"decode_{test_set}" / "per_utt.json"
    return json.loads(f.read_text()) if f.is_file() else None


def significance_vs_dense(rows: list[dict], exps: list[Path], test_sets: list[str]) -> None:
    """Sets ``row["significance"][set]``: paired bootstrap of the row's WER against the dense
    row's (None for the dense row itself, or without a dense row or per_utt.json files)."""
    dense = next((e for r, e in zip(rows, exps) if r["method"] == "dense"), None)
    for row, exp in zip(rows, exps):
        row["significance"] = {}
        for s in test_sets:
            a = _per_utt(dense, s) if dense is not None and exp != dense else None
            b = _per_utt(exp, s) if a is not None else None
            sig = None
            if b is not None:
                try:
                    sig = paired_bootstrap(a, b, n_boot=N_BOOT)
                except ValueError as e:
                    logging.warning("%s vs %s on %s: %s", exp, dense, s, e)
            row["significance"][s] = sig


def _order(row: dict) -> tuple:
    return row["method"] != "dense", row["method"], row.get("target_sparsity") or 0.0, row["tag"]


META_FIELDS = {"tag": str, "method": str, "model_path": str}  # what every row needs


def read_meta(path: Path) -> dict:
    """A model's meta.json, or SystemExit naming the file and the bad line or field."""
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SystemExit(f"results: {path}: not valid JSON (line {e.lineno}, column {e.colno}: "
                         f"{e.msg}); re-run stage 6 of that model or remove its directory") from None
    if not isinstance(meta, dict):
        raise SystemExit(f"results: {path}: a JSON object expected, got {type(meta).__name__}")
    for key, kind in META_FIELDS.items():
        if not isinstance(meta.get(key), kind):
            raise SystemExit(f"results: {path}: field {key!r} missing or not a {kind.__name__}")
    return meta


def collect_rows(exp_dir: str | Path, test_sets: list[str]) -> list[dict]:
    """One row per model: meta.json plus parameter counts, scores, speed and significance;
    dense first, then by method and target sparsity."""
    rows, exps = [], []
    for meta_path in sorted(Path(exp_dir).glob("asr_*/meta.json")):
        exp = meta_path.parent
        row = read_meta(meta_path)
        if not Path(row["model_path"]).is_file():
            logging.warning("%s: model %s missing, row skipped", exp, row["model_path"])
            continue
        row.update(param_counts(row["model_path"], row.get("prunable_keys"),
                                row.get("params_prunable_dense"), row.get("params_total_dense")))
        row.pop("prunable_keys", None)
        row["bytes_on_disk"] = Path(row["model_path"]).stat().st_size
        row.setdefault("compression_seconds", None)
        macs = exp / "macs.json"  # stage 6 counts every model's MACs, bundled ones included
        if row.get("macs_per_second") is None and macs.is_file():
            row["macs_per_second"] = float(json.loads(macs.read_text())["macs_per_second"])
        row.setdefault("macs_per_second", None)
        row["wer"], row["cer"], rtfs = {}, {}, []
        for s in test_sets:
            score = exp / f"decode_{s}" / "score.json"
            if score.is_file():
                sc = json.loads(score.read_text())
                row["wer"][s], row["cer"][s] = round(sc["wer"], 2), round(sc["cer"], 2)
            slu = exp / f"decode_{s}" / "slu_score.json"  # SLU recipes (local/score.sh)
            if slu.is_file():
                sc = json.loads(slu.read_text())
                row.setdefault("intent_acc", {})[s] = round(100 * sc["intent_acc"], 2)
                row.setdefault("slu_f1", {})[s] = round(100 * sc["slu_f1"], 2)
            rtf = exp / f"decode_{s}" / "rtf.json"
            if rtf.is_file():
                rtfs.append(json.loads(rtf.read_text()))
        row["decode_rtf"] = (
            round(sum(r["decode_seconds"] for r in rtfs) / sum(r["audio_seconds"] for r in rtfs), 4)
            if rtfs else None
        )
        row["decode_seconds"] = round(sum(r["decode_seconds"] for r in rtfs), 2) if rtfs else None
        rows.append(row)
        exps.append(exp)
    significance_vs_dense(rows, exps, test_sets)
    speedups_vs_dense(rows)
    return sorted(rows, key=_order)


def speedups_vs_dense(rows: list[dict]) -> None:
    """For every physically compacted model: ``speedup_measured`` = CPU decode seconds of the
    dense model / of this one (same sets, same run) and ``speedup_ideal`` = dense MACs / its MACs."""
    dense = next((r for r in rows if r["method"] == "dense"), None)
    for r in rows:
        r["speedup_measured"] = r["speedup_ideal"] = None
        if dense is None or not r.get("arch"):
            continue
        if dense.get("decode_seconds") and r.get("decode_seconds"):
            r["speedup_measured"] = round(dense["decode_seconds"] / r["decode_seconds"], 3)
        if dense.get("macs_per_second") and r.get("macs_per_second"):
            r["speedup_ideal"] = round(dense["macs_per_second"] / r["macs_per_second"], 3)


def _fmt(v, f: str = "{}") -> str:
    return "-" if v is None else f.format(v)


def markdown(rows: list[dict], test_sets: list[str], figures: dict[str, str] | None = None) -> str:
    """RESULTS.md: the table of ``rows``, the per-layer sparsity table, and links to
    ``figures`` ({title: PNG file name next to the markdown})."""
    head = ["tag", "method", "target", "sparsity", "model sparsity", "params", "nonzero", "extra params"]
    head += [f"WER {s}" for s in test_sets] + [f"p vs dense {s}" for s in test_sets]
    head += [f"CER {s}" for s in test_sets]
    slu = any(r.get("intent_acc") for r in rows)
    if slu:
        head += [f"intent acc {s}" for s in test_sets] + [f"SLU-F1 {s}" for s in test_sets]
    head += ["train s", "compress s", "MB on disk", "MACs/s", "decode RTF", "speedup meas. / ideal"]
    lines = ["# Results", "",
             "Written by the recipe's results stage from `exp/results.json`. WER/CER in % (SLU "
             "recipes add intent accuracy and SLU-F1 in %, `espnet_pinch/scoring/slu.py`; their WER "
             "is over the whole target: intent, entity markers and words); "
             "sparsity = share of the dense model's prunable Linear/Conv weights that are zero or "
             "removed (model sparsity: over all parameters); train s = ESPnet epoch times "
             "(train + valid, every training run of the method); compress s = the whole "
             "compression (all training runs and finalize); MB on disk = the stored model file; "
             "extra params = parameters the method trains besides the model's (thresholds, "
             "architecture weights), not kept after finalize; "
             "MACs/s = multiply-accumulates per second of audio (`espnet_pinch.profiling.macs`; "
             "for fine-grained sparse models only the non-zero weights count, which sparse kernels "
             "would need: dense CPU kernels still do the dense MACs); "
             "decode RTF = CPU decode seconds / audio seconds (model loading, upstream, CTC beam "
             "search); speedup meas. / ideal (physically smaller models only) = dense decode "
             "seconds / this model's, in the same run, and dense MACs / this model's.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        sig = r.get("significance") or {}
        cells = [r["tag"], r["method"], _fmt(r.get("target_sparsity"), "{:.2f}"),
                 f"{r['sparsity']:.3f}", f"{r['sparsity_model']:.3f}", f"{r['params_total'] / 1e6:.2f} M",
                 f"{r['params_nonzero'] / 1e6:.2f} M", _fmt(r.get("extra_params"), "{:,}")]
        cells += [_fmt(r["wer"].get(s), "{:.2f}") for s in test_sets]
        cells += [_fmt((sig.get(s) or {}).get("p_value"), "{:.3f}") for s in test_sets]
        cells += [_fmt(r["cer"].get(s), "{:.2f}") for s in test_sets]
        if slu:
            cells += [_fmt((r.get(k) or {}).get(s), "{:.2f}") for k in ("intent_acc", "slu_f1")
                      for s in test_sets]
        macs = r.get("macs_per_second")
        cells += [_fmt(r.get("train_seconds"), "{:.0f}"), _fmt(r.get("compression_seconds"), "{:.0f}"),
                  f"{r['bytes_on_disk'] / 1e6:.2f}", _fmt(None if macs is None else macs / 1e6, "{:.1f} M"),
                  _fmt(r.get("decode_rtf"), "{:.3f}"),
                  "-" if r.get("speedup_ideal") is None
                  else f"{_fmt(r.get('speedup_measured'), '{:.2f}')} / {r['speedup_ideal']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "p vs dense: paired bootstrap test (Bisani & Ney, 2004) of the difference between "
              "the model's WER and the dense model's on the same utterances: "
              f"{N_BOOT} resamples of the utterances with replacement, two-sided p-value of "
              "\"no difference\" (small p: the difference is unlikely to be chance; 0.000: every "
              "resample's difference had the same sign, p < 0.002); `results.json` also holds the "
              "difference and its 95% interval."]
    pruned = [r for r in rows if r.get("per_layer_sparsity")]
    if pruned:
        lines += ["", "## Per-layer sparsity", "",
                  "Share of exact zeros (or removed weights) in each gated layer of the final model.", "",
                  "| layer | " + " | ".join(r["tag"] for r in pruned) + " |",
                  "|---|" + "---|" * len(pruned)]
        for n in dict.fromkeys(n for r in pruned for n in r["per_layer_sparsity"]):
            vals = [_fmt(r["per_layer_sparsity"].get(n), "{:.3f}") for r in pruned]
            lines.append(f"| {n} | " + " | ".join(vals) + " |")
    structured = [r for r in rows if r.get("arch")]
    if structured:
        lines += ["", "## Pruned architectures", "",
                  "Widths kept by the structured methods (the explicit config the compact model "
                  "loads with: `final/pruned_arch.yaml`).", "",
                  "| tag | conv channels | attention heads | FFN units |", "|---|---|---|---|"]
        for r in structured:
            a = r["arch"]
            lines.append(f"| {r['tag']} | {a.get('conv_channels')} | {a.get('attention_heads')} "
                         f"| {a.get('ffn_dims')} |")
    if figures:
        lines += ["", "## Figures"]
        for title, name in figures.items():
            lines += ["", f"![{title}]({name})"]
    return "\n".join(lines) + "\n"


def cmd_report(args) -> None:
    sets = args.test_sets.split()
    rows = collect_rows(args.exp_dir, sets)
    if not rows:
        raise SystemExit(f"results: no trained models (asr_*/meta.json) under {args.exp_dir}")
    write_json(args.json, rows)
    md = Path(args.markdown)
    figures = {}
    if plot_wer_vs_sparsity(rows, sets[-1], md.parent / "wer_vs_sparsity.png"):
        figures[f"WER on {sets[-1]} vs sparsity"] = "wer_vs_sparsity.png"
    if plot_per_layer(rows, md.parent / "per_layer_sparsity.png"):
        figures["Per-layer sparsity"] = "per_layer_sparsity.png"
    with atomic_file(md) as tmp:
        tmp.write_text(markdown(rows, sets, figures))
    logging.info("results: %d rows -> %s, %s (figures: %s)", len(rows), args.json, md,
                 ", ".join(figures.values()) or "none")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("meta", help="write <exp>/meta.json after training")
    m.add_argument("--exp", required=True)
    m.add_argument("--method", required=True)
    m.add_argument("--target_sparsity", type=float, default=0.0)
    m.add_argument("--train_log", required=True, nargs="+", action="extend",
                   help="ESPnet train.log(s), repeatable: train seconds = the sum of their epoch times")
    m.add_argument("--extra_seconds", type=float, default=0.0, help="added to compression time")
    m.add_argument("--model", required=True, help="checkpoint file name inside --exp")
    m.add_argument("--pruning", help="pruning.json of a finalized pruned model")
    m.add_argument("--macs", help="JSON of espnet_pinch.profiling.macs: its macs_per_second is kept")
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

"""Experiment bookkeeping: per-model metadata, decoding speed, and the results report.

Subcommands (each called by a recipe stage):
  meta    after training: ``<exp>/meta.json`` (method, target sparsity, train seconds, model,
          MACs per second of audio)
  rtf     after decoding one set: ``<decode_dir>/rtf.json`` (decode wall seconds / audio seconds)
  report  over ``<exp_dir>/asr_*/meta.json``: ``results.json`` (one row per model, with a paired
          bootstrap test of each model's WER against the reference: dense_cont, the dense model
          continued for the same budget, or the starting dense model when there is none),
          RESULTS.md and its figures (``plots.py``) next to it

Usage: python -m espnet_pinch.scoring.results report --exp_dir exp --test_sets "dev test" \
           --markdown RESULTS.md --json exp/results.json
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

from espnet_pinch.data.kaldi_dir import read_scp
from espnet_pinch.adapters import adapter
from espnet_pinch.pruning.sparse import from_sparse
from espnet_pinch.scoring.plots import (plot_layer_trajectories, plot_per_layer, plot_wer_vs_sparsity,
                                        plot_wer_vs_time)
from espnet_pinch.scoring.significance import bootstrap_wer_ci, format_p, paired_bootstrap
from espnet_pinch.train.schedule import PROBES, read_probes, read_trace
from espnet_pinch.utils.atomic import atomic_file, write_json
from espnet_pinch.utils.safe_load import load_checkpoint

# pruning.json keys that meta.json copies when present: counts of the dense model before a
# structured method removed rows/heads/layers, and the pruned architecture
OPTIONAL_PRUNING_KEYS = ("params_prunable_dense", "params_total_dense", "arch",
                         "sparsity_before_snap", "achieved_before_snap", "snap_changed_units",
                         "macs_sparsity", "unheld_achieved", "unheld_apart_units")
N_BOOT = 1000
# A run whose training ended further than this from its target had it decided by finalize's snap.
TRAINED_TOLERANCE = 0.02
REFERENCE = "dense_cont"  # the matched dense baseline


def param_counts(model_path: str | Path, keys: list[str] | None = None,
                 prunable_dense: int | None = None, total_dense: int | None = None) -> dict:
    """Total / non-zero parameters of a model.pth; sparsity over the prunable weights
    (``sparsity``) and over the whole model (``sparsity_model``).

    A physically compacted model (structured pruning) has smaller tensors under the same keys:
    given the dense model's counts, sparsity is measured against those, so removed rows count
    as pruned. Without them, sparsity = exact zeros / parameters of this model. ``keys``: the
    prunable weights' state-dict keys (a pruned model's ``pruning.json`` lists them; without
    them no weight counts as prunable).
    """
    state = load_checkpoint(model_path)
    if state.get("format") == "bitmask-v1":  # sparse export of a fine-grained pruned model
        state = from_sparse(state)
    tensors = [v for v in state.values() if torch.is_floating_point(v)]
    keys = [k for k in keys or [] if k in state]  # a layer may be removed whole
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
        "target_sparsity": args.target_sparsity, "seed": args.seed,
        "budget_epochs": args.budget_epochs, "budget_sweep": args.budget_sweep,
        "train_seconds": round(train_s, 1),
        "model_path": str(exp / args.model),
    }
    if args.macs:  # written by espnet_pinch.profiling.macs
        meta["macs_per_second"] = float(json.loads(Path(args.macs).read_text())["macs_per_second"])
    if args.method == REFERENCE:  # a training run of the same budget: its whole cost
        meta["compression_seconds"] = round(train_s, 1)
    if args.trace:  # per-step lr and pruning state (train/schedule.py)
        meta.update(trace_summary(args.trace, args.target_sparsity if args.pruning else None))
        off = meta.get("trained_off_target")
        if off is not None and off > TRAINED_TOLERANCE:
            print(f"WARNING {meta['tag']}: training ended {off:.3f} from its target "
                  f"{args.target_sparsity} (reached {meta['trained_achieved']:.3f}): target decided "
                  "by finalize, not by training", flush=True)
    if args.pruning:  # written by bin.finalize
        p = json.loads(Path(args.pruning).read_text())
        meta.update({
            # all training runs plus finalize are the whole compression time
            "compression_seconds": round(train_s + args.extra_seconds, 1),
            "per_layer_sparsity": {k: round(v, 4) for k, v in p["per_layer_sparsity"].items()},
            "prunable_keys": p["prunable_keys"], "extra_params": p.get("extra_params"),
            # pruning.json before layer_parts existed: wav2vec2 / HuBERT layer names
            "layer_parts": p.get("layer_parts") or {
                n: adapter("wav2vec2").part_of(n) for n in p["per_layer_sparsity"]},
            "bytes_dense_equivalent": p.get("bytes_dense"),
        })
        meta.update({k: p[k] for k in OPTIONAL_PRUNING_KEYS if k in p})
        if meta.get("unheld_apart_units"):
            print(f"NOTE {meta['tag']}: the kept (held) architecture differs from the one the "
                  f"method's parameters choose unheld in {meta['unheld_apart_units']:.1%} of its units; "
                  f"unheld: {_unheld(meta)}", flush=True)
        meta["layer_spread"] = layer_spread(meta["per_layer_sparsity"], meta.pop("layer_parts"))
    write_json(exp / "meta.json", meta)


def layer_spread(per_layer: dict, parts: dict) -> dict:
    """Max minus min of the per-layer sparsities over the Transformer matrices and over the CNN's
    conv layers (how unevenly a method allocated its sparsity; UMP: 0), None where a part has
    no pruned layer. ``parts``: layer -> cnn / transformer / None (``pruning.json``)."""
    out = {}
    for part in ("transformer", "cnn"):
        v = [s for n, s in per_layer.items() if parts.get(n) == part]
        out[part] = round(max(v) - min(v), 4) if v else None
    return out


def lr_digest(records: list[list[dict]]) -> str:
    """A short digest of a compression's per-step lr sequence (its traces in order): runs on one
    schedule share it, so stage 9 can refuse to compare runs of different schedules."""
    lrs = ",".join(f"{r['step']}:{r['lr']:.6e}" for rec in records for r in rec)
    return hashlib.sha1(lrs.encode()).hexdigest()[:12]


def trace_summary(traces: list[str], target: float | None) -> dict:
    """From one compression's trace.tsv files (search, then fine-tuning): the optimizer steps, and
    for a pruning run what training reached at its last step (before finalize) and the share of
    all steps that ran at the full target (within ``TRAINED_TOLERANCE``; a compact model's
    fine-tuning steps count when its search ended there)."""
    records = [read_trace(t) for t in traces]
    out = {"steps": sum(len(r) for r in records), "lr_digest": lr_digest(records)}
    pruned = [r for r in records[0] if r.get("achieved") is not None]
    if target is None or not pruned:
        return out
    last = pruned[-1]
    off = abs(last["achieved"] - target)
    at_target = 0
    for r in reversed(pruned):  # the last stretch of steps at the full target
        if (r.get("target") is None or abs(r["target"] - target) > 1e-6
                or abs(r["achieved"] - target) > TRAINED_TOLERANCE):
            break
        at_target += 1
    if off <= TRAINED_TOLERANCE:  # the compact model's fine-tuning keeps what the search reached
        at_target += sum(len(r) for r in records[1:])
    out.update({"trained_achieved": round(last["achieved"], 4), "trained_off_target": round(off, 4),
                "steps_at_target_share": round(at_target / out["steps"], 3) if out["steps"] else 0.0})
    return out


def cmd_rtf(args) -> None:
    elapsed = json.loads(Path(args.timing).read_text())["decode_seconds"]
    samples = sum(int(v) for v in read_scp(args.num_samples).values())
    audio_s = samples / 16000.0
    write_json(Path(args.decode_dir) / "rtf.json",
               {"decode_seconds": elapsed, "audio_seconds": audio_s, "rtf": elapsed / audio_s})


def _per_utt(exp: Path, test_set: str) -> dict | None:
    f = exp / f"decode_{test_set}" / "per_utt.json"
    return json.loads(f.read_text()) if f.is_file() else None


def reference_method(rows: list[dict]) -> str:
    """dense_cont when it was trained (the matched baseline), else the starting dense model."""
    return REFERENCE if any(r["method"] == REFERENCE for r in rows) else "dense"


def significance_vs_reference(rows: list[dict], utts: list[dict], test_sets: list[str]) -> None:
    """Sets ``row["reference"]`` (the tag compared with: the reference run of the same seed) and
    ``row["significance"][set]``: paired bootstrap of the row's WER against it (None for the
    reference runs, for the starting dense model when dense_cont is the reference, and without
    per-utterance errors). ``utts[i]``: row i's per-utterance errors, {set: per_utt.json or None}."""
    ref = reference_method(rows)
    by_seed = {_run_key(r): (r["tag"], u) for r, u in zip(rows, utts) if r["method"] == ref}
    for row, own in zip(rows, utts):
        row["significance"] = {}
        dense = None
        if row["method"] not in (ref, "dense") and by_seed:
            dense = by_seed.get(_run_key(row), next(iter(by_seed.values())))
        row["reference"] = None if dense is None else dense[0]
        for s in test_sets:
            a = dense[1].get(s) if dense is not None else None
            b = own.get(s) if a is not None else None
            sig = None
            if b is not None:
                try:
                    sig = paired_bootstrap(a, b, n_boot=N_BOOT)
                except ValueError as e:
                    logging.warning("%s vs %s on %s: %s", row["tag"], dense[0], s, e)
            row["significance"][s] = sig


def _budget(row: dict) -> int | None:
    """The budget of a budget-sweep run (None: a run on the config's budget)."""
    return row.get("budget_epochs") if row.get("budget_sweep") else None


def _run_key(row: dict) -> tuple:
    """What pairs a run with its reference run: the seed and the budget."""
    return row.get("seed"), _budget(row)


def pooled(per_utts: list[dict | None]) -> dict | None:
    """Per-utterance errors and reference words summed over runs (seeds) of one system; None if
    any run lacks per_utt.json."""
    if not per_utts or any(p is None for p in per_utts):
        return None
    out: dict = {}
    for p in per_utts:
        for u, (e, w) in p.items():
            acc = out.setdefault(u, [0, 0])
            acc[0] += e
            acc[1] += w
    return out


def _mean(values: list) -> float | None:
    """Mean of the values present (None: none is)."""
    v = [x for x in values if x is not None]
    return round(sum(v) / len(v), 4) if v else None


def seed_groups(rows: list[dict], utts: list[dict], test_sets: list[str]) -> list[dict]:
    """One entry per method x target (the reference included): its seeds, WER mean and std over
    seeds, and the significance against the reference over all seeds.

    Test over seeds (our choice): a paired bootstrap over utterances (Bisani & Ney, 2004) of the
    word errors pooled over seeds, i.e. each utterance's errors summed over the method's runs and
    over the reference's runs of the same seeds. Utterances stay the resampling unit, so the test
    sees the variation between utterances, and the seeds' run-to-run variation enters through
    the summed errors; with one seed it is the per-run test. Seed-to-seed spread is shown
    separately as the std.
    """
    ref = reference_method(rows)
    ref_by_seed = {_run_key(r): u for r, u in zip(rows, utts) if r["method"] == ref}
    groups: dict = {}
    for row, exp in zip(rows, utts):
        if row["method"] != "dense" or ref == "dense":
            key = (row["method"], row.get("target_sparsity") or 0.0, _budget(row))
            groups.setdefault(key, []).append((row, exp))
    out = []
    for (method, target, budget), members in groups.items():
        seconds = [r["compression_seconds"] for r, _ in members if r.get("compression_seconds")]
        g = {"method": method, "target_sparsity": target, "budget_epochs": budget,
             "tags": [r["tag"] for r, _ in members], "seeds": [r.get("seed") for r, _ in members],
             "sparsity_mean": _mean([r["sparsity"] for r, _ in members]),
             "compression_seconds_mean": round(sum(seconds) / len(seconds), 1) if seconds else None,
             "trained_mean": _mean([r.get("trained_achieved") for r, _ in members]),
             "spread_mean": {part: _mean([(r.get("layer_spread") or {}).get(part) for r, _ in members])
                             for part in ("transformer", "cnn")},
             "wer_mean": {}, "wer_std": {}, "wer_ci95": {}, "significance": {}}
        for s in test_sets:
            w = [r["wer"][s] for r, _ in members if s in r["wer"]]
            if w:
                mean = sum(w) / len(w)
                std = (sum((x - mean) ** 2 for x in w) / (len(w) - 1)) ** 0.5 if len(w) > 1 else 0.0
                g["wer_mean"][s], g["wer_std"][s] = round(mean, 2), round(std, 2)
            own = pooled([u.get(s) for _, u in members])
            g["wer_ci95"][s] = bootstrap_wer_ci(own, n_boot=N_BOOT) if own else None
            sig = None
            if method != ref and method != "dense":
                paired = [(e, ref_by_seed[_run_key(r)]) for r, e in members if _run_key(r) in ref_by_seed]
                a = pooled([ru.get(s) for _, ru in paired])
                b = pooled([u.get(s) for u, _ in paired])
                if a is not None and b is not None:
                    try:
                        sig = {**paired_bootstrap(a, b, n_boot=N_BOOT), "seeds": len(paired)}
                    except ValueError as e:
                        logging.warning("%s@%s vs %s on %s: %s", method, target, ref, s, e)
            g["significance"][s] = sig
        out.append(g)
    return out


def frontier(groups: list[dict], test_set: str, alpha: float = 0.05) -> dict[str, float | None]:
    """Per pruning method: the highest target whose WER on ``test_set`` is not significantly above
    the reference's (pooled over seeds: p >= alpha, or not above at all); None if no target is."""
    out: dict = {}
    for g in groups:
        sig = g["significance"].get(test_set)
        if sig is None or g.get("budget_epochs") is not None:
            continue
        ok = sig["delta_wer"] <= 0 or sig["p_value"] >= alpha
        best = out.get(g["method"])
        out.setdefault(g["method"], None)
        if ok and (best is None or g["target_sparsity"] > best):
            out[g["method"]] = g["target_sparsity"]
    return out


def budget_frontier(groups: list[dict], test_set: str) -> dict:
    """Compression time vs quality (the budget sweep): the reference is dense_cont at the largest
    budget; per method, the least mean compression seconds over its budgets whose mean WER is
    within that reference's 95% bootstrap interval or below it (None if no budget is)."""
    sweep = [g for g in groups if g.get("budget_epochs") is not None and g["wer_mean"].get(test_set) is not None]
    refs = [g for g in sweep if g["method"] == REFERENCE and g["wer_ci95"].get(test_set)]
    if not refs:
        return {}
    ref = max(refs, key=lambda g: g["budget_epochs"])
    hi = ref["wer_ci95"][test_set][1]
    out: dict = {"reference": {"budget_epochs": ref["budget_epochs"], "wer_ci95": ref["wer_ci95"][test_set]},
                 "methods": {}}
    for g in sweep:
        m = g["method"]
        best = out["methods"].get(m)
        out["methods"].setdefault(m, None)
        if g["wer_mean"][test_set] <= hi and g.get("compression_seconds_mean") is not None and (
                best is None or g["compression_seconds_mean"] < best["compression_seconds"]):
            out["methods"][m] = {"budget_epochs": g["budget_epochs"],
                                 "compression_seconds": g["compression_seconds_mean"],
                                 "wer_mean": g["wer_mean"][test_set]}
    return out


def protocol_problems(rows: list[dict], min_share: float) -> list[tuple[list[dict], str]]:
    """The runs that broke the protocol, each as (the rows involved, what is wrong): a pruning
    run with fewer than ``min_share`` of its steps at the full target (read from its traces,
    ``steps_at_target_share``), and any run whose per-step lr (``lr_digest``) differs from
    dense_cont's of the same budget (both rows involved)."""
    bad = []
    cont = {r.get("budget_epochs"): r for r in rows
            if r["method"] == REFERENCE and r.get("lr_digest") is not None}
    for r in rows:  # one lr schedule per budget: dense_cont's (records older than the digest: unchecked)
        ref = cont.get(r.get("budget_epochs"))
        if ref is not None and r.get("lr_digest") not in (None, ref["lr_digest"]):
            bad.append(([r, ref], f"{r['tag']}: its per-step lr differs from {ref['tag']}'s (another "
                                  f"schedule or budget): compare runs of one schedule only"))
        share = r.get("steps_at_target_share")
        if share is not None and share < min_share:
            bad.append(([r], f"{r['tag']}: {share:.0%} of its steps ran at the full target "
                             f"{r.get('target_sparsity')} (reached {r.get('trained_achieved')}), "
                             f"the protocol needs at least {min_share:.0%}"))
    return bad


def check_protocol(rows: list[dict], min_share: float, md: Path) -> None:
    """Fail (SystemExit) on the protocol problems of the runs whose directories are here (this
    recipe's runs); a problem among recorded runs only (``exp/records``: checked when they ran,
    e.g. a declared trial variant) is printed, and does not fail the stage."""
    own, old = [], []
    for involved, text in protocol_problems(rows, min_share):
        (old if all(r.get("recorded") is not None for r in involved) else own).append(text)
    for text in old:
        print(f"PROTOCOL (recorded run): {text}", file=sys.stderr)
    if old:
        print(f"results: {len(old)} protocol problem(s) among recorded runs only (PROTOCOL "
              f"(recorded run) lines above): reported, not failing", file=sys.stderr)
    for text in own:
        print(f"PROTOCOL: {text}", file=sys.stderr)
    if own:
        raise SystemExit(f"results: {len(own)} protocol problem(s), each on a PROTOCOL line "
                         f"above (numbers are in {md}; --min_target_share 0 turns off the "
                         f"steps-at-target check, not the lr-schedule one)")


def _order(row: dict) -> tuple:
    return (row["method"] != "dense", row["method"] != REFERENCE, row["method"],
            row.get("target_sparsity") or 0.0, row["tag"])


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


RECORDS = "records"  # <exp_dir>/records/<tag>.json: one finished run each, kept in git


def write_record(exp_dir: Path, row: dict, utts: dict) -> None:
    """``<exp_dir>/records/<tag>.json``: what the report needs of one finished run (its row before
    the comparison, and its per-utterance errors per set), so that a later report still has the
    run when its experiment directory (models, logs: too large for git) is gone, e.g. on another
    machine or in another session. A recipe commits its records; a re-run of the tag rewrites it.
    A record whose row and errors are unchanged is left as it is (its date and commit too), so a
    re-run of stage 9 does not touch the committed records of runs it did not re-run."""
    path = exp_dir / RECORDS / f"{row['tag']}.json"
    rec = json.loads(json.dumps({"row": row, "per_utt": utts}))  # as it reads back from the file
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = None  # unreadable: rewritten below
        if isinstance(old, dict) and {k: old.get(k) for k in rec} == rec:
            return
    rec["recorded"] = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "commit": _commit()}
    write_json(path, rec)


@functools.lru_cache(maxsize=1)
def _commit() -> str | None:
    """The espnet_pinch checkout's git commit (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def read_records(exp_dir: Path, skip: set[str]) -> list[tuple[dict, dict]]:
    """(row, per-utterance errors) of every record whose run is not in ``skip`` (the tags present
    in the experiment directory, which win); SystemExit naming a record that is not valid."""
    out = []
    for f in sorted((exp_dir / RECORDS).glob("*.json")):
        try:
            rec = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            raise SystemExit(f"results: {f}: not valid JSON (line {e.lineno}, column {e.colno}: "
                             f"{e.msg}); restore it from git or remove it") from None
        if not (isinstance(rec, dict) and isinstance(rec.get("row"), dict)
                and isinstance(rec.get("per_utt"), dict)):
            raise SystemExit(f"results: {f}: a record needs the objects 'row' and 'per_utt'")
        row = rec["row"]
        for key, kind in META_FIELDS.items():
            if not isinstance(row.get(key), kind):
                raise SystemExit(f"results: {f}: row field {key!r} missing or not a {kind.__name__}")
        if row["tag"] in skip:
            continue
        row["recorded"] = rec.get("recorded") or {}
        out.append((row, rec["per_utt"]))
    return out


def collect_rows(exp_dir: str | Path, test_sets: list[str]) -> tuple[list[dict], list[dict]]:
    """(rows, seed groups): one row per model, meta.json plus parameter counts, scores, speed and
    significance, dense first, then by method and target sparsity; and ``seed_groups``. Every
    finished run present writes its record (``write_record``); the records of runs not present
    add their rows (marked by ``row["recorded"]``)."""
    exp_dir = Path(exp_dir)
    rows, utts = [], []
    metas = [(p.parent, read_meta(p)) for p in sorted(Path(exp_dir).glob("asr_*/meta.json"))]
    # Dense models have no pruning.json: their prunable weights are those a pruned model of the
    # same experiments lists (the same layer names).
    dense_keys = next((m["prunable_keys"] for _, m in metas if m.get("prunable_keys")), None)
    for exp, row in metas:
        if not Path(row["model_path"]).is_file():
            logging.warning("%s: model %s missing, row skipped", exp, row["model_path"])
            continue
        row.update(param_counts(row["model_path"], row.get("prunable_keys") or dense_keys,
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
        onnx = exp / "export" / "onnx.json"  # stage 10: ONNX Runtime's sizes, WERs and speed
        if onnx.is_file():
            row["onnx"] = {k: v for k, v in json.loads(onnx.read_text()).items() if k in ("fp32", "int8")}
        own = {s: _per_utt(exp, s) for s in test_sets}
        write_record(exp_dir, row, own)
        rows.append(row)
        utts.append(own)
    recorded = read_records(exp_dir, skip={r["tag"] for r in rows})
    if recorded:
        logging.info("results: %d run(s) from %s (their experiment directories are not here): %s",
                     len(recorded), exp_dir / RECORDS, " ".join(r["tag"] for r, _ in recorded))
    for row, own in recorded:
        rows.append(row)
        utts.append({s: own.get(s) for s in test_sets})
    significance_vs_reference(rows, utts, test_sets)
    speedups_vs_dense(rows)
    order = sorted(range(len(rows)), key=lambda i: _order(rows[i]))
    rows, utts = [rows[i] for i in order], [utts[i] for i in order]
    return rows, seed_groups(rows, utts, test_sets)


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


def _unheld(r: dict) -> str:
    """What the target constrains at a holding method's unheld architecture ("-" if none)."""
    u = r.get("unheld_achieved")
    if not u:
        return "-"
    return f"{u['all']:.3f}" if list(u) == ["all"] else ", ".join(f"{p} {v:.3f}" for p, v in u.items())


def markdown(rows: list[dict], test_sets: list[str], figures: dict[str, str] | None = None,
             select: str = "last", groups: list[dict] | None = None,
             front: dict[str, float | None] | None = None,
             source: str = "exp/results.json") -> str:
    """RESULTS.md: the table of ``rows``, the per-layer sparsity table, and links to
    ``figures`` ({title: PNG file name next to the markdown}). ``select``: the checkpoint rule
    (``best_dev``: dev chose the checkpoints, so the held-out sets' p-values come first)."""
    ref = reference_method(rows)
    p_sets = list(test_sets)
    if select == "best_dev":  # held-out sets first; dev chose the checkpoints
        p_sets = [s for s in test_sets if "dev" not in s] + [s for s in test_sets if "dev" in s]
    head = ["tag", "method", "target", "trained", "snap changed", "sparsity", "model sparsity", "params", "nonzero",
            "extra params"]
    head += [f"WER {s}" for s in test_sets]
    head += [f"p vs {ref} {s}" + (" (selection set)" if select == "best_dev" and "dev" in s else "")
             for s in p_sets]
    head += [f"CER {s}" for s in test_sets]
    slu = any(r.get("intent_acc") for r in rows)
    if slu:
        head += [f"intent acc {s}" for s in test_sets] + [f"SLU-F1 {s}" for s in test_sets]
    head += ["train s", "compress s", "MB on disk", "MACs/s", "decode RTF", "speedup meas. / ideal"]
    lines = ["# Results", "",
             f"Protocol: every pruned model is compared with **{ref}**"
             + (" (the dense model continued from the same checkpoint for the same optimizer "
                "steps, lr schedule, data and seed, with no pruner)" if ref == REFERENCE else
                " (no dense_cont was trained, so the reference is the starting dense model, which "
                "had no extra training: differences mix pruning with extra training)")
             + "; every model is decoded from "
             + ("its last epoch's checkpoint" if select == "last" else
                "its best-dev-CER checkpoint, so dev is the selection set and its p-values are "
                "not held-out evidence")
             + ". trained = what training reached before finalize (the constrained sparsity, size "
             "or MACs reduction at the last training step); a row marked **(snap)** ended more than "
             f"{TRAINED_TOLERANCE} from its target: the target was decided by finalize, not by "
             "training; (unheld x) = a method that holds its architecture between steps (NAS-CP "
             "max_switches, HJ move_band) kept one that differs from the one its parameters choose "
             "unheld, at which the constrained value is x; "
             "snap changed = share of the kept weights or units that finalize's snap changed. "
             "dense = the starting model.", "",
             f"Written by the recipe's results stage from `{source}`. WER/CER in % (SLU "
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
             "decode RTF = CPU decode seconds / audio seconds (model loading, upstream and the "
             "search of the decoding config: greedy CTC or beam search, `bin/decode.py`); speedup meas. / ideal (physically smaller models only) = dense decode "
             "seconds / this model's, in the same run, and dense MACs / this model's.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        sig = r.get("significance") or {}
        snapped = (r.get("trained_off_target") or 0.0) > TRAINED_TOLERANCE
        cells = [r["tag"] + (" †" if r.get("recorded") is not None else ""), r["method"],
                 _fmt(r.get("target_sparsity"), "{:.2f}"),
                 _fmt(r.get("trained_achieved"), "{:.3f}") + (" **(snap)**" if snapped else "")
                 + (f" (unheld {_unheld(r)})" if r.get("unheld_apart_units") else ""),
                 _fmt(r.get("snap_changed_units"), "{:.1%}"),
                 f"{r['sparsity']:.3f}", f"{r['sparsity_model']:.3f}", f"{r['params_total'] / 1e6:.2f} M",
                 f"{r['params_nonzero'] / 1e6:.2f} M", _fmt(r.get("extra_params"), "{:,}")]
        cells += [_fmt(r["wer"].get(s), "{:.2f}") for s in test_sets]
        cells += [format_p(sig.get(s)) for s in p_sets]
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
    recorded = [r for r in rows if r.get("recorded") is not None]
    if recorded:
        lines += ["", f"† from its run record (`{Path(source).parent / RECORDS}/<tag>.json`, written when the run "
                  "finished; its experiment directory was not there when this table was written): "
                  + "; ".join(f"{r['tag']} ({r['recorded'].get('date', '?')}, commit "
                              f"{r['recorded'].get('commit') or '?'}"
                              + (f", run as {r['recorded']['run_as']}" if r['recorded'].get('run_as')
                                 else "") + ")" for r in recorded)
                  + ". Times (train s, compress s, decode RTF, speedups) come from the machine "
                  "that ran it."]
    lines += ["", f"p vs {ref}: paired bootstrap test (Bisani & Ney, 2004) of the difference between "
              f"the model's WER and {ref}'s on the same utterances: "
              f"{N_BOOT} resamples of the utterances with replacement, two-sided p-value of "
              f"\"no difference\" (small p: the difference is unlikely to be chance; < {2 / N_BOOT:.3g}: "
              "every resample's difference had the same sign); `results.json` also holds the "
              "difference and its 95% interval."]
    if groups:
        lines += _seed_section(groups, p_sets, ref, front or {}, test_sets[-1])
        bf = budget_frontier(groups, test_sets[-1])
        if bf:
            lines += _budget_section(bf, test_sets[-1])
    lines += _onnx_section(rows, test_sets, Path(source).parent)
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


def _onnx_section(rows: list[dict], test_sets: list[str], exp_dir: Path = Path("exp")) -> list[str]:
    """The table of stage 10: each exported model's ONNX sizes, ONNX Runtime's WER (fp32 and
    int8) next to PyTorch's, the largest log-probability difference, and the speeds."""
    rows = [r for r in rows if r.get("onnx")]
    if not rows:
        return []
    s = test_sets[-1]
    lines = ["", "## ONNX Runtime (stage 10)", "",
             f"Every model exported by stage 10 (`{exp_dir}/asr_<tag>/export/`: `model.onnx`, `model.int8.onnx`, "
             f"`tokens.txt`, `transcribe.py`) and decoded by the shipped entry point (`transcribe.py`: ONNX "
             f"Runtime and numpy, greedy CTC, 2 threads) on {s}. max |Δ log-prob| = the largest difference of "
             "any CTC log-probability on any utterance of the set between ONNX Runtime fp32 and PyTorch's "
             "decode path; a flipped frame: ONNX Runtime's best token differs from PyTorch's "
             "(unexplained: although PyTorch's two best tokens were further apart than twice the "
             "difference, i.e. not a near-tie; 0 unless the graph is wrong); "
             "RTF = run seconds / audio seconds, model loading excluded (the PyTorch decode "
             "RTF of the main table includes loading); int8 = ONNX Runtime's dynamic quantization of the "
             "MatMul/Gemm weights (convolutions stay fp32).", "",
             f"| tag | MB fp32 | MB int8 | WER {s} PyTorch | WER {s} ORT fp32 | WER {s} ORT int8 | "
             f"max abs Δ log-prob | utts with a flipped frame (unexplained) | RTF ORT fp32 | RTF ORT int8 | int8 speedup |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        o = r["onnx"]
        f32, i8 = o.get("fp32") or {}, o.get("int8") or {}
        rtf32, rtf8 = (f32.get("rtf") or {}).get(s), (i8.get("rtf") or {}).get(s)
        lines.append("| " + " | ".join([
            r["tag"], _fmt(f32.get("bytes") and f32["bytes"] / 1e6, "{:.2f}"),
            _fmt(i8.get("bytes") and i8["bytes"] / 1e6, "{:.2f}"), _fmt(r["wer"].get(s), "{:.2f}"),
            _fmt((f32.get("wer") or {}).get(s), "{:.2f}"), _fmt((i8.get("wer") or {}).get(s), "{:.2f}"),
            _fmt((f32.get("max_abs_diff_vs_torch") or {}).get(s), "{:.1e}"),
            f"{_fmt((f32.get('utts_argmax_differ') or {}).get(s))} "
            f"({_fmt((f32.get('utts_differ_unexplained') or {}).get(s))})", _fmt(rtf32, "{:.4f}"),
            _fmt(rtf8, "{:.4f}"), _fmt(rtf32 / rtf8 if rtf32 and rtf8 else None, "{:.2f}x")]) + " |")
    return lines


def _seed_section(groups: list[dict], p_sets: list[str], ref: str, front: dict, front_set: str) -> list[str]:
    head = ["method", "target", "budget (epochs)", "seeds", "trained (mean)", "sparsity (mean)",
            "spread T / CNN (mean)", "compress s (mean)"]
    head += [f"WER {s} mean ± std" for s in p_sets] + [f"p vs {ref} {s} (pooled)" for s in p_sets]
    lines = ["", "## Over seeds", "",
             f"Each method x target over its seeds: WER mean ± std (sample std over seeds), and "
             f"the paired bootstrap against {ref} of the word errors pooled over the same seeds "
             "(`seed_groups` in `espnet_pinch/scoring/results.py` says why); trained = what "
             "training reached before finalize; spread = max - min of the per-layer sparsities "
             "over the Transformer matrices / over the CNN (0: uniform).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in groups:
        cells = [g["method"], f"{g['target_sparsity']:.2f}",
                 "config" if g.get("budget_epochs") is None else str(g["budget_epochs"]),
                 " ".join(str(x) for x in g["seeds"]), _fmt(g.get("trained_mean"), "{:.3f}"),
                 f"{g['sparsity_mean']:.3f}",
                 " / ".join(_fmt((g.get("spread_mean") or {}).get(p), "{:.3f}") for p in ("transformer", "cnn")),
                 _fmt(g.get("compression_seconds_mean"), "{:.0f}")]
        cells += ["-" if g["wer_mean"].get(s) is None else f"{g['wer_mean'][s]:.2f} ± {g['wer_std'][s]:.2f}"
                  for s in p_sets]
        cells += [format_p(g["significance"].get(s)) for s in p_sets]
        lines.append("| " + " | ".join(cells) + " |")
    if front:
        lines += ["", "## Lossless-sparsity frontier", "",
                  f"Per method, the highest target whose {front_set} WER (pooled over seeds) is not "
                  f"significantly above {ref}'s (p >= 0.05, or not above at all):", ""]
        for m, t in front.items():
            lines.append(f"- {m}: " + ("none (every target is significantly above it)" if t is None
                                       else f"{t:.2f}"))
    return lines


def _budget_section(bf: dict, test_set: str) -> list[str]:
    ref = bf["reference"]
    lo, hi = ref["wer_ci95"]
    lines = ["", "## Compression time vs quality", "",
             f"Reference: dense_cont at the largest budget ({ref['budget_epochs']} epochs), {test_set} "
             f"WER 95% bootstrap interval [{lo:.2f}, {hi:.2f}]. Per method, the least compression "
             f"time (mean over seeds) whose mean {test_set} WER is within that interval or below it:", ""]
    for m, v in bf["methods"].items():
        none = "none (no budget's mean WER is in the interval or below it)"
        lines.append(f"- {m}: " + (none if v is None else
                                   f"{v['compression_seconds']:.0f} s ({v['budget_epochs']} epochs, "
                                   f"WER {v['wer_mean']:.2f})"))
    return lines


def cmd_report(args) -> None:
    sets = args.test_sets.split()
    rows, groups = collect_rows(args.exp_dir, sets)
    if not rows:
        raise SystemExit(f"results: no trained models (asr_*/meta.json) under {args.exp_dir}")
    front = frontier(groups, sets[-1])
    write_json(args.json, rows)
    summary = Path(args.json).with_name(Path(args.json).stem + "_summary.json")
    write_json(summary, {"reference": reference_method(rows), "select": args.select,
                         "frontier_set": sets[-1], "frontier": front,
                         "budget_frontier": budget_frontier(groups, sets[-1]), "groups": groups})
    md = Path(args.markdown)
    figures = {}
    if plot_wer_vs_sparsity(groups, sets[-1], md.parent / "wer_vs_sparsity.png", front):
        figures[f"WER on {sets[-1]} vs sparsity"] = "wer_vs_sparsity.png"
    if plot_wer_vs_time(groups, sets[-1], md.parent / "wer_vs_compression_time.png"):
        figures[f"WER on {sets[-1]} vs compression time"] = "wer_vs_compression_time.png"
    if plot_per_layer(rows, md.parent / "per_layer_sparsity.png"):
        figures["Per-layer sparsity"] = "per_layer_sparsity.png"
    probes = [(r["tag"], read_probes(Path(args.exp_dir) / f"asr_{r['tag']}" / PROBES)) for r in rows
              if (Path(args.exp_dir) / f"asr_{r['tag']}" / PROBES).is_file()]
    if plot_layer_trajectories(probes, md.parent / "per_layer_trajectories.png"):
        figures["Per-layer sparsity during training"] = "per_layer_trajectories.png"
    with atomic_file(md) as tmp:
        tmp.write_text(markdown(rows, sets, figures, select=args.select, groups=groups, front=front,
                                source=str(args.json)))
    logging.info("results: %d rows -> %s, %s, %s (figures: %s)", len(rows), args.json, summary, md,
                 ", ".join(figures.values()) or "none")
    check_protocol(rows, args.min_target_share, md)


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
    m.add_argument("--seed", type=int, default=None, help="training seed of the run")
    m.add_argument("--budget_epochs", type=int, default=None, help="epochs of the whole compression")
    m.add_argument("--budget_sweep", action="store_true",
                   help="a run of the budget sweep (compression time vs quality)")
    m.add_argument("--trace", nargs="+", action="extend",
                   help="trace.tsv of each training run (train/schedule.py): steps, what training reached")
    r = sub.add_parser("rtf", help="write <decode_dir>/rtf.json after decoding")
    r.add_argument("--decode_dir", required=True)
    r.add_argument("--timing", required=True, help="timing.json written by bin.asr_inference")
    r.add_argument("--num_samples", required=True, help="utt2num_samples of the decoded set")
    rep = sub.add_parser("report", help="RESULTS.md and results.json over all models")
    rep.add_argument("--exp_dir", required=True)
    rep.add_argument("--test_sets", default="dev test")
    rep.add_argument("--markdown", required=True)
    rep.add_argument("--json", required=True)
    rep.add_argument("--min_target_share", type=float, default=0.4,
                     help="fail unless every pruning run trained at least this share of its steps "
                          "at the full target (after writing the report)")
    rep.add_argument("--select", choices=("last", "best_dev"), default="last",
                     help="the checkpoint rule the recipe decoded with (noted in RESULTS.md)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    {"meta": cmd_meta, "rtf": cmd_rtf, "report": cmd_report}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

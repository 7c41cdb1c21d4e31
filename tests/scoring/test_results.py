import json
import re

import numpy as np
import pytest
import torch

from espnet_pinch.scoring.results import (
    espnet_training_seconds, main, markdown, param_counts, trace_summary,
)

FC1 = "frontend.upstream.upstream.model.encoder.layers.0.fc1.weight"
LOG_LINE = ("[vm] 2026 (trainer:394) INFO: {e}epoch results: [train] iter_time=0.03, loss=1.0, "
            "time={t}, total_count=140, [valid] loss_ctc=70.5, cer_ctc=1.000, time={v}, total_count=4")


def test_training_seconds_from_espnet_log_with_resume(tmp_path):
    line = LOG_LINE
    log = tmp_path / "train.log"
    log.write_text("\n".join([
        line.format(e=1, t="4 minutes and 20.5 seconds", v="1.5 seconds"),
        "[vm] 2epoch:train:1-50batch: ...",  # crashed mid-epoch 2, then resumed:
        line.format(e=2, t="1 hour, 2 minutes and 3 seconds", v="2 seconds"),
        line.format(e=2, t="10 seconds", v="1 seconds"),  # a re-run epoch counts once (last)
    ]))
    assert espnet_training_seconds(log) == pytest.approx(260.5 + 1.5 + 11)


def test_no_completed_epoch_is_an_error(tmp_path):
    (tmp_path / "train.log").write_text("nothing here\n")
    with pytest.raises(ValueError, match="no completed epoch"):
        espnet_training_seconds(tmp_path / "train.log")


def _rows(reference: str = "dense_cont") -> list[dict]:
    base = {"params_total": 2_200_000, "cer": {"test": 9.5, "dev": 12.0}, "train_seconds": 1000,
            "bytes_on_disk": 8_800_000, "macs_per_second": 12_345_678, "decode_rtf": 0.05}
    rows = [{**base, "tag": "dense", "method": "dense", "target_sparsity": 0.0, "sparsity": 0.0,
             "sparsity_model": 0.0, "params_nonzero": 2_200_000, "wer": {"test": 20.0, "dev": 30.0},
             "compression_seconds": None, "significance": {"test": None, "dev": None}},
            {**base, "tag": "spg_0.5", "method": "spg", "target_sparsity": 0.5, "sparsity": 0.5,
             "sparsity_model": 0.45, "params_nonzero": 1_210_000, "wer": {"test": 25.0, "dev": 31.0},
             "compression_seconds": 1010, "bytes_on_disk": 5_000_000, "macs_per_second": None,
             "extra_params": 30, "trained_achieved": 0.41, "trained_off_target": 0.09,
             "snap_changed_units": 0.153,
             "significance": {"test": {"delta_wer": 5.0, "p_value": 0.0123, "ci95": [1, 9], "n_boot": 1000},
                              "dev": {"delta_wer": 9.0, "p_value": 0.0, "ci95": [6, 12], "n_boot": 1000}}}]
    if reference == "dense_cont":
        rows.insert(1, {**rows[0], "tag": "dense_cont", "method": "dense_cont",
                        "wer": {"test": 21.0, "dev": 29.0}})
    return rows


def test_markdown_table_has_a_row_per_model():
    md = markdown(_rows(), ["dev", "test"])
    assert ("| tag | method | target | trained | snap changed | sparsity | model sparsity | params | "
            "nonzero | extra params | WER dev | WER test | p vs dense_cont dev | p vs dense_cont test | "
            "CER dev | CER test | train s | compress s | MB on disk | MACs/s | decode RTF |") in md
    assert ("| dense_cont | dense_cont | 0.00 | - | - | 0.000 | 0.000 | 2.20 M | 2.20 M | - | 29.00 "
            "| 21.00 | - | - | 12.00 | 9.50 | 1000 | - | 8.80 | 12.3 M | 0.050 |") in md
    # training ended 0.09 from its target: flagged, with the reached value and the snap's share
    assert ("| spg_0.5 | spg | 0.50 | 0.410 **(snap)** | 15.3% | 0.500 | 0.450 | 2.20 M | 1.21 M | 30 "
            "| 31.00 | 25.00 | < 0.002 | 0.012 | 12.00 | 9.50 | 1000 | 1010 | 5.00 | - | 0.050 |") in md
    assert "compared with **dense_cont**" in md and "its last epoch's checkpoint" in md
    assert "paired bootstrap" in md and "1000 resamples" in md and "two-sided" in md


def test_markdown_names_the_results_file_and_records_it_was_written_from():
    rows = _rows()
    rows[1]["recorded"] = {"date": "d", "commit": "c"}
    md = markdown(rows, ["dev", "test"], source="exp_clip/results.json")
    assert "from `exp_clip/results.json`" in md
    assert "run record (`exp_clip/records/<tag>.json`" in md
    rows[1]["onnx"] = {"fp32": {"bytes": 4e6}}
    md = markdown(rows, ["dev", "test"], source="exp_clip/results.json")
    assert "## ONNX Runtime (stage 10)" in md and "`exp_clip/asr_<tag>/export/`" in md
    assert "`exp/" not in md


def test_markdown_with_best_dev_selection_reports_the_held_out_set_first():
    md = markdown(_rows(), ["dev", "test"], select="best_dev")
    assert "| p vs dense_cont test | p vs dense_cont dev (selection set) |" in md
    assert "| 0.012 | < 0.002 |" in md and "dev is the selection set" in md


def test_markdown_without_dense_cont_says_the_reference_had_no_extra_training():
    md = markdown(_rows(reference="dense"), ["test"])
    assert "| p vs dense test |" in md and "no dense_cont was trained" in md


def _write_trace(path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["step\tlr\tachieved\ttarget"] + ["\t".join(str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")


def test_trace_summary_counts_steps_at_the_full_target(tmp_path):
    # 10 search steps: the target ramps over 4, training reaches it at step 6; 5 fine-tuning steps
    ramp = [0.125, 0.25, 0.375, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    reached = [0.0, 0.1, 0.2, 0.3, 0.4, 0.49, 0.5, 0.51, 0.5, 0.495]
    _write_trace(tmp_path / "s.tsv", [(k + 1, 1e-3, a, t) for k, (a, t) in enumerate(zip(reached, ramp))])
    _write_trace(tmp_path / "f.tsv", [(k, 1e-4, "", "") for k in range(11, 16)])
    out = trace_summary([str(tmp_path / "s.tsv"), str(tmp_path / "f.tsv")], 0.5)
    assert out["steps"] == 15 and out["trained_achieved"] == 0.495
    assert out["steps_at_target_share"] == pytest.approx((5 + 5) / 15, abs=1e-3)  # steps 6-10 and fine-tuning
    # ended 0.1 short: no step at the target, fine-tuning included
    _write_trace(tmp_path / "s.tsv", [(k + 1, 1e-3, 0.4, 0.5) for k in range(10)])
    out = trace_summary([str(tmp_path / "s.tsv"), str(tmp_path / "f.tsv")], 0.5)
    assert out["trained_off_target"] == pytest.approx(0.1) and out["steps_at_target_share"] == 0.0
    # the lr digest follows the per-step lr only: the same schedule with other sparsities agrees
    same = trace_summary([str(tmp_path / "s.tsv"), str(tmp_path / "f.tsv")], None)["lr_digest"]
    assert same == out["lr_digest"]
    _write_trace(tmp_path / "f.tsv", [(k, 2e-4, "", "") for k in range(11, 16)])
    assert trace_summary([str(tmp_path / "s.tsv"), str(tmp_path / "f.tsv")], 0.5)["lr_digest"] != same


def _meta_of_a_pruning_run(exp, method: str, target: float, reached: float, pruning: dict) -> None:
    """results meta on a 4-step run that reached ``reached`` at every step, with ``pruning``
    among its pruning.json entries."""
    _write_log(exp / "train.log", 40)
    _write_trace(exp / "trace.tsv", [(k + 1, 1e-3, reached, target) for k in range(4)])
    (exp / "pruning.json").write_text(json.dumps({"per_layer_sparsity": {}, "prunable_keys": [FC1], **pruning}))
    assert main(["meta", "--exp", str(exp), "--method", method, "--target_sparsity", str(target),
                 "--train_log", str(exp / "train.log"), "--model", "m.pth",
                 "--pruning", str(exp / "pruning.json"), "--trace", str(exp / "trace.tsv")]) == 0


def test_meta_warns_when_finalize_decided_the_target(tmp_path, capsys):
    exp = tmp_path / "asr_hj_size_0.5"
    _meta_of_a_pruning_run(exp, "hj", 0.5, 0.3, {"sparsity_before_snap": 0.3, "snap_changed_units": 0.25})
    assert "target decided by finalize, not by training" in capsys.readouterr().out
    meta = json.loads((exp / "meta.json").read_text())
    assert meta["trained_achieved"] == 0.3 and meta["sparsity_before_snap"] == 0.3
    assert meta["snap_changed_units"] == 0.25 and meta["steps"] == 4


def test_meta_and_table_show_the_unheld_architecture_of_a_holding_method(tmp_path, capsys):
    exp = tmp_path / "asr_nascp_0.65"
    _meta_of_a_pruning_run(exp, "nascp", 0.65, 0.648, {
        "sparsity_before_snap": 0.648, "snap_changed_units": 0.0,
        "unheld_achieved": {"all": 0.803}, "unheld_apart_units": 0.423})
    out = capsys.readouterr().out
    assert "NOTE nascp_0.65" in out and "42.3% of its units; unheld: 0.803" in out
    assert "target decided by finalize" not in out  # the held architecture is on target
    meta = json.loads((exp / "meta.json").read_text())
    assert meta["unheld_achieved"] == {"all": 0.803} and meta["unheld_apart_units"] == 0.423
    rows = _rows()
    rows[-1].update(unheld_achieved={"cnn": 0.5, "transformer": 0.7}, unheld_apart_units=0.1)
    assert "| 0.410 **(snap)** (unheld cnn 0.500, transformer 0.700) | 15.3% |" in markdown(rows, ["test"])
    rows[-1]["unheld_apart_units"] = 0.0  # held = unheld: nothing to show
    assert "| 0.410 **(snap)** | 15.3% |" in markdown(rows, ["test"])


def _save_model(path, fc1_rows: int = 4, zero_rows: int = 0) -> None:
    """A tiny model: one prunable weight (fc1, ``fc1_rows`` x 5, the first ``zero_rows`` zero),
    its bias, and a CTC head (12 parameters) that is not prunable."""
    w = torch.ones(fc1_rows, 5)
    w[:zero_rows] = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({FC1: w, FC1.replace("weight", "bias"): torch.ones(fc1_rows),
                "ctc.ctc_lo.weight": torch.ones(3, 4)}, path)


def test_param_counts_of_a_compacted_model(tmp_path):
    # structured pruning removed half of fc1's rows (and their biases): 4x5 -> 2x5
    _save_model(tmp_path / "m.pth", fc1_rows=2)
    dense_total = 20 + 4 + 12
    c = param_counts(tmp_path / "m.pth", [FC1], prunable_dense=20, total_dense=dense_total)
    assert c["params_prunable"] == 10 and c["params_total"] == 10 + 2 + 12
    assert c["sparsity"] == pytest.approx(0.5)
    assert c["sparsity_model"] == pytest.approx(1 - 24 / dense_total)
    # without the dense counts the compacted model looks dense
    assert param_counts(tmp_path / "m.pth", [FC1])["sparsity"] == 0.0


def test_param_counts_of_a_compacted_model_with_zeros(tmp_path):
    _save_model(tmp_path / "m.pth", fc1_rows=2, zero_rows=1)  # removed rows and exact zeros both count
    c = param_counts(tmp_path / "m.pth", [FC1, "gone.layer.weight"], prunable_dense=20, total_dense=36)
    assert c["sparsity"] == pytest.approx(1 - 5 / 20)


def _write_log(path, seconds: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(LOG_LINE.format(e=1, t=f"{seconds} seconds", v="0 seconds") + "\n")


def test_meta_sums_train_logs_and_keeps_macs_and_dense_counts(tmp_path):
    exp = tmp_path / "asr_nascp_0.5"
    _write_log(exp / "search/train.log", 100)
    _write_log(exp / "train.log", 50)
    (exp / "macs.json").write_text(json.dumps({"macs_per_second": 1.5e9, "seconds": 1.0}))
    arch = {"encoder.layers.0.fc1": 2}
    (exp / "pruning.json").write_text(json.dumps({
        "per_layer_sparsity": {"encoder.layers.0.fc1": 0.5, "encoder.layers.1.fc2": 0.75,
                               "feature_extractor.conv_layers.0.0": 0.25, "post_extract_proj": 0.9},
        "prunable_keys": [FC1], "extra_params": 0, "bytes_dense": 1000, "params_prunable_dense": 20,
        "params_total_dense": 36, "arch": arch, "finetune": {"epochs": 3}}))
    assert main(["meta", "--exp", str(exp), "--method", "nascp", "--target_sparsity", "0.5",
                 "--train_log", str(exp / "search/train.log"), "--train_log", str(exp / "train.log"),
                 "--extra_seconds", "5", "--model", "final/model.pth", "--macs", str(exp / "macs.json"),
                 "--pruning", str(exp / "pruning.json")]) == 0
    meta = json.loads((exp / "meta.json").read_text())
    assert meta["train_seconds"] == 150 and meta["compression_seconds"] == 155
    assert meta["macs_per_second"] == 1.5e9
    assert (meta["params_prunable_dense"], meta["params_total_dense"], meta["arch"]) == (20, 36, arch)
    assert "finetune" not in meta
    assert meta["layer_spread"] == {"transformer": 0.25, "cnn": 0.0}  # post_extract_proj: neither
    # The parts are what finalize wrote (the family adapter's), when pruning.json has them.
    p = json.loads((exp / "pruning.json").read_text())
    p["layer_parts"] = {"encoder.layers.0.fc1": "cnn", "encoder.layers.1.fc2": "transformer",
                        "feature_extractor.conv_layers.0.0": "cnn", "post_extract_proj": None}
    (exp / "pruning.json").write_text(json.dumps(p))
    assert main(["meta", "--exp", str(exp), "--method", "nascp", "--target_sparsity", "0.5",
                 "--train_log", str(exp / "train.log"), "--model", "final/model.pth",
                 "--pruning", str(exp / "pruning.json")]) == 0
    meta = json.loads((exp / "meta.json").read_text())
    assert meta["layer_spread"] == {"transformer": 0.0, "cnn": 0.25} and "layer_parts" not in meta


def test_meta_without_optional_inputs(tmp_path):
    exp = tmp_path / "asr_spg_0.5"
    _write_log(exp / "train.log", 40)
    (exp / "pruning.json").write_text(json.dumps({
        "per_layer_sparsity": {"encoder.layers.0.fc1": 0.5}, "prunable_keys": [FC1],
        "extra_params": 20, "bytes_dense": 1000}))
    # several logs after one flag work too
    assert main(["meta", "--exp", str(exp), "--method", "spg", "--train_log", str(exp / "train.log"),
                 str(exp / "train.log"), "--model", "m.pth", "--pruning", str(exp / "pruning.json")]) == 0
    meta = json.loads((exp / "meta.json").read_text())
    assert meta["train_seconds"] == 80 and meta["compression_seconds"] == 80
    assert not {"macs_per_second", "params_prunable_dense", "params_total_dense", "arch"} & set(meta)


def _fake_exp(exp_dir, tag, method, target, errors, words, fc1_rows=4, zero_rows=0, macs=None,
              per_utt=True, **meta):
    """exp_dir/asr_<tag>/ as stages 6-8 leave it, with a decode of the "test" set."""
    exp = exp_dir / f"asr_{tag}"
    _save_model(exp / "model.pth", fc1_rows, zero_rows)
    meta.update({"tag": tag, "method": method, "target_sparsity": target, "train_seconds": 10.0,
                 "model_path": str(exp / "model.pth")})
    if macs is not None:
        meta["macs_per_second"] = macs
    if method != "dense":
        meta.update({"compression_seconds": 12.0, "prunable_keys": [FC1],
                     "per_layer_sparsity": {"encoder.layers.0.fc1": target}})
    (exp / "meta.json").write_text(json.dumps(meta))
    dec = exp / "decode_test"
    dec.mkdir()
    wer = 100.0 * errors.sum() / words.sum()
    (dec / "score.json").write_text(json.dumps({"wer": wer, "cer": wer / 2}))
    (dec / "rtf.json").write_text(json.dumps({"decode_seconds": 1.0, "audio_seconds": 20.0}))
    if per_utt:
        (dec / "per_utt.json").write_text(json.dumps(
            {f"u{i}": [int(e), int(w)] for i, (e, w) in enumerate(zip(errors, words))}))


def test_report_compares_every_method_with_dense_cont(tmp_path):
    rng = np.random.default_rng(0)
    words = rng.integers(1, 8, 130)
    dense_err = rng.binomial(words, 0.2)  # dense_cont's errors; the starting model makes 3 more
    exp_dir = tmp_path / "exp"
    _fake_exp(exp_dir, "dense_cont", "dense_cont", 0.0, dense_err, words, macs=12.3e6)
    _fake_exp(exp_dir, "ump_0.5", "ump", 0.5, dense_err, words, zero_rows=2, macs=8e6)  # same errors
    _fake_exp(exp_dir, "spg_0.5", "spg", 0.5, dense_err + 2, words, zero_rows=2, macs=8e6)  # worse
    _fake_exp(exp_dir, "spg_0.25", "spg", 0.25, dense_err + 1, words, zero_rows=1, macs=9e6)
    _fake_exp(exp_dir, "dense", "dense", 0.0, dense_err + 3, words, macs=12.3e6)
    _fake_exp(exp_dir, "nascp_0.5", "nascp", 0.5, dense_err, words, fc1_rows=2, per_utt=False,
              params_prunable_dense=20, params_total_dense=36)
    (exp_dir / "asr_spg_0.5" / "layers.jsonl").write_text("".join(  # SPG's per-layer probes
        json.dumps({"step": k, "layers": {"encoder.layers.0.fc1": {"sparsity": k / 20}}}) + "\n"
        for k in (10, 20)))
    md, js = tmp_path / "RESULTS.md", exp_dir / "results.json"
    assert main(["report", "--exp_dir", str(exp_dir), "--test_sets", "test",
                 "--markdown", str(md), "--json", str(js)]) == 0

    rows = {r["tag"]: r for r in json.loads(js.read_text())}
    assert list(rows) == ["dense", "dense_cont", "nascp_0.5", "spg_0.25", "spg_0.5", "ump_0.5"]
    assert rows["dense"]["macs_per_second"] == 12.3e6 and rows["nascp_0.5"]["macs_per_second"] is None
    assert rows["dense"]["significance"] == {"test": None}  # the starting point, not compared
    assert rows["dense_cont"]["significance"] == {"test": None}
    assert rows["ump_0.5"]["reference"] == "dense_cont"
    assert rows["nascp_0.5"]["significance"] == {"test": None}  # no per_utt.json: skipped
    assert rows["ump_0.5"]["significance"]["test"]["p_value"] == 1.0
    worse = rows["spg_0.5"]["significance"]["test"]
    assert worse["p_value"] < 0.01 and worse["ci95"][0] > 0 and worse["n_boot"] == 1000
    assert worse["delta_wer"] == pytest.approx(100 * 2 * 130 / words.sum())
    assert rows["nascp_0.5"]["sparsity"] == pytest.approx(0.5)  # compacted: against the dense count
    assert rows["spg_0.5"]["sparsity"] == pytest.approx(0.5)

    text = md.read_text()
    assert "| p vs dense_cont test |" in text and "| MACs/s |" in text
    assert "| dense | dense | 0.00 | - | - | 0.000 | 0.000 |" in text and "| 12.3 M |" in text
    dense_line = next(l for l in text.splitlines() if l.startswith("| dense_cont |"))
    assert dense_line.split(" | ")[11] == "-"  # p vs dense_cont of dense_cont itself
    ump_line = next(l for l in text.splitlines() if l.startswith("| ump_0.5 |"))
    assert ump_line.split(" | ")[11] == "1.000"  # the same errors as dense_cont
    for png in ("wer_vs_sparsity.png", "per_layer_sparsity.png", "per_layer_trajectories.png"):
        assert (tmp_path / png).stat().st_size > 0
        assert f"]({png})" in text


def test_speedups_only_for_compact_models():
    from espnet_pinch.scoring.results import speedups_vs_dense

    rows = [{"method": "dense", "decode_seconds": 30.0, "macs_per_second": 100.0},
            {"method": "spg", "decode_seconds": 29.0, "macs_per_second": 50.0},
            {"method": "hj_size", "arch": {"ffn_dims": [1]}, "decode_seconds": 20.0,
             "macs_per_second": 40.0}]
    speedups_vs_dense(rows)
    assert rows[1]["speedup_measured"] is None and rows[1]["speedup_ideal"] is None  # sparse: dense kernels
    assert rows[2]["speedup_measured"] == 1.5 and rows[2]["speedup_ideal"] == 2.5


def test_seeds_are_summarised_and_tested_pooled_against_the_same_seeds(tmp_path):
    rng = np.random.default_rng(1)
    words = rng.integers(1, 8, 130)
    exp_dir = tmp_path / "exp"
    base = rng.binomial(words, 0.2)
    _fake_exp(exp_dir, "dense", "dense", 0.0, base + 1, words)
    for seed in (0, 1):
        cont = rng.binomial(words, 0.2)
        _fake_exp(exp_dir, f"dense_cont_s{seed}", "dense_cont", 0.0, cont, words, seed=seed)
        # spg at 0.5: dense_cont's errors (no loss); at 0.8: one more error on every 4th utterance
        _fake_exp(exp_dir, f"spg_0.5_s{seed}", "spg", 0.5, cont, words, zero_rows=2, seed=seed,
                  trained_achieved=0.48 + 0.01 * seed,
                  layer_spread={"transformer": 0.1 + 0.1 * seed, "cnn": None})
        worse = cont + (np.arange(130) % 4 == 0)
        _fake_exp(exp_dir, f"spg_0.8_s{seed}", "spg", 0.8, worse, words, zero_rows=3, seed=seed)
    md, js = tmp_path / "RESULTS.md", exp_dir / "results.json"
    assert main(["report", "--exp_dir", str(exp_dir), "--test_sets", "test",
                 "--markdown", str(md), "--json", str(js)]) == 0
    rows = {r["tag"]: r for r in json.loads(js.read_text())}
    assert rows["spg_0.8_s1"]["reference"] == "dense_cont_s1"  # each run against its own seed
    summary = json.loads((exp_dir / "results_summary.json").read_text())
    groups = {(g["method"], g["target_sparsity"]): g for g in summary["groups"]}
    g = groups[("spg", 0.8)]
    assert g["seeds"] == [0, 1] and g["significance"]["test"]["seeds"] == 2
    # pooled over both seeds: 2 x 33 extra errors over 2 x the words
    assert g["significance"]["test"]["delta_wer"] == pytest.approx(100 * 2 * 33 / (2 * words.sum()))
    assert g["significance"]["test"]["p_value"] < 0.01
    assert groups[("spg", 0.5)]["significance"]["test"]["p_value"] == 1.0
    wers = [rows[f"dense_cont_s{s}"]["wer"]["test"] for s in (0, 1)]
    assert groups[("dense_cont", 0.0)]["wer_std"]["test"] == pytest.approx(np.std(wers, ddof=1), abs=0.01)
    assert summary["frontier"] == {"spg": 0.5}  # 0.8 is significantly worse
    text = md.read_text()
    assert "## Over seeds" in text and "| spg | 0.80 | config | 0 1 | - |" in text
    # what training reached and the per-layer spread, averaged over the seeds
    assert groups[("spg", 0.5)]["trained_mean"] == pytest.approx(0.485)
    assert groups[("spg", 0.5)]["spread_mean"] == {"transformer": pytest.approx(0.15), "cnn": None}
    assert "| spg | 0.50 | config | 0 1 | 0.485 | 0.500 | 0.150 / - |" in text
    assert "- spg: 0.50" in text


def _spg_off_target(tmp_path, seed):
    """dense_cont_s0 and spg_0.5_s0 (10 % of its steps at the target) on one lr schedule, and
    the report's arguments."""
    rng = np.random.default_rng(seed)
    words = rng.integers(1, 8, 30)
    err = rng.binomial(words, 0.2)
    exp_dir = tmp_path / "exp"
    _fake_exp(exp_dir, "dense_cont_s0", "dense_cont", 0.0, err, words, seed=0, lr_digest="a1")
    _fake_exp(exp_dir, "spg_0.5_s0", "spg", 0.5, err, words, seed=0, steps_at_target_share=0.1,
              trained_achieved=0.45, lr_digest="a1")
    args = ["report", "--exp_dir", str(exp_dir), "--test_sets", "test",
            "--markdown", str(tmp_path / "R.md"), "--json", str(exp_dir / "results.json")]
    return exp_dir, args, err, words


def test_report_fails_the_protocol_check_after_writing_the_table(tmp_path, capsys):
    exp_dir, args, err, words = _spg_off_target(tmp_path, 2)
    with pytest.raises(SystemExit, match="1 protocol problem"):
        main(args)
    assert "spg_0.5_s0: 10% of its steps" in capsys.readouterr().err
    assert (tmp_path / "R.md").is_file()  # the numbers are kept
    assert main(args + ["--min_target_share", "0.1"]) == 0
    # a run on another lr schedule than dense_cont's of its budget fails whatever the share
    _fake_exp(exp_dir, "ump_0.5_s0", "ump", 0.5, err, words, seed=0, lr_digest="b2")
    with pytest.raises(SystemExit, match="1 protocol problem"):
        main(args + ["--min_target_share", "0"])
    assert "ump_0.5_s0: its per-step lr differs from dense_cont_s0's" in capsys.readouterr().err


def test_protocol_problems_of_recorded_runs_only_are_reported_not_failing(tmp_path, capsys):
    """A flagged run kept only as a record (exp/records: a trial checked when it ran) is printed
    but does not fail the stage; the recipe's own runs (directories here) still fail it."""
    import shutil

    exp_dir, args, err, words = _spg_off_target(tmp_path, 5)
    with pytest.raises(SystemExit, match="1 protocol problem"):
        main(args)  # its own run: fails (and records it)
    capsys.readouterr()
    shutil.rmtree(exp_dir / "asr_spg_0.5_s0")
    assert main(args) == 0  # now only its record: reported
    err_text = capsys.readouterr().err
    assert "PROTOCOL (recorded run): spg_0.5_s0: 10% of its steps" in err_text
    assert "1 protocol problem(s) among recorded runs only" in err_text
    # a fresh dense_cont on another schedule than a recorded run's fails: it is this recipe's run
    shutil.rmtree(exp_dir / "asr_dense_cont_s0")
    _fake_exp(exp_dir, "dense_cont_s0", "dense_cont", 0.0, err, words, seed=0, lr_digest="b2")
    with pytest.raises(SystemExit, match="1 protocol problem"):
        main(args + ["--min_target_share", "0"])
    assert "PROTOCOL: spg_0.5_s0: its per-step lr differs" in capsys.readouterr().err


def test_budget_sweep_reports_the_least_time_within_dense_conts_interval(tmp_path):
    rng = np.random.default_rng(3)
    words = rng.integers(1, 8, 130)
    exp_dir = tmp_path / "exp"
    base = rng.binomial(words, 0.2)
    for b, extra_every in ((1, 2), (2, 20), (4, 1000)):  # more budget, fewer extra errors
        more = base + (np.arange(130) % extra_every == 0)
        kw = dict(seed=0, budget_epochs=b, budget_sweep=True)
        _fake_exp(exp_dir, f"dense_cont_b{b}_s0", "dense_cont", 0.0, base, words, **kw,
                  compression_seconds=100.0 * b)
        _fake_exp(exp_dir, f"spg_0.65_b{b}_s0", "spg", 0.65, more, words, **kw)
    md, js = tmp_path / "RESULTS.md", exp_dir / "results.json"
    assert main(["report", "--exp_dir", str(exp_dir), "--test_sets", "test",
                 "--markdown", str(md), "--json", str(js)]) == 0
    summary = json.loads((exp_dir / "results_summary.json").read_text())
    bf = summary["budget_frontier"]
    assert bf["reference"]["budget_epochs"] == 4
    lo, hi = bf["reference"]["wer_ci95"]
    wer = {g["budget_epochs"]: g["wer_mean"]["test"] for g in summary["groups"] if g["method"] == "spg"}
    assert wer[1] > hi >= wer[2]  # one extra error every 2nd utterance is outside, every 20th inside
    assert bf["methods"]["spg"]["budget_epochs"] == 2
    assert summary["frontier"] == {}  # budget runs do not enter the sparsity frontier
    rows = {r["tag"]: r for r in json.loads(js.read_text())}
    assert rows["spg_0.65_b2_s0"]["reference"] == "dense_cont_b2_s0"  # same budget, same seed
    text = md.read_text()
    assert "## Compression time vs quality" in text and "(wer_vs_compression_time.png)" in text


@pytest.mark.parametrize("text, want", [
    ('{"tag": "spg_0.5",\n "method": spg}', "not valid JSON (line 2, column 12"),
    ('[1, 2]', "a JSON object expected"),
    ('{"tag": "spg_0.5", "method": "spg"}', "field 'model_path' missing"),
])
def test_garbage_meta_json_names_the_file_and_the_line_or_field(tmp_path, text, want):
    meta = tmp_path / "asr_spg_0.5" / "meta.json"
    meta.parent.mkdir()
    meta.write_text(text)
    with pytest.raises(SystemExit, match=f"results: {meta}: {re.escape(want)}"):
        main(["report", "--exp_dir", str(tmp_path), "--markdown", str(tmp_path / "R.md"),
              "--json", str(tmp_path / "r.json")])


def test_runs_whose_directories_are_gone_come_back_from_their_records(tmp_path):
    import shutil

    rng = np.random.default_rng(4)
    words = rng.integers(1, 8, 130)
    exp_dir = tmp_path / "exp"
    for seed in (0, 1):
        cont = rng.binomial(words, 0.2)
        _fake_exp(exp_dir, f"dense_cont_s{seed}", "dense_cont", 0.0, cont, words, seed=seed)
        worse = cont + (np.arange(130) % 4 == 0)
        _fake_exp(exp_dir, f"spg_0.8_s{seed}", "spg", 0.8, worse, words, zero_rows=3, seed=seed)
    md, js = tmp_path / "RESULTS.md", exp_dir / "results.json"
    args = ["report", "--exp_dir", str(exp_dir), "--test_sets", "test", "--markdown", str(md),
            "--json", str(js)]
    assert main(args) == 0
    before = json.loads(js.read_text())
    summary_before = json.loads((exp_dir / "results_summary.json").read_text())["groups"]
    assert sorted(p.name for p in (exp_dir / "records").iterdir()) == [
        "dense_cont_s0.json", "dense_cont_s1.json", "spg_0.8_s0.json", "spg_0.8_s1.json"]
    # a report over unchanged runs leaves their records (and their stamps) as they are
    for p in (exp_dir / "records").iterdir():
        rec = json.loads(p.read_text())
        rec["recorded"]["date"] = "2000-01-01 00:00:00"
        p.write_text(json.dumps(rec))
    stamped = {p.name: p.read_bytes() for p in (exp_dir / "records").iterdir()}
    assert main(args) == 0
    assert {p.name: p.read_bytes() for p in (exp_dir / "records").iterdir()} == stamped

    for tag in ("dense_cont_s1", "spg_0.8_s0"):  # another machine: models and logs are gone
        shutil.rmtree(exp_dir / f"asr_{tag}")
    renamed = exp_dir / "records" / "spg_0.8_s0.json"  # a record renamed with its method's config
    rec = json.loads(renamed.read_text())
    rec["recorded"]["run_as"] = "spg_old_0.8_s0"
    renamed.write_text(json.dumps(rec))
    assert main(args) == 0
    after = json.loads(js.read_text())
    assert [r["tag"] for r in after] == [r["tag"] for r in before]
    for a, b in zip(after, before):  # the same numbers, the same paired tests
        assert a["wer"] == b["wer"] and a["significance"] == b["significance"]
        assert a["params_nonzero"] == b["params_nonzero"] and a["reference"] == b["reference"]
    groups = json.loads((exp_dir / "results_summary.json").read_text())["groups"]
    assert [g["significance"] for g in groups] == [g["significance"] for g in summary_before]
    assert {r["tag"] for r in after if "recorded" in r} == {"dense_cont_s1", "spg_0.8_s0"}
    text = md.read_text()
    assert "| spg_0.8_s0 † | spg |" in text and "| spg_0.8_s1 | spg |" in text
    assert "† from its run record" in text
    assert "spg_0.8_s0 (2000-01-01 00:00:00, commit " in text and ", run as spg_old_0.8_s0)" in text

    # a run present again replaces its record; a broken record names itself
    _fake_exp(exp_dir, "spg_0.8_s0", "spg", 0.8, rng.binomial(words, 0.2), words, seed=0)
    assert main(args) == 0
    rerun = {r["tag"]: r for r in json.loads(js.read_text())}["spg_0.8_s0"]
    assert "recorded" not in rerun and rerun["wer"] != before[2]["wer"]
    rec = json.loads((exp_dir / "records" / "spg_0.8_s0.json").read_text())
    assert rec["row"]["wer"] == rerun["wer"] and rec["recorded"]["date"] != "2000-01-01 00:00:00"
    bad = exp_dir / "records" / "dense_cont_s1.json"
    bad.write_text('{"row": {"tag": "dense_cont_s1"}, "per_utt": {}}')
    with pytest.raises(SystemExit, match=f"{bad}: row field 'method' missing"):
        main(args)

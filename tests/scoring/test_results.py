import json
import re

import numpy as np
import pytest
import torch

from espnet_pinch.pruning.layers import SSL_STATE_PREFIX
from espnet_pinch.scoring.results import espnet_training_seconds, main, markdown, param_counts

FC1 = SSL_STATE_PREFIX + "encoder.layers.0.fc1.weight"
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


def test_markdown_table_has_a_row_per_model():
    rows = [{"tag": "dense", "method": "dense", "target_sparsity": 0.0, "sparsity": 0.0,
             "sparsity_model": 0.0,
             "params_total": 2_200_000, "params_nonzero": 2_200_000, "wer": {"test": 20.0},
             "cer": {"test": 9.5}, "train_seconds": 3600, "compression_seconds": None,
             "bytes_on_disk": 8_800_000, "macs_per_second": 12_345_678, "decode_rtf": 0.05,
             "significance": {"test": None}},
            {"tag": "spg_0.5", "method": "spg", "target_sparsity": 0.5, "sparsity": 0.5,
             "sparsity_model": 0.45,
             "params_total": 2_200_000, "params_nonzero": 1_210_000, "wer": {"test": 25.0},
             "cer": {"test": 11.0}, "train_seconds": 1000, "compression_seconds": 1010,
             "bytes_on_disk": 5_000_000, "macs_per_second": None, "decode_rtf": 0.06,
             "extra_params": 30,
             "significance": {"test": {"delta_wer": 5.0, "p_value": 0.0123, "ci95": [1, 9], "n_boot": 1000}}}]
    md = markdown(rows, ["test"])
    assert ("| tag | method | target | sparsity | model sparsity | params | nonzero | extra params | WER test | "
            "p vs dense test | CER test | train s | compress s | MB on disk | MACs/s | decode RTF |") in md
    assert "| dense | dense | 0.00 | 0.000 | 0.000 | 2.20 M | 2.20 M | - | 20.00 | - | 9.50 | 3600 | - | 8.80 | 12.3 M | 0.050 |" in md
    assert "| spg_0.5 | spg | 0.50 | 0.500 | 0.450 | 2.20 M | 1.21 M | 30 | 25.00 | 0.012 | 11.00 | 1000 | 1010 | 5.00 | - | 0.060 |" in md
    assert "paired bootstrap" in md and "1000 resamples" in md and "two-sided" in md


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
        "per_layer_sparsity": {"encoder.layers.0.fc1": 0.5}, "prunable_keys": [FC1],
        "extra_params": 0, "bytes_dense": 1000, "params_prunable_dense": 20,
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


def test_report_compares_every_method_with_dense(tmp_path):
    rng = np.random.default_rng(0)
    words = rng.integers(1, 8, 130)
    dense_err = rng.binomial(words, 0.2)
    exp_dir = tmp_path / "exp"
    _fake_exp(exp_dir, "ump_0.5", "ump", 0.5, dense_err, words, zero_rows=2, macs=8e6)  # same errors
    _fake_exp(exp_dir, "spg_0.5", "spg", 0.5, dense_err + 2, words, zero_rows=2, macs=8e6)  # worse
    _fake_exp(exp_dir, "spg_0.25", "spg", 0.25, dense_err + 1, words, zero_rows=1, macs=9e6)
    _fake_exp(exp_dir, "dense", "dense", 0.0, dense_err, words, macs=12.3e6)
    _fake_exp(exp_dir, "nascp_0.5", "nascp", 0.5, dense_err, words, fc1_rows=2, per_utt=False,
              params_prunable_dense=20, params_total_dense=36)
    md, js = tmp_path / "RESULTS.md", exp_dir / "results.json"
    assert main(["report", "--exp_dir", str(exp_dir), "--test_sets", "test",
                 "--markdown", str(md), "--json", str(js)]) == 0

    rows = {r["tag"]: r for r in json.loads(js.read_text())}
    assert list(rows) == ["dense", "nascp_0.5", "spg_0.25", "spg_0.5", "ump_0.5"]
    assert rows["dense"]["macs_per_second"] == 12.3e6 and rows["nascp_0.5"]["macs_per_second"] is None
    assert rows["dense"]["significance"] == {"test": None}
    assert rows["nascp_0.5"]["significance"] == {"test": None}  # no per_utt.json: skipped
    assert rows["ump_0.5"]["significance"]["test"]["p_value"] == 1.0
    worse = rows["spg_0.5"]["significance"]["test"]
    assert worse["p_value"] < 0.01 and worse["ci95"][0] > 0 and worse["n_boot"] == 1000
    assert worse["delta_wer"] == pytest.approx(100 * 2 * 130 / words.sum())
    assert rows["nascp_0.5"]["sparsity"] == pytest.approx(0.5)  # compacted: against the dense count
    assert rows["spg_0.5"]["sparsity"] == pytest.approx(0.5)

    text = md.read_text()
    assert "| p vs dense test |" in text and "| MACs/s |" in text
    assert "| dense | dense | 0.00 | 0.000 | 0.000 |" in text and "| 12.3 M |" in text
    dense_line = next(l for l in text.splitlines() if l.startswith("| dense |"))
    assert dense_line.split(" | ")[9] == "-"  # p vs dense of dense itself
    ump_line = next(l for l in text.splitlines() if l.startswith("| ump_0.5 |"))
    assert ump_line.split(" | ")[9] == "1.000"
    for png in ("wer_vs_sparsity.png", "per_layer_sparsity.png"):
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

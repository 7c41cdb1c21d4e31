"""Every stage of the AN4 recipe on a small slice with the debug configs (tiny upstream, 1-2
epochs): dense, then SPG, UMP, NAS-CP and HJ-Pruning (by MACs) compared in stage 9.

Runs run.sh as a user would, with data/dump/exp dirs in a temp dir so a real run in the recipe
dir is not touched. Several minutes on 2 cores; most of it is ESPnet's import time per step.
"""
import json
import os
import subprocess
from pathlib import Path

import pytest

from espnet_pinch.train.schedule import read_probes, read_trace

from ..conftest import ROOT

RECIPE = ROOT / "egs2" / "an4" / "asr1"
ROW_KEYS = {"tag", "method", "target_sparsity", "sparsity", "params_total", "params_nonzero",
            "wer", "cer", "train_seconds", "decode_rtf", "model_path"}


def run_recipe(tmp: Path, an4: Path, *args: str) -> subprocess.CompletedProcess:
    """The README's smoke run (``run.sh --smoke true``), in ``tmp``."""
    cmd = [str(RECIPE / "run.sh"), "--smoke", "true", "--corpus", str(an4),
           "--data_dir", str(tmp / "data"), "--dump_dir", str(tmp / "dump"),
           "--exp_dir", str(tmp / "exp"), "--results_md", str(tmp / "RESULTS.md"),
           *args]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=2700)


def test_every_stage_on_an4_slice(an4, tmp_path):
    r = run_recipe(tmp_path, an4)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for n in range(1, 11):
        assert f"Stage {n}:" in r.stdout, f"stage {n} did not log"
    assert "(progress) exp/asr_spg_0.5_s0: epoch 1/" in r.stdout  # stage 6's console progress
    assert "(log: " + str(tmp_path / "exp/asr_spg_0.5_s0/train.log") + ")" in r.stdout
    assert "nltk" not in (tmp_path / "exp/asr_spg_0.5_s0/train.log").read_text().lower()
    rows = json.loads((tmp_path / "exp/results.json").read_text())
    tags = ["debug", "dense_cont_s0", "hj_macs_0.4_s0", "nascp_0.5_s0", "spg_0.5_s0", "ump_0.5_s0"]
    assert [r["tag"] for r in rows] == tags
    by = dict(zip(tags, rows))
    row = by["debug"]
    assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
    assert row["method"] == "dense" and row["sparsity"] == 0.0
    assert row["params_nonzero"] == row["params_total"] > 20_000
    assert set(row["wer"]) == {"dev", "test"} and set(row["cer"]) == {"dev", "test"}
    assert Path(row["model_path"]).is_file()
    # Upstream features were written with kaldiio by collect-stats.
    assert (tmp_path / "exp/asr_stats_char/train/collect_feats/feats.scp").is_file()
    ali = (tmp_path / "exp/asr_debug/decode_test/alignment.txt").read_text()
    assert ali.count("REF:") == len((tmp_path / "dump/test/text").read_text().splitlines())
    md = (tmp_path / "RESULTS.md").read_text()
    assert "| debug | dense |" in md

    # The protocol. dense_cont: the dense model continued on the pruning runs' budget, no
    # pruner, decoded from its last epoch; it is the reference of every p-value.
    cont = by["dense_cont_s0"]
    assert cont["method"] == "dense_cont" and cont["sparsity"] == 0.0
    assert cont["model_path"].endswith("asr_dense_cont_s0/latest.pth") and cont["seed"] == 0
    assert "compared with **dense_cont**" in md and "| p vs dense_cont test |" in md
    for r in rows[2:]:
        assert r["reference"] == "dense_cont_s0" and r["significance"]["test"]["n_boot"] == 1000
    assert cont["significance"]["test"] is None and row["significance"]["test"] is None
    # One budget, one lr schedule: the per-step lr of every run is the same sequence, the
    # structured methods' search + compact fine-tuning included (no second warm-up).
    exp = tmp_path / "exp"
    ref_lr = [t["lr"] for t in read_trace(exp / "asr_dense_cont_s0/trace.tsv")]
    assert len(ref_lr) == cont["steps"] > 4 and ref_lr[0] < ref_lr[1]  # warm-up, then decay
    assert ref_lr[-1] < max(ref_lr)
    for tag in ("spg_0.5_s0", "ump_0.5_s0"):
        assert [t["lr"] for t in read_trace(exp / f"asr_{tag}/trace.tsv")] == ref_lr, tag
    for tag in ("nascp_0.5_s0", "hj_macs_0.4_s0"):
        two = read_trace(exp / f"asr_{tag}/trace.tsv", exp / f"asr_{tag}/finetune/trace.tsv")
        assert [t["lr"] for t in two] == ref_lr, tag
        assert [t["step"] for t in two] == list(range(1, len(ref_lr) + 1))
        assert by[tag]["model_path"].endswith("finetune/latest.pth")
    summary = json.loads((exp / "results_summary.json").read_text())
    assert summary["reference"] == "dense_cont" and set(summary["frontier"]) == {
        "hj_macs", "nascp", "spg", "ump"}
    # Every pruned row: what training reached before finalize, the snap's share, the target met.
    for tag in tags[2:]:
        r = by[tag]
        assert {"trained_achieved", "sparsity_before_snap", "snap_changed_units",
                "steps_at_target_share"} <= set(r), tag
        assert r["steps"] == len(ref_lr)
        achieved = r["macs_sparsity"] if tag.startswith("hj_macs") else r["sparsity"]
        assert abs(achieved - r["target_sparsity"]) <= 0.05, (tag, achieved)  # HJ MACs: 0.37 of 0.4 seen

    # SPG ran in one pass from the dense model and was finalized and stored sparse.
    spg = by["spg_0.5_s0"]
    assert ROW_KEYS | {"compression_seconds", "bytes_on_disk", "per_layer_sparsity"} <= set(spg)
    assert spg["params_nonzero"] < spg["params_total"] == row["params_total"]
    assert spg["model_path"].endswith("final/model.sparse.pt")
    assert spg["compression_seconds"] >= spg["train_seconds"] > 0
    assert "encoder.layers.0.fc1" in spg["per_layer_sparsity"]
    log = (exp / "asr_spg_0.5_s0/train.log").read_text()
    assert "loss_sparsity=" in log and "sparsity=" in log  # per-epoch report
    assert "## Per-layer sparsity" in md
    assert (tmp_path / "per_layer_sparsity.png").stat().st_size > 1000
    assert (tmp_path / "wer_vs_sparsity.png").stat().st_size > 1000
    # SPG's instrumentation: per layer, its threshold, sparsity and both parts of its gradient
    probes = read_probes(exp / "asr_spg_0.5_s0/layers.jsonl")
    assert probes[0]["step"] == 1 and set(probes[0]["layers"]) == set(spg["per_layer_sparsity"])
    for rec in probes[0]["layers"].values():
        assert rec["grad_asr"] != 0 and rec["grad_sparsity"] != 0  # both reach every threshold
    assert (tmp_path / "per_layer_trajectories.png").stat().st_size > 1000
    # Stage 7: every test set decoded by one process per model, greedy CTC (conf/decode.yaml)
    assert "greedy search" in (exp / "asr_spg_0.5_s0/decode.log").read_text()

    # NAS-CP: searched, compacted (explicit architecture), fine-tuned as a smaller dense model.
    nas = by["nascp_0.5_s0"]
    assert nas["params_total"] < row["params_total"]
    assert nas["macs_per_second"] < row["macs_per_second"]
    assert (exp / "asr_nascp_0.5_s0/final/pruned_arch.yaml").is_file()
    assert "1epoch results" in (exp / "asr_nascp_0.5_s0/finetune/train.log").read_text()
    # HJ-Pruning by MACs (its own target via method@target): compact, MACs cut by ~40 %
    hj = by["hj_macs_0.4_s0"]
    assert hj["method"] == "hj_macs" and hj["target_sparsity"] == 0.4
    assert hj["macs_per_second"] == pytest.approx(0.6 * row["macs_per_second"], rel=0.1)
    for r in (hj, nas):
        assert r["speedup_ideal"] > 1 and r["speedup_measured"] > 0
    assert spg["speedup_ideal"] is None
    # UMP: every gated layer at the same sparsity
    ump = by["ump_0.5_s0"]
    assert max(ump["per_layer_sparsity"].values()) - min(ump["per_layer_sparsity"].values()) < 0.01

    # Stage 10: every model exported; ONNX Runtime gives PyTorch's log-probabilities and WER
    for r in rows:
        export = exp / f"asr_{r['tag']}/export"
        for f in ("model.onnx", "model.int8.onnx", "tokens.txt", "transcribe.py", "README"):
            assert (export / f).is_file(), (r["tag"], f)
        onnx = r["onnx"]
        for s in ("dev", "test"):
            assert onnx["fp32"]["max_abs_diff_vs_torch"][s] <= 1e-4, (r["tag"], s)
            # a flipped best token only where PyTorch itself had a near-tie; no flip: same WER
            assert onnx["fp32"]["utts_differ_unexplained"][s] == 0, (r["tag"], s)
            if onnx["fp32"]["utts_argmax_differ"][s] == 0:
                assert onnx["fp32"]["wer"][s] == r["wer"][s], (r["tag"], s)
        # int8 weights are a quarter of fp32's; on the tiny upstream a compact model's matrices
        # are so small that the per-channel scales and quantize nodes can outweigh that
        if onnx["fp32"]["bytes"] >= by["debug"]["onnx"]["fp32"]["bytes"]:
            assert onnx["int8"]["bytes"] < onnx["fp32"]["bytes"], r["tag"]
    assert "## ONNX Runtime (stage 10)" in md
    # every run's record, for a table on another machine
    assert sorted(p.stem for p in (exp / "records").iterdir()) == sorted(tags)

    # Re-running is safe: every stage is skipped by its marker, results are rewritten.
    r2 = run_recipe(tmp_path, an4)
    assert r2.returncode == 0, r2.stderr[-2000:]
    assert r2.stdout.count("already done") == 5 + 4 * 6  # stages 1-5, stages 6-8 and 10 per model
    assert json.loads((tmp_path / "exp/results.json").read_text()) == rows

    # Stage 6 in steps: a NAS-CP run whose finalize is lost redoes finalize and fine-tuning only
    # (the search is not retrained), and says what each step reads and writes.
    nas_exp = exp / "asr_nascp_0.5_s0"
    for f in (".done", ".finalize.done", ".finetune.done", ".decode.done"):
        (nas_exp / f).unlink()
    search_log = (nas_exp / "train.log").read_text()
    r3 = run_recipe(tmp_path, an4, "--stage", "6", "--stop_stage", "7")
    assert r3.returncode == 0, r3.stdout[-3000:] + r3.stderr[-2000:]
    assert f"Stage 6 [prune]: already done ({nas_exp}/.prune.done)" in r3.stdout
    assert f"Stage 6 [finalize]: reads {nas_exp}/latest.pth; writes {nas_exp}/final/" in r3.stdout
    assert f"Stage 6 [finetune]: reads {nas_exp}/final/" in r3.stdout
    assert (nas_exp / "train.log").read_text().startswith(search_log)  # appended to, not redone
    assert "epoch results" not in (nas_exp / "train.log").read_text()[len(search_log):]
    assert (nas_exp / ".done").is_file() and (nas_exp / "final/pruned_arch.yaml").is_file()


@pytest.mark.slow
def test_a_wavlm_upstream_is_a_size_config_away(an4, tmp_path):
    """The same recipe on a tiny WavLM (gated relative position bias), changed by
    ``--upstream_config`` alone: dense training, then HJ-Pruning by MACs with its heads compacted,
    decoded and scored from the compact model, which loads with no checkpoint. Slow (a second
    smoke run, 8-23 min on 2 cores): every method on WavLM inside the ESPnet model, finalize and
    the compact export are in the default run (tests/pruning/test_methods_on_wavlm.py)."""
    import yaml

    r = run_recipe(tmp_path, an4, "--upstream_config", "../../../conf/upstream/wavlm_tiny_test.yaml",
                   "--methods", "hj_macs@0.4")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = {row["tag"]: row for row in json.loads((tmp_path / "exp/results.json").read_text())}
    assert sorted(rows) == ["debug", "dense_cont_s0", "hj_macs_0.4_s0"]
    final = tmp_path / "exp/asr_hj_macs_0.4_s0/final"
    fconf = yaml.safe_load((final / "config.yaml").read_text())["frontend_conf"]
    assert fconf["upstream_config"]["arch"] == "wavlm" and fconf["path_or_url"] is None
    arch = fconf["pruned_arch"]
    assert [len(k) for k in arch["kept_heads"]] == arch["attention_heads"]
    hj = rows["hj_macs_0.4_s0"]
    assert set(hj["wer"]) == {"dev", "test"} and hj["macs_per_second"] < rows["debug"]["macs_per_second"]


def test_missing_corpus_fails_before_touching_outputs(tmp_path):
    r = run_recipe(tmp_path, tmp_path / "no_an4", "--stop_stage", "1")
    assert r.returncode != 0
    assert "AN4 corpus not found" in r.stderr + r.stdout
    assert not (tmp_path / "data").exists()

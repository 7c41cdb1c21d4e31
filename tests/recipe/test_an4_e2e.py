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
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)


def test_every_stage_on_an4_slice(an4, tmp_path):
    r = run_recipe(tmp_path, an4)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for n in range(1, 10):
        assert f"Stage {n}:" in r.stdout, f"stage {n} did not log"
    assert "(progress) exp/asr_spg_0.5: epoch 1/" in r.stdout  # stage 6's console progress
    assert "(log: " + str(tmp_path / "exp/asr_spg_0.5/train.log") + ")" in r.stdout
    assert "nltk" not in (tmp_path / "exp/asr_spg_0.5/train.log").read_text().lower()
    rows = json.loads((tmp_path / "exp/results.json").read_text())
    assert [r["tag"] for r in rows] == ["debug", "hj_macs_0.4", "nascp_0.5", "spg_0.5", "ump_0.5"]
    row = rows[0]
    assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
    assert row["method"] == "dense" and row["sparsity"] == 0.0
    assert row["params_nonzero"] <= row["params_total"] and row["params_total"] > 20_000
    assert set(row["wer"]) == {"dev", "test"} and set(row["cer"]) == {"dev", "test"}
    assert all(0.0 <= v for v in row["wer"].values())
    assert row["decode_rtf"] > 0 and row["train_seconds"] > 0
    assert Path(row["model_path"]).is_file()
    # Upstream features were written with kaldiio by collect-stats.
    assert (tmp_path / "exp/asr_stats_char/train/collect_feats/feats.scp").is_file()
    ali = (tmp_path / "exp/asr_debug/decode_test/alignment.txt").read_text()
    assert ali.count("REF:") == len((tmp_path / "dump/test/text").read_text().splitlines())
    md = (tmp_path / "RESULTS.md").read_text()
    assert "| debug | dense |" in md

    # SPG ran in one pass from the dense model and was finalized and stored sparse.
    spg = rows[3]
    assert spg["method"] == "spg" and spg["target_sparsity"] == 0.5
    assert ROW_KEYS | {"compression_seconds", "bytes_on_disk", "per_layer_sparsity"} <= set(spg)
    assert 0 < spg["sparsity"] < 1 and spg["params_nonzero"] < spg["params_total"]
    assert spg["model_path"].endswith("final/model.sparse.pt")
    assert spg["compression_seconds"] > 0
    assert "encoder.layers.0.fc1" in spg["per_layer_sparsity"]
    log = (tmp_path / "exp/asr_spg_0.5/train.log").read_text()
    assert "loss_sparsity=" in log and "sparsity=" in log  # per-epoch report
    assert "## Per-layer sparsity" in md
    assert (tmp_path / "per_layer_sparsity.png").stat().st_size > 1000

    # The comparison: every row has MACs and a significance test against dense; one plot.
    for row in rows:
        assert row["macs_per_second"] > 0
    assert all(r["significance"]["test"]["p_value"] <= 1.0 for r in rows[1:])
    assert (tmp_path / "wer_vs_sparsity.png").stat().st_size > 1000
    assert "p vs dense" in md

    # NAS-CP: searched, compacted (explicit architecture), fine-tuned as a smaller dense model.
    nas = rows[2]
    assert nas["model_path"].endswith("finetune/valid.cer_ctc.best.pth")
    assert nas["params_total"] < rows[0]["params_total"]
    assert 0.3 < nas["sparsity"] < 0.7
    assert nas["macs_per_second"] < rows[0]["macs_per_second"]
    assert (tmp_path / "exp/asr_nascp_0.5/final/pruned_arch.yaml").is_file()
    assert "1epoch results" in (tmp_path / "exp/asr_nascp_0.5/finetune/train.log").read_text()
    # HJ-Pruning by MACs (its own target via method@target): compact, MACs cut by ~40 %
    hj = rows[1]
    assert hj["method"] == "hj_macs" and hj["target_sparsity"] == 0.4
    assert hj["macs_per_second"] == pytest.approx(0.6 * rows[0]["macs_per_second"], rel=0.1)
    for r in (hj, nas):
        assert r["speedup_ideal"] > 1 and r["speedup_measured"] > 0
    assert spg["speedup_ideal"] is None
    # UMP: every gated layer at the same sparsity
    ump = rows[4]
    assert max(ump["per_layer_sparsity"].values()) - min(ump["per_layer_sparsity"].values()) < 0.01

    # Re-running is safe: every stage is skipped by its marker, results are rewritten.
    r2 = run_recipe(tmp_path, an4)
    assert r2.returncode == 0, r2.stderr[-2000:]
    assert r2.stdout.count("already done") == 5 + 3 * 5  # stages 1-5, stages 6-8 per model
    assert json.loads((tmp_path / "exp/results.json").read_text()) == rows


def test_missing_corpus_fails_before_touching_outputs(tmp_path):
    r = run_recipe(tmp_path, tmp_path / "no_an4", "--stop_stage", "1")
    assert r.returncode != 0
    assert "AN4 corpus not found" in r.stderr + r.stdout
    assert not (tmp_path / "data").exists()

"""The LibriSpeech-100h and SLURP recipes through every stage, on what can run here: the real
4-utterance LibriSpeech sample and the hand-written SLURP fixture, a tiny local upstream in place
of the hub model (--upstream_ckpt), one epoch, dense + one method."""
import json
import os
import subprocess
from pathlib import Path

import pytest

from ..conftest import ROOT

SAMPLE = ROOT.parent / "shared" / "data" / "librispeech_sample"
SLURP = ROOT / "tests" / "fixtures" / "slurp"
SHORT = "--max_epoch 1 --batch_bins 1000000 --num_workers 0 --use_tensorboard false --log_interval 1"


def run(recipe: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [str(ROOT / "egs2" / recipe / "run.sh"),
           "--data_dir", str(tmp / "data"), "--dump_dir", str(tmp / "dump"),
           "--exp_dir", str(tmp / "exp"), "--results_md", str(tmp / "RESULTS.md"),
           "--nthreads", "2", "--asr_args", SHORT,
           # one epoch is too short for a method to train at its target for 40% of the budget
           # (the comparison protocol, checked by stage 9); this test is about the stages.
           "--min_target_share", "0", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


def test_librispeech_recipe_on_the_sample(tiny_ckpt, tmp_path):
    if not SAMPLE.is_dir():
        pytest.skip(f"LibriSpeech sample not found at {SAMPLE}")
    r = run("librispeech_100/asr1", tmp_path, "--corpus", str(SAMPLE),
            "--local_data_opts", "--subsets test-clean --download false",
            "--train_set", "test_clean", "--valid_set", "test_clean", "--test_sets", "test_clean",
            "--nbpe", "40", "--upstream_ckpt", str(tiny_ckpt), "--methods", "spg")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-3000:]
    for n in range(1, 10):
        assert f"Stage {n}:" in r.stdout, f"stage {n} did not log"
    assert "Stage 4: using the given upstream checkpoint" in r.stdout
    tokens = (tmp_path / "data/token_list/bpe/tokens.txt").read_text().split()
    assert len(tokens) == 40 - 1 + 3  # BPE pieces, <unk> moved, <blank> and <sos/eos> added
    # --collect_feats false: stats only, no feature dump of the (100 h) training set.
    assert not (tmp_path / "exp/asr_stats_bpe/train/collect_feats").exists()
    rows = {row["tag"]: row for row in json.loads((tmp_path / "exp/results.json").read_text())}
    assert set(rows) == {"dense_wav2vec2_base", "dense_cont_s0", "spg_0.65_s0"}
    spg = rows["spg_0.65_s0"]
    assert spg["target_sparsity"] == 0.65 and "test_clean" in spg["wer"]
    assert spg["reference"] == "dense_cont_s0"


def test_slurp_recipe_on_the_fixture(tiny_ckpt, tmp_path):
    r = run("slurp/slu1", tmp_path, "--corpus", str(SLURP),
            "--token_type", "char", "--upstream_ckpt", str(tiny_ckpt), "--methods", "hj_size@0.4",
            "--pruned_args", "--max_epoch 2 --pruner_conf finetune_epochs=1")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-3000:]
    # Intents were kept as single tokens (data prep's nlsyms.txt, used by stage 2).
    tokens = (tmp_path / "data/token_list/char/tokens.txt").read_text().split()
    assert "ALARM_SET" in tokens
    for tag in ("dense_wav2vec2_base", "dense_cont_s0", "hj_size_0.4_s0"):
        score = json.loads((tmp_path / f"exp/asr_{tag}/decode_test/slu_score.json").read_text())
        assert score["num_utts"] == 2 and 0.0 <= score["intent_acc"] <= 1.0
        assert {"slu_f1", "span_f1", "wer"} <= set(score)
    # dense_cont trains the pruning run's whole budget (search + fine-tuning), one schedule
    rows = {row["tag"]: row for row in json.loads((tmp_path / "exp/results.json").read_text())}
    assert rows["dense_cont_s0"]["steps"] == rows["hj_size_0.4_s0"]["steps"] == 2
    assert rows["dense_cont_s0"]["lr_digest"] == rows["hj_size_0.4_s0"]["lr_digest"]
    md = (tmp_path / "RESULTS.md").read_text()
    assert "intent acc test" in md and "SLU-F1 devel" in md

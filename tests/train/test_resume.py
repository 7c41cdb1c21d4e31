"""Preemption: SIGKILL mid-epoch, run the same command again, and training resumes from the last
checkpoint with the pruning state (thresholds / gates, multipliers, warm-up step) intact."""
import os
import re
import signal
import subprocess
import zipfile

import pytest
import torch

from espnet_pinch.train.trainer import PREVIOUS, checkpoint_is_complete, pruning_state
from espnet_pinch.utils.safe_load import load_checkpoint

from . import toy

EPOCHS = 3
STEPS = 12  # per epoch: 24 utterances, batches of 2


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    return toy.make_data(root, n=2 * STEPS), root / "tokens.txt"


def kill_during_epoch(cmd: list[str], epoch: int, after_step: int) -> str:
    """Start training, SIGKILL it once the log shows ``after_step`` steps of ``epoch``."""
    proc = subprocess.Popen(cmd, env=toy.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    seen = []
    mark = f"{epoch}epoch:train:{after_step}-{after_step}batch"
    for line in proc.stdout:
        seen.append(line)
        if mark in line:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen[-30:])
    return "".join(seen)


def final_state(exp):
    return load_checkpoint(exp / f"{EPOCHS}epoch.pth")


@pytest.mark.parametrize("method", ["spg", "hj"])
def test_sigkill_mid_epoch_then_rerun_continues_the_pruning_state(method, data, tiny_ckpt, tmp_path):
    dump, tokens = data
    config = toy.write_config(tmp_path / "config.yaml", tiny_ckpt, method, max_epoch=EPOCHS,
                              pruner_conf={**toy.PRUNERS[method], "warmup_steps": 2 * STEPS})
    killed, whole = tmp_path / "killed", tmp_path / "whole"

    log = kill_during_epoch(toy.train_args(config, dump, tokens, killed), epoch=2, after_step=3)
    assert "2/3epoch started" in log
    # Killed mid-epoch 2: the checkpoint is epoch 1's, nothing of epoch 2 was saved.
    assert checkpoint_is_complete(killed / "checkpoint.pth")
    assert (killed / "1epoch.pth").exists() and not (killed / "2epoch.pth").exists()
    # ESPnet's own resume file, written by this run; its reporter stats hold numpy scalars, which
    # the weights-only loader refuses, so it is read the way ESPnet reads it.
    ckpt = torch.load(killed / "checkpoint.pth", map_location="cpu", weights_only=False)
    assert ckpt["reporter"]["epoch"] == 1
    assert int(ckpt["model"]["pruner.step"]) == STEPS  # the warm-up counter after one epoch

    r = toy.run(toy.train_args(config, dump, tokens, killed))  # the same command again
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert re.search(rf"pruning state resumed from \S+checkpoint.pth: .*step={STEPS}\b", out), out[-3000:]
    assert "1/3epoch started" not in out and "2/3epoch started" in out

    r = toy.run(toy.train_args(config, dump, tokens, whole))  # never interrupted
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    resumed, uninterrupted = final_state(killed), final_state(whole)
    assert int(resumed["pruner.step"]) == EPOCHS * STEPS
    # Continued, not restarted: the resumed run ends where the uninterrupted one does, for the
    # pruning state and for the weights.
    for k in resumed:
        torch.testing.assert_close(resumed[k], uninterrupted[k], rtol=1e-5, atol=1e-6, msg=k)
    assert sum(k.startswith("pruner.") or k.endswith(".threshold") for k in resumed) > 2


class _Reporter:
    def load_state_dict(self, state):
        self.state = state


def test_truncated_checkpoint_falls_back_to_the_previous_one(tmp_path):
    """A job killed while ESPnet writes checkpoint.pth leaves a truncated file; the rerun moves
    it aside and resumes from checkpoint.prev.pth instead of failing (or trusting it)."""
    from espnet_pinch.train.trainer import PinchTrainer

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    good = {"model": model.state_dict(), "reporter": {"epoch": 4}, "optimizers": [opt.state_dict()],
            "schedulers": [None], "scaler": None}
    torch.save(good, tmp_path / PREVIOUS)
    torch.save({**good, "reporter": {"epoch": 5}}, tmp_path / "checkpoint.pth")
    data = (tmp_path / "checkpoint.pth").read_bytes()
    (tmp_path / "checkpoint.pth").write_bytes(data[: len(data) // 2])
    assert not checkpoint_is_complete(tmp_path / "checkpoint.pth")
    with pytest.raises((RuntimeError, zipfile.BadZipFile)):
        torch.load(tmp_path / "checkpoint.pth", weights_only=False)

    reporter = _Reporter()
    PinchTrainer.resume(tmp_path / "checkpoint.pth", model, reporter, [opt], [None], None)
    assert reporter.state == {"epoch": 4}
    assert (tmp_path / "checkpoint.pth.corrupt").exists() and not (tmp_path / "checkpoint.pth").exists()

    # Without a complete previous checkpoint the error says what happened.
    torch.save(good, tmp_path / "checkpoint.pth")
    (tmp_path / "checkpoint.pth").write_bytes(data[:100])
    (tmp_path / PREVIOUS).unlink()
    with pytest.raises(RuntimeError, match="incomplete"):
        PinchTrainer.resume(tmp_path / "checkpoint.pth", model, reporter, [opt], [None], None)


def test_pruning_state_names_gates_and_pruner_only(tiny_ckpt, tmp_path):
    from tests.pruning.test_spg_espnet import build_args
    from espnet_pinch.tasks.asr import PinchASRTask

    model = PinchASRTask.build_model(build_args(tiny_ckpt, tmp_path))
    state = pruning_state(model)
    assert "pruner.step" in state and "pruner.lambda1" in state
    assert any(k.endswith(".threshold") for k in state)
    assert not any(k.endswith(".original") for k in state)
    assert pruning_state(PinchASRTask.build_model(build_args(tiny_ckpt, tmp_path, pruner=None))) == {}

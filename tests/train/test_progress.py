"""The console progress line read from ESPnet's train.log."""
import os
import subprocess

from espnet_pinch.train.progress import Progress, follow

BATCH = ("[vm] 2026 (trainer:811) INFO: {e}epoch:train:{a}-{b}batch: iter_time=0.006, "
         "loss_ctc=50.1, loss={loss}, loss_sparsity=0.4, sparsity={s}backward_time=0.1, train_time=0.15")
RESULTS = ("[vm] 2026 (trainer:394) INFO: {e}epoch results: [train] loss={loss}, sparsity=0.31, "
           "time=12 seconds, total_count={n}, [valid] loss_ctc=70.5, cer_ctc=0.800, total_count=4")


def test_lines_give_epoch_step_loss_sparsity_and_time_left():
    p = Progress(every=30)
    assert p.feed("[vm] 2026 (trainer:336) INFO: 1/4epoch started", 0) is None
    first = p.feed(BATCH.format(e=1, a=1, b=10, loss=55.5, s=0.12), 40)
    assert first == "epoch 1/4 step 10, loss 55.5, sparsity 0.12, time left: known after epoch 1"
    assert p.feed(BATCH.format(e=1, a=11, b=20, loss=50, s=0.2), 50) is None  # < 30 s later
    done = p.feed(RESULTS.format(e=1, loss=49.0, n=40), 100)
    assert done.startswith("epoch 1/4 done, loss 49.0, sparsity 0.31, time left ~")
    assert done.endswith("valid cer_ctc 0.800")
    p.feed("[vm] 2026 (trainer:336) INFO: 2/4epoch started", 101)
    # 40 steps in 120 s since the first line (step 10 at 40 s); 160 - 50 = 110 left: 330 s
    line = p.feed(BATCH.format(e=2, a=1, b=10, loss=40, s=0.3), 100 + 60)
    assert line == "epoch 2/4 step 10, loss 40, sparsity 0.3, time left ~6 min"


def test_dense_lines_have_no_sparsity():
    p = Progress(every=0)
    p.feed("1/2epoch started", 0)
    assert p.feed(BATCH.format(e=1, a=1, b=5, loss=9, s=0).replace("sparsity=0", ""), 1) \
        == "epoch 1/2 step 5, loss 9, time left: known after epoch 1"


def test_follow_prints_and_stops_with_the_recipe(tmp_path, capsys):
    log = tmp_path / "asr_spg_0.5" / "train.log"
    log.parent.mkdir()
    log.write_text("old run\n" + "2/2epoch started\n" + RESULTS.format(e=2, loss=3, n=80) + "\n")
    gone = subprocess.Popen(["true"])
    gone.wait()
    follow(log, offset=len("old run\n"), pid=gone.pid, every=0, poll=0)
    out = capsys.readouterr().out
    assert "(progress) " in out and "asr_spg_0.5: epoch 2/2 done, loss 3" in out
    assert os.path.exists(log)


def test_follow_stops_at_the_job_end_line(tmp_path, capsys):
    log = tmp_path / "asr_x" / "train.log"
    log.parent.mkdir()
    log.write_text("1/1epoch started\n" + RESULTS.format(e=1, loss=3, n=8) + "\n"
                   "# 2026-12-01 08:13:33 exit 0\n")
    follow(log, pid=os.getpid(), every=0, poll=0)  # the recipe is alive: the log says stop
    assert "asr_x: epoch 1/1 done" in capsys.readouterr().out

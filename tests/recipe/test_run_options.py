"""run.sh / asr.sh before any stage: options checked up front, --help, the experiment-dir lock,
and the console lines of the quick stages. Seconds each: no training."""
import fcntl
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from ..conftest import ROOT

RECIPE = ROOT / "egs2" / "an4" / "asr1"
ASR_SH = ROOT / "egs2" / "TEMPLATE" / "asr1" / "asr.sh"


def run(tmp: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = [str(RECIPE / "run.sh"), "--data_dir", str(tmp / "data"), "--dump_dir", str(tmp / "dump"),
           "--exp_dir", str(tmp / "exp"), "--results_md", str(tmp / "RESULTS.md"), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


@pytest.mark.parametrize("args, option", [
    (["--methods", "spg@"], "--methods"),
    (["--methods", "spg ump@0.5,"], "--methods"),
    (["--methods", "nosuch"], "--methods"),
    (["--target_sparsities", "0.5 1.2"], "--target_sparsities"),
    (["--target_sparsities", "-0.1"], "--target_sparsities"),
    (["--methods", "spg hj_size@1"], "--methods"),
    (["--sweep_targets", "0.3,0.5"], "--sweep_targets"),
    (["--stage", "abc"], "--stage"),
    (["--stop_stage", "9x"], "--stop_stage"),
    (["--ngpu", "1.5"], "--ngpu"),
    (["--nthreads", "two"], "--nthreads"),
    (["--retrain_dense", "yes"], "--retrain_dense"),
    (["--speed_perturb", "0.9 fast"], "--speed_perturb"),
    (["--seeds", "0 one"], "--seeds"),
    (["--seeds", "0,1"], "--seeds"),
    (["--budgets", "1 0"], "--budgets"),
    (["--budget_target", "1.5"], "--budget_target"),
    (["--select", "best"], "--select"),
    (["--min_target_share", "40%"], "--min_target_share"),
    (["--methods", "spg", "--pruner_dir", "conf/nosuch"], "--methods"),
    (["--methods", "spg", "--compress_config", "conf/nosuch.yaml"], "--compress_config"),
])
def test_bad_option_stops_before_any_work_with_one_line(tmp_path, args, option):
    start = time.monotonic()
    r = run(tmp_path, *args, timeout=60)
    assert r.returncode != 0
    assert time.monotonic() - start < 20
    lines = (r.stdout + r.stderr).strip().splitlines()
    assert len(lines) == 1 and option in lines[0], lines
    assert not any(tmp_path.iterdir())  # no data, dump or exp dir


def test_a_list_of_seeds_is_accepted(tmp_path):
    r = run(tmp_path, "--seeds", "0 1  2", "--stage", "9", "--stop_stage", "8", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_help_shows_run_sh_values_whole_descriptions_and_every_option(tmp_path):
    r = run(tmp_path, "--help", timeout=60)
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert "--methods (default: spg ump nascp hj_size hj_macs@0.5)" in text
    assert "--dense_model (default: pretrained/dense_an4)" in text
    assert f"--exp_dir (default: {tmp_path / 'exp'})" in text  # the values in effect
    # continuation lines of a declaration are part of its help
    assert "process per GPU; decoding uses at most 1" in text
    assert '"spg ump nascp hj_size@0.5": a method@t1,t2 entry has its own targets' in text
    head = ASR_SH.read_text().split(". utils/parse_options.sh")[0]
    declared = re.findall(r"^([a-z_0-9]+)=", head, flags=re.M)
    assert "sweep_targets" in declared and "smoke" in declared
    for name in declared:
        assert f"  --{name} (default: " in text, name
    assert not any(tmp_path.iterdir())


def test_smoke_selects_the_slice_options(tmp_path):
    text = subprocess.run([str(RECIPE / "run.sh"), "--smoke", "true", "--help"],
                          capture_output=True, text=True, timeout=60).stdout
    for want in ("--exp_dir (default: exp_smoke)", "--data_dir (default: data_smoke)",
                 "--dump_dir (default: dump_smoke)", "--speed_perturb (default: 1.0)",
                 "--upstream_config (default: ../../../conf/upstream/tiny_test.yaml)",
                 "--retrain_dense (default: true)", "--pruner_dir (default: conf/pruner_debug)",
                 "--compress_config (default: conf/train_compress_debug.yaml)",
                 "--methods (default: spg ump nascp hj_macs@0.4)"):
        assert want in text, want


def _hold_lock(lock: Path):
    lock.parent.mkdir(parents=True)
    f = open(lock, "a+")
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    f.write(f"{os.getpid()} {socket.gethostname()} 2026-12-01T08:00:00\n")
    f.flush()
    return f


def test_second_run_on_a_locked_experiment_stops_at_once_naming_the_holder(tmp_path):
    holder = _hold_lock(tmp_path / "exp" / ".lock")
    try:
        start = time.monotonic()
        r = run(tmp_path, "--stop_stage", "1", timeout=60)
        assert time.monotonic() - start < 20
    finally:
        holder.close()
    assert r.returncode != 0
    msg = r.stdout + r.stderr
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in msg, msg
    assert not (tmp_path / "data").exists()
    assert (tmp_path / "exp" / ".lock").read_text().startswith(f"{os.getpid()} ")


def test_stale_lock_of_a_dead_pid_is_taken_over(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / ".lock").write_text(f"{dead.pid} {socket.gethostname()} 2026-12-01T08:00:00\n")
    r = run(tmp_path, "--stop_stage", "0", timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"taking over the stale lock {tmp_path / 'exp' / '.lock'} of pid {dead.pid}" in r.stdout
    assert (tmp_path / "exp" / ".lock").read_text() == ""  # released on exit


def test_quick_stages_log_each_set_once_and_no_unapplied_speed_perturbation(tmp_path, an4):
    # The bundled dense model is imported, not trained: stage 3 perturbs nothing.
    r = run(tmp_path, "--corpus", str(an4), "--local_data_opts", "--max_utts 3",
            "--stop_stage", "3")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    stage1 = next(line for line in r.stdout.splitlines() if "Stage 1:" in line)
    assert stage1.endswith("/data/{train,dev,test}"), stage1
    stage3 = next(line for line in r.stdout.splitlines() if "Stage 3:" in line)
    assert "speed" not in stage3, stage3
    assert not (tmp_path / "dump" / "train_sp").exists()
    assert not list((tmp_path / "dump").glob("*.tmp"))


def test_failed_stage_shows_its_error_not_a_resume_promise(tmp_path, an4):
    r = run(tmp_path, "--corpus", str(an4), "--stage", "5", "--stop_stage", "5")
    assert r.returncode != 0
    line = next(line for line in r.stdout.splitlines() if "Stage 5 failed" in line)
    assert "Error" in line and "stats.log" in line and "re-run" not in line, line


def test_garbage_meta_json_fails_stage_9_naming_the_file_and_line(tmp_path):
    meta = tmp_path / "exp" / "asr_spg_0.5" / "meta.json"
    meta.parent.mkdir(parents=True)
    meta.write_text('{"tag": "spg_0.5",\n "method": spg}\n')
    r = run(tmp_path, "--stage", "9")
    assert r.returncode != 0
    assert "Stage 9 failed" in r.stdout
    assert f"{meta}: not valid JSON (line 2" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr


def test_skip_recorded_leaves_runs_done_elsewhere_and_only_those(tmp_path):
    """--skip_recorded true: a run whose exp/records/<tag>.json exists and whose directory does not
    is not trained or decoded again; without the option, or for a run with no record, stage 7
    goes on to decode it (here: fails, there is no model)."""
    exp = tmp_path / "exp"
    (exp / "asr_dense").mkdir(parents=True)  # the dense model: decoded and scored already
    for marker in (".decode.done", ".score.done"):
        (exp / "asr_dense" / marker).touch()
    (exp / "records").mkdir()
    for tag in ("dense_cont_s0", "ump_0.5_s0"):
        (exp / "records" / f"{tag}.json").write_text("{}")
    args = ("--stage", "7", "--stop_stage", "8", "--methods", "ump", "--target_sparsities", "0.5")
    r = run(tmp_path, *args, "--skip_recorded", "true", timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    for tag in ("dense_cont_s0", "ump_0.5_s0"):
        assert f"{tag}: recorded in {exp}/records/{tag}.json (an earlier run), skipped" in r.stdout
    assert "Stage 7: decode" not in r.stdout
    r = run(tmp_path, *args, timeout=120)
    assert r.returncode != 0 and "Stage 7: decode" in r.stdout and "skipped" not in r.stdout
    shutil.rmtree(exp / "asr_dense_cont_s0")  # what that attempt left
    (exp / "records" / "ump_0.5_s0.json").unlink()
    r = run(tmp_path, *args, "--skip_recorded", "true", timeout=120)
    assert "dense_cont_s0: recorded in" in r.stdout and "ump_0.5_s0: recorded" not in r.stdout
    assert r.returncode != 0 and "asr_ump_0.5_s0" in r.stdout.split("Stage 7: decode")[-1]

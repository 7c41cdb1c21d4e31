"""--upstream_ckpt: a missing file stops the recipe before any stage; a given one is only read."""
import os
import subprocess
from pathlib import Path

from ..conftest import ROOT


def run(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [str(ROOT / "egs2" / "an4" / "asr1" / "run.sh"), "--data_dir", str(tmp / "data"),
           "--dump_dir", str(tmp / "dump"), "--exp_dir", str(tmp / "exp"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ), timeout=300)


def test_missing_checkpoint_stops_before_any_stage(tmp_path):
    missing = tmp_path / "mine" / "wav2vec_small.pt"
    r = run(tmp_path, "--stage", "4", "--stop_stage", "4", "--upstream_ckpt", str(missing))
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert f"--upstream_ckpt: no such file: {missing}" in r.stderr
    assert "Stage" not in r.stdout
    # Nothing written: no random upstream (or its marker) in the user's place, no experiment.
    assert not missing.parent.exists() and not (tmp_path / "exp").exists()


def test_given_checkpoint_is_only_read(tiny_ckpt, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    own = mine / "wav2vec_small.pt"
    own.write_bytes(Path(tiny_ckpt).read_bytes())
    for _ in range(2):  # re-running changes nothing either
        r = run(tmp_path, "--stage", "4", "--stop_stage", "4", "--upstream_ckpt", str(own))
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        assert f"Stage 4: using the given upstream checkpoint {own}" in r.stdout
    assert [p.name for p in mine.iterdir()] == [own.name]
    assert own.read_bytes() == Path(tiny_ckpt).read_bytes()
    assert not (tmp_path / "exp" / "upstream").exists()

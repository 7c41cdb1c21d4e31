"""atomic_dir: a complete output exists at every instant of a replacement, and a failed or killed
run leaves no temp dir behind."""
import os
import shutil

import pytest

from espnet_pinch.utils import atomic
from espnet_pinch.utils.atomic import atomic_dir


def write(out, text):
    with atomic_dir(out) as tmp:
        (tmp / "a").write_text(text)
        (tmp / "b").write_text(text)


def complete(d, text) -> bool:
    return all((d / f).is_file() and (d / f).read_text() == text for f in "ab")


def test_a_complete_output_exists_after_every_filesystem_step(tmp_path, monkeypatch):
    out = tmp_path / "dump" / "train"
    write(out, "old")
    seen = []

    def check(real):
        def step(*args, **kwargs):
            real(*args, **kwargs)
            seen.append(complete(out, "old") or complete(out, "new")
                        or complete(out.with_name("train.old"), "old"))
        return step

    monkeypatch.setattr(atomic.os, "replace", check(os.replace))
    monkeypatch.setattr(atomic.shutil, "rmtree", check(shutil.rmtree))
    write(out, "new")
    assert seen and all(seen), seen
    assert complete(out, "new") and sorted(p.name for p in out.parent.iterdir()) == ["train"]


def test_killed_between_the_renames_keeps_the_old_output_and_the_next_run_restores_it(
        tmp_path, monkeypatch):
    out = tmp_path / "train"
    write(out, "old")
    real = os.replace

    def killed(src, dst):
        if str(dst) == str(out):
            raise KeyboardInterrupt  # the kill lands after out -> out.old
        real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write(out, "new")
    assert complete(out, "old") or complete(tmp_path / "train.old", "old")
    monkeypatch.setattr(atomic.os, "replace", real)
    with pytest.raises(RuntimeError), atomic_dir(out):
        raise RuntimeError("the re-run fails too")
    assert complete(out, "old")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train"]


def test_a_failed_run_leaves_no_tmp_dir_and_the_old_output(tmp_path):
    out = tmp_path / "train"
    write(out, "old")
    with pytest.raises(ValueError), atomic_dir(out) as tmp:
        (tmp / "a").write_text("half")
        raise ValueError("bad audio")
    assert complete(out, "old")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train"]

"""LibriSpeech data prep on the real sample beside the repo (test-clean: 4 utterances of speaker 1089,
2 chapters), and broken corpora built from it. No test touches the network."""
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile

from espnet_pinch.data import librispeech as ls
from espnet_pinch.data.audio import AudioError
from espnet_pinch.data.kaldi_dir import read_scp

REPO = Path(__file__).resolve().parents[2]
SAMPLE = Path(os.environ.get("LIBRISPEECH_SAMPLE", REPO.parent / "shared/data/librispeech_sample"))
RECIPE = REPO / "egs2" / "librispeech_100" / "asr1"
IDS = ["1089-134686-0000", "1089-134686-0001", "1089-134691-0000", "1089-134691-0001"]


@pytest.fixture(scope="module")
def sample() -> Path:
    if not (SAMPLE / "LibriSpeech" / "test-clean").is_dir():
        pytest.skip(f"LibriSpeech sample not found at {SAMPLE} (set LIBRISPEECH_SAMPLE=...)")
    return SAMPLE


@pytest.fixture
def corpus(sample, tmp_path) -> Path:
    """A writable copy of the sample: transcripts copied, audio symlinked."""
    src = sample / "LibriSpeech" / "test-clean"
    for chap in sorted(src.glob("*/*")):
        dst = tmp_path / "corpus" / "LibriSpeech" / "test-clean" / chap.relative_to(src)
        dst.mkdir(parents=True)
        for f in chap.iterdir():
            if f.suffix == ".flac":
                os.symlink(f, dst / f.name)
            else:
                shutil.copy(f, dst / f.name)
                (dst / f.name).chmod(0o644)
    return tmp_path / "corpus"


def trans_line(trans: Path, uid: str) -> str:
    return next(l.split(" ", 1)[1] for l in trans.read_text().splitlines() if l.startswith(uid + " "))


def test_prepare_sample(sample, tmp_path):
    out = tmp_path / "data"
    summary = ls.prepare(sample, out, subsets=["test-clean"])
    d = out / "test_clean"
    wav, text, u2s = read_scp(d / "wav.scp"), read_scp(d / "text"), read_scp(d / "utt2spk")
    assert list(wav) == list(text) == list(u2s) == IDS
    assert all(os.path.isfile(p) and p.endswith(f"{u}.flac") for u, p in wav.items())
    trans = sample / "LibriSpeech/test-clean/1089/134691/1089-134691.trans.txt"
    assert text["1089-134691-0001"] == trans_line(trans, "1089-134691-0001")
    assert text["1089-134691-0000"] == "HE COULD WAIT NO LONGER"
    assert set(u2s.values()) == {"1089"}
    assert read_scp(d / "spk2utt") == {"1089": " ".join(IDS)}
    frames = sum(soundfile.info(p).frames for p in wav.values())
    expect = {"subset": "test-clean", "utterances": 4, "speakers": 1,
              "hours": round(frames / 16000 / 3600, 4)}
    assert summary["subsets"] == {"test_clean": expect} and summary["skipped"] == []
    assert json.loads((out / "librispeech_prep.json").read_text()) == summary
    assert not list(out.glob("*.tmp"))


def test_corpus_may_be_the_librispeech_folder(sample, tmp_path):
    summary = ls.prepare(sample / "LibriSpeech", tmp_path / "data", subsets=["test-clean"], max_utts=3)
    assert summary["subsets"]["test_clean"]["utterances"] == 3
    assert list(read_scp(tmp_path / "data/test_clean/text")) == IDS[:3]


def test_missing_subset_is_an_error_naming_it(sample, tmp_path):
    missing = r"subset\(s\) train-clean-100 dev-clean dev-other test-other not found"
    with pytest.raises(ls.CorpusError, match=rf"{missing}.*--download true.*--skip_missing"):
        ls.prepare(sample, tmp_path / "data")
    out = str(tmp_path / "data")
    rc = ls.main(["--corpus", str(sample), "--out", out, "--subsets", "test-clean dev-clean"])
    assert rc == 1 and not (tmp_path / "data").exists()


def test_skip_missing_prepares_what_exists(sample, tmp_path):
    out = tmp_path / "data"
    assert ls.main(["--corpus", str(sample), "--out", str(out), "--skip_missing"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["librispeech_prep.json", "test_clean"]
    summary = json.loads((out / "librispeech_prep.json").read_text())
    assert summary["skipped"] == ["train-clean-100", "dev-clean", "dev-other", "test-other"]
    assert summary["subsets"]["test_clean"]["utterances"] == 4


def test_unknown_subset_name_is_an_error(sample, tmp_path):
    with pytest.raises(ValueError, match="unknown LibriSpeech subset"):
        ls.prepare(sample, tmp_path / "data", subsets=["test-clena"], skip_missing=True)


def _chapter(corpus: Path) -> tuple[Path, Path]:
    chap = corpus / "LibriSpeech/test-clean/1089/134686"
    return chap, chap / "1089-134686.trans.txt"


def _edit_lines(trans: Path, fn) -> None:
    trans.write_text("\n".join(fn(trans.read_text().splitlines())) + "\n")


@pytest.mark.parametrize("case", ["line_without_audio", "audio_without_line", "empty", "duplicate"])
def test_broken_corpus_names_file_and_line(corpus, tmp_path, case):
    chap, trans = _chapter(corpus)
    if case == "line_without_audio":
        (chap / "1089-134686-0001.flac").unlink()
        match = rf"{trans}:2: no audio file 1089-134686-0001.flac"
    elif case == "audio_without_line":
        _edit_lines(trans, lambda ls_: ls_[:1])
        match = rf"{chap / '1089-134686-0001.flac'}: audio file has no transcript line in {trans}"
    elif case == "empty":
        _edit_lines(trans, lambda ls_: [ls_[0], "1089-134686-0001"])
        match = rf"{trans}:2: empty transcript for 1089-134686-0001"
    else:
        _edit_lines(trans, lambda ls_: ls_ + ls_[:1])
        match = rf"{trans}:3: duplicate utterance id 1089-134686-0000 \(first on line 1\)"
    with pytest.raises(ls.CorpusError, match=match):
        ls.prepare(corpus, tmp_path / "data", subsets=["test-clean"])
    assert not (tmp_path / "data").exists()


def test_bad_audio_stops_and_leaves_earlier_output(corpus, tmp_path):
    out = tmp_path / "data"
    ls.prepare(corpus, out, subsets=["test-clean"])
    before = (out / "test_clean/wav.scp").read_text()
    victim = _chapter(corpus)[0] / "1089-134686-0000.flac"
    victim.unlink()
    soundfile.write(victim, np.zeros(800, dtype=np.int16), 8000)
    with pytest.raises(AudioError, match=rf"{victim}: sample rate 8000 Hz"):
        ls.prepare(corpus, out, subsets=["test-clean"])
    assert (out / "test_clean/wav.scp").read_text() == before
    # Unchecked: accepted, and the hours are not claimed.
    summary = ls.prepare(corpus, out, subsets=["test-clean"], check_audio=False)
    assert summary["subsets"]["test_clean"]["hours"] is None


def run_data_sh(*args: str, path: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PINCH_PYTHON=sys.executable)
    if path:
        env["PATH"] = f"{path}:{env['PATH']}"
    return subprocess.run(["bash", "local/data.sh", *args], cwd=RECIPE, env=env,
                          capture_output=True, text=True, timeout=60)


def test_data_sh_on_sample(sample, tmp_path):
    r = run_data_sh("--download", "false", "--subsets", "test-clean", "--corpus", str(sample),
                    "--data_dir", str(tmp_path / "data"))
    assert r.returncode == 0, r.stderr
    assert list(read_scp(tmp_path / "data/test_clean/text")) == IDS
    assert (tmp_path / "data/librispeech_prep.json").is_file()


def test_data_sh_missing_subset_without_download(sample, tmp_path):
    r = run_data_sh("--download", "false", "--subsets", "test-clean dev-clean", "--corpus", str(sample),
                    "--data_dir", str(tmp_path / "data"))
    assert r.returncode != 0
    assert "subset dev-clean not found" in r.stderr and "resources/12/dev-clean.tar.gz" in r.stderr
    assert not (tmp_path / "data").exists()


def test_data_sh_unpacks_archive_once(sample, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    with tarfile.open(corpus / "test-clean.tar.gz", "w:gz") as tar:
        tar.add(sample / "LibriSpeech/test-clean", arcname="LibriSpeech/test-clean")
    args = ("--download", "false", "--subsets", "test-clean", "--corpus", str(corpus),
            "--data_dir", str(tmp_path / "data"))
    r = run_data_sh(*args)
    assert r.returncode == 0, r.stderr
    assert "unpacking" in r.stdout and (corpus / ".test-clean.done").is_file()
    assert len(read_scp(tmp_path / "data/test_clean/wav.scp")) == 4
    # The marker makes a re-run skip the unpack: it no longer needs the archive.
    (corpus / "test-clean.tar.gz").unlink()
    r = run_data_sh(*args)
    assert r.returncode == 0, r.stderr
    assert "unpacking" not in r.stdout


def test_data_sh_rejects_download_with_wrong_md5(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    # Stands in for wget: writes a few bytes to the -O file instead of going to the network.
    (fake / "wget").write_text('#!/bin/sh\nwhile [ "$1" != -O ]; do shift; done\necho junk > "$2"\n')
    (fake / "wget").chmod(0o755)
    corpus = tmp_path / "corpus"
    r = run_data_sh("--subsets", "test-clean", "--corpus", str(corpus),
                    "--data_dir", str(tmp_path / "data"), path=str(fake))
    assert r.returncode != 0 and "expected 32fa31d27d2e1cad72775fee3f4849a9" in r.stderr
    assert sorted(p.name for p in corpus.iterdir()) == []  # neither .part nor archive nor marker


def test_non_utf8_transcript_names_file_and_line(corpus, tmp_path):
    _, trans = _chapter(corpus)
    lines = trans.read_bytes().splitlines()
    lines[1] = lines[1] + b" NA\xefVE"  # Latin-1, not UTF-8
    trans.write_bytes(b"\n".join(lines) + b"\n")
    col = len(lines[1]) - 2
    with pytest.raises(ls.CorpusError, match=rf"{trans}:2: not UTF-8 \(byte 0xef at column {col}\)"):
        ls.prepare(corpus, tmp_path / "data", subsets=["test-clean"])
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("bad, shown", [("HE\u200bCOULD", "U+200B ZERO WIDTH SPACE"),
                                         ("NA\u00efVE", "U+00EF LATIN SMALL LETTER I WITH DIAERESIS")])
def test_non_ascii_in_transcript_is_an_error(corpus, tmp_path, bad, shown):
    _, trans = _chapter(corpus)
    _edit_lines(trans, lambda ls_: [ls_[0], ls_[1] + " " + bad, *ls_[2:]])
    with pytest.raises(ls.CorpusError, match=rf"{trans}:2: .*{re.escape(shown)}"):
        ls.prepare(corpus, tmp_path / "data", subsets=["test-clean"])


def test_lowercase_and_punctuation_are_counted_and_shown(corpus, tmp_path, caplog):
    _, trans = _chapter(corpus)
    _edit_lines(trans, lambda ls_: [ls_[0] + " hello", ls_[1] + " WORLD!", *ls_[2:]])
    ls.prepare(corpus, tmp_path / "data", subsets=["test-clean"])
    warn = "\n".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "2 lines" in warn and "lowercase" in warn and "'!'" in warn
    assert f"{trans}:1" in warn and f"{trans}:2" in warn
    assert read_scp(tmp_path / "data/test_clean/text")["1089-134686-0001"].endswith(" WORLD!")

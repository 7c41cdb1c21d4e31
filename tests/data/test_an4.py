"""AN4 data prep on a mini corpus built from a few real AN4 speakers."""
import os
import re

import pytest

from espnet_pinch.data import an4 as an4_prep
from espnet_pinch.data.kaldi_dir import read_scp

SPEAKERS = {"train": ["fash", "fbbh", "fclc", "fejs"], "test": ["fcaw", "fjlp"]}


def mini_corpus(src, dst):
    """Same layout as AN4, holding only the SPEAKERS (audio symlinked, etc/ filtered)."""
    (dst / "etc").mkdir(parents=True)
    for split, wavdir in (("train", "an4_clstk"), ("test", "an4test_clstk")):
        ids = []
        for line in (src / f"etc/an4_{split}.fileids").read_text().splitlines():
            if line.split("/")[1] in SPEAKERS[split]:
                ids.append(line)
        (dst / f"etc/an4_{split}.fileids").write_text("\n".join(ids) + "\n")
        keep = {i.split("/")[-1] for i in ids}
        lines = [l for l in (src / f"etc/an4_{split}.transcription").read_text().splitlines()
                 if l.rsplit("(", 1)[-1].rstrip(")") in keep]
        (dst / f"etc/an4_{split}.transcription").write_text("\n".join(lines) + "\n")
        for spk in SPEAKERS[split]:
            (dst / "wav" / wavdir / spk).mkdir(parents=True)
            for f in (src / "wav" / wavdir / spk).iterdir():
                os.symlink(f, dst / "wav" / wavdir / spk / f.name)
    return dst


@pytest.fixture
def corpus(an4, tmp_path):
    return mini_corpus(an4, tmp_path / "an4")


def test_prepare_writes_kaldi_dirs(corpus, tmp_path):
    counts = an4_prep.prepare(corpus, tmp_path / "data", dev_speakers=1)
    assert counts["test"] > 0 and counts["dev"] > 0 and counts["train"] > counts["dev"]
    for split in ("train", "dev", "test"):
        d = tmp_path / "data" / split
        wav, text, u2s = read_scp(d / "wav.scp"), read_scp(d / "text"), read_scp(d / "utt2spk")
        assert list(wav) == sorted(wav) == list(text) == list(u2s)
        assert all(os.path.isfile(p) for p in wav.values())
        assert all("<s>" not in t and t == t.upper() for t in text.values())
        spk2utt = read_scp(d / "spk2utt")
        assert sorted(u for us in spk2utt.values() for u in us.split()) == list(wav)
    train_spk = set(read_scp(tmp_path / "data/train/utt2spk").values())
    dev_spk = set(read_scp(tmp_path / "data/dev/utt2spk").values())
    assert len(dev_spk) == 1 and not train_spk & dev_spk
    assert train_spk | dev_spk == set(SPEAKERS["train"])
    # A known utterance keeps its transcript.
    assert read_scp(tmp_path / "data/test/text")["fcaw-an409-fcaw-b"] == "GO"


def test_missing_corpus_is_a_clear_error(tmp_path):
    rc = an4_prep.main(["--corpus", str(tmp_path / "nowhere"), "--out", str(tmp_path / "d")])
    assert rc == 1 and not (tmp_path / "d").exists()


def test_transcript_without_id_names_file_and_line(corpus, tmp_path):
    f = corpus / "etc/an4_train.transcription"
    lines = f.read_text().splitlines()
    lines[2] = "<s> YES NO </s>"
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(an4_prep.CorpusError, match=rf"{f}:3: transcript line has no"):
        an4_prep.prepare(corpus, tmp_path / "data")


def test_bad_audio_leaves_earlier_output(corpus, tmp_path):
    out = tmp_path / "data"
    an4_prep.prepare(corpus, out, dev_speakers=1)
    before = (out / "train/wav.scp").read_text()
    victim = next((corpus / "wav/an4_clstk/fash").iterdir())
    victim.unlink()
    victim.write_bytes(b"")  # empty audio file
    rc = an4_prep.main(["--corpus", str(corpus), "--out", str(out), "--dev_speakers", "1"])
    assert rc == 1
    assert (out / "train/wav.scp").read_text() == before


def _edit(path, fn):
    path.write_text("\n".join(fn(path.read_text().splitlines())) + "\n")


@pytest.mark.parametrize("name", ["transcription", "fileids"])
def test_duplicate_id_names_file_and_both_lines(corpus, tmp_path, name):
    f = corpus / f"etc/an4_train.{name}"
    lines = f.read_text().splitlines()
    dup = lines[0] if name == "fileids" else lines[0].replace("YES", "NO")
    _edit(f, lambda ls: ls + [dup])
    match = rf"{f}:{len(lines) + 1}: duplicate utterance id an251-fash-b \(first on line 1\)"
    with pytest.raises(an4_prep.CorpusError, match=match):
        an4_prep.prepare(corpus, tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_non_utf8_transcription_names_file_and_line(corpus, tmp_path):
    f = corpus / "etc/an4_test.transcription"
    lines = f.read_bytes().splitlines()
    lines[3] = b"CAF\xe9 " + lines[3]  # Latin-1, not UTF-8
    f.write_bytes(b"\n".join(lines) + b"\n")
    rc = an4_prep.main(["--corpus", str(corpus), "--out", str(tmp_path / "d"), "--dev_speakers", "1"])
    assert rc == 1 and not (tmp_path / "d").exists()
    with pytest.raises(an4_prep.CorpusError, match=rf"{f}:4: not UTF-8 \(byte 0xe9 at column 4\)"):
        an4_prep.prepare(corpus, tmp_path / "data")


@pytest.mark.parametrize("bad, shown", [("YES\u200bNO", "U+200B ZERO WIDTH SPACE"),
                                         ("CAF\u00c9", "U+00C9 LATIN CAPITAL LETTER E WITH ACUTE")])
def test_non_ascii_in_transcript_is_an_error(corpus, tmp_path, bad, shown):
    f = corpus / "etc/an4_train.transcription"
    _edit(f, lambda ls: [ls[0], ls[1].replace("GO", bad), *ls[2:]])
    with pytest.raises(an4_prep.CorpusError, match=rf"{f}:2: .*{re.escape(shown)}"):
        an4_prep.prepare(corpus, tmp_path / "data")


def test_lowercase_and_punctuation_are_counted_and_shown(corpus, tmp_path, caplog):
    f = corpus / "etc/an4_train.transcription"
    _edit(f, lambda ls: [ls[0].replace("YES", "yes"), ls[1].replace("GO", "GO."),
                         ls[2].replace("YES", "Y-E-S,"), *ls[3:]])
    counts = an4_prep.prepare(corpus, tmp_path / "data", dev_speakers=1)
    assert counts["train"] > 0
    warn = "\n".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "3 lines" in warn and "lowercase" in warn and "'.'" in warn and "','" in warn
    assert f"{f}:1" in warn and f"{f}:2" in warn
    text = read_scp(tmp_path / "data/train/text")
    assert text["fash-an251-fash-b"] == "YES"  # AN4's words are upper case: lowercase is folded
    assert text["fash-an253-fash-b"] == "GO."  # kept, but not silently

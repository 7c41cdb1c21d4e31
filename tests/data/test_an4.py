"""AN4 data prep on a mini corpus built from a few real AN4 speakers."""
import os

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

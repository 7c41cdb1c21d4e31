"""SLURP data prep on the hand-written fixture in tests/fixtures/slurp (SLURP's format, not its data)."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from espnet_pinch.data import slurp
from espnet_pinch.data.kaldi_dir import read_scp

from ..conftest import ROOT

FIXTURE = ROOT / "tests" / "fixtures" / "slurp"
RECIPE = ROOT / "egs2" / "slurp" / "slu1"
UTT = "audio-1600000101-headset_101"
TARGET = "ALARM_SET WAKE ME UP AT [ TIME FIVE AM ] [ DATE THIS WEEK ]"


@pytest.fixture
def corpus(tmp_path):
    """A copy of the fixture that a test may break."""
    return shutil.copytree(FIXTURE, tmp_path / "slurp")


def records(split):
    path = FIXTURE / "dataset" / "slurp" / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_prepare_writes_kaldi_dirs(tmp_path):
    counts = slurp.prepare(FIXTURE, tmp_path / "data")
    assert counts == {"train": 5, "devel": 3, "test": 2}  # one utterance per recording
    for split in slurp.SPLITS:
        d = tmp_path / "data" / split
        wav, text, u2s = read_scp(d / "wav.scp"), read_scp(d / "text"), read_scp(d / "utt2spk")
        assert list(wav) == sorted(wav) == list(text) == list(u2s)
        assert all(os.path.isfile(p) for p in wav.values())
        assert all(u.startswith(s + "_") for u, s in u2s.items())
        # utterance order is speaker order (Kaldi's requirement)
        assert list(u2s.values()) == sorted(u2s.values())
    text = read_scp(tmp_path / "data/train/text")
    assert text[UTT] == TARGET
    assert text["audio-1600000101-far_101"] == TARGET  # far-field recording of the same session
    assert read_scp(tmp_path / "data/train/wav.scp")[UTT].endswith("slurp_real/audio-1600000101-headset.flac")
    assert read_scp(tmp_path / "data/devel/text")["audio-1600000202-far_202"] == \
        "PLAY_MUSIC PLAY SOME [ MUSIC_GENRE JAZZ ] MUSIC"
    assert (tmp_path / "data/nlsyms.txt").read_text().split() == \
        ["ALARM_SET", "GENERAL_JOKE", "IOT_HUE_LIGHTOFF", "WEATHER_QUERY"]


@pytest.mark.parametrize("split", slurp.SPLITS)
def test_target_round_trip(split):
    """parse_target(target) gives back the record's intent, its entities (fillers taken from the
    tokens and spans, not from the annotation the target was built from) and its words."""
    for rec in records(split):
        target = slurp.format_target(rec["intent"], rec["sentence_annotation"])
        surface = [t["surface"] for t in rec["tokens"]]
        entities = [(e["type"], " ".join(surface[i] for i in e["span"])) for e in rec["entities"]]
        assert slurp.parse_target(target) == (rec["intent"], entities, rec["sentence"].split())


def test_parse_target_is_lenient_with_hypotheses():
    assert slurp.parse_target("ALARM_SET WAKE ME AT [TIME FIVE AM] NOW") == \
        ("alarm_set", [("time", "five am")], ["wake", "me", "at", "five", "am", "now"])
    # open entity closed by the next one / by the end; stray "]" and empty "[ ]" dropped
    assert slurp.parse_target("X_Y [ TIME FIVE [ DATE TODAY ] ] [ ]") == \
        ("x_y", [("time", "five"), ("date", "today")], ["five", "today"])
    assert slurp.parse_target("X_Y A [ TIME") == ("x_y", [("time", "")], ["a"])
    assert slurp.parse_target("  ") == ("", [], [])


def test_format_target_cleans_words():
    assert slurp.format_target("email_sendemail", "mail [person : bob] @ 5.30, #work <unk>") == \
        "EMAIL_SENDEMAIL MAIL [ PERSON BOB ] AT 530 HASHTAG WORK UNKNOWN"
    with pytest.raises(ValueError, match="not '\\[type : filler\\]'"):
        slurp.format_target("alarm_set", "wake me at [five am]")
    with pytest.raises(ValueError, match="unbalanced"):
        slurp.format_target("alarm_set", "wake me at [time : five am")


def test_max_utts_and_synthetic(corpus, tmp_path):
    meta = corpus / "dataset/slurp"
    rec = records("train")[1]
    rec["recordings"] = [{"file": "synth-00042.flac", "wer": 0.0, "ent_wer": None, "status": "correct"}]
    (meta / "train_synthetic.jsonl").write_text(json.dumps(rec) + "\n")
    (corpus / "slurp_synth").mkdir()
    shutil.copy(corpus / "slurp_real/audio-1600000102-headset.flac", corpus / "slurp_synth/synth-00042.flac")
    counts = slurp.prepare(corpus, tmp_path / "data", max_utts=2, with_synthetic=True)
    assert counts == {"train": 3, "devel": 2, "test": 2}
    u2s = read_scp(tmp_path / "data/train/utt2spk")
    assert u2s["synth-synth-00042_102"] == "synth-synth-00042"


def test_missing_audio_names_jsonl_line_and_file(corpus, tmp_path):
    (corpus / "slurp_real/audio-1600000302.flac").unlink()
    jsonl = corpus / "dataset/slurp/test.jsonl"
    msg = rf"{jsonl}:2: slurp_id 302: .*audio-1600000302.flac: audio file not found"
    with pytest.raises(slurp.CorpusError, match=msg):
        slurp.prepare(corpus, tmp_path / "data")
    assert not (tmp_path / "data").exists()  # nothing written: every split is checked first


def test_malformed_json_line_names_file_and_line(corpus, tmp_path):
    jsonl = corpus / "dataset/slurp/devel.jsonl"
    lines = jsonl.read_text().splitlines()
    lines[1] = lines[1][:-1]  # drop the closing brace
    jsonl.write_text("\n".join(lines) + "\n")
    with pytest.raises(slurp.CorpusError, match=rf"{jsonl}:2: malformed JSON"):
        slurp.prepare(corpus, tmp_path / "data")


@pytest.mark.parametrize("field", ["slurp_id", "intent", "sentence_annotation", "recordings"])
def test_missing_field_names_file_and_line(corpus, tmp_path, field):
    jsonl = corpus / "dataset/slurp/train.jsonl"
    recs = records("train")
    del recs[2][field]
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in recs))
    with pytest.raises(slurp.CorpusError, match=rf"{jsonl}:3: record has no '{field}'"):
        slurp.prepare(corpus, tmp_path / "data")


def test_bad_corpus_leaves_earlier_output(corpus, tmp_path):
    out = tmp_path / "data"
    assert slurp.main(["--corpus", str(corpus), "--out", str(out)]) == 0
    before = (out / "train/text").read_text()
    (corpus / "slurp_real/audio-1600000104-headset.flac").write_bytes(b"")
    assert slurp.main(["--corpus", str(corpus), "--out", str(out)]) == 1
    assert (out / "train/text").read_text() == before
    assert slurp.main(["--corpus", str(tmp_path / "nowhere"), "--out", str(tmp_path / "d")]) == 1
    assert not (tmp_path / "d").exists()


def run_data_sh(*args):
    env = {**os.environ, "PINCH_PYTHON": sys.executable}
    return subprocess.run(["bash", "local/data.sh", *args], cwd=RECIPE, env=env,
                          capture_output=True, text=True, timeout=120)


def test_local_data_sh(tmp_path):
    r = run_data_sh("--corpus", str(FIXTURE), "--data_dir", str(tmp_path / "data"), "--max_utts", "4")
    assert r.returncode == 0, r.stderr
    assert read_scp(tmp_path / "data/train/text")[UTT] == TARGET
    assert [len(read_scp(tmp_path / f"data/{s}/text")) for s in slurp.SPLITS] == [4, 2, 2]
    r = run_data_sh("--corpus", str(tmp_path / "nowhere"), "--data_dir", str(tmp_path / "d"))
    assert r.returncode == 1 and "SLURP not found" in r.stderr


def _write_records(jsonl, recs):
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in recs))


def test_duplicate_slurp_id_names_file_and_both_lines(corpus, tmp_path):
    jsonl = corpus / "dataset/slurp/train.jsonl"
    recs = records("train")
    dup = dict(recs[1], recordings=[{"file": "audio-1600000104-headset.flac"}])
    _write_records(jsonl, recs + [dup])
    with pytest.raises(slurp.CorpusError, match=rf"{jsonl}:5: duplicate slurp_id 102 \(first on line 2\)"):
        slurp.prepare(corpus, tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_recording_named_twice_with_another_target_is_an_error(corpus, tmp_path):
    jsonl = corpus / "dataset/slurp/train.jsonl"
    recs = records("train")
    recs[3]["recordings"].append({"file": "audio-1600000102-headset.flac"})  # is 102's, a rain query
    _write_records(jsonl, recs)
    match = rf"{jsonl}:4: recording audio-1600000102-headset.flac named again .*\(first on line 2:"
    with pytest.raises(slurp.CorpusError, match=match):
        slurp.prepare(corpus, tmp_path / "data")


def test_non_utf8_jsonl_names_file_and_line(corpus, tmp_path):
    jsonl = corpus / "dataset/slurp/test.jsonl"
    lines = jsonl.read_bytes().splitlines()
    lines[1] = lines[1].replace(b"what time", b"what\xa0time")  # Latin-1 no-break space
    jsonl.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(slurp.CorpusError, match=rf"{jsonl}:2: not UTF-8 \(byte 0xa0 at column \d+\)"):
        slurp.prepare(corpus, tmp_path / "data")


def test_unexpected_characters(corpus, tmp_path, caplog):
    jsonl = corpus / "dataset/slurp/train.jsonl"
    recs = records("train")
    recs[1]["sentence_annotation"] = "is it going to rain in münchen & köln"
    recs[2]["sentence_annotation"] = "turn the lights off?"
    _write_records(jsonl, recs)
    slurp.prepare(corpus, tmp_path / "data")
    warn = "\n".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "2 lines" in warn and "'Ü' x1" in warn and "'Ö' x1" in warn and "'?' x1" in warn
    assert f"{jsonl}:2" in warn and f"{jsonl}:3" in warn
    # An invisible character is never meant: it stops the prep.
    recs[2]["sentence_annotation"] = "turn the\u200b lights off"
    _write_records(jsonl, recs)
    with pytest.raises(slurp.CorpusError, match=rf"{jsonl}:3: .*U\+200B ZERO WIDTH SPACE"):
        slurp.prepare(corpus, tmp_path / "data")

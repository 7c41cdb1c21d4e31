import kaldiio
import numpy as np
import pytest

from espnet_pinch.data.audio import read_audio
from espnet_pinch.data.dump import dump, main
from espnet_pinch.data.kaldi_dir import CorpusError, Utterance, read_scp, write_kaldi_dir


@pytest.fixture
def data_dir(an4, tmp_path):
    files = sorted((an4 / "wav/an4_clstk/fash").glob("*.sph"))[:3]
    utts = [Utterance(f"fash-{f.stem}", "fash", str(f), "YES") for f in files]
    write_kaldi_dir(tmp_path / "data", utts)
    return tmp_path / "data"


def test_dump_roundtrip_and_speed_perturbation(data_dir, tmp_path):
    n = dump(data_dir, tmp_path / "dump", speeds=[0.9, 1.0, 1.1])
    assert n == 9
    scp = kaldiio.load_scp(str(tmp_path / "dump/wav.scp"))
    lens = {k: int(v) for k, v in read_scp(tmp_path / "dump/utt2num_samples").items()}
    for utt, path in read_scp(data_dir / "wav.scp").items():
        rate, wav = scp[utt]
        assert rate == 16000 and np.array_equal(wav, read_audio(path))
        n0 = len(wav)
        assert abs(lens[f"sp0.9-{utt}"] - n0 / 0.9) <= 2
        assert abs(lens[f"sp1.1-{utt}"] - n0 / 1.1) <= 2
        assert len(scp[f"sp0.9-{utt}"][1]) == lens[f"sp0.9-{utt}"]
    assert read_scp(tmp_path / "dump/text")[f"sp1.1-{next(iter(lens))}"] == "YES"


def test_failed_dump_keeps_previous_output(data_dir, tmp_path):
    dump(data_dir, tmp_path / "dump")
    before = (tmp_path / "dump/wav.scp").read_text()
    bad = tmp_path / "bad.sph"
    bad.write_bytes(b"")
    wav_scp = data_dir / "wav.scp"
    first = wav_scp.read_text().splitlines()[0].split()[0]
    wav_scp.write_text(wav_scp.read_text().replace(wav_scp.read_text().splitlines()[0],
                                                   f"{first} {bad}"))
    with pytest.raises(ValueError, match="bad.sph"):
        dump(data_dir, tmp_path / "dump")
    assert (tmp_path / "dump/wav.scp").read_text() == before


@pytest.mark.parametrize("name", ["wav.scp", "text", "utt2spk"])
def test_duplicate_id_in_data_dir_names_file_and_both_lines(data_dir, tmp_path, name):
    f = data_dir / name
    lines = f.read_text().splitlines()
    f.write_text("\n".join(lines + [lines[0]]) + "\n")
    uid = lines[0].split()[0]
    rc = main(["--data", str(data_dir), "--out", str(tmp_path / "dump")])
    assert rc == 1 and not (tmp_path / "dump").exists() and not (tmp_path / "dump.tmp").exists()
    with pytest.raises(CorpusError, match=rf"{f}:4: duplicate utterance id {uid} \(first on line 1\)"):
        dump(data_dir, tmp_path / "dump")


def test_non_utf8_text_names_file_and_line(data_dir, tmp_path):
    f = data_dir / "text"
    lines = f.read_bytes().splitlines()
    lines[1] = lines[1].replace(b"YES", b"Y\xc9S")  # Latin-1, not UTF-8
    f.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(CorpusError, match=rf"{f}:2: not UTF-8 \(byte 0xc9 at column \d+\)"):
        dump(data_dir, tmp_path / "dump")


def test_long_utterances_are_warned_with_their_ids(data_dir, tmp_path, caplog):
    lens = {u: len(read_audio(p)) for u, p in read_scp(data_dir / "wav.scp").items()}
    limit = sorted(lens.values())[0] / 16000 + 0.01  # all but the shortest are longer
    long_ids = sorted(u for u, n in lens.items() if n / 16000 > limit)
    assert main(["--data", str(data_dir), "--out", str(tmp_path / "dump"),
                 "--max_seconds", str(limit)]) == 0
    warn = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warn) == 1 and f"{len(long_ids)} utterances longer than {limit:g} s" in warn[0]
    assert all(u in warn[0] for u in long_ids)
    assert len(read_scp(tmp_path / "dump/utt2num_samples")) == 3  # warned, not filtered
    caplog.clear()
    dump(data_dir, tmp_path / "dump")  # default 30 s: AN4 has nothing that long
    assert not [r for r in caplog.records if r.levelname == "WARNING"]

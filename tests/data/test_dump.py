import kaldiio
import numpy as np
import pytest

from espnet_pinch.data.audio import read_audio
from espnet_pinch.data.dump import dump
from espnet_pinch.data.kaldi_dir import Utterance, read_scp, write_kaldi_dir


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

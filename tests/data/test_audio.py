import numpy as np
import pytest

from espnet_pinch.data.audio import AudioError, read_audio, read_sphere_header


def write_sphere(path, samples: np.ndarray, rate: int = 16000, count: int | None = None):
    fields = (f"NIST_1A\n   1024\nsample_count -i {len(samples) if count is None else count}\n"
              f"sample_rate -i {rate}\nsample_n_bytes -i 2\nsample_byte_format -s2 01\n"
              "channel_count -i 1\nsample_coding -s3 pcm\nend_head\n").encode()
    path.write_bytes(fields.ljust(1024, b" ") + samples.astype("<i2").tobytes())
    return path


def test_reads_real_an4_file(an4):
    f = an4 / "wav/an4_clstk/fash/an251-fash-b.sph"
    h = read_sphere_header(f)
    wav = read_audio(f)
    assert h["sample_rate"] == 16000
    assert wav.dtype == np.int16 and len(wav) == h["sample_count"]
    assert np.abs(wav).max() > 100  # real speech, not silence


def test_roundtrip_written_sphere(tmp_path):
    x = (np.arange(800) % 200 - 100).astype(np.int16)
    assert np.array_equal(read_audio(write_sphere(tmp_path / "a.sph", x)), x)


@pytest.mark.parametrize("case, match", [
    ("empty", "empty"),
    ("header", "not a NIST SPHERE"),
    ("rate", "sample rate 8000 Hz, expected 16000"),
    ("truncated", "header says 1000 samples"),
    ("missing", "not found"),
])
def test_bad_audio_names_the_file(tmp_path, case, match):
    f = tmp_path / f"{case}.sph"
    x = np.ones(800, dtype=np.int16)
    if case == "empty":
        f.write_bytes(b"")
    elif case == "header":
        f.write_bytes(b"RIFF garbage" * 100)
    elif case == "rate":
        write_sphere(f, x, rate=8000)
    elif case == "truncated":
        write_sphere(f, x, count=1000)
    with pytest.raises(AudioError, match=match) as e:
        read_audio(f)
    assert str(f) in str(e.value)


def test_wav_at_other_rate_is_rejected(tmp_path):
    import soundfile

    f = tmp_path / "a.wav"
    soundfile.write(f, np.zeros(800, dtype=np.int16), 22050)
    with pytest.raises(AudioError, match="22050"):
        read_audio(f)


@pytest.mark.parametrize("fields, match", [
    ("sample_rate -i 16k\n", "sample_rate.*'16k' is not a number"),
    ("sample_count -i 800\n", "no sample_rate"),
])
def test_bad_sphere_header_names_file_and_field(tmp_path, fields, match):
    f = tmp_path / "a.sph"
    head = f"NIST_1A\n   1024\n{fields}sample_n_bytes -i 2\nend_head\n".encode()
    f.write_bytes(head.ljust(1024, b" ") + np.ones(800, dtype="<i2").tobytes())
    with pytest.raises(AudioError, match=match) as e:
        read_audio(f)
    assert str(f) in str(e.value)

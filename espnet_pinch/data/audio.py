"""Audio reading with errors that name the file.

AN4 ships NIST SPHERE (1024-byte ASCII header + raw PCM); LibriSpeech ships FLAC. Both are read here
so that data prep can check every file (rate, emptiness, corruption) before a later stage trusts it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


class AudioError(ValueError):
    """Bad audio input; the message names the file."""


def read_sphere_header(path: str | Path) -> dict:
    """Parse the NIST SPHERE header of ``path`` into a dict (values typed as declared)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(1024)
    if len(head) < 16 or not head.startswith(b"NIST_1A"):
        raise AudioError(f"{path}: not a NIST SPHERE file (bad or empty header)")
    try:
        header_size = int(head[8:16].strip())
    except ValueError as e:
        raise AudioError(f"{path}: corrupt SPHERE header size") from e
    if header_size > len(head):
        with open(path, "rb") as f:
            head = f.read(header_size)
    fields: dict = {"header_size": header_size}
    # Header lines 1-2 are "NIST_1A" and the header size; the fields start on line 3.
    for n, line in enumerate(head[16:header_size].decode("ascii", errors="replace").splitlines(), 3):
        parts = line.strip().split(None, 2)
        if not parts or parts[0] == "end_head":
            if parts:
                break
            continue
        if len(parts) != 3:
            continue
        key, typ, val = parts
        try:
            fields[key] = int(val) if typ == "-i" else float(val) if typ == "-r" else val
        except ValueError:
            kind = "an integer" if typ == "-i" else "a real number"
            raise AudioError(f"{path}: SPHERE header line {n}: field {key} {typ} {val!r} is not a number "
                             f"({typ} declares {kind})") from None
    return fields


def read_sphere(path: str | Path) -> tuple[np.ndarray, int]:
    """Read an uncompressed 16-bit PCM SPHERE file -> (int16 samples (N,), sample_rate)."""
    path = Path(path)
    h = read_sphere_header(path)
    if "sample_rate" not in h:  # optional in the SPHERE spec, but needed here
        raise AudioError(f"{path}: SPHERE header has no sample_rate field")
    coding = str(h.get("sample_coding", "pcm"))
    if coding != "pcm":
        raise AudioError(f"{path}: SPHERE sample_coding '{coding}' is not supported (need pcm)")
    if h.get("sample_n_bytes", 2) != 2 or h.get("channel_count", 1) != 1:
        raise AudioError(f"{path}: need mono 16-bit SPHERE audio")
    order = str(h.get("sample_byte_format", "01"))
    dtype = "<i2" if order == "01" else ">i2"
    raw = path.read_bytes()[h["header_size"]:]
    if len(raw) % 2:
        raise AudioError(f"{path}: truncated sample data ({len(raw)} bytes)")
    data = np.frombuffer(raw, dtype=dtype).astype(np.int16)
    n = h.get("sample_count")
    if n is not None and n != len(data):
        raise AudioError(f"{path}: header says {n} samples, file holds {len(data)} (corrupt?)")
    return data, int(h["sample_rate"])


def read_audio(path: str | Path, expected_rate: int | None = 16000) -> np.ndarray:
    """Read SPHERE/WAV/FLAC as int16 (N,); raise AudioError naming the file on any problem."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: audio file is empty")
    if path.suffix.lower() == ".sph":
        data, rate = read_sphere(path)
    else:
        import soundfile

        try:
            data, rate = soundfile.read(str(path), dtype="int16")
        except Exception as e:  # soundfile raises several types for corrupt files
            raise AudioError(f"{path}: cannot decode audio ({e})") from e
        if data.ndim != 1:
            raise AudioError(f"{path}: expected mono audio, got {data.shape[1]} channels")
    if len(data) == 0:
        raise AudioError(f"{path}: audio file has no samples")
    if expected_rate is not None and rate != expected_rate:
        raise AudioError(f"{path}: sample rate {rate} Hz, expected {expected_rate} Hz")
    return data

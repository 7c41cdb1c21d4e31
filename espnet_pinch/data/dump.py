"""Dump audio of a Kaldi data dir into a kaldiio ark/scp (ESPnet's ``kaldi_ark`` input type),
with optional speed perturbation, after checking every file.

Writes ``<out>/wav.ark``, ``<out>/wav.scp``, ``<out>/utt2num_samples``, ``<out>/text`` and
``<out>/utt2spk``. Everything is written to ``<out>.tmp`` and renamed at the end, so a failed run
leaves the previous output as it was. The data dir's files are read strictly: an utterance id
twice in wav.scp, text or utt2spk, or a byte that is not UTF-8, stops the run naming the file
and the line(s).

Utterances longer than ``--max_seconds`` (as dumped, so after speed perturbation; default 30 s,
nearly five times AN4's longest, 6.4 s: raise it for corpora of long segments) are listed in one
warning, longest first, not removed: a test set must keep every utterance to be scored, and the
trainer's batching decides what fits in memory. A long one among short ones is usually a bad
segmentation or a wrong wav.scp entry, worth a look before hours of training.

Usage: python -m espnet_pinch.data.dump --data data/train --out dump/raw/train [--speed 0.9 1.0 1.1]
           [--max_seconds 30]
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import kaldiio
import numpy as np

from espnet_pinch.data.audio import AudioError, read_audio
from espnet_pinch.data.kaldi_dir import read_scp
from espnet_pinch.utils.atomic import atomic_dir

RATE = 16000
PCM_SCALE = 32768.0  # int16 full scale
MAX_SECONDS = 30.0
_SHOW_LONG = 10  # long utterance ids listed in the warning


def input_scale(data_type: str, where: str = "") -> float:
    """The factor between audio in [-1, 1) and the samples ESPnet's loader of ``data_type``
    hands to the model. Our dumps hold int16 PCM, which ESPnet's ``kaldi_ark`` loader (kaldiio)
    returns unscaled, so a model trained on them sees samples in [-32768, 32768); ``sound``
    (soundfile) reads WAV/FLAC files in [-1, 1). Decoding and export feed a model what its
    training fed it: the ONNX graph takes [-1, 1) and multiplies by this factor itself."""
    if data_type == "kaldi_ark":
        return PCM_SCALE
    if data_type == "sound":
        return 1.0
    raise ValueError(f"{where or 'data type'}: {data_type!r}: the speech input must be kaldi_ark "
                     "(the stage-3 dump) or sound (WAV/FLAC files)")


def train_input_scale(train_args, where: str = "") -> float:
    """``input_scale`` of the audio a model was trained on, from its config (ESPnet's train
    args): the speech entry of ``train_data_path_and_name_and_type``, else
    ``frontend_conf.input_scale`` (a finalized model's config, which has no data entries)."""
    for _, name, data_type in getattr(train_args, "train_data_path_and_name_and_type", None) or []:
        if name == "speech":
            return input_scale(data_type, f"{where}: train_data_path_and_name_and_type")
    scale = (getattr(train_args, "frontend_conf", None) or {}).get("input_scale")
    if scale is not None:
        return float(scale)
    raise ValueError(f"{where or 'training config'}: neither a speech entry in "
                     "train_data_path_and_name_and_type nor frontend_conf.input_scale, so the scale "
                     "of the audio the model was trained on is unknown (a model trained on the "
                     "recipe's dumps: add frontend_conf.input_scale: 32768)")


def speed_perturb(wav: np.ndarray, factor: float) -> np.ndarray:
    """Kaldi/sox-style speed change (tempo and pitch): length becomes len(wav) / factor."""
    if factor == 1.0:
        return wav
    import torch
    import torchaudio.functional as AF

    x = torch.from_numpy(wav.astype(np.float32))
    y = AF.resample(x, orig_freq=int(round(RATE * factor)), new_freq=RATE)
    return np.clip(y.numpy().round(), -32768, 32767).astype(np.int16)


def dump(data_dir: str | Path, out: str | Path, speeds: list[float] = (1.0,),
         max_seconds: float = MAX_SECONDS) -> int:
    """Dump ``data_dir`` to ``out``; returns the number of utterances written.

    Utterances longer than ``max_seconds`` (0: no limit) are warned about, not removed.
    """
    data_dir, out = Path(data_dir), Path(out)
    wavs = read_scp(data_dir / "wav.scp")
    texts = read_scp(data_dir / "text")
    spks = read_scp(data_dir / "utt2spk")
    missing = [u for u in wavs if u not in texts]
    if missing:
        raise ValueError(f"{data_dir}/text: no transcript for {missing[:5]}")
    n = 0
    entries = []
    for speed in speeds:
        prefix = "" if speed == 1.0 else f"sp{speed}-"
        for utt, path in wavs.items():
            entries.append((prefix + utt, path, speed, utt))
    entries.sort(key=lambda e: e[0])
    with atomic_dir(out) as tmp:
        n, lengths = _write(tmp, out, entries, texts, spks)
    if max_seconds > 0:
        _warn_long(out, lengths, max_seconds)
    return n


def _warn_long(out: Path, lengths: dict[str, int], max_seconds: float) -> None:
    long = sorted((-n, key) for key, n in lengths.items() if n > max_seconds * RATE)
    if not long:
        return
    shown = ", ".join(f"{key} ({-n / RATE:.1f} s)" for n, key in long[:_SHOW_LONG])
    more = f" and {len(long) - _SHOW_LONG} more" if len(long) > _SHOW_LONG else ""
    logging.warning("%s: %d utterance%s longer than %g s (kept; see --max_seconds), longest first: %s%s",
                    out, len(long), "s"[:len(long) > 1], max_seconds, shown, more)


def _write(tmp: Path, out: Path, entries: list, texts: dict, spks: dict) -> tuple[int, dict[str, int]]:
    """Write the dump files in ``tmp``; returns (utterances, {key: samples})."""
    n = 0
    lengths: dict[str, int] = {}
    with kaldiio.WriteHelper(f"ark,scp:{tmp / 'wav.ark'},{tmp / 'wav.scp'}") as writer, open(
        tmp / "utt2num_samples", "w"
    ) as nsf, open(tmp / "text", "w") as tf, open(tmp / "utt2spk", "w") as sf:
        for key, path, speed, utt in entries:
            wav = speed_perturb(read_audio(path, expected_rate=RATE), speed)
            writer(key, (RATE, wav))
            nsf.write(f"{key} {len(wav)}\n")
            lengths[key] = len(wav)
            tf.write(f"{key} {texts[utt]}\n")
            sf.write(f"{key} {(f'sp{speed}-' if speed != 1.0 else '') + spks[utt]}\n")
            n += 1
            if n % 500 == 0:
                logging.info("%s: %d utterances dumped", out, n)
    # wav.scp points into tmp/; rewrite it for the final location before the rename.
    scp = (tmp / "wav.scp").read_text().replace(str(tmp / "wav.ark"), str(out.resolve() / "wav.ark"))
    (tmp / "wav.scp").write_text(scp)
    return n, lengths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="Kaldi data dir (wav.scp, text, utt2spk)")
    p.add_argument("--out", required=True, help="output dump dir")
    p.add_argument("--speed", type=float, nargs="+", default=[1.0], help="speed perturbation factors")
    p.add_argument("--max_seconds", type=float, default=MAX_SECONDS,
                   help="warn about (not remove) utterances longer than this; 0: no limit")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        n = dump(args.data, args.out, args.speed, args.max_seconds)
    except (AudioError, ValueError, FileNotFoundError) as e:
        logging.error("%s", e)
        return 1
    logging.info("dumped %d utterances to %s", n, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

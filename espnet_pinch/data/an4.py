"""AN4 data prep: CMU's original layout -> Kaldi-style train / dev / test dirs.

Expected layout (``an4_sphere.tar.gz`` unpacked)::

    an4/etc/an4_{train,test}.transcription   "<s> WORDS </s> (an251-fash-b)" per line
    an4/etc/an4_{train,test}.fileids         "an4_clstk/fash/an251-fash-b" per line
    an4/wav/an4_clstk/<spk>/<id>.sph          16 kHz 16-bit NIST SPHERE
    an4/wav/an4test_clstk/<spk>/<id>.sph

The dev set is held out from train by speaker (whole speakers, chosen deterministically).
Every audio file is opened and checked (rate, emptiness, header) so that a bad file stops the
stage with its name instead of failing an hour later inside the trainer.

Inputs are read strictly (``kaldi_dir.read_id_lines``): an utterance id twice in a transcription
or file list, or a byte that is not UTF-8, stops the prep naming the file and the line(s).
Transcripts follow AN4's convention, upper-case A-Z words: a non-ASCII or invisible character
(an accented letter, a zero-width space) stops the prep, naming the line and the code point;
lowercase letters are upper-cased and other ASCII (punctuation, digits) kept, both counted in one
warning with example lines, since each would otherwise silently become a token of its own.

Usage: python -m espnet_pinch.data.an4 --corpus ../shared/data/an4 --out data [--dev_speakers 6]
"""
from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

from espnet_pinch.data.audio import read_audio
from espnet_pinch.data.kaldi_dir import (
    CharCheck, CorpusError, Utterance, non_ascii, read_id_lines, write_kaldi_dir
)

_LINE = re.compile(r"^(?P<text>.*?)\s*\((?P<id>[^()\s]+)\)\s*$")
_SKIP = {"<s>", "</s>", "<sil>"}



def parse_transcription(path: Path) -> dict[str, str]:
    """``WORDS (utt-id)`` lines -> {utt-id: WORDS}, sentence markers removed."""
    if not path.is_file():
        raise CorpusError(f"{path}: transcription file not found")
    chars = CharCheck("AN4", "upper-case A-Z words", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", fatal=non_ascii)

    def split(line: str, n: int) -> tuple[str, str]:
        m = _LINE.match(line)
        if m is None:
            raise CorpusError(f"{path}:{n}: transcript line has no '(utterance-id)': {line!r}")
        words = [w for w in m["text"].split() if w.lower() not in _SKIP]
        if not words:
            raise CorpusError(f"{path}:{n}: empty transcript for {m['id']}")
        chars.check(" ".join(words), f"{path}:{n}")
        return m["id"], " ".join(words).upper()

    texts = read_id_lines(path, split)
    chars.report(path)
    return {uid: text for uid, (text, _) in texts.items()}


def load_split(corpus: Path, split: str, check_audio: bool = True) -> list[Utterance]:
    """Read one AN4 split ('train' or 'test') into utterances, checking every audio file."""
    etc = corpus / "etc"
    texts = parse_transcription(etc / f"an4_{split}.transcription")
    fileids = etc / f"an4_{split}.fileids"
    if not fileids.is_file():
        raise CorpusError(f"{fileids}: file list not found")

    def parse_fileid(line: str, n: int) -> tuple[str, list[str]]:
        parts = line.strip().split("/")
        if len(parts) != 3:
            raise CorpusError(f"{fileids}:{n}: expected 'dir/speaker/id', got {line.strip()!r}")
        return parts[2], parts

    utts = []
    for uid, ((wavdir, spk, _), n) in read_id_lines(fileids, parse_fileid).items():
        if uid not in texts:
            raise CorpusError(f"{fileids}:{n}: no transcript for {uid}")
        audio = (corpus / "wav" / wavdir / spk / f"{uid}.sph").resolve()
        if check_audio:
            read_audio(audio, expected_rate=16000)
        utts.append(Utterance(f"{spk}-{uid}", spk, str(audio), texts[uid]))
    return utts


def split_dev(utts: list[Utterance], n_dev_speakers: int) -> tuple[list[Utterance], list[Utterance]]:
    """Hold out ``n_dev_speakers`` whole speakers (every k-th in sorted order) as dev."""
    speakers = sorted({u.speaker for u in utts})
    if not 0 < n_dev_speakers < len(speakers):
        raise ValueError(f"dev_speakers must be in [1, {len(speakers) - 1}], got {n_dev_speakers}")
    step = len(speakers) / n_dev_speakers
    dev_spk = {speakers[int(i * step + step / 2)] for i in range(n_dev_speakers)}
    train = [u for u in utts if u.speaker not in dev_spk]
    dev = [u for u in utts if u.speaker in dev_spk]
    return train, dev


def prepare(corpus: str | Path, out: str | Path, dev_speakers: int = 6, max_utts: int = 0) -> dict:
    """Write ``out/{train,dev,test}``; returns utterance counts. ``max_utts`` > 0 keeps a slice
    (first utterances of each split, for debug runs)."""
    corpus, out = Path(corpus), Path(out)
    if not (corpus / "etc").is_dir() or not (corpus / "wav").is_dir():
        raise CorpusError(f"{corpus}: not an AN4 corpus (need etc/ and wav/ inside)")
    train_all = load_split(corpus, "train")
    test = load_split(corpus, "test")
    train, dev = split_dev(train_all, dev_speakers)
    sets = {"train": train, "dev": dev, "test": test}
    if max_utts > 0:
        sets = {k: v[: max_utts if k == "train" else max(max_utts // 4, 2)] for k, v in sets.items()}
    for name, utts in sets.items():
        write_kaldi_dir(out / name, utts)
    return {k: len(v) for k, v in sets.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True, help="AN4 root (holds etc/ and wav/)")
    p.add_argument("--out", required=True, help="output data dir (train/, dev/, test/ inside)")
    p.add_argument("--dev_speakers", type=int, default=6, help="speakers held out of train as dev")
    p.add_argument("--max_utts", type=int, default=0, help="debug: keep only this many per split")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        counts = prepare(args.corpus, args.out, args.dev_speakers, args.max_utts)
    except ValueError as e:  # CorpusError, AudioError
        logging.error("%s", e)
        return 1
    logging.info("AN4 prepared in %s: %s", args.out, counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())

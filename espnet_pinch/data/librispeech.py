"""LibriSpeech data prep: OpenSLR SLR12's own layout -> one Kaldi-style dir per subset.

Expected layout (each ``<subset>.tar.gz`` unpacked in ``<corpus>``)::

    <corpus>/LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac   16 kHz 16-bit FLAC
    <corpus>/LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>.trans.txt    "UTTID WORDS ..." per line

``<corpus>`` may also be the ``LibriSpeech/`` folder itself. Each subset becomes ``<out>/<name>``
with '-' -> '_' (train-clean-100 -> train_clean_100); the speaker is ``<spk>``, which already
starts every utterance id as Kaldi wants. Every transcript line must have its audio file and every
audio file its line; every audio file is opened and checked (16 kHz, not empty, decodable), so a bad
file stops the stage with its name instead of failing hours later inside the trainer. A summary
(utterances, speakers, hours per subset) goes to ``<out>/librispeech_prep.json``.

Inputs are read strictly (``kaldi_dir.read_id_lines``): an utterance id twice in a transcript, or
a byte that is not UTF-8, stops the prep naming the file and the line(s). Transcripts follow
LibriSpeech's normalisation, upper-case letters and apostrophes: a non-ASCII or invisible
character (an accented letter, a zero-width space) stops the prep, naming the line and the code
point; other ASCII (lowercase, digits, punctuation) is kept as it is and counted in one warning
per subset with example lines, since each would otherwise silently become a token of its own.

Usage: python -m espnet_pinch.data.librispeech --corpus downloads --out data
           [--subsets "train-clean-100 dev-clean dev-other test-clean test-other"]
           [--max_utts N] [--skip_missing]
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
from espnet_pinch.utils.atomic import write_json

RATE = 16000
DEFAULT_SUBSETS = ("train-clean-100", "dev-clean", "dev-other", "test-clean", "test-other")
KNOWN_SUBSETS = DEFAULT_SUBSETS + ("train-clean-360", "train-other-500")
DOWNLOAD_URL = "https://www.openslr.org/resources/12/{subset}.tar.gz"
SUMMARY = "librispeech_prep.json"
_PROGRESS_EVERY = 5000  # utterances between progress lines while reading a large subset

log = logging.getLogger(__name__)



def kaldi_name(subset: str) -> str:
    """``train-clean-100`` -> ``train_clean_100`` (data dir names are shell/ESPnet friendly)."""
    return subset.replace("-", "_")


def find_subset(corpus: Path, subset: str) -> Path | None:
    """The subset's folder under ``corpus/LibriSpeech/`` or directly under ``corpus``, else None."""
    for d in (corpus / "LibriSpeech" / subset, corpus / subset):
        if d.is_dir():
            return d
    return None


def text_check() -> CharCheck:
    """The check of LibriSpeech's transcript characters (see the module docstring)."""
    return CharCheck("LibriSpeech", "upper-case letters and apostrophes",
                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ'", fatal=non_ascii)


def parse_trans(path: Path, prefix: str, chars: CharCheck | None = None) -> dict[str, tuple[str, int]]:
    """``<prefix>-NNNN WORDS ...`` lines -> {utt-id: (WORDS, line number)}."""
    chars = chars or text_check()

    def split(line: str, n: int) -> tuple[str, str]:
        uid, *words = line.split()
        if not re.fullmatch(rf"{re.escape(prefix)}-\d+", uid):
            raise CorpusError(f"{path}:{n}: utterance id {uid!r} does not belong here ({prefix}-NNNN)")
        if not words:
            raise CorpusError(f"{path}:{n}: empty transcript for {uid}")
        chars.check(" ".join(words), f"{path}:{n}")
        return uid, " ".join(words)

    return read_id_lines(path, split)


def read_chapter(chap_dir: Path, chars: CharCheck | None = None) -> list[tuple[str, str, Path]]:
    """One ``<spk>/<chapter>`` folder -> sorted [(utt-id, words, audio)]; lines and files must match.

    ``chars`` collects the unexpected characters of several chapters for one warning.
    """
    prefix = f"{chap_dir.parent.name}-{chap_dir.name}"
    trans = chap_dir / f"{prefix}.trans.txt"
    flacs = {p.stem: p for p in chap_dir.glob("*.flac")}
    if not trans.is_file():
        if flacs:
            raise CorpusError(f"{trans}: transcript file not found ({len(flacs)} .flac files here)")
        return []
    texts = parse_trans(trans, prefix, chars)
    for uid, (_, n) in texts.items():
        if uid not in flacs:
            raise CorpusError(f"{trans}:{n}: no audio file {uid}.flac for this line")
    orphans = sorted(flacs.keys() - texts.keys())
    if orphans:
        raise CorpusError(f"{flacs[orphans[0]]}: audio file has no transcript line in {trans}"
                          + (f" (and {len(orphans) - 1} more)" if len(orphans) > 1 else ""))
    return [(uid, texts[uid][0], flacs[uid]) for uid in sorted(texts)]


def load_subset(
    subset_dir: Path, check_audio: bool = True, max_utts: int = 0
) -> tuple[list[Utterance], int | None]:
    """Read one subset folder -> (utterances, total samples; None when audio is not checked).

    ``max_utts`` > 0 stops after that many utterances (sorted order) without reading the rest.
    """
    utts: list[Utterance] = []
    samples = 0
    chars = text_check()
    speakers = sorted(p for p in subset_dir.iterdir() if p.is_dir())
    chapters = (c for spk in speakers for c in sorted(spk.iterdir()) if c.is_dir())
    for chap_dir in chapters:
        for uid, text, audio in read_chapter(chap_dir, chars):
            audio = audio.resolve()
            if check_audio:
                samples += len(read_audio(audio, expected_rate=RATE))
            utts.append(Utterance(uid, chap_dir.parent.name, str(audio), text))
            if len(utts) % _PROGRESS_EVERY == 0:
                log.info("%s: %d utterances read", subset_dir.name, len(utts))
            if len(utts) == max_utts:
                chars.report(subset_dir)
                return utts, samples if check_audio else None
    chars.report(subset_dir)
    return utts, samples if check_audio else None


def prepare(
    corpus: str | Path,
    out: str | Path,
    subsets: tuple[str, ...] | list[str] = DEFAULT_SUBSETS,
    max_utts: int = 0,
    check_audio: bool = True,
    skip_missing: bool = False,
) -> dict:
    """Write ``out/<kaldi_name(subset)>`` for each subset and ``out/librispeech_prep.json``.

    Returns the summary: {kaldi name: {subset, utterances, speakers, hours}} under "subsets", plus
    the subsets skipped as missing. All subsets are read before anything is written, so an error
    anywhere leaves the previous output as it was. ``max_utts`` > 0 keeps the first utterances of
    each subset (debug runs); ``hours`` is None when ``check_audio`` is False (audio not read).
    """
    corpus, out = Path(corpus), Path(out)
    subsets = list(subsets)
    if not subsets:
        raise ValueError("no subsets given")
    unknown = [s for s in subsets if s not in KNOWN_SUBSETS]
    if unknown:
        raise ValueError(f"unknown LibriSpeech subset(s) {unknown}; known: {' '.join(KNOWN_SUBSETS)}")
    if len(set(subsets)) != len(subsets):
        raise ValueError(f"subset listed twice: {subsets}")
    found = {s: find_subset(corpus, s) for s in subsets}
    missing = [s for s, d in found.items() if d is None]
    if missing and not skip_missing:
        raise CorpusError(
            f"{corpus}: LibriSpeech subset(s) {' '.join(missing)} not found (looked in "
            f"{corpus / 'LibriSpeech'}/<subset> and {corpus}/<subset>). Download with "
            f"local/data.sh --download true, or fetch {DOWNLOAD_URL.format(subset='<subset>')} "
            f"and unpack it in {corpus}; --skip_missing prepares only the subsets present"
        )
    for s in missing:
        log.warning("%s: subset %s not found, skipped (--skip_missing)", corpus, s)
    present = [s for s in subsets if found[s] is not None]
    if not present:
        raise CorpusError(f"{corpus}: none of the subsets {' '.join(subsets)} found")

    sets: dict[str, list[Utterance]] = {}
    summary: dict = {"corpus": str(corpus.resolve()), "subsets": {}, "skipped": missing}
    seen: dict[str, str] = {}  # utt id -> subset, so that dirs can be combined later
    for s in present:
        log.info("%s: reading %s", s, found[s])
        utts, samples = load_subset(found[s], check_audio, max_utts)
        if not utts:
            raise CorpusError(f"{found[s]}: no utterances (no <spk>/<chapter>/*.trans.txt inside)")
        for u in utts:
            if u.utt_id in seen:
                raise CorpusError(f"{u.audio}: utterance id {u.utt_id} also in subset {seen[u.utt_id]}")
            seen[u.utt_id] = s
        hours = None if samples is None else round(samples / RATE / 3600, 4)
        n_spk = len({u.speaker for u in utts})
        log.info("%s: %d utterances, %d speakers, %s h", s, len(utts), n_spk,
                 "unmeasured" if hours is None else f"{hours:.3f}")
        sets[kaldi_name(s)] = utts
        summary["subsets"][kaldi_name(s)] = {
            "subset": s, "utterances": len(utts), "speakers": n_spk, "hours": hours
        }
    for name, utts in sets.items():
        write_kaldi_dir(out / name, utts)
        log.info("wrote %s", out / name)
    write_json(out / SUMMARY, summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True, help="folder holding LibriSpeech/ (or that folder)")
    p.add_argument("--out", required=True, help="output data dir (one Kaldi dir per subset)")
    p.add_argument("--subsets", default=" ".join(DEFAULT_SUBSETS), help="space-separated SLR12 subsets")
    p.add_argument("--max_utts", type=int, default=0, help="debug: keep only this many per subset")
    p.add_argument("--skip_missing", action="store_true", help="prepare only the subsets present")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        summary = prepare(args.corpus, args.out, args.subsets.split(), args.max_utts,
                          skip_missing=args.skip_missing)
    except ValueError as e:  # CorpusError, AudioError
        logging.error("%s", e)
        return 1
    logging.info("LibriSpeech prepared in %s: %s", args.out,
                 {k: v["utterances"] for k, v in summary["subsets"].items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())

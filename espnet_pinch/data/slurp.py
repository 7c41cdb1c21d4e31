"""SLURP data prep: SLURP's JSONL + audio -> Kaldi-style train / devel / test dirs for SLU.

Expected layout (``git clone https://github.com/pswietojanski/slurp``; audio from its
``scripts/download_audio.sh``, unpacked)::

    <corpus>/dataset/slurp/{train,devel,test,train_synthetic}.jsonl   one JSON record per line
    <audio_dir>/slurp_real/audio-1434542201-headset.flac               16 kHz mono FLAC
    <audio_dir>/slurp_synth/...                                        (for --with_synthetic)

``audio_dir`` defaults to ``<corpus>/audio`` when that holds ``slurp_real/`` (where
download_audio.sh puts it), else ``<corpus>``. A record needs ``slurp_id``, ``intent``,
``sentence_annotation`` ("wake me up at [time : five am] this week") and ``recordings``
([{"file": ...}, ...]); every recording becomes one utterance (SLURP's evaluation is per
recording too). A file named twice in one split with the same target is kept once (counted in
a warning); with another target, or a ``slurp_id`` twice in one file, stops the prep naming the
file and both lines (keeping either would silently pick a label). A byte that is not UTF-8 stops
it naming the line.

Target text (one line of ``text``)::

    ALARM_SET WAKE ME UP AT [ TIME FIVE AM ] [ DATE THIS WEEK ]

- first word: the intent upper-cased (``scenario_action``; every SLURP intent holds a ``_``);
- then the transcript, each entity wrapped in its place as ``[ TYPE FILLER WORDS ]``: type
  upper-cased, brackets as words of their own so that the filler words are tokenized exactly as
  they are outside an entity (``[TIME`` would make ``TIME`` a different sentencepiece piece).
  Intent and entities are recovered from a hypothesis with ``parse_target`` (also used by
  ``espnet_pinch.scoring.slu``), so scoring needs nothing but the reference and hypothesis text.
- words: upper-cased; ``@`` -> AT, ``#`` -> HASHTAG, ``<unk>`` -> UNKNOWN, ``,`` and ``.``
  deleted (as ESPnet's slurp recipe does); ``[`` and ``]`` (markup) become spaces.

Characters: after the clean-up above, a target is upper-case letters, digits and apostrophes
(plus the intent's and types' ``_`` and the brackets). SLURP's crowd-sourced text has no stricter
convention, so anything else (``&``, ``?``, accented letters) is kept and counted in one warning
per file with example lines, since each becomes a token of its own; an invisible character (a
zero-width space, a control character) is never meant and stops the prep, naming the line.

``<out>/nlsyms.txt`` lists the intent tokens seen in train, one a line: give them to the
tokenizer as user-defined symbols (ESPnet's nlsyms) to keep every intent one unit.

Speakers: SLURP's JSONL names no speaker, so each recording is its own speaker (Kaldi's
convention when speakers are unknown): the file stem for headset recordings
(``audio-1434542201-headset``), the stem + ``-far`` for the far-field recording of the same
session (``audio-1434542201-far``), ``synth-`` + stem for synthetic audio. The suffix keeps any
speaker id from being a prefix of another, so that utterance ids ``<speaker>_<slurp_id>``
(e.g. ``audio-1434542201-headset_13804``) sort in speaker order as Kaldi requires.

Usage: python -m espnet_pinch.data.slurp --corpus downloads/slurp --out data [--audio_dir DIR] [--max_utts N] [--with_synthetic]
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path
from typing import NamedTuple

from espnet_pinch.data.audio import AudioError, read_audio
from espnet_pinch.data.kaldi_dir import CharCheck, CorpusError, Utterance, read_id_lines, write_kaldi_dir
from espnet_pinch.utils.atomic import atomic_file

SPLITS = ("train", "devel", "test")
_ENTITY = re.compile(r"\[([^\[\]]*)\]")
_DROP = re.compile(r"[,.]")
_SPACE = re.compile(r"[\[\]\s]+")



class Target(NamedTuple):
    intent: str                        # SLURP's label, e.g. "alarm_set" ("" if none)
    entities: list[tuple[str, str]]    # (type, filler), e.g. ("time", "five am"), in text order
    words: list[str]                   # the plain transcript, markup removed, lower case


def normalize_words(text: str) -> list[str]:
    """Transcript text -> upper-case words (ESPnet's slurp clean-up; markup brackets removed)."""
    text = text.replace("<unk>", " unknown ").replace("@", " at ").replace("#", " hashtag ")
    return _SPACE.sub(" ", _DROP.sub("", text)).upper().split()


def format_target(intent: str, annotation: str) -> str:
    """SLURP intent + sentence_annotation -> target text (see the module docstring).

    Raises ValueError on unbalanced brackets or an entity without ``type :``.
    """
    intent = intent.strip()
    if not intent or len(intent.split()) != 1:
        raise ValueError(f"intent must be one word, got {intent!r}")
    out, pos = [intent.upper()], 0
    for m in _ENTITY.finditer(annotation):
        out += _plain(annotation[pos:m.start()])
        typ, colon, filler = m[1].partition(":")
        typ = "_".join(typ.split()).upper()
        if not colon or not typ:
            raise ValueError(f"entity {m[0]!r} is not '[type : filler]'")
        out += ["[", typ, *normalize_words(filler), "]"]
        pos = m.end()
    out += _plain(annotation[pos:])
    return " ".join(out)


def _plain(text: str) -> list[str]:
    if "[" in text or "]" in text:
        raise ValueError(f"unbalanced '[' or ']' near {text.strip()!r}")
    return normalize_words(text)


def parse_target(text: str) -> Target:
    """Target text (reference or hypothesis) -> (intent, [(type, filler)], words), lower case.

    Lenient, since hypotheses can be anything: brackets may be attached to words
    (``[TIME FIVE AM]``); an entity left open ends at the next ``[`` or at the end; a stray
    ``]`` and an empty ``[ ]`` are dropped; an empty text gives intent "".
    """
    toks = re.sub(r"([\[\]])", r" \1 ", text).lower().split()
    if not toks:
        return Target("", [], [])
    entities: list[tuple[str, str]] = []
    words: list[str] = []
    cur: list[str] | None = None  # [type, filler words...] while inside brackets

    def close():
        if cur:
            entities.append((cur[0], " ".join(cur[1:])))

    for tok in toks[1:]:
        if tok == "[":
            close()
            cur = []
        elif tok == "]":
            close()
            cur = None
        elif cur is None:
            words.append(tok)
        else:
            if cur:
                words.append(tok)
            cur.append(tok)
    close()
    return Target(toks[0], entities, words)


def speaker_of(file: str, synthetic: bool = False) -> str:
    """Recording file name -> speaker id (see the module docstring)."""
    stem = Path(file).stem
    if synthetic:
        return f"synth-{stem}"
    return stem if stem.endswith("-headset") else f"{stem}-far"


def _field(rec: dict, key: str, where: str):
    if key not in rec or rec[key] is None:
        raise CorpusError(f"{where}: record has no '{key}'")
    return rec[key]


def load_split(jsonl: str | Path, audio_dir: str | Path, synthetic: bool = False,
               max_utts: int = 0, check_audio: bool = True) -> list[Utterance]:
    """Read one SLURP JSONL file into utterances (one per recording), checking their audio.

    ``max_utts`` > 0 stops after that many utterances (only their audio is checked; every
    record is parsed, so that a duplicate id anywhere in the file is found).
    """
    jsonl = Path(jsonl)
    if not jsonl.is_file():
        raise CorpusError(f"{jsonl}: SLURP JSONL file not found")
    audio_root = Path(audio_dir) / ("slurp_synth" if synthetic else "slurp_real")
    chars = CharCheck("SLURP", "upper-case letters, digits and apostrophes after the clean-up",
                      "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'_[]", fatal=lambda c: not c.isprintable())

    def parse(line: str, n: int) -> tuple[str, tuple[str, list]]:
        where = f"{jsonl}:{n}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise CorpusError(f"{where}: malformed JSON ({e.msg} at column {e.colno})") from e
        if not isinstance(rec, dict):
            raise CorpusError(f"{where}: expected a JSON object, got {type(rec).__name__}")
        sid = str(_field(rec, "slurp_id", where))
        intent = str(_field(rec, "intent", where))
        annotation = str(_field(rec, "sentence_annotation", where))
        recordings = _field(rec, "recordings", where)
        try:
            text = format_target(intent, annotation)
        except ValueError as e:
            raise CorpusError(f"{where}: slurp_id {sid}: {e}") from e
        if not isinstance(recordings, list):
            raise CorpusError(f"{where}: 'recordings' must be a list")
        chars.check(text, where)
        return sid, (text, recordings)

    records = read_id_lines(jsonl, parse, what="slurp_id")
    chars.report(jsonl)
    utts: list[Utterance] = []
    seen: dict[str, tuple[str, int]] = {}  # recording file -> (target, line)
    n_dup = 0
    for sid, ((text, recordings), n) in records.items():
        where = f"{jsonl}:{n}"
        for r in recordings:
            file = r.get("file") if isinstance(r, dict) else None
            if not file:
                raise CorpusError(f"{where}: slurp_id {sid}: a recording has no 'file'")
            if file in seen:
                if seen[file][0] != text:
                    raise CorpusError(f"{where}: recording {file} named again with another target "
                                      f"{text!r} (first on line {seen[file][1]}: {seen[file][0]!r})")
                n_dup += 1
                continue
            seen[file] = (text, n)
            audio = (audio_root / file).resolve()
            if check_audio:
                try:
                    read_audio(audio, expected_rate=16000)
                except AudioError as e:
                    raise CorpusError(f"{where}: slurp_id {sid}: {e}") from e
            spk = speaker_of(file, synthetic)
            utts.append(Utterance(f"{spk}_{sid}", spk, str(audio), text))
            if 0 < max_utts <= len(utts):
                return utts
    if n_dup:
        logging.warning("%s: %d recordings named twice with the same target, kept once", jsonl, n_dup)
    return utts


def default_audio_dir(corpus: Path) -> Path:
    """``<corpus>/audio`` when it holds slurp_real/ (download_audio.sh's place), else corpus."""
    return corpus / "audio" if (corpus / "audio" / "slurp_real").is_dir() else corpus


def prepare(corpus: str | Path, out: str | Path, audio_dir: str | Path | None = None,
            max_utts: int = 0, with_synthetic: bool = False) -> dict:
    """Write ``out/{train,devel,test}`` and ``out/nlsyms.txt``; returns utterance counts.

    ``max_utts`` > 0 keeps a slice (train and train_synthetic: that many each, devel/test: a
    quarter, at least 2), as ``an4.prepare`` does.
    Every split is read and checked before anything is written.
    """
    corpus, out = Path(corpus), Path(out)
    meta = corpus / "dataset" / "slurp"
    if not meta.is_dir():
        raise CorpusError(f"{corpus}: not a SLURP corpus (need dataset/slurp/*.jsonl inside)")
    audio_dir = Path(audio_dir) if audio_dir else default_audio_dir(corpus)
    if not (audio_dir / "slurp_real").is_dir():
        raise CorpusError(f"{audio_dir}: no slurp_real/ audio dir (see scripts/download_audio.sh)")
    sets = {}
    for name in SPLITS:
        cap = max_utts if name == "train" or max_utts <= 0 else max(max_utts // 4, 2)
        sets[name] = load_split(meta / f"{name}.jsonl", audio_dir, max_utts=cap)
    if with_synthetic:  # sliced like train
        sets["train"] += load_split(meta / "train_synthetic.jsonl", audio_dir, synthetic=True,
                                    max_utts=max_utts)
    for name, utts in sets.items():
        write_kaldi_dir(out / name, utts)
    intents = sorted({u.text.split()[0] for u in sets["train"]})
    with atomic_file(out / "nlsyms.txt") as tmp:
        tmp.write_text("".join(f"{i}\n" for i in intents))
    return {k: len(v) for k, v in sets.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True, help="SLURP repo root (holds dataset/slurp/)")
    p.add_argument("--out", required=True, help="output data dir (train/, devel/, test/ inside)")
    p.add_argument("--audio_dir", default="",
                   help="dir holding slurp_real/ (and slurp_synth/); default: <corpus>/audio or <corpus>")
    p.add_argument("--max_utts", type=int, default=0, help="debug: keep only this many per split")
    p.add_argument("--with_synthetic", action="store_true", help="add train_synthetic to train")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        counts = prepare(args.corpus, args.out, args.audio_dir or None, args.max_utts,
                         args.with_synthetic)
    except ValueError as e:  # CorpusError
        logging.error("%s", e)
        return 1
    logging.info("SLURP prepared in %s: %s", args.out, counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())

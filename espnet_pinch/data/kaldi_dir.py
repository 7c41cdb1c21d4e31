"""Kaldi-style data directories (wav.scp, text, utt2spk, spk2utt): written atomically, read strictly.

Every corpus reader goes through the helpers here, so that the same input faults give the same
errors whatever the corpus: ``read_lines`` (a byte that is not UTF-8 names its line and column),
``read_id_lines`` (an id on a second line names both lines: keeping either would silently change
a label) and ``CharCheck`` (transcript characters outside a corpus's alphabet: invisible or
foreign ones stop the prep, the rest are counted and shown once with examples).
"""
from __future__ import annotations

import logging
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

from espnet_pinch.utils.atomic import atomic_dir

T = TypeVar("T")
_EXAMPLES = 3  # example lines shown by CharCheck.report

log = logging.getLogger(__name__)


class CorpusError(ValueError):
    """Bad corpus content found by a data prep; the message names the file (and line)."""


@dataclass(frozen=True)
class Utterance:
    utt_id: str
    speaker: str
    audio: str  # absolute path of the audio file
    text: str


def write_kaldi_dir(out_dir: str | Path, utts: list[Utterance]) -> None:
    """Write ``out_dir`` as a Kaldi data dir; a half-written dir never replaces a good one.

    Everything goes to ``out_dir.tmp`` first and is renamed into place at the end.
    """
    out_dir = Path(out_dir)
    if not utts:
        raise ValueError(f"{out_dir}: no utterances to write")
    utts = sorted(utts, key=lambda u: u.utt_id)
    ids = [u.utt_id for u in utts]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ValueError(f"{out_dir}: duplicate utterance ids {dup}")
    for u in utts:
        if not u.utt_id.startswith(u.speaker):
            raise ValueError(f"{u.utt_id}: utterance id must start with its speaker '{u.speaker}'")
    spk2utt: dict[str, list[str]] = {}
    with atomic_dir(out_dir) as tmp:
        with open(tmp / "wav.scp", "w") as wav, open(tmp / "text", "w") as txt, open(
            tmp / "utt2spk", "w"
        ) as u2s:
            for u in utts:
                wav.write(f"{u.utt_id} {u.audio}\n")
                txt.write(f"{u.utt_id} {u.text}\n")
                u2s.write(f"{u.utt_id} {u.speaker}\n")
                spk2utt.setdefault(u.speaker, []).append(u.utt_id)
        with open(tmp / "spk2utt", "w") as f:
            for spk in sorted(spk2utt):
                f.write(f"{spk} {' '.join(spk2utt[spk])}\n")


def read_lines(path: str | Path) -> list[str]:
    """The lines of a UTF-8 text file, line ends removed.

    Split on newlines only (not on the other separators ``str.splitlines`` knows), so that line
    numbers are an editor's; a byte that is not UTF-8 raises CorpusError naming its line and
    column instead of a traceback with a file offset.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - data.rfind(b"\n", 0, e.start)
        raise CorpusError(f"{path}:{line}: not UTF-8 (byte 0x{data[e.start]:02x} at column {column}); "
                          "re-encode the file as UTF-8") from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def _first_word(line: str, n: int) -> tuple[str, str]:
    key, _, val = line.partition(" ")
    return key, val


def read_id_lines(
    path: str | Path, split: Callable[[str, int], tuple[str, T]] = _first_word, what: str = "utterance id"
) -> dict[str, tuple[T, int]]:
    """Non-empty lines of a UTF-8 file -> {id: (rest, line number)}, in file order.

    ``split(line, n)`` parses one line into (id, rest) and raises CorpusError naming ``path:n``
    on a bad line; the default takes the first space-separated word as the id (Kaldi's
    ``key value...``). An id seen on an earlier line raises CorpusError naming both lines.
    """
    path = Path(path)
    out: dict[str, tuple[T, int]] = {}
    for n, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        key, rest = split(line, n)
        if key in out:
            raise CorpusError(f"{path}:{n}: duplicate {what} {key} (first on line {out[key][1]})")
        out[key] = (rest, n)
    return out


def read_scp(path: str | Path) -> dict[str, str]:
    """Read a two-column Kaldi file (``key value...``) into an ordered dict; keys are unique."""
    return {key: val for key, (val, _) in read_id_lines(path).items()}


def describe_char(c: str) -> str:
    """``'\\u200b' (U+200B ZERO WIDTH SPACE)``: visible even when the character is not."""
    return f"{c!r} (U+{ord(c):04X} {unicodedata.name(c, 'unnamed')})"


def non_ascii(c: str) -> bool:
    """AN4 and LibriSpeech are plain ASCII: anything else in them is an editing accident."""
    return not (c.isascii() and c.isprintable())


class CharCheck:
    """Transcript characters outside a corpus's alphabet, checked line by line.

    ``allowed``: the characters of the corpus's convention (space implied). A character for
    which ``fatal`` is true raises CorpusError at once, naming the line and the character's
    code point (a tokenizer would silently make units of it, often invisible ones); the other
    unexpected characters are counted, and ``report`` logs one warning with their counts and a
    few example lines.
    """

    def __init__(self, corpus: str, alphabet: str, allowed: str, fatal: Callable[[str], bool]):
        self.corpus, self.alphabet = corpus, alphabet
        self.allowed = frozenset(allowed + " ")
        self.fatal = fatal
        self.counts: Counter[str] = Counter()
        self.lines = 0
        self.examples: list[str] = []

    def check(self, text: str, where: str) -> None:
        """Check one transcript; ``where`` is its ``file:line``."""
        bad = [c for c in text if c not in self.allowed]
        if not bad:
            return
        for c in bad:
            if self.fatal(c):
                raise CorpusError(f"{where}: unexpected character {describe_char(c)} in {text!r} "
                                  f"({self.corpus} transcripts are {self.alphabet})")
        self.lines += 1
        self.counts.update("lowercase letters" if c.isascii() and c.islower() else repr(c) for c in bad)
        if len(self.examples) < _EXAMPLES:
            self.examples.append(f"{where}: {text!r}")

    def report(self, where: str | Path) -> None:
        """One warning for everything ``check`` counted (nothing when all was clean)."""
        if not self.lines:
            return
        counts = ", ".join(f"{c} x{n}" for c, n in self.counts.most_common())
        log.warning("%s: %d line%s with characters outside %s's alphabet (%s): %s; e.g. %s", where,
                    self.lines, "s"[:self.lines > 1], self.corpus, self.alphabet, counts,
                    "; ".join(self.examples))

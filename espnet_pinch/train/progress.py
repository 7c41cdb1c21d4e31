"""Training progress on the console, read from ESPnet's train.log while the job writes it.

Usage: python -m espnet_pinch.train.progress --log exp/asr_x/train.log [--offset BYTES] [--pid PID]

Prints one short line every ``--every`` seconds (epoch, step, loss, sparsity when the pruner
reports one, time left) and one per finished epoch; stops at the job backend's "exit" line, on
SIGTERM (after a last read) or when ``--pid`` (the recipe) is gone.
The recipe starts it in the background beside each training job (asr.sh's ``train``).
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

STARTED = re.compile(r"(\d+)/(\d+)epoch started")
BATCH = re.compile(r"(\d+)epoch:train:\d+-(\d+)batch: (.*)")
RESULTS = re.compile(r"(\d+)epoch results: (.*)")
JOB_END = re.compile(r"^# [\d-]+ [\d:]+ exit -?\d+$")  # written by utils/local.sh, slurm.sh
# a number only: ESPnet writes some stats with no separator ("sparsity=0.500backward_time=0.1")
STAT = re.compile(r"(?<![\w])(loss|sparsity|total_count|cer_ctc)=(-?[\d.]+(?:e[-+]?\d+)?|nan|inf)")


def _stats(text: str) -> dict[str, str]:
    return dict(STAT.findall(text))  # a later duration of a key ([valid]) wins


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


@dataclass
class Progress:
    """Follows one train.log; ``feed(line)`` returns a console line or None."""
    every: float = 30.0
    epoch: int = 0
    max_epoch: int = 0
    steps_per_epoch: int = 0  # known after the first finished epoch
    last_print: float = 0.0
    rate: list = field(default_factory=list)  # (time, global step) of the first batch line seen

    def feed(self, line: str, now: float) -> str | None:
        if m := STARTED.search(line):
            self.epoch, self.max_epoch = int(m[1]), int(m[2])
            return None
        if m := BATCH.search(line):
            self.epoch, step, stats = int(m[1]), int(m[2]), _stats(m[3])
            done = (self.epoch - 1) * self.steps_per_epoch + step
            self.rate = self.rate or [now, done]
            if now - self.last_print < self.every:
                return None
            self.last_print = now
            return self._line(f"step {step}", stats, self._left(now, done))
        if m := RESULTS.search(line):
            self.epoch, stats = int(m[1]), _stats(m[2].split("[valid]")[0])
            if "total_count" in stats:  # ESPnet's count is over all epochs so far
                self.steps_per_epoch = int(stats["total_count"]) // self.epoch
            valid = _stats(m[2].split("[valid]")[-1]) if "[valid]" in m[2] else {}
            done = self.epoch * self.steps_per_epoch
            self.rate = self.rate or [now, done]
            self.last_print = now
            extra = f", valid cer_ctc {valid['cer_ctc']}" if "cer_ctc" in valid else ""
            return self._line("done", stats, self._left(now, done)) + extra
        return None

    def _left(self, now: float, done: int) -> str:
        total = self.max_epoch * self.steps_per_epoch
        t0, d0 = self.rate
        if total and done >= total:
            return ""
        if not total or done <= d0 or now <= t0:
            return "time left: known after epoch 1" if not total else ""
        return "time left ~" + _minutes((total - done) * (now - t0) / (done - d0))

    def _line(self, where: str, stats: dict[str, str], left: str) -> str:
        parts = [f"epoch {self.epoch}/{self.max_epoch or '?'} {where}"]
        if "loss" in stats:
            parts.append(f"loss {stats['loss']}")
        if "sparsity" in stats:
            parts.append(f"sparsity {stats['sparsity']}")
        return ", ".join(parts + ([left] if left else []))


def _alive(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def follow(log: Path, offset: int = 0, pid: int | None = None, every: float = 30.0,
           poll: float = 2.0) -> None:
    progress, name, buf, stop = Progress(every=every), "/".join(log.parts[-3:-1]), "", []
    # SIGTERM (the job ended): one last read, so the last epoch's line is not lost
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    while True:
        with open(log, errors="replace") as f:
            f.seek(offset)
            buf += f.read()
            offset = f.tell()
        *lines, buf = buf.split("\n")
        for line in lines:
            if out := progress.feed(line, time.monotonic()):
                print(f"{time.strftime('%F %T')} (progress) {name}: {out}", flush=True)
            stop += [True] if JOB_END.match(line) else []
        if stop or not _alive(pid):
            return
        time.sleep(poll)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--log", type=Path, required=True, help="ESPnet train.log being written")
    p.add_argument("--offset", type=int, default=0, help="start reading here (earlier runs' lines)")
    p.add_argument("--pid", type=int, help="stop when this process is gone")
    p.add_argument("--every", type=float, default=30.0, help="seconds between progress lines")
    args = p.parse_args(argv)
    follow(args.log, args.offset, args.pid, args.every)


if __name__ == "__main__":
    main()

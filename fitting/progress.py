"""What the fit says while it runs: a line when it starts, then the bootstrap's progress.

Both go to stderr, never into report.md or fits.json (those stay the same from run to run).
On a terminal the progress line is redrawn in place; elsewhere (a log file, a CI job) it is
written once per tenth of the resamples, so a log shows the fit moving without filling up.
"""
from __future__ import annotations

import sys
import time

REDRAW_S = 0.5  # at most this often on a terminal
LOG_STEPS = 10  # lines per bootstrap in a log


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Progress:
    """`update(done)` after each batch of `total` items; the last update ends the line."""

    def __init__(self, total: int, what: str = "bootstrap", unit: str = "resamples", stream=None):
        self.total, self.what, self.unit = total, what, unit
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = self.last = time.monotonic()
        self.next_step = 1  # in a log: the next tenth to write
        self.width = 0  # of the line on the terminal, to blank a longer one

    def text(self, done: int) -> str:
        elapsed = time.monotonic() - self.start
        left = f", ~{elapsed * (self.total - done) / done:.0f} s left" if 0 < done < self.total else ""
        return f"{self.what} {done}/{self.total} {self.unit} ({done / max(1, self.total):.0%}), {elapsed:.0f} s{left}"

    def update(self, done: int) -> None:
        now, final = time.monotonic(), done >= self.total
        if self.tty:
            if final or now - self.last >= REDRAW_S:
                line = self.text(done)
                self.stream.write("\r" + line.ljust(self.width) + ("\n" if final else ""))
                self.stream.flush()
                self.last, self.width = now, len(line)
        elif done * LOG_STEPS >= self.next_step * self.total:
            self.stream.write(self.text(done) + "\n")
            self.stream.flush()
            self.next_step = done * LOG_STEPS // self.total + 1

"""Terminal progress for work longer than a few seconds.

- ``Progress``: a load's counters per model, done, failed and rate. On a terminal one status
  line is redrawn every second; otherwise (CI logs, pipes) a line is printed every
  ``log_every`` seconds. Nothing is printed for runs shorter than ``quiet_for``.
- ``LongWait``: a bounded wait (a model's ``/health``, a Deployment's pods) that says every
  ``every`` seconds what it waits for, for how long so far, its limit and how things stand.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["LongWait", "Progress"]


class LongWait:
    """``what`` is waited for at most ``timeout`` s (the flag ``limit`` sets it); ``note(now)``
    tells ``log`` how it stands once every ``every`` seconds of waiting."""

    def __init__(self, what: str, *, timeout: float, log: Callable[[str], None] | None, every: float = 15.0,
                 limit: str = "--ready-timeout") -> None:  # fmt: skip
        self.what, self.timeout, self.log, self.every, self.limit = what, timeout, log, every, limit
        self.start = time.monotonic()
        self.deadline = self.start + timeout
        self._next_note = self.start + every

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def note(self, now: str) -> None:
        """Log how the wait stands (``now``), if a note is due."""
        t = time.monotonic()
        if self.log is not None and t >= self._next_note:
            self.log(f"  waiting for {self.what}: {t - self.start:.0f} s of at most {self.timeout:g} s "
                     f"({self.limit}); {now}")
            self._next_note = t + self.every


class Progress:
    """Counters the runner bumps; ``run()`` prints them until cancelled."""

    def __init__(self, models: list[str], *, stream: TextIO | None = None, quiet_for: float = 3.0,
                 log_every: float = 10.0) -> None:
        self.done = dict.fromkeys(models, 0)
        self.failed = dict.fromkeys(models, 0)
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty()
        self._quiet_for = quiet_for
        self._log_every = log_every
        self._start = time.monotonic()
        self._printed = False

    def record(self, model: str, success: bool) -> None:
        self.done[model] += 1
        if not success:
            self.failed[model] += 1

    def line(self) -> str:
        elapsed = max(time.monotonic() - self._start, 1e-9)
        parts = [f"{m}: {n} done, {self.failed[m]} failed, {n / elapsed:.1f} req/s" for m, n in self.done.items()]
        return f"[{elapsed:6.1f}s] " + " | ".join(parts)

    async def run(self) -> None:
        interval = 1.0 if self._tty else self._log_every
        await asyncio.sleep(self._quiet_for)
        while True:
            self._print()
            await asyncio.sleep(interval)

    def finish(self) -> None:
        """Print the final counts, if anything was printed before."""
        if self._printed:
            self._print()
            if self._tty:
                self._stream.write("\n")
                self._stream.flush()

    def _print(self) -> None:
        self._printed = True
        self._stream.write(("\r\x1b[2K" + self.line()) if self._tty else self.line() + "\n")
        self._stream.flush()

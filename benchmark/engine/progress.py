"""Terminal progress for runs longer than a few seconds: per model, done, failed and rate.

On a terminal one status line is redrawn every second; otherwise (CI logs, pipes) a line is
printed every ``log_every`` seconds. Nothing is printed for runs shorter than ``quiet_for``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TextIO

__all__ = ["Progress"]


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

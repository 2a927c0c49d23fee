"""Progress of a long count (products embedded, say) that a person sees wherever the output goes.

On a terminal: a rich progress bar, as ``make train`` draws its jobs, with the count, the
rate and the time left. Anywhere else (a pipe, a log file, CI) a bar redrawn with carriage
returns shows nothing line by line, so plain lines are written instead: one at the first
update, then at most one every ``interval_s`` seconds, and one at the end, e.g.::

    embedding catalog: 1,024/20,000 products (5%), 85 products/s, 3 min 42 s left
    embedding catalog: 20,000/20,000 products (100%) in 3 min 54 s, 85 products/s
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

LOG_INTERVAL_S = 10.0


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 42 s``, ``1 h 05 min``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class _RateColumn(ProgressColumn):
    """Items per second, e.g. ``85 products/s``."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        shown = f"{speed:,.0f}" if speed else "-"
        return Text(f"{shown} {self.unit}/s", style="progress.data.speed")


class CountProgress:
    """``done`` of ``total`` ``unit`` (``advance`` adds to it), shown on ``stream``
    (default: standard error at entry) as a bar on a terminal, else as plain lines.

    ``clock`` (seconds, monotonic) is for tests; ``enabled=False`` shows nothing.
    """

    def __init__(
        self,
        total: int,
        label: str,
        unit: str = "items",
        *,
        stream: TextIO | None = None,
        interval_s: float = LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        enabled: bool = True,
    ) -> None:
        self.total = total
        self.label = label
        self.unit = unit
        self.done = 0
        self._stream = stream
        self._interval_s = interval_s
        self._clock = clock
        self._enabled = enabled
        self._bar: Progress | None = None
        self._task = None
        self._started = 0.0
        self._last_line: float | None = None
        self._last_line_done = -1

    def __enter__(self) -> CountProgress:
        self._started = self._clock()
        if not self._enabled:
            return self
        stream = self._stream if self._stream is not None else sys.stderr
        self._stream = stream
        console = Console(file=stream)
        if console.is_terminal and not console.is_dumb_terminal:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(bar_width=20),
                MofNCompleteColumn(),
                _RateColumn(self.unit),
                TimeRemainingColumn(),
                TextColumn("left"),
                console=console,
                get_time=self._clock,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total)
        return self

    def advance(self, n: int) -> None:
        """``n`` more are done."""
        self.done += n
        if not self._enabled:
            return
        if self._bar is not None:
            self._bar.advance(self._task, n)
            return
        now = self._clock()
        if (
            self._last_line is None
            or now - self._last_line >= self._interval_s
            or self.done >= self.total
        ):
            self._write_line(now)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif self._enabled and self.done != self._last_line_done:
            self._write_line(self._clock(), stopped=exc[0] is not None)

    def line(self, now: float, stopped: bool = False) -> str:
        """The plain line for the count at ``now``."""
        elapsed = now - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        shown_rate = f"{rate:,.0f} {self.unit}/s" if rate else f"- {self.unit}/s"
        share = self.done / self.total if self.total else 1.0
        count = f"{self.label}: {self.done:,}/{self.total:,} {self.unit} ({share:.0%})"
        if stopped:
            return f"{count} when it stopped after {duration(elapsed)}"
        if self.done >= self.total:
            return f"{count} in {duration(elapsed)}, {shown_rate}"
        left = duration((self.total - self.done) / rate) if rate else "unknown time"
        return f"{count}, {shown_rate}, {left} left"

    def _write_line(self, now: float, stopped: bool = False) -> None:
        assert self._stream is not None
        self._stream.write(self.line(now, stopped) + "\n")
        self._stream.flush()
        self._last_line, self._last_line_done = now, self.done

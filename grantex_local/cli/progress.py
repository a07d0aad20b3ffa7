"""Progress bars for long commands: on stderr, only for a person watching a terminal.

A command wraps its long call in :func:`progress_bar` and hands the callback it yields to the
library (``progress=...``, see :mod:`grantex_local.progress`). The callback is ``None`` when
stderr is not a terminal or the output is for a program (``--json``, ``--get``): pipes, logs and
scripts see exactly the bytes they saw before. On a terminal nothing is drawn for work that ends
within :data:`SHOW_AFTER` seconds, so quick commands do not flicker; longer work that reports
only as it ends still leaves a finished bar (its count, rate and time).

Why rich and not click's ``progressbar`` (which ``audit verify`` used before): the issue asks for
a rate and an estimate, and click's bar has only an ETA and a percentage; ``rich.progress`` has
both, handles unknown totals (a pulsing bar) and redraws only what changed. It is already
installed (Textual, our TUI, is built on it), and it is imported only when a bar is actually
drawn, so a command's cold start does not pay for it (tests/test_cli_imports.py).

The callback is throttled twice: the library calls it every few thousand units
(:class:`~grantex_local.progress.Tally`), and here a redraw happens at most :data:`REDRAWS` times
a second, so a call costs one clock read and two comparisons.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from . import _GET_KEY

if TYPE_CHECKING:
    from ..progress import Progress

SHOW_AFTER = 0.5
"""Seconds of work before a bar appears: shorter work shows nothing."""
REDRAWS = 8
"""Redraws a second at most."""


class _Bar:
    """The callback: remembers the latest count, draws it when a redraw is due."""

    def __init__(self, label: str, unit: str) -> None:
        self.label = label
        self.unit = unit
        self.started = time.monotonic()
        self.drawn_at = 0.0
        self.done = 0
        self.total: int | None = None
        self._progress: Any = None  # a rich Progress, once the bar is shown
        self._task: Any = None

    def __call__(self, done: int, total: int | None) -> None:
        self.done, self.total = done, total
        now = time.monotonic()
        if now - self.drawn_at < 1 / REDRAWS or now - self.started < SHOW_AFTER:
            return
        self.drawn_at = now
        self._draw()

    def _draw(self) -> None:
        if self._progress is None:
            self._progress = _rich_progress()
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=self.total, unit=self.unit)
            # the work started before the bar was shown: rate, estimate and time count from then
            # (rich's clock is time.monotonic too)
            self._progress.tasks[-1].start_time = self.started
        self._progress.update(self._task, completed=self.done, total=self.total)
        self._progress.refresh()

    def close(self) -> None:
        """Draw the last count (the bar stays, showing the rate and time it took) and stop."""
        if self._progress is not None:
            self._draw()
            self._progress.stop()


def _rich_progress() -> Any:
    """A rich ``Progress`` on stderr: label, bar, count, rate and the estimate (elapsed when done)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Units a second in the task's own unit (rich's speed columns speak bytes)."""

        def render(self, task: Task) -> Text:
            # rich's speed needs two updates; a bar first drawn when the work ends has one
            speed = task.finished_speed or task.speed
            if not speed and task.elapsed:
                speed = task.completed / task.elapsed
            unit = task.fields.get("unit", "")
            return Text(f"{speed:,.0f} {unit}/s" if speed else f"? {unit}/s", style="progress.data.speed")

    class TimeColumn(ProgressColumn):
        """The estimate while running (``eta 0:01:30``), the time it took once done (``in 0:02:05``):
        rich's own column shows both the same way, which reads as a stale estimate."""

        def render(self, task: Task) -> Text:
            if task.finished or (task.total is not None and task.completed >= task.total):
                return Text(f"in {_clock(task.finished_time or task.elapsed)}", style="progress.elapsed")
            return Text(f"eta {_clock(task.time_remaining)}", style="progress.remaining")

    return Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
        RateColumn(), TimeColumn(),
        console=Console(file=sys.stderr), auto_refresh=False, redirect_stdout=False,
        redirect_stderr=False,
    )


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def showing(as_json: bool = False) -> bool:
    """Whether a bar may be drawn: a terminal on stderr, and output meant for a person."""
    ctx = click.get_current_context(silent=True)
    if as_json or (ctx is not None and ctx.meta.get(_GET_KEY) is not None):
        return False
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


@contextmanager
def progress_bar(label: str, unit: str = "entries", *, as_json: bool = False) -> Iterator[Progress | None]:
    """A callback drawing a bar on stderr while the block runs, or None where none belongs.

    The bar is finished before the block's caller prints anything, so results never share a
    line with it; on an error it stops where the work stopped.
    """
    if not showing(as_json):
        yield None
        return
    bar = _Bar(label, unit)
    try:
        yield bar
    finally:
        bar.close()

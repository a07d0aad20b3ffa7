"""A progress line for notebooks: the face :mod:`grantex_local.progress` callbacks get in Jupyter.

Why plain text in one display cell rather than a widget: it renders the same in Jupyter, VS Code,
papermill and a headless ``nbclient`` run (the tests execute both notebooks), and needs nothing
beyond IPython, which any kernel has. Outside a kernel the line goes to stderr instead.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from ..progress import Progress

WIDTH = 30


def progress_text(label: str, done: int, total: int | None, elapsed: float, width: int = WIDTH) -> str:
    """``loading [#####     ] 1,200/3,000, 4,000/s, 0 s left`` (``in 2 s`` once done)."""
    rate = done / elapsed if elapsed > 0 else 0.0
    if not total:
        return f"{label} {done:,}, {rate:,.0f}/s"
    bar = "#" * (width * min(done, total) // total)
    when = f"in {elapsed:.0f} s" if done >= total else (f"{(total - done) / rate:.0f} s left" if rate else "")
    return f"{label} [{bar:<{width}}] {done:,}/{total:,}, {rate:,.0f}/s" + (f", {when}" if when else "")


def progress_line(label: str, clock: Callable[[], float] = time.monotonic) -> Progress:
    """A ``progress(done, total)`` callback redrawing one line in the notebook's output."""
    started = clock()
    try:
        from IPython.display import Pretty, display
    except ImportError:
        def to_stderr(done: int, total: int | None) -> None:
            print("\r" + progress_text(label, done, total, clock() - started), end="", file=sys.stderr)
        return to_stderr
    handle = display(Pretty(f"{label} ..."), display_id=True)

    def report(done: int, total: int | None) -> None:
        handle.update(Pretty(progress_text(label, done, total, clock() - started)))

    return report

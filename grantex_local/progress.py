"""Progress of long work, reported through a callback so the library itself stays silent.

Why a callback and not a bar: the same work runs under the CLI (a bar on a terminal, nothing in a
pipe or with ``--json``), in notebooks (a widget), in the server and in tests (nothing at all).
The library only counts; each face decides how, and whether, to show it.

A callback is called as ``progress(done, total)``: ``done`` units so far (entries, rows, files),
never decreasing, and ``total`` when it is known (else None). The last call has ``done == total``
when a total was given. Callers should report at most every few thousand units: a call per row
would cost more than the work on a ten-million-entry ledger.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, "int | None"], None]

MAX_STEP = 5_000
"""The most units a :class:`Tally` lets pass between two calls (a hundredth of the total below that)."""


class Tally:
    """Counts work done and tells a :data:`Progress` callback now and then, never per unit.

    Why a class of its own: every library function that reports progress has the same three
    duties (throttle, never go backwards, end exactly at ``total``), and getting one of them wrong
    shows as a bar that stalls at 99 % or jumps back. The callback is told when ``done`` has grown
    by ``step`` since the last call (a hundredth of the total, at most :data:`MAX_STEP` units)
    and once more by :meth:`finish`. With ``progress=None`` every method is a cheap no-op, so
    callers need no ``if``.
    """

    __slots__ = ("_next", "done", "progress", "step", "total")

    def __init__(self, progress: Progress | None, total: int | None, *, step: int | None = None) -> None:
        self.progress = progress
        self.total = total
        self.step = step or max(1, min(total // 100, MAX_STEP) if total else MAX_STEP)
        self.done = 0
        self._next = self.step

    def reach(self, done: int) -> None:
        """``done`` units so far (a smaller value than before is ignored, a larger one than
        ``total`` is capped: the callback's contract holds whatever the caller counts)."""
        if done <= self.done:
            return
        self.done = done if self.total is None else min(done, self.total)
        if self.done >= self._next and self.progress is not None:
            self._next = self.done + self.step
            self.progress(self.done, self.total)

    def advance(self, units: int = 1) -> None:
        self.reach(self.done + units)

    def after(self, offset: int) -> Callable[[int], None]:
        """A callback for a part of the work that counts from zero (``verify_rows``'
        ``progress(count)``), placed ``offset`` units into the whole."""
        return lambda count: self.reach(offset + count)

    def finish(self) -> None:
        """The last call: ``done == total`` (or the count so far when no total was known)."""
        if self.progress is None:
            return
        if self.total is not None:
            self.done = self.total
        self._next = self.done + self.step
        self.progress(self.done, self.total)

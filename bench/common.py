"""Timing helpers and the result table shared by every benchmark."""

from __future__ import annotations

import json
import operator
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass
class Row:
    """One benchmark line: our figure, the floor, and ratio = ours / floor (both rates)."""

    name: str
    unit: str
    ours: float
    floor: float
    target: str
    floor_what: str
    extra: str = ""

    @property
    def ratio(self) -> float:
        return self.ours / self.floor if self.floor else float("nan")

    @property
    def met(self) -> bool | None:
        """Whether the target holds: ``>= / <= / < N`` compare the ratio, ``< N MB`` / ``< N ms`` our
        figure, ``about N s`` our figure within half again; None for a target not understood."""
        target = self.target.strip()
        if m := re.fullmatch(r"(>=|<=|<|>)\s*([0-9.]+)\s*(MB|ms)", target):
            return bool(_COMPARE[m.group(1)](self.ours, float(m.group(2))))
        if m := re.fullmatch(r"about\s*([0-9.]+)\s*s", target):
            return self.ours <= 1.5 * float(m.group(1))
        if m := re.match(r"(>=|<=|<|>)\s*([0-9.]+)", target):
            return bool(_COMPARE[m.group(1)](self.ratio, float(m.group(2))))
        return None


_COMPARE = {">=": operator.ge, "<=": operator.le, "<": operator.lt, ">": operator.gt}


def best_rate(fn: Callable[[], int], repeats: int) -> float:
    """Operations per second of the best of ``repeats`` runs (fn returns its operation count).

    The best run is the least disturbed by other load on a shared machine.
    """
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        count = fn()
        rates.append(count / (time.perf_counter() - start))
    return max(rates)


def best_rate_after(setup: Callable[[], T], fn: Callable[[T], int], repeats: int) -> float:
    """Like :func:`best_rate`, with an untimed ``setup`` before each run (fresh state per run)."""
    rates = []
    for _ in range(repeats):
        state = setup()
        start = time.perf_counter()
        count = fn(state)
        rates.append(count / (time.perf_counter() - start))
    return max(rates)


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def print_table(rows: list[Row]) -> None:
    header = f"{'benchmark':<44} {'ours':>14} {'floor':>14} {'ratio':>7}  {'met':<4} target"
    print(header)
    print("-" * (len(header) + 16))
    for r in rows:
        met = {True: "yes", False: "NO", None: "-"}[r.met]
        print(f"{r.name:<44} {r.ours:>14,.1f} {r.floor:>14,.1f} {r.ratio:>7.2f}  {met:<4} {r.target}")
        print(f"{'':<44} unit: {r.unit}; floor: {r.floor_what}" + (f"; {r.extra}" if r.extra else ""))


def write_json(rows: list[Row], path: str, meta: dict[str, object]) -> None:
    data = {"meta": meta, "rows": [dict(asdict(r), ratio=r.ratio, met=r.met) for r in rows]}
    with open(path, "w") as fh:
        json.dump(data, fh, indent=2)

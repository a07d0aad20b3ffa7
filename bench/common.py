"""Timing helpers and the result table shared by every benchmark."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass


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


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def print_table(rows: list[Row]) -> None:
    header = f"{'benchmark':<44} {'ours':>14} {'floor':>14} {'ratio':>7}  target"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r.name:<44} {r.ours:>14,.1f} {r.floor:>14,.1f} {r.ratio:>7.2f}  {r.target}")
        print(f"{'':<44} unit: {r.unit}; floor: {r.floor_what}" + (f"; {r.extra}" if r.extra else ""))


def write_json(rows: list[Row], path: str, meta: dict[str, object]) -> None:
    data = {"meta": meta, "rows": [dict(asdict(r), ratio=r.ratio) for r in rows]}
    with open(path, "w") as fh:
        json.dump(data, fh, indent=2)

"""Check 10, retention: the log is complete (from seq 1, no gaps or duplicates) and covers the
review period (EU AI Act Art. 19: logs kept).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..frames import Dataset, to_utc
from .base import CheckResult, _frame, _listing, _problem_counts, _result, _seconds


def check_retention(ds: Dataset, *, review_start: Any = None, review_end: Any = None) -> CheckResult:
    """The log covers the review period and has no seq gaps, duplicates or missing head.

    A chain that starts at seq 1 holds everything since its first event, so it covers any period
    that starts earlier; one that does not start at seq 1 must reach back to ``review_start``.
    The end is covered when the log was read (``as_of``: export or load time) after ``review_end``.
    """
    start = to_utc(review_start) if review_start is not None else None
    end = to_utc(review_end) if review_end is not None else None
    rows: list[dict[str, Any]] = []
    audit = ds.audit
    heads: dict[str, int] = {}
    for developer_id, seqs in audit.groupby("developer_id", sort=True)["seq"]:
        values = np.sort(seqs.to_numpy(dtype=np.int64))
        heads[str(developer_id)] = int(values[0])
        if values[0] != 1:
            rows.append(
                {
                    "seq": int(values[0]),
                    "developer_id": developer_id,
                    "problem": "head_missing",
                    "detail": f"the chain starts at seq {values[0]}: entries 1..{values[0] - 1} are gone",
                }
            )
        steps = np.diff(values)
        for index in np.flatnonzero(steps > 1):
            low, high = int(values[index]), int(values[index + 1])
            rows.append(
                {
                    "seq": low + 1,
                    "developer_id": developer_id,
                    "problem": "seq_gap",
                    "detail": f"seq {low + 1}..{high - 1} missing ({high - low - 1} entries)",
                }
            )
        for index in np.flatnonzero(steps == 0):
            rows.append(
                {
                    "seq": int(values[index]),
                    "developer_id": developer_id,
                    "problem": "duplicate_seq",
                    "detail": f"seq {values[index]} appears more than once",
                }
            )
        if start is not None and values[0] != 1:
            first_at = audit.loc[seqs.index, "timestamp"].min()
            if first_at > start:
                rows.append(
                    {
                        "seq": int(values[0]),
                        "developer_id": developer_id,
                        "problem": "period_start_not_covered",
                        "detail": f"the oldest entry left is from {first_at.isoformat()}, after the review "
                        f"start {start.isoformat()}",
                    }
                )
    if end is not None and ds.as_of < end:
        rows.append(
            {
                "seq": None,
                "developer_id": None,
                "problem": "period_end_not_covered",
                "detail": f"the log was read at {ds.as_of.isoformat()}, before the review end "
                f"{end.isoformat()}",
            }
        )
    evidence = _frame(rows, ["seq", "developer_id", "problem", "detail"])
    first = audit["timestamp"].min() if len(audit) else None
    last = audit["timestamp"].max() if len(audit) else None
    in_period = audit["timestamp"].between(
        start if start is not None else pd.Timestamp.min.tz_localize("UTC"),
        end if end is not None else pd.Timestamp.max.tz_localize("UTC"),
    )
    metrics: dict[str, Any] = {
        "entries": len(audit),
        "first_entry_at": first,
        "last_entry_at": last,
        "span_days": float(_seconds(last - first) / 86400) if first is not None else 0.0,
        "review_start": start,
        "review_end": end,
        "entries_in_period": int(in_period.sum()),
        "chain_heads": heads,
        "problems": _problem_counts(evidence),
    }
    if evidence.empty:
        summary = (
            f"{len(audit)} entries, complete from seq 1 with no gaps, spanning "
            f"{metrics['span_days']:.1f} days"
        )
        if start is not None or end is not None:
            summary += f"; {metrics['entries_in_period']} in the review period"
    else:
        summary = "the log is not complete: " + _listing(metrics["problems"])
    return _result(ds, 10, evidence.empty, summary, evidence, metrics)

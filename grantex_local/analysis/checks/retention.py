"""Check 10, retention: the log is complete (from seq 1, no gaps or duplicates) and covers the
review period (EU AI Act Art. 19: logs kept).

The engine reads the log with one GROUP BY per chain (head, tail, size, distinct seqs, first and
last time, entries in the review period) and walks seqs in order only for the chains that
GROUP BY finds suspect. The review bounds come in as a registered one-row table
(``check10_period``), not as literals: DuckDB and Spark spell a zoned timestamp literal
differently, a typed column means the same in both.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from ..engines import EngineDataset, engine_dataset
from ..frames import Dataset, to_utc
from .base import CheckResult, _frame, _listing, _problem_counts, _result, _seconds
from .sql import arrow_table

CHAINS = """
SELECT a.developer_id, MIN(a.seq) AS head, MAX(a.seq) AS tail, COUNT(*) AS entries,
       COUNT(DISTINCT a.seq) AS distinct_seqs,
       MIN(a.timestamp) AS first_at, MAX(a.timestamp) AS last_at,
       SUM(CASE WHEN a.timestamp IS NOT NULL
                 AND (p.review_start IS NULL OR a.timestamp >= p.review_start)
                 AND (p.review_end IS NULL OR a.timestamp <= p.review_end) THEN 1 ELSE 0 END) AS in_period
FROM audit a CROSS JOIN check10_period p
GROUP BY a.developer_id
ORDER BY a.developer_id ASC NULLS LAST
"""
"""One row per chain (entries without a developer in a row of their own, counted in the totals
only, as a pandas GROUP BY drops them)."""

STEPS = """
SELECT developer_id, seq, next_seq FROM (
  SELECT developer_id, seq,
         LEAD(seq) OVER (PARTITION BY developer_id ORDER BY seq ASC NULLS LAST) AS next_seq
  FROM audit WHERE developer_id IN (SELECT developer_id FROM check10_suspects)
) steps
WHERE next_seq > seq + 1 OR next_seq = seq
ORDER BY developer_id ASC NULLS LAST, seq ASC NULLS LAST, next_seq ASC NULLS LAST
"""
"""Every step between consecutive seqs of a chain that is not +1: a gap or a duplicate. Run only
over the chains the GROUP BY found suspect (entries, distinct seqs and the seq range disagree): a
window sorts its whole partition, a chain of ten million entries, which a sound log never needs."""


def check_retention(
    ds: Dataset | EngineDataset, *, review_start: Any = None, review_end: Any = None
) -> CheckResult:
    """The log covers the review period and has no seq gaps, duplicates or missing head.

    A chain that starts at seq 1 holds everything since its first event, so it covers any period
    that starts earlier; one that does not start at seq 1 must reach back to ``review_start``.
    The end is covered when the log was read (``as_of``: export or load time) after ``review_end``.
    """
    start = to_utc(review_start) if review_start is not None else None
    end = to_utc(review_end) if review_end is not None else None
    with engine_dataset(ds) as eds:
        engine = eds.engine
        engine.register_params("check10_period", {"review_start": start, "review_end": end})
        chains = engine.sql(CHAINS)
        whole = (chains["entries"] == chains["distinct_seqs"]) & (
            chains["entries"] == chains["tail"] - chains["head"] + 1
        )
        known = chains["developer_id"].notna()
        suspects = chains.loc[known & ~whole.fillna(False).astype(bool), "developer_id"]
        engine.register_arrow("check10_suspects", arrow_table({"developer_id": (suspects, pa.string())}))
        steps = engine.sql(STEPS)
    by_chain = {d: g for d, g in steps.groupby("developer_id", sort=False)}
    rows: list[dict[str, Any]] = []
    heads: dict[str, int] = {}
    ordered = chains.loc[chains["developer_id"].notna()].sort_values("developer_id", kind="stable")
    for chain in ordered.itertuples(index=False):
        developer_id, head = chain.developer_id, int(chain.head)
        heads[str(developer_id)] = head
        if head != 1:
            rows.append(
                {
                    "seq": head,
                    "developer_id": developer_id,
                    "problem": "head_missing",
                    "detail": f"the chain starts at seq {head}: entries 1..{head - 1} are gone",
                }
            )
        found = by_chain.get(developer_id)
        if found is not None:
            gaps = found.loc[found["next_seq"] > found["seq"] + 1]
            for low, high in zip(gaps["seq"].astype(int), gaps["next_seq"].astype(int), strict=True):
                rows.append(
                    {
                        "seq": low + 1,
                        "developer_id": developer_id,
                        "problem": "seq_gap",
                        "detail": f"seq {low + 1}..{high - 1} missing ({high - low - 1} entries)",
                    }
                )
            for value in found.loc[found["next_seq"] == found["seq"], "seq"].astype(int):
                rows.append(
                    {
                        "seq": value,
                        "developer_id": developer_id,
                        "problem": "duplicate_seq",
                        "detail": f"seq {value} appears more than once",
                    }
                )
        if start is not None and head != 1 and chain.first_at > start:
            rows.append(
                {
                    "seq": head,
                    "developer_id": developer_id,
                    "problem": "period_start_not_covered",
                    "detail": f"the oldest entry left is from {chain.first_at.isoformat()}, after the review "
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
    entries = int(chains["entries"].sum())
    first = chains["first_at"].min() if entries else None
    last = chains["last_at"].max() if entries else None
    metrics: dict[str, Any] = {
        "entries": entries,
        "first_entry_at": first,
        "last_entry_at": last,
        "span_days": float(_seconds(last - first) / 86400) if first is not None else 0.0,
        "review_start": start,
        "review_end": end,
        "entries_in_period": int(chains["in_period"].sum()),
        "chain_heads": heads,
        "problems": _problem_counts(evidence),
    }
    if evidence.empty:
        summary = (
            f"{entries} entries, complete from seq 1 with no gaps, spanning "
            f"{metrics['span_days']:.1f} days"
        )
        if start is not None or end is not None:
            summary += f"; {metrics['entries_in_period']} in the review period"
    else:
        summary = "the log is not complete: " + _listing(metrics["problems"])
    return _result(ds, 10, evidence.empty, summary, evidence, metrics)

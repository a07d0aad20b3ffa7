"""Check 4, grant window: every accepted action falls inside its grant's lifetime.

Why a cache window: a verifier may cache a token's validity for a declared time, so an action
just after a revocation is listed apart rather than failed.

Why the work is split as it is: the audit log is read once, where the engine holds it, joined to
the grants' bounds (issue, expiry, revocation: a small table handed to the engine), and only the
actions outside them come back. Comparing instants is portable SQL; the one piece of arithmetic
on instants (how long after the revocation, against the cache window) is done in Python on the
evidence rows, since DuckDB and Spark spell "seconds between two timestamps" differently.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyarrow as pa

from ..engines import EngineDataset, engine_dataset
from ..frames import Dataset
from .base import CheckResult, _counts, _frame, _grant_lookup, _listing, _result, duration
from .sql import accepted

_JUDGED = f"""
FROM audit a JOIN check4_grants g ON a.grant_id = g.grant_id
WHERE {accepted('a')}
"""

ACCEPTED = f"SELECT COUNT(*) AS accepted_actions {_JUDGED}"
"""Accepted actions under a grant that exists: what the check judges."""

_BOUNDS = (
    ("a.timestamp < g.issued_at", "before_issue"),
    ("a.timestamp >= g.expires_at", "after_expiry"),
    ("g.revoked_at IS NOT NULL AND a.timestamp > g.revoked_at", "after_revocation"),
)

OUTSIDE = "\nUNION ALL\n".join(
    f"""SELECT a.seq, a.developer_id, a.agent_id, a.grant_id, a.action, a.timestamp,
       g.issued_at, g.expires_at, g.revoked_at, '{problem}' AS problem, {part} AS part
{_JUDGED}  AND {condition}"""
    for part, (condition, problem) in enumerate(_BOUNDS)
) + "\nORDER BY seq ASC NULLS FIRST, part, developer_id ASC NULLS LAST"
"""Every (action, bound it breaks); one action may break two. Ordered as the check has always
listed them: by seq, then by bound, then by chain (the loaded frame's order for equal seqs)."""

COLUMNS = ["seq", "developer_id", "agent_id", "grant_id", "action", "timestamp", "issued_at",
           "expires_at", "revoked_at", "problem", "within_cache_window", "detail"]


def _bounds_table(lookup: pd.DataFrame) -> pa.Table:
    """Typed by hand: Spark needs a string key and UTC microsecond instants, whatever pandas holds."""
    instant = pa.timestamp("us", tz="UTC")
    return pa.table({
        "grant_id": pa.array([v if isinstance(v, str) else None for v in lookup.index.astype(object)],
                             type=pa.string()),
        **{name: pa.array(lookup[name], type=instant, from_pandas=True)
           for name in ("issued_at", "expires_at", "revoked_at")},
    })


def check_grant_window(ds: Dataset | EngineDataset, *, cache_window: Any = "0s") -> CheckResult:
    """Every accepted action falls between its grant's issue and min(expiry, revocation).

    Actions after the revocation instant but within ``cache_window`` (a verifier's declared
    cache of a token's validity) are listed with ``within_cache_window`` and do not fail.
    """
    window = duration(cache_window)
    with engine_dataset(ds) as eds:
        engine = eds.engine
        engine.register_arrow("check4_grants", _bounds_table(_grant_lookup(eds.ds)))
        judged = int(engine.sql(ACCEPTED)["accepted_actions"].iloc[0])
        rows = engine.sql(OUTSIDE).drop(columns=["part"])
    if not len(rows):
        evidence = _frame([], COLUMNS)
    else:
        late = rows["problem"] == "after_revocation"
        cached = late & (window > pd.Timedelta(0)) & ((rows["timestamp"] - rows["revoked_at"]) <= window)
        rows["within_cache_window"] = cached.fillna(False).astype(bool)
        rows["detail"] = [
            _window_detail(p, t, i, e, r)
            for p, t, i, e, r in zip(rows["problem"], rows["timestamp"], rows["issued_at"],
                                     rows["expires_at"], rows["revoked_at"], strict=True)
        ]
        evidence = rows[COLUMNS].reset_index(drop=True)
    failing = evidence.loc[~evidence["within_cache_window"].astype(bool)] if len(evidence) else evidence
    metrics: dict[str, Any] = {
        "accepted_actions": judged,
        "cache_window_seconds": window.total_seconds(),
        "problems": _counts(failing["problem"]) if len(failing) else {},
        "within_cache_window": int(evidence["within_cache_window"].sum()) if len(evidence) else 0,
    }
    if failing.empty:
        summary = f"all {judged} accepted actions fall within their grant's lifetime"
        if metrics["within_cache_window"]:
            summary += f" ({metrics['within_cache_window']} inside the declared cache window)"
    else:
        summary = (
            f"{len(failing)} actions fall outside their grant's lifetime: " + _listing(metrics["problems"])
        )
    return _result(ds, 4, failing.empty, summary, evidence, metrics)


def _window_detail(
    problem: str, ts: pd.Timestamp, issued: pd.Timestamp, expires: pd.Timestamp, revoked: pd.Timestamp
) -> str:
    if problem == "before_issue":
        return f"{ts.isoformat()} is before the grant was issued at {issued.isoformat()}"
    if problem == "after_expiry":
        return f"{ts.isoformat()} is after the grant expired at {expires.isoformat()}"
    return f"{ts.isoformat()} is {(ts - revoked).total_seconds():g}s after the grant was revoked"

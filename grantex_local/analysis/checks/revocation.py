"""Checks 5 and 6: no accepted action after a revocation, and how fast revocations took effect.

Why one module for two checks: both stand on the same table, the revocation that applies to each
grant first (:func:`revocation_points`, its own or an ancestor's) and the actions after it; one
judges that there are none, the other measures the time they ran on. The points are computed
once per engine dataset (kept in ``EngineDataset.cache``), so ``run_all`` reads the revocations
once for both checks.

The engine reads the log for the first ``grantex.grant.revoked`` entry of each grant (a window
function, one row per revoked grant) and for the actions after the revocation that applies to
their grant, joined against the points. Between the two, Python walks the grants' parent links:
the grants table is small and stays pandas, and Spark SQL has no recursive CTE.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ..engines import EngineDataset, engine_dataset
from ..frames import Dataset, safe_map
from .base import (
    CheckResult,
    _counts,
    _frame,
    _listing,
    _percentiles,
    _result,
    _seconds,
    duration,
)
from .sql import agent_action, arrow_table

REVOCATIONS = """
SELECT grant_id, seq, timestamp, metadata FROM (
  SELECT grant_id, seq, timestamp, metadata,
         ROW_NUMBER() OVER (PARTITION BY grant_id
                            ORDER BY seq ASC NULLS LAST, developer_id ASC NULLS LAST) AS n
  FROM audit WHERE action = 'grantex.grant.revoked' AND grant_id IS NOT NULL
) first_revocation WHERE n = 1
ORDER BY grant_id ASC NULLS LAST
"""
"""The first revocation entry of each grant (its metadata as JSON text, for the cause)."""

_AFTER = f"""
FROM audit a JOIN check5_points p ON a.grant_id = p.grant_id
WHERE {agent_action('a')}
  AND CASE WHEN a.device_timestamp IS NOT NULL THEN a.device_timestamp > p.revoked_at
           WHEN p.logged THEN a.seq > p.revocation_seq
           ELSE a.timestamp > p.revoked_at END
"""
"""An action after the revocation of its grant: by chain order (seq) when the revocation is
logged, by clock when it is not. An entry synced from an offline device joins the chain at sync
time: when it was done is the device's clock, so it counts as after the revocation only if the
device did it later."""

AFTER = f"""
SELECT a.seq, a.developer_id, a.agent_id, a.grant_id, a.action,
       COALESCE(a.device_timestamp, a.timestamp) AS timestamp,
       p.revoked_by, p.revocation_seq, p.revoked_at
{_AFTER}  AND COALESCE(a.status, '') <> 'blocked'
ORDER BY a.seq ASC NULLS FIRST, a.developer_id ASC NULLS LAST
"""
"""Check 5's evidence: the accepted actions after their grant's revocation."""

BLOCKED_AFTER = f"SELECT COUNT(*) AS blocked {_AFTER}  AND a.status = 'blocked'"
"""Later attempts the ledger refused: counted, not held against the check."""

LAST_LATE = f"""
SELECT grant_id, seq, last_action_at, late_actions FROM (
  SELECT a.grant_id, a.seq, COALESCE(a.device_timestamp, a.timestamp) AS last_action_at,
         COUNT(*) OVER (PARTITION BY a.grant_id) AS late_actions,
         ROW_NUMBER() OVER (PARTITION BY a.grant_id
                            ORDER BY a.seq DESC NULLS LAST, a.developer_id DESC NULLS LAST) AS n
{_AFTER}  AND COALESCE(a.status, '') <> 'blocked'
) last_late WHERE n = 1
ORDER BY grant_id ASC NULLS LAST
"""
"""Check 6: per grant with accepted actions after its revocation, the last of them (by seq), its
time (the device's clock for an offline entry) and how many there were; one row per revoked
grant comes back, so the percentiles are taken on a table the size of the grants."""

AFTER_COLUMNS = ["seq", "developer_id", "agent_id", "grant_id", "action", "timestamp", "revoked_by",
                 "revocation_seq", "revoked_at", "seconds_after", "within_cache_window", "problem", "detail"]
LATENCY_COLUMNS = ["seq", "developer_id", "grant_id", "revoked_by", "revocation_seq", "revoked_at",
                   "last_action_at", "late_actions", "latency_seconds"]

_CACHE_KEY = "revocation_points"


def _cause(metadata: Any) -> Any:
    parsed = json.loads(metadata) if isinstance(metadata, str) else metadata
    return parsed.get("cause") if isinstance(parsed, dict) else None


def _points(eds: EngineDataset) -> pd.DataFrame:
    """The revocation points of ``eds``, computed on first use and kept in its cache."""
    cached = eds.cache.get(_CACHE_KEY)
    if isinstance(cached, pd.DataFrame):
        return cached
    events = eds.engine.sql(REVOCATIONS)
    own = events.set_index("grant_id")
    grants = eds.grants
    seq = safe_map(grants["grant_id"], own["seq"]).astype("Float64")
    when = safe_map(grants["grant_id"], own["timestamp"])
    by = grants["grant_id"].where(seq.notna())
    parent_of = grants.drop_duplicates("grant_id").set_index("grant_id")["parent_grant_id"]
    current = grants["parent_grant_id"]
    for _ in range(64):
        if current.isna().all():
            break
        up_seq = safe_map(current, own["seq"]).astype("Float64")
        better = up_seq.notna() & (seq.isna() | (up_seq < seq))
        if better.any():
            seq = seq.where(~better, up_seq)
            when = when.where(~better, safe_map(current, own["timestamp"]))
            by = by.where(~better, current)
        current = safe_map(current, parent_of)
    unlogged = seq.isna() & grants["revoked_at"].notna()
    when = when.where(~unlogged, grants["revoked_at"])
    out = pd.DataFrame(
        {
            "grant_id": grants["grant_id"],
            "revoked_by": by.where(~unlogged, grants["grant_id"]),
            "revocation_seq": seq.astype("Int64"),
            "revoked_at": when,
            "logged": ~unlogged,
            "developer_id": grants["developer_id"],
        }
    )
    out = out.loc[out["revocation_seq"].notna() | unlogged].reset_index(drop=True)
    metadata = pd.Series(events["metadata"].astype(object).tolist(), index=own.index, dtype=object)
    causes = metadata.map(_cause)
    out["cause"] = out["revoked_by"].map(causes)
    eds.cache[_CACHE_KEY] = out
    return out


def _register_points(eds: EngineDataset) -> pd.DataFrame:
    """The points, registered as ``check5_points`` for :data:`_AFTER` (again on every call: the
    engine may have held another dataset's points since)."""
    points = _points(eds)
    eds.engine.register_arrow("check5_points", arrow_table({
        "grant_id": (points["grant_id"], pa.string()),
        "revoked_by": (points["revoked_by"], pa.string()),
        "revocation_seq": (points["revocation_seq"], pa.int64()),
        "revoked_at": (points["revoked_at"], pa.timestamp("us", tz="UTC")),
        "logged": (points["logged"].astype(bool), pa.bool_()),
    }))
    return points


def revocation_points(ds: Dataset | EngineDataset) -> pd.DataFrame:
    """Per revoked grant: the revocation that applies to it first (its own or an ancestor's).

    Columns ``grant_id, revoked_by`` (the grant whose revocation it is), ``revocation_seq``
    (that ``grantex.grant.revoked`` entry), ``revoked_at`` (its time), ``cause``, ``logged``
    (False: the grant is revoked but no revocation entry exists; time from ``grants.revoked_at``).
    """
    with engine_dataset(ds) as eds:
        return _points(eds).copy()


def check_after_revocation(ds: Dataset | EngineDataset, *, cache_window: Any = "0s") -> CheckResult:
    """No accepted action after the revocation of its grant or of any ancestor, decided by chain
    order (seq), not by clocks. Actions within ``cache_window`` of the revocation are listed apart
    (``within_cache_window``) and do not fail; blocked attempts are counted, not held against it."""
    window = duration(cache_window)
    with engine_dataset(ds) as eds:
        points = _register_points(eds)
        accepted = eds.engine.sql(AFTER)
        blocked = int(eds.engine.sql(BLOCKED_AFTER)["blocked"].iloc[0])
    accepted["seconds_after"] = _seconds(accepted["timestamp"] - accepted["revoked_at"])
    accepted["within_cache_window"] = (window > pd.Timedelta(0)) & (
        accepted["seconds_after"] <= window.total_seconds()
    )
    accepted["problem"] = np.where(
        accepted["within_cache_window"],
        "inside_cache_window",
        np.where(
            accepted["revoked_by"] == accepted["grant_id"],
            "action_after_revocation",
            "action_after_ancestor_revocation",
        ),
    )
    accepted["detail"] = [
        f"{a} under {g}, {s:g}s after revocation seq {r} of {b}"
        for a, g, s, r, b in zip(
            accepted["action"],
            accepted["grant_id"],
            accepted["seconds_after"],
            accepted["revocation_seq"],
            accepted["revoked_by"],
            strict=True,
        )
    ]
    unlogged = points.loc[~points["logged"]]
    missing = pd.DataFrame(
        {
            "seq": pd.Series([pd.NA] * len(unlogged), dtype="Int64"),
            "developer_id": unlogged["developer_id"].to_numpy(),
            "agent_id": None,
            "grant_id": unlogged["grant_id"].to_numpy(),
            "action": None,
            "timestamp": pd.NaT,
            "revoked_by": unlogged["grant_id"].to_numpy(),
            "revocation_seq": pd.Series([pd.NA] * len(unlogged), dtype="Int64"),
            "revoked_at": unlogged["revoked_at"].to_numpy(),
            "seconds_after": np.nan,
            "within_cache_window": False,
            "problem": "revocation_not_logged",
            "detail": [
                f"grant {g} is revoked but no grantex.grant.revoked entry records it"
                for g in unlogged["grant_id"]
            ],
        }
    )
    evidence = (
        pd.concat([f[AFTER_COLUMNS] for f in (accepted, missing) if len(f)], ignore_index=True)
        if (len(accepted) or len(missing))
        else _frame([], AFTER_COLUMNS)
    )
    failing = evidence.loc[~evidence["within_cache_window"].astype(bool)] if len(evidence) else evidence
    metrics: dict[str, Any] = {
        "revoked_grants": len(points),
        "cache_window_seconds": window.total_seconds(),
        "accepted_after_revocation": len(accepted),
        "within_cache_window": int(accepted["within_cache_window"].sum()),
        "blocked_after_revocation": blocked,
        "problems": _counts(failing["problem"]) if len(failing) else {},
    }
    if failing.empty:
        summary = f"no accepted action after any of {len(points)} revocations"
        if metrics["within_cache_window"]:
            summary += f" beyond the cache window ({metrics['within_cache_window']} inside it)"
        if metrics["blocked_after_revocation"]:
            summary += f"; {metrics['blocked_after_revocation']} later attempts were blocked"
    else:
        summary = f"{len(failing)} accepted actions after revocation: " + _listing(metrics["problems"])
    return _result(ds, 5, failing.empty, summary, evidence, metrics)


def revocation_latency(ds: Dataset | EngineDataset, *, cache_window: Any = "0s") -> CheckResult:
    """Time from each revocation to the last accepted action after it (0 when none), p50/p95/max.

    Passes when the longest is within ``cache_window``: revocations took effect as declared.
    """
    window = duration(cache_window)
    with engine_dataset(ds) as eds:
        points = _register_points(eds)
        last = eds.engine.sql(LAST_LATE).set_index("grant_id")
    table = points.merge(last, left_on="grant_id", right_index=True, how="left")
    table["late_actions"] = table["late_actions"].fillna(0).astype(int)
    table["latency_seconds"] = (
        _seconds(table["last_action_at"] - table["revoked_at"]).fillna(0.0).clip(lower=0)
    )
    evidence = table[LATENCY_COLUMNS].sort_values("latency_seconds", ascending=False, kind="stable")
    metrics: dict[str, Any] = {
        "revoked_grants": len(table),
        "grants_with_late_actions": int((table["late_actions"] > 0).sum()),
        "late_actions": int(table["late_actions"].sum()),
        "cache_window_seconds": window.total_seconds(),
        **_percentiles(table["latency_seconds"]),
    }
    worst = metrics["max_seconds"] or 0.0
    passed = worst <= window.total_seconds()
    if not len(table):
        summary = "no grant was revoked"
    else:
        summary = (
            f"{len(table)} revoked grants: latency p50 {metrics['p50_seconds']:g}s, p95 "
            f"{metrics['p95_seconds']:g}s, max {worst:g}s (cache window {window.total_seconds():g}s)"
        )
    return _result(ds, 6, passed, summary, evidence, metrics)

"""Check 5 (no action after revocation) in SQL.

The audit table is read twice by the engine: once for the first ``grantex.grant.revoked`` entry
of each grant (a window function, one row per revoked grant), once for the actions after the
revocation that applies to their grant, joined against the revocation points. Between the two,
Python walks the grants' parent links (the grants table is small and stays pandas; Spark SQL has
no recursive CTE) to find, per grant, the earliest revocation of itself or an ancestor.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ..checks.base import CheckResult, _counts, _frame, _listing, _result, duration
from ..checks.sql import agent_action
from ..engines import EngineDataset
from ..frames import safe_map

REVOCATIONS = """
SELECT grant_id, seq, timestamp FROM (
  SELECT grant_id, seq, timestamp,
         ROW_NUMBER() OVER (PARTITION BY grant_id ORDER BY seq) AS n
  FROM audit WHERE action = 'grantex.grant.revoked' AND grant_id IS NOT NULL
) first_revocation WHERE n = 1
"""

_AFTER = f"""
FROM audit a JOIN check5_points p ON a.grant_id = p.grant_id
WHERE {agent_action('a')}
  AND CASE WHEN a.device_timestamp IS NOT NULL THEN a.device_timestamp > p.revoked_at
           WHEN p.logged THEN a.seq > p.revocation_seq
           ELSE a.timestamp > p.revoked_at END
"""
"""An action after the revocation of its grant: by chain order (seq) when the revocation is
logged, by clock when it is not; an entry synced from a device by the device's clock."""

AFTER = f"""
SELECT a.seq, a.developer_id, a.agent_id, a.grant_id, a.action,
       COALESCE(a.device_timestamp, a.timestamp) AS timestamp,
       p.revoked_by, p.revocation_seq, p.revoked_at
{_AFTER}  AND COALESCE(a.status, '') <> 'blocked'
ORDER BY a.seq ASC NULLS FIRST, a.developer_id
"""

BLOCKED_AFTER = f"SELECT COUNT(*) AS blocked {_AFTER}  AND a.status = 'blocked'"

COLUMNS = ["seq", "developer_id", "agent_id", "grant_id", "action", "timestamp", "revoked_by",
           "revocation_seq", "revoked_at", "seconds_after", "within_cache_window", "problem", "detail"]


def revocation_points(events: pd.DataFrame, grants: pd.DataFrame) -> pd.DataFrame:
    """Per revoked grant, the revocation that applies first (the pandas check's rule, fed the
    engine's first-revocation rows instead of the audit frame)."""
    own = events.set_index("grant_id")
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
    out = pd.DataFrame({
        "grant_id": grants["grant_id"],
        "revoked_by": by.where(~unlogged, grants["grant_id"]),
        "revocation_seq": seq.astype("Int64"),
        "revoked_at": when,
        "logged": ~unlogged,
        "developer_id": grants["developer_id"],
    })
    return out.loc[out["revocation_seq"].notna() | unlogged].reset_index(drop=True)


def _points_table(points: pd.DataFrame) -> pa.Table:
    return pa.table({
        "grant_id": pa.array(points["grant_id"].astype(object).tolist(), type=pa.string()),
        "revoked_by": pa.array(points["revoked_by"].astype(object).tolist(), type=pa.string()),
        "revocation_seq": pa.array(points["revocation_seq"].astype(object).where(
            points["revocation_seq"].notna(), None).tolist(), type=pa.int64()),
        "revoked_at": pa.array(points["revoked_at"], type=pa.timestamp("us", tz="UTC"), from_pandas=True),
        "logged": pa.array(points["logged"].astype(bool).tolist(), type=pa.bool_()),
    })


def sql_check_after_revocation(eds: EngineDataset, *, cache_window: Any = "0s") -> CheckResult:
    window = duration(cache_window)
    engine = eds.engine
    events = engine.sql(REVOCATIONS)
    points = revocation_points(events, eds.grants)
    engine.register_arrow("check5_points", _points_table(points))
    accepted = engine.sql(AFTER)
    blocked = int(engine.sql(BLOCKED_AFTER)["blocked"].iloc[0])

    accepted["seconds_after"] = (accepted["timestamp"] - accepted["revoked_at"]).dt.total_seconds()
    accepted["within_cache_window"] = (window > pd.Timedelta(0)) & (
        accepted["seconds_after"] <= window.total_seconds()
    )
    accepted["problem"] = np.where(
        accepted["within_cache_window"],
        "inside_cache_window",
        np.where(accepted["revoked_by"] == accepted["grant_id"], "action_after_revocation",
                 "action_after_ancestor_revocation"),
    )
    accepted["detail"] = [
        f"{a} under {g}, {s:g}s after revocation seq {r} of {b}"
        for a, g, s, r, b in zip(accepted["action"], accepted["grant_id"], accepted["seconds_after"],
                                 accepted["revocation_seq"], accepted["revoked_by"], strict=True)
    ]
    unlogged = points.loc[~points["logged"]]
    missing = pd.DataFrame({
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
        "detail": [f"grant {g} is revoked but no grantex.grant.revoked entry records it"
                   for g in unlogged["grant_id"]],
    })
    evidence = (
        pd.concat([f[COLUMNS] for f in (accepted, missing) if len(f)], ignore_index=True)
        if (len(accepted) or len(missing))
        else _frame([], COLUMNS)
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
    return _result(eds.ds, 5, failing.empty, summary, evidence, metrics)

"""Check 6 (revocation latency) on an engine: how long after each revocation accepted actions
still ran, from one GROUP-like window over the late actions only.

It stands on check 5's SQL (:mod:`.revocation`): the same first revocation per grant, the same
walk up the parent links in Python, the same rule for "after" (chain order when the revocation
is logged, the clock when not, the device's clock for an offline entry). What is new is a window
that keeps, per grant, the last late action and how many there were: one row per revoked grant
comes back, so the percentiles are taken in Python on a table the size of the grants.
"""

from __future__ import annotations

from typing import Any

from ..checks.base import CheckResult, _percentiles, _result, _seconds, duration
from ..engines import EngineDataset
from .revocation import _AFTER, REVOCATIONS, _points_table, revocation_points

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
"""Per grant with accepted actions after its revocation: the last of them (by seq), its time
(the device's clock for an offline entry) and how many there were."""

COLUMNS = ["seq", "developer_id", "grant_id", "revoked_by", "revocation_seq", "revoked_at",
           "last_action_at", "late_actions", "latency_seconds"]


def sql_revocation_latency(eds: EngineDataset, *, cache_window: Any = "0s") -> CheckResult:
    window = duration(cache_window)
    engine = eds.engine
    points = revocation_points(engine.sql(REVOCATIONS), eds.grants)
    engine.register_arrow("check5_points", _points_table(points))
    last = engine.sql(LAST_LATE).set_index("grant_id")
    table = points.merge(last, left_on="grant_id", right_index=True, how="left")
    table["late_actions"] = table["late_actions"].fillna(0).astype(int)
    table["latency_seconds"] = (
        _seconds(table["last_action_at"] - table["revoked_at"]).fillna(0.0).clip(lower=0)
    )
    evidence = table[COLUMNS].sort_values("latency_seconds", ascending=False, kind="stable")
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
    return _result(eds.ds, 6, passed, summary, evidence, metrics)

"""Checks 5 and 6: no accepted action after a revocation, and how fast revocations took effect.

Why one module for two checks: both stand on the same table, the revocation that applies to each
grant first (:func:`revocation_points`, its own or an ancestor's) and the actions after it; one
judges that there are none, the other measures the time they ran on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..frames import Dataset, safe_map
from .base import (
    CheckResult,
    _actions,
    _counts,
    _frame,
    _grant_lookup,
    _lifecycle,
    _listing,
    _percentiles,
    _result,
    _seconds,
    duration,
)


def revocation_points(ds: Dataset) -> pd.DataFrame:
    """Per revoked grant: the revocation that applies to it first (its own or an ancestor's).

    Columns ``grant_id, revoked_by`` (the grant whose revocation it is), ``revocation_seq``
    (that ``grantex.grant.revoked`` entry), ``revoked_at`` (its time), ``cause``, ``logged``
    (False: the grant is revoked but no revocation entry exists; time from ``grants.revoked_at``).
    """
    events = _lifecycle(ds, "grantex.grant.revoked", ["seq", "grant_id", "timestamp", "metadata"])
    events = events.dropna(subset=["grant_id"]).sort_values("seq").drop_duplicates("grant_id")
    own = events.set_index("grant_id")
    grants = ds.grants
    seq = safe_map(grants["grant_id"], own["seq"]).astype("Float64")
    when = safe_map(grants["grant_id"], own["timestamp"])
    by = grants["grant_id"].where(seq.notna())
    parent_of = _grant_lookup(ds)["parent_grant_id"]
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
    causes = own["metadata"].map(lambda m: m.get("cause") if isinstance(m, dict) else None)
    out["cause"] = out["revoked_by"].map(causes)
    return out


def _after_revocation(ds: Dataset, points: pd.DataFrame) -> pd.DataFrame:
    """Every agent action (any status) recorded after the revocation that applies to its grant."""
    acts = _actions(ds, ["seq", "developer_id", "agent_id", "grant_id", "action", "status", "timestamp",
                         "device_timestamp"])
    table = points.set_index("grant_id")
    acts = acts.loc[acts["grant_id"].isin(table.index)]
    rev_seq = safe_map(acts["grant_id"], table["revocation_seq"])
    rev_at = safe_map(acts["grant_id"], table["revoked_at"])
    logged = safe_map(acts["grant_id"], table["logged"]).astype(bool)
    after = (logged & (acts["seq"] > rev_seq.astype("Float64").fillna(np.inf))) | (
        ~logged & (acts["timestamp"] > rev_at)
    )
    # An entry synced from an offline device joins the chain at sync time: when it was done is
    # the device's clock, so it counts as after the revocation only if the device did it later.
    offline = acts["device_timestamp"].notna()
    if offline.any():
        after = after.where(~offline, acts["device_timestamp"] > rev_at)
    acts = acts.assign(timestamp=acts["timestamp"].where(~offline, acts["device_timestamp"]))
    acts = acts.drop(columns=["device_timestamp"])
    out = acts.loc[after.fillna(False).astype(bool)].copy()
    out["revoked_by"] = safe_map(out["grant_id"], table["revoked_by"])
    out["revocation_seq"] = safe_map(out["grant_id"], table["revocation_seq"]).astype("Int64")
    out["revoked_at"] = safe_map(out["grant_id"], table["revoked_at"])
    out["seconds_after"] = _seconds(out["timestamp"] - out["revoked_at"])
    out["accepted"] = out["status"].fillna("") != "blocked"
    return out


def check_after_revocation(ds: Dataset, *, cache_window: Any = "0s") -> CheckResult:
    """No accepted action after the revocation of its grant or of any ancestor, decided by chain
    order (seq), not by clocks. Actions within ``cache_window`` of the revocation are listed apart
    (``within_cache_window``) and do not fail; blocked attempts are counted, not held against it."""
    window = duration(cache_window)
    points = revocation_points(ds)
    after = _after_revocation(ds, points)
    accepted = after.loc[after["accepted"]].copy()
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
    columns = [
        "seq",
        "developer_id",
        "agent_id",
        "grant_id",
        "action",
        "timestamp",
        "revoked_by",
        "revocation_seq",
        "revoked_at",
        "seconds_after",
        "within_cache_window",
        "problem",
        "detail",
    ]
    evidence = (
        pd.concat([f[columns] for f in (accepted, missing) if len(f)], ignore_index=True)
        if (len(accepted) or len(missing))
        else _frame([], columns)
    )
    failing = evidence.loc[~evidence["within_cache_window"].astype(bool)] if len(evidence) else evidence
    metrics: dict[str, Any] = {
        "revoked_grants": len(points),
        "cache_window_seconds": window.total_seconds(),
        "accepted_after_revocation": len(accepted),
        "within_cache_window": int(accepted["within_cache_window"].sum()),
        "blocked_after_revocation": int((~after["accepted"]).sum()),
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


def revocation_latency(ds: Dataset, *, cache_window: Any = "0s") -> CheckResult:
    """Time from each revocation to the last accepted action after it (0 when none), p50/p95/max.

    Passes when the longest is within ``cache_window``: revocations took effect as declared.
    """
    window = duration(cache_window)
    points = revocation_points(ds)
    after = _after_revocation(ds, points)
    late = after.loc[after["accepted"]]
    last = (
        late.sort_values("seq")
        .groupby("grant_id")
        .agg(seq=("seq", "last"), last_action_at=("timestamp", "last"), late_actions=("seq", "size"))
    )
    table = points.merge(last, left_on="grant_id", right_index=True, how="left")
    table["late_actions"] = table["late_actions"].fillna(0).astype(int)
    table["latency_seconds"] = (
        _seconds(table["last_action_at"] - table["revoked_at"]).fillna(0.0).clip(lower=0)
    )
    evidence = table[
        [
            "seq",
            "developer_id",
            "grant_id",
            "revoked_by",
            "revocation_seq",
            "revoked_at",
            "last_action_at",
            "late_actions",
            "latency_seconds",
        ]
    ].sort_values("latency_seconds", ascending=False, kind="stable")
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

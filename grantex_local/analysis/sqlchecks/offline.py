"""Check 12 (offline logs) in SQL: the bundle lifecycle events and the offline entries' sync
columns come from the engine (no JSON in SQL: each bundle event's metadata text is parsed in
Python, once); the per-bundle rules and wording are the pandas check's.

SPIKE limit: the gap between device clock and sync is a time difference, which DuckDB
(``epoch``) and Spark (``unix_micros``) spell differently, so the offline entries' three time
columns are fetched and the gaps computed here: memory grows with the number of OFFLINE entries
(not with the audit table). A portable ``ts - ts`` → seconds would let the per-bundle median and
max run in SQL; the global percentiles would still need every gap (or an approximate quantile).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from ..checks.base import CheckResult, _counts, _listing, _percentiles, _result, _seconds, duration
from ..checks.offline import COLUMNS, CREATED, FAILING, REVOKED, SYNCED, _detail, _meta_text
from ..engines import EngineDataset
from ..frames import to_utc
from .hygiene import like_audit

EVENTS = f"""
SELECT seq, developer_id, grant_id, agent_id, action, timestamp, metadata FROM audit
WHERE action IN ('{CREATED}', '{REVOKED}', '{SYNCED}')
ORDER BY seq ASC NULLS FIRST, developer_id ASC NULLS LAST
"""
"""The bundle lifecycle events (few: one per bundle created, revoked, synced)."""

OFFLINE = """
SELECT seq, developer_id, grant_id, agent_id, offline_bundle_id, timestamp, device_timestamp,
       synced_at, after_revocation
FROM audit WHERE offline_bundle_id IS NOT NULL
ORDER BY seq ASC NULLS FIRST, developer_id ASC NULLS LAST
"""


def _parsed(texts: pd.Series) -> pd.Series:
    """JSON text → value, each distinct text parsed once."""
    cache = {t: json.loads(t) for t in set(texts.dropna())}
    return pd.Series([cache.get(t) if isinstance(t, str) else None for t in texts], index=texts.index,
                     dtype=object)


def _bundles(events: pd.DataFrame) -> pd.DataFrame:
    created = events.loc[events["action"] == CREATED]
    out = pd.DataFrame({
        "seq": created["seq"],
        "developer_id": created["developer_id"],
        "bundle_id": _meta_text(created["metadata"], "bundleId"),
        "grant_id": _meta_text(created["metadata"], "grantId").fillna(created["grant_id"].astype(object)),
        "agent_id": created["agent_id"],
        "created_at": created["timestamp"],
        "offline_expires_at": pd.to_datetime(
            _meta_text(created["metadata"], "offlineExpiresAt"), format="ISO8601", utc=True, errors="coerce"
        ),
    })
    out = out.dropna(subset=["bundle_id"]).sort_values("seq", kind="stable")
    return out.drop_duplicates("bundle_id").set_index("bundle_id", drop=False)


def _event_times(events: pd.DataFrame, action: str, how: str) -> pd.Series:
    rows = events.loc[events["action"] == action]
    frame = pd.DataFrame({"bundle_id": _meta_text(rows["metadata"], "bundleId"), "at": rows["timestamp"]})
    return frame.dropna(subset=["bundle_id"]).groupby("bundle_id")["at"].agg(how)


def sql_check_offline_logs(eds: EngineDataset, *, max_sync_gap: Any = "7d", as_of: Any = None) -> CheckResult:
    gap_limit = duration(max_sync_gap)
    now = to_utc(as_of) if as_of is not None else eds.as_of
    events = like_audit(eds.engine.sql(EVENTS))
    events["metadata"] = _parsed(events["metadata"])
    bundles = _bundles(events)
    offline = like_audit(eds.engine.sql(OFFLINE))
    synced_at = offline["synced_at"].fillna(offline["timestamp"])
    gap = _seconds(synced_at - offline["device_timestamp"])
    per_entry = pd.DataFrame({"bundle_id": offline["offline_bundle_id"].astype(object), "gap": gap,
                              "synced_at": synced_at,
                              "after": offline["after_revocation"].fillna(False).astype(bool)})
    grouped = per_entry.groupby("bundle_id")
    stats = pd.DataFrame({
        "entries": grouped.size(),
        "after": grouped["after"].sum(),
        "gap_median": grouped["gap"].median(),
        "gap_max": grouped["gap"].max(),
        "last_entry_sync": grouped["synced_at"].max(),
    })
    last_event = _event_times(events, SYNCED, "max")
    revoked = _event_times(events, REVOKED, "min")

    ids = bundles.index
    entry_sync = stats["last_entry_sync"].reindex(ids)
    event_sync = last_event.reindex(ids)
    last_sync = pd.concat([entry_sync, event_sync], axis=1).max(axis=1)
    if not len(ids):
        last_sync = pd.Series([], dtype="datetime64[ns, UTC]")
    evidence = bundles.reset_index(drop=True).assign(
        revoked_at=revoked.reindex(ids).to_numpy(),
        last_sync_at=last_sync.to_numpy(),
        synced_entries=stats["entries"].reindex(ids).fillna(0).astype("int64").to_numpy(),
        after_revocation=stats["after"].reindex(ids).fillna(0).astype("int64").to_numpy(),
        gap_median_seconds=stats["gap_median"].reindex(ids).to_numpy(dtype=float),
        gap_max_seconds=stats["gap_max"].reindex(ids).to_numpy(dtype=float),
    )
    evidence["last_sync_at"] = pd.to_datetime(evidence["last_sync_at"], utc=True)
    evidence["revoked_at"] = pd.to_datetime(evidence["revoked_at"], utc=True)
    expires = evidence["offline_expires_at"]
    never = evidence["last_sync_at"].isna()
    heard = evidence["last_sync_at"].fillna(evidence["created_at"])
    window_closed = expires.notna() & (expires <= now)
    could_log_after = expires.isna() | (expires > heard)
    overdue = could_log_after & ((now - heard) > gap_limit)
    problem = np.select(
        [never & window_closed, overdue, never], ["never_synced", "sync_overdue", "awaiting_sync"], default=""
    )
    evidence["problem"] = pd.Series(problem, index=evidence.index).replace("", None)
    evidence["fails"] = evidence["problem"].isin(FAILING)
    evidence["detail"] = [
        _detail(p, h, e, now) for p, h, e in zip(evidence["problem"], heard, expires, strict=True)
    ]

    unknown = offline.loc[~offline["offline_bundle_id"].isin(ids)]
    if len(unknown):
        first = unknown.sort_values("seq", kind="stable").drop_duplicates("offline_bundle_id")
        orphans = pd.DataFrame({
            "seq": first["seq"].to_numpy(),
            "developer_id": first["developer_id"].to_numpy(dtype=object),
            "bundle_id": first["offline_bundle_id"].to_numpy(dtype=object),
            "grant_id": first["grant_id"].to_numpy(dtype=object),
            "agent_id": first["agent_id"].to_numpy(dtype=object),
            "synced_entries": stats["entries"].reindex(first["offline_bundle_id"]).to_numpy(),
            "problem": "unknown_bundle",
            "fails": True,
            "detail": "offline entries name a bundle with no grantex.bundle.created event",
        })
        evidence = pd.concat([evidence, orphans], ignore_index=True)
    evidence = evidence.reindex(columns=list(COLUMNS))
    failing = evidence.loc[evidence["fails"].astype(bool)]
    gaps = per_entry["gap"].dropna()
    metrics: dict[str, Any] = {
        "bundles": len(bundles),
        "synced_bundles": int((~never).sum()),
        "offline_entries": len(offline),
        "after_revocation_entries": int(per_entry["after"].sum()),
        "max_sync_gap_seconds": gap_limit.total_seconds(),
        "problems": _counts(failing["problem"]) if len(failing) else {},
        "awaiting_sync": int((evidence["problem"] == "awaiting_sync").sum()),
        "device_to_sync": _percentiles(gaps),
    }
    if failing.empty:
        summary = (
            f"all {len(bundles)} consent bundles' offline logs came back ({len(offline)} offline entries)"
            if len(bundles) else "no consent bundles were issued"
        )
        if metrics["awaiting_sync"]:
            summary += f"; {metrics['awaiting_sync']} still inside their offline window"
    else:
        names = ", ".join(str(b) for b in failing["bundle_id"].head(5))
        summary = (
            f"{len(failing)} consent bundles' offline logs are missing or overdue: "
            + _listing(metrics["problems"]) + f" ({names})"
        )
    return _result(eds.ds, 12, failing.empty, summary, evidence, metrics)

"""Check 12, offline logs: every consent bundle's log came home, and how late.

Why a check of its own: an agent on a device with no network acts under a consent bundle and
logs to the device; the ledger sees those actions only when the device syncs. Record-keeping
(EU AI Act Art. 12, Art. 19; SOC 2 CC7.2) is then only as complete as the syncs: a bundle whose
log never came back is a stretch of activity with no record, and the delay between an action
and its sync is how long the record was out of reach.

Everything is derived from the audit log itself, so it runs alike on a ledger, an export bundle
and a parquet export (none of which needs the ``consent_bundles`` table):

- ``grantex.bundle.created``: metadata ``bundleId``, ``offlineExpiresAt`` and ``grantId`` (else
  the entry's own ``grant_id``); its seq is the evidence cited for the bundle;
- ``grantex.bundle.revoked``: metadata ``bundleId``; the entry's timestamp is the revocation;
- ``grantex.bundle.synced``: metadata ``bundleId``; the entry's timestamp is a sync;
- the synced entries themselves: the offline-origin columns of the audit frame
  (``offline_bundle_id``, ``device_timestamp``, ``synced_at``, ``after_revocation``).

A bundle fails when its log never came back although its offline window has closed
(``never_synced``), or when the ledger has not heard from it (no sync; for one never synced,
since its creation) for longer than ``max_sync_gap`` while it could still log after that
(``sync_overdue``). A bundle still inside its window and inside the gap is listed as
``awaiting_sync`` and does not fail. Offline entries naming a bundle with no creation event
fail as ``unknown_bundle``. Revoking a bundle does not excuse its log: the device learns of a
revocation only when it syncs, and may have acted before.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..engines import EngineDataset, engine_dataset
from ..frames import Dataset, to_utc
from .base import CheckResult, _counts, _listing, _percentiles, _result, _seconds, duration
from .sql import audit_order, like_audit, parse_json_once

CREATED, REVOKED, SYNCED = "grantex.bundle.created", "grantex.bundle.revoked", "grantex.bundle.synced"
FAILING = ("never_synced", "sync_overdue", "unknown_bundle")
COLUMNS = (
    "seq",
    "developer_id",
    "bundle_id",
    "grant_id",
    "agent_id",
    "created_at",
    "offline_expires_at",
    "revoked_at",
    "last_sync_at",
    "synced_entries",
    "after_revocation",
    "gap_median_seconds",
    "gap_max_seconds",
    "problem",
    "fails",
    "detail",
)

EVENTS = f"""
SELECT seq, developer_id, grant_id, agent_id, action, timestamp, metadata FROM audit
WHERE action IN ('{CREATED}', '{REVOKED}', '{SYNCED}')
{audit_order('')}
"""
"""The bundle lifecycle events (few: one per bundle created, revoked, synced); their metadata is
JSON text, parsed in Python (the dialects' JSON paths differ)."""

OFFLINE = f"""
SELECT seq, developer_id, grant_id, agent_id, offline_bundle_id, timestamp, device_timestamp,
       synced_at, after_revocation
FROM audit WHERE offline_bundle_id IS NOT NULL
{audit_order('')}
"""
"""The offline entries' sync columns. Why fetched rather than aggregated in SQL: the delay
between device clock and sync is a difference of instants, which DuckDB (``epoch``) and Spark
(``unix_micros``) spell differently; memory grows with the OFFLINE entries only."""


def _meta_text(metas: pd.Series, key: str) -> pd.Series:
    """``metadata[key]`` as text (None where absent); used on lifecycle rows only, which are few."""
    values = [m.get(key) if isinstance(m, dict) else None for m in metas]
    return pd.Series([v if isinstance(v, str) else None for v in values], index=metas.index, dtype=object)


def _bundles(events: pd.DataFrame) -> pd.DataFrame:
    """One row per ``grantex.bundle.created`` (the first one per bundle id)."""
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
    """bundle id → the first (``min``) or last (``max``) time of a lifecycle event."""
    rows = events.loc[events["action"] == action]
    frame = pd.DataFrame({"bundle_id": _meta_text(rows["metadata"], "bundleId"), "at": rows["timestamp"]})
    return frame.dropna(subset=["bundle_id"]).groupby("bundle_id")["at"].agg(how)


def check_offline_logs(
    ds: Dataset | EngineDataset, *, max_sync_gap: Any = "7d", as_of: Any = None
) -> CheckResult:
    """Every consent bundle's offline log came back, and the delay between device time and sync.

    ``max_sync_gap`` is how long a bundle that could still log may go unheard; ``as_of`` (else
    the dataset's) is the instant judged at. Evidence: one row per bundle, citing the seq of
    its ``grantex.bundle.created`` entry, with the median and largest delay between an entry's
    device timestamp and its sync (``gap_*_seconds``), plus one row per unknown bundle id.
    """
    gap_limit = duration(max_sync_gap)
    now = to_utc(as_of) if as_of is not None else ds.as_of
    with engine_dataset(ds) as eds:
        events = like_audit(eds.engine.sql(EVENTS))
        offline = like_audit(eds.engine.sql(OFFLINE))
    events["metadata"] = parse_json_once(events["metadata"])
    bundles = _bundles(events)
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
        [never & window_closed, overdue, never],
        ["never_synced", "sync_overdue", "awaiting_sync"],
        default="",
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
    return _result(ds, 12, failing.empty, summary, evidence, metrics)


def _detail(problem: Any, heard: pd.Timestamp, expires: pd.Timestamp, now: pd.Timestamp) -> str:
    if problem == "never_synced":
        return f"never synced; its offline window closed at {expires.isoformat()}"
    if problem == "sync_overdue":
        return (
            f"not heard from since {heard.isoformat()} ({(now - heard).total_seconds():g}s) "
            "while it could still log offline"
        )
    if problem == "awaiting_sync":
        until = expires.isoformat() if pd.notna(expires) else "an unknown time"
        return f"not synced yet; its offline window is open until {until}"
    return ""

"""Check 4, grant window: every accepted action falls inside its grant's lifetime.

Why a cache window: a verifier may cache a token's validity for a declared time, so an action
just after a revocation is listed apart rather than failed.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..frames import Dataset, safe_map
from .base import CheckResult, _actions, _counts, _frame, _grant_lookup, _listing, _result, duration


def check_grant_window(ds: Dataset, *, cache_window: Any = "0s") -> CheckResult:
    """Every accepted action falls between its grant's issue and min(expiry, revocation).

    Actions after the revocation instant but within ``cache_window`` (a verifier's declared
    cache of a token's validity) are listed with ``within_cache_window`` and do not fail.
    """
    window = duration(cache_window)
    acts = _actions(
        ds, ["seq", "developer_id", "agent_id", "grant_id", "action", "timestamp"], accepted_only=True
    )
    lookup = _grant_lookup(ds)
    acts = acts.loc[acts["grant_id"].isin(lookup.index)]
    issued = safe_map(acts["grant_id"], lookup["issued_at"])
    expires = safe_map(acts["grant_id"], lookup["expires_at"])
    revoked = safe_map(acts["grant_id"], lookup["revoked_at"])
    ts = acts["timestamp"]
    late = revoked.notna() & (ts > revoked)
    cached = late & (window > pd.Timedelta(0)) & ((ts - revoked) <= window)
    framed = acts.assign(issued_at=issued, expires_at=expires, revoked_at=revoked, cached=cached)
    parts = []
    for mask, problem in (
        (ts < issued, "before_issue"),
        (ts >= expires, "after_expiry"),
        (late, "after_revocation"),
    ):
        hit = framed.loc[mask].assign(problem=problem)
        if len(hit):
            parts.append(hit)
    columns = [
        "seq",
        "developer_id",
        "agent_id",
        "grant_id",
        "action",
        "timestamp",
        "issued_at",
        "expires_at",
        "revoked_at",
        "problem",
        "within_cache_window",
        "detail",
    ]
    if not parts:
        evidence = _frame([], columns)
    else:
        evidence = pd.concat(parts, ignore_index=True)  # one action may break two bounds
        evidence["within_cache_window"] = (evidence["problem"] == "after_revocation") & evidence["cached"]
        evidence["detail"] = [
            _window_detail(p, t, i, e, r)
            for p, t, i, e, r in zip(
                evidence["problem"],
                evidence["timestamp"],
                evidence["issued_at"],
                evidence["expires_at"],
                evidence["revoked_at"],
                strict=True,
            )
        ]
        evidence = evidence[columns].reset_index(drop=True)
    failing = evidence.loc[~evidence["within_cache_window"].astype(bool)] if len(evidence) else evidence
    metrics: dict[str, Any] = {
        "accepted_actions": len(acts),
        "cache_window_seconds": window.total_seconds(),
        "problems": _counts(failing["problem"]) if len(failing) else {},
        "within_cache_window": int(evidence["within_cache_window"].sum()) if len(evidence) else 0,
    }
    if failing.empty:
        summary = f"all {len(acts)} accepted actions fall within their grant's lifetime"
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

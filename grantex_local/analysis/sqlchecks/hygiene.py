"""Check 8 (grant hygiene) in SQL: one GROUP BY over the agents' actions per grant; the rules
(lifetime, never used, idle) judge the small grants table in Python.

Also the helpers checks 9, 11 and 12 share (SPIKE: they belong in :mod:`.common`): the first
issue/delegation seq of each grant, and how a frame fetched from an engine takes the audit
frame's own dtypes, so evidence built from it equals the pandas check's column for column.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..checks.base import CheckResult, _frame, _listing, _problem_counts, _result, _seconds, duration
from ..checks.sql import agent_action
from ..engines import Engine, EngineDataset
from ..frames import empty_frame, safe_map, to_utc

USAGE = f"""
SELECT a.grant_id, COUNT(*) AS uses, MAX(a.timestamp) AS last_used
FROM audit a
WHERE {agent_action('a')} AND a.grant_id IS NOT NULL
GROUP BY a.grant_id
"""
"""Every action of an agent, blocked ones too (the pandas ``_actions``), counted per grant."""

GRANT_EVENT_SEQ = """
SELECT grant_id, MIN(seq) AS seq FROM audit
WHERE action IN ('grantex.grant.issued', 'grantex.grant.delegated') AND grant_id IS NOT NULL
GROUP BY grant_id
"""
"""grant id → seq of its first issue/delegation event (a grant's events live in one chain, so
the first in the frame is the smallest seq)."""


def grant_event_seq(engine: Engine) -> pd.Series:
    """The pandas ``_grant_event_seq`` (grant id → seq), from the engine."""
    events = engine.sql(GRANT_EVENT_SEQ)
    return pd.Series(events["seq"].astype("int64").to_numpy(), index=events["grant_id"].astype(object),
                     name="seq", dtype="int64")


def like_audit(frame: pd.DataFrame) -> pd.DataFrame:
    """An engine's result with the pandas audit frame's dtype for every audit column it holds
    (text as the frame's string dtype, seq as int64), so evidence built from it is identical."""
    dtypes = empty_frame("audit").dtypes
    out = frame.copy()
    for name in out.columns:
        if name in dtypes.index and name != "metadata":
            out[name] = out[name].astype(dtypes[name])
    return out


def sql_check_grant_hygiene(
    eds: EngineDataset, *, max_ttl: Any = "24h", unused_days: float = 30, as_of: Any = None
) -> CheckResult:
    ttl = duration(max_ttl)
    idle = pd.Timedelta(days=unused_days)
    when = to_utc(as_of) if as_of is not None else eds.as_of
    grants = eds.grants
    found = eds.engine.sql(USAGE)
    usage = pd.DataFrame(
        {"size": found["uses"].astype("int64").to_numpy(), "max": found["last_used"].to_numpy()},
        index=found["grant_id"].astype(object),
    )
    usage["max"] = usage["max"].astype("datetime64[ns, UTC]")
    uses = safe_map(grants["grant_id"], usage["size"]).fillna(0).astype(int)
    last_used = safe_map(grants["grant_id"], usage["max"])
    lifetime = grants["expires_at"] - grants["issued_at"]
    ended = grants["revoked_at"].notna() | (grants["expires_at"] <= when)
    frame = pd.DataFrame({
        "grant_id": grants["grant_id"],
        "agent_id": grants["agent_id"],
        "principal_id": grants["principal_id"],
        "issued_at": grants["issued_at"],
        "expires_at": grants["expires_at"],
        "ttl_seconds": _seconds(lifetime),
        "actions": uses,
        "last_used_at": last_used,
    })
    over = frame.loc[lifetime > ttl].assign(problem="ttl_over_max")
    over["detail"] = [
        f"lifetime {s:g}s is over the maximum of {ttl.total_seconds():g}s" for s in over["ttl_seconds"]
    ]
    never = frame.loc[(uses == 0) & (ended | (grants["issued_at"] <= when - idle))].assign(
        problem="never_used"
    )
    never["detail"] = "issued but never used by its agent"
    stale = frame.loc[(uses > 0) & ~ended & (last_used <= when - idle)].assign(problem="unused_for_days")
    stale["detail"] = [
        f"live but unused since {t.isoformat()} (over {unused_days:g} days)" for t in stale["last_used_at"]
    ]
    parts = [part for part in (over, never, stale) if len(part)]
    columns = ["seq", "grant_id", "agent_id", "principal_id", "issued_at", "expires_at", "ttl_seconds",
               "actions", "last_used_at", "problem", "detail"]
    if parts:
        evidence = pd.concat(parts, ignore_index=True)
        evidence["seq"] = safe_map(evidence["grant_id"], grant_event_seq(eds.engine))
        evidence = evidence[columns]
    else:
        evidence = _frame([], columns)
    metrics: dict[str, Any] = {
        "grants": len(grants),
        "max_ttl_seconds": ttl.total_seconds(),
        "unused_days": unused_days,
        "as_of": when,
        "problems": _problem_counts(evidence),
        "grants_used": int((uses > 0).sum()),
    }
    if evidence.empty:
        summary = f"all {len(grants)} grants live at most {ttl.total_seconds():g}s and were used"
    else:
        summary = f"{evidence['grant_id'].nunique()} grants need attention: " + _listing(metrics["problems"])
    return _result(eds.ds, 8, evidence.empty, summary, evidence, metrics)

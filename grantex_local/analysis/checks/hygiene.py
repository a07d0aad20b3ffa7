"""Check 8, grant hygiene: no grant lives too long, none was issued and never used, no live one
has sat unused (SOC 2's "access reviewed, removed when unused").
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..engines import EngineDataset, engine_dataset
from ..frames import Dataset, safe_map, to_utc
from .base import CheckResult, _frame, _listing, _problem_counts, _result, _seconds, duration
from .sql import agent_action, grant_event_seq

USAGE = f"""
SELECT a.grant_id, COUNT(*) AS uses, MAX(a.timestamp) AS last_used
FROM audit a
WHERE {agent_action('a')} AND a.grant_id IS NOT NULL
GROUP BY a.grant_id
"""
"""Every action of an agent, blocked ones too, counted per grant: one scan, one row per grant."""


def check_grant_hygiene(
    ds: Dataset | EngineDataset, *, max_ttl: Any = "24h", unused_days: float = 30, as_of: Any = None
) -> CheckResult:
    """No grant lives longer than ``max_ttl``; no grant was issued and never used; no live grant
    has gone unused for ``unused_days``.

    A grant is judged "never used" once it could have been: when its lifetime has ended
    (expired or revoked) by ``as_of``, or it is older than ``unused_days``.
    """
    ttl = duration(max_ttl)
    idle = pd.Timedelta(days=unused_days)
    when = to_utc(as_of) if as_of is not None else ds.as_of
    with engine_dataset(ds) as eds:
        found = eds.engine.sql(USAGE)
        seqs = grant_event_seq(eds)
    grants = ds.grants
    usage = pd.DataFrame(
        {"size": found["uses"].astype("int64").to_numpy(),
         "max": found["last_used"].to_numpy()},
        index=found["grant_id"].astype(object),
    )
    usage["max"] = usage["max"].astype("datetime64[ns, UTC]")
    uses = safe_map(grants["grant_id"], usage["size"]).fillna(0).astype(int)
    last_used = safe_map(grants["grant_id"], usage["max"])
    lifetime = grants["expires_at"] - grants["issued_at"]
    ended = grants["revoked_at"].notna() | (grants["expires_at"] <= when)
    frame = pd.DataFrame(
        {
            "grant_id": grants["grant_id"],
            "agent_id": grants["agent_id"],
            "principal_id": grants["principal_id"],
            "issued_at": grants["issued_at"],
            "expires_at": grants["expires_at"],
            "ttl_seconds": _seconds(lifetime),
            "actions": uses,
            "last_used_at": last_used,
        }
    )
    parts = []
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
    for part in (over, never, stale):
        if len(part):
            parts.append(part)
    columns = [
        "seq",
        "grant_id",
        "agent_id",
        "principal_id",
        "issued_at",
        "expires_at",
        "ttl_seconds",
        "actions",
        "last_used_at",
        "problem",
        "detail",
    ]
    if parts:
        evidence = pd.concat(parts, ignore_index=True)
        evidence["seq"] = safe_map(evidence["grant_id"], seqs)
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
    return _result(ds, 8, evidence.empty, summary, evidence, metrics)

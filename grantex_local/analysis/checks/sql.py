"""SQL fragments every check shares, in the subset of SQL DuckDB and Spark both read the same way.

Why fragments rather than views: a view is engine state, a fragment is text the reader sees in
the check's own query. ``grantex.*`` is matched with LIKE (``starts_with`` is ``startswith`` in
Spark); a missing action or status is an agent action / not blocked, as in pandas, hence the
COALESCE (``NULL NOT LIKE`` is NULL, which a WHERE drops).
"""

from __future__ import annotations

import json

import pandas as pd

from ..engines import EngineDataset
from ..frames import empty_frame

AGENT_ACTION = "COALESCE({a}.action, '') NOT LIKE 'grantex.%'"
"""An agent's own action (the pandas ``~is_lifecycle``)."""
NOT_BLOCKED = "COALESCE({a}.status, '') <> 'blocked'"
"""Accepted: any status but ``blocked``."""


def agent_action(alias: str = "a") -> str:
    return AGENT_ACTION.format(a=alias)


def accepted(alias: str = "a") -> str:
    return f"{agent_action(alias)} AND {NOT_BLOCKED.format(a=alias)}"


# ── helper C ──
# Shared by checks 8, 9, 11 and 12 (and check 7 reads the same grant event seqs).

AUDIT_ORDER = "ORDER BY {a}seq ASC NULLS FIRST, {a}developer_id ASC NULLS LAST"
"""A total order for rows fetched from the log that equals the loaded audit frame's for rows of
equal seq (the frame is developer-major), so evidence built from a fetch is in pandas' order."""


def audit_order(alias: str = "a") -> str:
    return AUDIT_ORDER.format(a=f"{alias}." if alias else "")


GRANT_EVENT_SEQ = """
SELECT grant_id, MIN(seq) AS seq FROM audit
WHERE action IN ('grantex.grant.issued', 'grantex.grant.delegated') AND grant_id IS NOT NULL
GROUP BY grant_id
"""
"""grant id → seq of its first issue/delegation event (a grant's events live in one chain, so the
first in the frame is the smallest seq)."""


def grant_event_seq(eds: EngineDataset) -> pd.Series:
    """grant id → seq of its first issue/delegation event, computed once per dataset: checks 8
    and 11 (and 7) cite a grant by it, and ``run_all`` should not scan the log for each."""
    cached = eds.cache.get("grant_event_seq")
    if cached is None:
        events = eds.engine.sql(GRANT_EVENT_SEQ)
        cached = pd.Series(events["seq"].astype("int64").to_numpy(), index=events["grant_id"].astype(object),
                           name="seq", dtype="int64")
        eds.cache["grant_event_seq"] = cached
    return cached.copy()


def like_audit(frame: pd.DataFrame) -> pd.DataFrame:
    """An engine's result with the loaded audit frame's dtype for every audit column it holds
    (text as the frame's string dtype, seq as int64; metadata stays JSON text), so evidence built
    from it equals what the frame-based checks produced, dtype for dtype."""
    dtypes = empty_frame("audit").dtypes
    out = frame.copy()
    for name in out.columns:
        if name in dtypes.index and name != "metadata":
            out[name] = out[name].astype(dtypes[name])
    return out


def parse_json_once(texts: pd.Series) -> pd.Series:
    """JSON text → value (None where missing). Lifecycle metadata repeats a few shapes, so each
    distinct text is parsed once; SQL never parses JSON (the two dialects' JSON paths differ)."""
    cache = {t: json.loads(t) for t in set(texts.dropna())}
    return pd.Series([cache.get(t) if isinstance(t, str) else None for t in texts], index=texts.index,
                     dtype=object)

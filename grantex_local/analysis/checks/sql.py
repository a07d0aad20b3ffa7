"""SQL fragments every check shares, in the subset of SQL DuckDB and Spark both read the same way.

Why fragments rather than views: a view is engine state, a fragment is text the reader sees in
the check's own query. ``grantex.*`` is matched with LIKE (``starts_with`` is ``startswith`` in
Spark); a missing action or status is an agent action / not blocked, as in pandas, hence the
COALESCE (``NULL NOT LIKE`` is NULL, which a WHERE drops).
"""

from __future__ import annotations

import pandas as pd

from ..engines import EngineDataset

AGENT_ACTION = "COALESCE({a}.action, '') NOT LIKE 'grantex.%'"
"""An agent's own action (the pandas ``~is_lifecycle``)."""
NOT_BLOCKED = "COALESCE({a}.status, '') <> 'blocked'"
"""Accepted: any status but ``blocked``."""


def agent_action(alias: str = "a") -> str:
    return AGENT_ACTION.format(a=alias)


def accepted(alias: str = "a") -> str:
    return f"{agent_action(alias)} AND {NOT_BLOCKED.format(a=alias)}"


# ── helper B ──

GRANT_EVENTS = """
SELECT grant_id, seq FROM (
  SELECT grant_id, seq,
         ROW_NUMBER() OVER (PARTITION BY grant_id
                            ORDER BY developer_id ASC NULLS LAST, seq ASC NULLS LAST) AS n
  FROM audit
  WHERE action IN ('grantex.grant.issued', 'grantex.grant.delegated') AND grant_id IS NOT NULL
) first_event WHERE n = 1
ORDER BY grant_id ASC NULLS LAST
"""
"""The seq of each grant's first issue/delegation entry, in the loaded frame's order (by chain,
then seq): the entry that cites a grant's creation (checks 7 and 8)."""


def grant_event_seq(eds: EngineDataset) -> pd.Series:
    """grant id → seq of its first issue/delegation entry (``Int64``), one row per grant whatever
    the log's size; kept in ``eds.cache`` since several checks cite a grant by it."""
    if "grant_event_seq" not in eds.cache:
        events = eds.engine.sql(GRANT_EVENTS)
        eds.cache["grant_event_seq"] = events.set_index("grant_id")["seq"]
    seqs: pd.Series = eds.cache["grant_event_seq"]
    return seqs

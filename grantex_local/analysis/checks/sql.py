"""SQL fragments every check shares, in the subset of SQL DuckDB and Spark both read the same way.

Why fragments rather than views: a view is engine state, a fragment is text the reader sees in
the check's own query. ``grantex.*`` is matched with LIKE (``starts_with`` is ``startswith`` in
Spark); a missing action or status is an agent action / not blocked, as in pandas, hence the
COALESCE (``NULL NOT LIKE`` is NULL, which a WHERE drops).
"""

from __future__ import annotations

AGENT_ACTION = "COALESCE({a}.action, '') NOT LIKE 'grantex.%'"
"""An agent's own action (the pandas ``~is_lifecycle``)."""
NOT_BLOCKED = "COALESCE({a}.status, '') <> 'blocked'"
"""Accepted: any status but ``blocked``."""


def agent_action(alias: str = "a") -> str:
    return AGENT_ACTION.format(a=alias)


def accepted(alias: str = "a") -> str:
    return f"{agent_action(alias)} AND {NOT_BLOCKED.format(a=alias)}"

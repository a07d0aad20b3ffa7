"""Check 7 (delegation) on an engine: the audit table is read once, for the seq of each grant's
issue or delegation event; every rule is judged on the grants table, which is small and stays pandas.

Why the pandas check runs here unchanged: its rules (scope coverage along the parent link, the
depth limit, lifetimes inside the parent's) read only the grants, and its one use of the audit
table is the seq that cites each grant's creation. So the engine hands back that narrow slice of
the audit table (one row per grant, whatever the ledger's size) and the check itself is the one
definition both ways; there is no second copy of the rules to drift.
"""

from __future__ import annotations

import dataclasses

from ..checks.base import CheckResult
from ..checks.delegation import check_delegation
from ..engines import EngineDataset

GRANT_EVENTS = """
SELECT grant_id, seq, action, developer_id FROM (
  SELECT grant_id, seq, action, developer_id,
         ROW_NUMBER() OVER (PARTITION BY grant_id
                            ORDER BY developer_id ASC NULLS LAST, seq ASC NULLS LAST) AS n
  FROM audit
  WHERE action IN ('grantex.grant.issued', 'grantex.grant.delegated') AND grant_id IS NOT NULL
) first_event WHERE n = 1
ORDER BY developer_id ASC NULLS LAST, seq ASC NULLS LAST, grant_id ASC NULLS LAST
"""
"""The first issue/delegation entry of each grant, in the loaded frame's order (by chain, then
seq): the entry the pandas check finds first with ``drop_duplicates``."""


def sql_check_delegation(eds: EngineDataset) -> CheckResult:
    events = eds.engine.sql(GRANT_EVENTS)
    return check_delegation(dataclasses.replace(eds.ds, audit=events))

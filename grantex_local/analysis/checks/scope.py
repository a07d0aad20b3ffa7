"""Check 3, scope and amount: what an action used is covered by its grant (PROTOCOL §4), and an
amount is within the grant's matching ``max_N`` (the rule is in the package's docstring).

The engine reads the log twice: one GROUP BY counts the accepted actions per distinct (grant's
scope set, metadata scope) pair, and after Python has judged each pair a join brings back only
the actions of pairs with a problem or an amount limit. Why the coverage rule stays Python:
PROTOCOL §4 coverage (:func:`grantex_local.scopes.uncovered`: wildcards, ``max_N`` constraints,
plain scopes) is the library's own parser, which also authorises requests; a second copy in SQL
could drift from it. The pairs are few (a grant's scope set repeats across thousands of grants,
an agent uses a handful of scopes), so judging them costs nothing whatever the log's size.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pyarrow as pa

from ..engines import EngineDataset, engine_dataset
from ..frames import Dataset
from .base import (
    CheckResult,
    _frame,
    _judge_scope,
    _listing,
    _problem_counts,
    _result,
    _text,
)
from .sql import accepted, arrow_table, scopes_key

COLUMNS = ["seq", "developer_id", "agent_id", "grant_id", "action", "scope", "amount", "limit",
           "grant_scopes", "problem", "detail"]

PAIRS = f"""
SELECT g.scopes_key, a.scope, COUNT(*) AS actions, COUNT(a.amount) AS amounts
FROM audit a LEFT JOIN check3_grants g ON a.grant_id = g.grant_id
WHERE {accepted('a')}
GROUP BY g.scopes_key, a.scope
"""
"""One scan: every accepted action counted by (its grant's scope set, its metadata scope); a
grant the grants table does not know has no scope set (check 2 reports it)."""

EVIDENCE = f"""
WITH judged AS (
  SELECT a.seq, a.developer_id, a.agent_id, a.grant_id, a.action, a.scope, a.amount,
         v.problem, v.amount_limit, v.detail
  FROM audit a
  JOIN check3_grants g ON a.grant_id = g.grant_id
  JOIN check3_verdicts v ON g.scopes_key = v.scopes_key AND a.scope IS NOT DISTINCT FROM v.scope
  WHERE {accepted('a')} AND (a.scope IS NOT NULL OR a.amount IS NOT NULL)
)
SELECT seq, developer_id, agent_id, grant_id, action, scope, amount, amount_limit, problem, detail,
       0 AS part
FROM judged WHERE problem IS NOT NULL
UNION ALL
SELECT seq, developer_id, agent_id, grant_id, action, scope, amount, amount_limit,
       'amount_over_limit' AS problem, NULL AS detail, 1 AS part
FROM judged WHERE amount IS NOT NULL AND amount_limit IS NOT NULL AND amount > amount_limit
ORDER BY seq ASC NULLS FIRST, part ASC NULLS LAST, developer_id ASC NULLS LAST
"""
"""The second scan: only actions whose pair has a problem or a limit (the verdicts table holds
no other pair), so the join's output is the evidence itself. A scope problem is listed before an
amount over the limit for the same action, as the evidence always was."""


def _optional_text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def check_scope(ds: Dataset | EngineDataset) -> CheckResult:
    """Every accepted action's metadata scope is covered by its grant's scopes, and its amount is
    within the grant's matching ``max_N`` (module docstring)."""
    with engine_dataset(ds) as eds:
        engine = eds.engine
        lookup = eds.grants.drop_duplicates("grant_id").set_index("grant_id")
        engine.register_arrow("check3_grants", arrow_table({
            "grant_id": (list(lookup.index), pa.string()),
            "scopes_key": ([scopes_key(s) for s in lookup["scopes"]], pa.string()),
        }))
        pairs = engine.sql(PAIRS)
        judged = pairs.loc[pairs["scopes_key"].notna() & (pairs["scope"].notna() | (pairs["amounts"] > 0))]
        verdicts: dict[tuple[str, str | None], tuple[str | None, float | None, str | None]] = {}
        for key, scope in zip(judged["scopes_key"], judged["scope"].map(_optional_text), strict=True):
            if (key, scope) not in verdicts:
                problem, limit, detail = _judge_scope(scope, json.loads(key))
                verdicts[(key, scope)] = (problem, limit, detail if problem else None)
        flagged = [(k, s, *v) for (k, s), v in verdicts.items() if v[0] is not None or v[1] is not None]
        engine.register_arrow("check3_verdicts", arrow_table({
            "scopes_key": ([f[0] for f in flagged], pa.string()),
            "scope": ([f[1] for f in flagged], pa.string()),
            "problem": ([f[2] for f in flagged], pa.string()),
            "amount_limit": ([f[3] for f in flagged], pa.float64()),
            "detail": ([f[4] for f in flagged], pa.string()),
        }))
        rows = engine.sql(EVIDENCE)

    over = rows["problem"] == "amount_over_limit"
    rows.loc[over, "detail"] = [
        f"amount {a:g} is over the grant's limit {lim:g} for {s}"
        for a, lim, s in zip(rows.loc[over, "amount"], rows.loc[over, "amount_limit"],
                             rows.loc[over, "scope"], strict=True)
    ]
    rows = rows.rename(columns={"amount_limit": "limit"})
    rows["grant_scopes"] = rows["grant_id"].map(lookup["scopes"]).map(_text) if len(rows) else []
    evidence = rows[COLUMNS] if len(rows) else _frame([], COLUMNS)

    limited = pd.Series(
        [verdicts[(k, s)][1] is not None
         for k, s in zip(judged["scopes_key"], judged["scope"].map(_optional_text), strict=True)],
        index=judged.index, dtype=bool,
    )
    metrics: dict[str, Any] = {
        "accepted_actions": int(pairs["actions"].sum()),
        "with_scope": int(pairs.loc[pairs["scope"].notna(), "actions"].sum()),
        "with_amount": int(pairs["amounts"].sum()),
        "amounts_judged": int(judged.loc[limited, "amounts"].sum()),
        "amounts_not_judged": int(judged.loc[~limited, "amounts"].sum()),
        "problems": _problem_counts(evidence),
    }
    if evidence.empty:
        summary = (
            f"{metrics['with_scope']} scoped actions are within their grants' scopes; "
            f"{metrics['amounts_judged']} amounts within their limits"
        )
    else:
        summary = f"{len(evidence)} actions exceed their grant: " + _listing(metrics["problems"])
    return _result(ds, 3, evidence.empty, summary, evidence, metrics)

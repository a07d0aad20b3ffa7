"""Check 3 (scope and amount) in SQL: the coverage rule stays Python, applied once per distinct
(grant scopes, metadata scope) pair that a GROUP BY finds, and joined back in SQL.

Why not the coverage rule in SQL: PROTOCOL §4 coverage (:func:`grantex_local.scopes.uncovered`:
wildcards, ``max_N`` constraints, plain scopes) is the library's own parser; a second copy in SQL
would be a second definition that could drift. The pairs are few (a grant's scope set repeats
across thousands of grants, an agent uses a handful of scopes), so judging them in Python costs
nothing whatever the audit table's size; the verdicts go back to the engine as a small table.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from ..checks.base import CheckResult, _frame, _judge_scope, _listing, _problem_counts, _result, _text
from ..checks.sql import accepted
from ..engines import EngineDataset

COLUMNS = ["seq", "developer_id", "agent_id", "grant_id", "action", "scope", "amount", "limit",
           "grant_scopes", "problem", "detail"]

PAIRS = f"""
SELECT g.scopes_key, a.scope, COUNT(*) AS actions, COUNT(a.amount) AS amounts
FROM audit a LEFT JOIN check3_grants g ON a.grant_id = g.grant_id
WHERE {accepted('a')}
GROUP BY g.scopes_key, a.scope
"""
"""One scan: every accepted action counted by (its grant's scope set, its metadata scope)."""

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
ORDER BY seq ASC NULLS FIRST, part, developer_id
"""
"""The second scan: only actions whose pair has a problem or a limit (the verdicts table holds
no other pair), so the join's output is the evidence itself."""


def _scopes_key(scopes: Any) -> str:
    return json.dumps(list(scopes) if isinstance(scopes, list | tuple) else [], separators=(",", ":"))


def sql_check_scope(eds: EngineDataset) -> CheckResult:
    engine = eds.engine
    lookup = eds.grants.drop_duplicates("grant_id").set_index("grant_id")
    keys = pd.DataFrame({"grant_id": lookup.index.astype(object),
                         "scopes_key": [_scopes_key(s) for s in lookup["scopes"]]})
    engine.register_arrow("check3_grants", _arrow(keys, {"grant_id": "str", "scopes_key": "str"}))
    pairs = engine.sql(PAIRS)
    known = pairs["scopes_key"].notna()
    judged = pairs.loc[known & (pairs["scope"].notna() | (pairs["amounts"] > 0))]
    verdicts = []
    for key, scope in {(k, s if isinstance(s, str) else None)
                       for k, s in zip(judged["scopes_key"], judged["scope"], strict=True)}:
        problem, limit, detail = _judge_scope(scope, json.loads(key))
        verdicts.append((key, scope, problem, limit, detail if problem else None))
    table = pd.DataFrame(verdicts, columns=["scopes_key", "scope", "problem", "amount_limit", "detail"])
    limits = {(k, s): lim for k, s, _, lim, _ in verdicts}
    amounts = [(lim is not None, int(n)) for k, s, n in zip(judged["scopes_key"], judged["scope"],
                                                            judged["amounts"], strict=True)
               for lim in [limits[(k, s if isinstance(s, str) else None)]]]
    flagged = table.loc[table["problem"].notna() | table["amount_limit"].notna()]
    engine.register_arrow("check3_verdicts", _arrow(flagged, {
        "scopes_key": "str", "scope": "str", "problem": "str", "amount_limit": "float", "detail": "str"}))
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

    metrics: dict[str, Any] = {
        "accepted_actions": int(pairs["actions"].sum()),
        "with_scope": int(pairs.loc[pairs["scope"].notna(), "actions"].sum()),
        "with_amount": int(pairs["amounts"].sum()),
        "amounts_judged": sum(n for has, n in amounts if has),
        "amounts_not_judged": sum(n for has, n in amounts if not has),
        "problems": _problem_counts(evidence),
    }
    if evidence.empty:
        summary = (
            f"{metrics['with_scope']} scoped actions are within their grants' scopes; "
            f"{metrics['amounts_judged']} amounts within their limits"
        )
    else:
        summary = f"{len(evidence)} actions exceed their grant: " + _listing(metrics["problems"])
    return _result(eds.ds, 3, evidence.empty, summary, evidence, metrics)


def _arrow(frame: pd.DataFrame, kinds: dict[str, str]) -> Any:
    import pyarrow as pa

    types = {"str": pa.string(), "float": pa.float64()}
    arrays = [pa.array([None if (v is None or (isinstance(v, float) and v != v)) else v
                        for v in frame[name].tolist()], type=types[kind]) for name, kind in kinds.items()]
    return pa.Table.from_arrays(arrays, names=list(kinds))

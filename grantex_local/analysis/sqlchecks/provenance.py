"""Check 2 (provenance and consent) on an engine: per action, does its grant exist and belong to
the acting agent, principal and chain, and does the agent exist with that DID (one scan that
returns only the actions failing one of those); then which actions stand on a grant whose
delegation path does not reach an accepted consent (a join against a small table).

The consent side is the library's rule, judged once per grant in Python: the consent table
(:func:`..checks.provenance.grant_consent`: the root grant's authorization request, who decided,
:func:`..checks.base.consent_kind`) and what is wrong with each path. Grants, agents and their
verdicts go to the engine as small tables; the audit table never leaves it. The consent counts
(actions by who consented) are a GROUP BY over the same join.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import pyarrow as pa

from ..checks.base import CheckResult, _frame, _grant_lookup, _listing, _problem_counts, _result
from ..checks.provenance import _grant_path_problems, grant_consent
from ..checks.sql import agent_action
from ..engines import EngineDataset
from ..frames import safe_map

_SAME = "({x} IS NOT DISTINCT FROM {y})"

PROBLEMS: tuple[tuple[str, str, str], ...] = (
    ("grant_missing", "g.grant_id IS NULL",
     "the action names grant {grant_id}, which is not among the grants"),
    ("agent_not_grantee", "g.grant_id IS NOT NULL AND NOT " + _SAME.format(x="a.agent_id", y="g.agent_id"),
     "agent {agent_id} acted under grant {grant_id}, which belongs to another agent"),
    ("principal_mismatch",
     "g.grant_id IS NOT NULL AND NOT " + _SAME.format(x="a.principal_id", y="g.principal_id"),
     "the action names principal {principal_id}, grant {grant_id} is another's"),
    ("grant_other_developer",
     "g.grant_id IS NOT NULL AND NOT " + _SAME.format(x="a.developer_id", y="g.developer_id"),
     "grant {grant_id} belongs to another developer's chain"),
    ("agent_missing", "ag.agent_id IS NULL", "agent {agent_id} is not among the agents"),
    ("agent_did_mismatch", "ag.agent_id IS NOT NULL AND NOT " + _SAME.format(x="a.agent_did", y="ag.did"),
     "the action's agentDid is not agent {agent_id}'s DID"),
)
"""(problem, the SQL condition over an action ``a``, its grant ``g`` and its agent ``ag``, the
detail's template), in the order the pandas check lists them for one seq."""

_ACTS = """
FROM audit a
LEFT JOIN check2_grants g ON a.grant_id = g.grant_id
LEFT JOIN check2_agents ag ON a.agent_id = ag.agent_id
"""

FLAGGED = (
    "SELECT a.seq, a.developer_id, a.agent_id, a.grant_id, a.principal_id, a.action,\n       "
    + ",\n       ".join(f"{condition} AS {problem}" for problem, condition, _ in PROBLEMS)
    + _ACTS
    + f"WHERE {agent_action('a')}\n  AND ("
    + "\n    OR ".join(f"({condition})" for _, condition, _ in PROBLEMS)
    + ")\nORDER BY a.seq ASC NULLS FIRST, a.developer_id ASC NULLS LAST"
)
"""One scan: the actions that fail any per-action test, with one boolean column per test."""

ON_BROKEN_PATHS = f"""
SELECT a.seq, a.developer_id, a.agent_id, a.grant_id, a.principal_id, a.action, p.problem, p.detail
FROM audit a JOIN check2_paths p ON a.grant_id = p.grant_id
WHERE {agent_action('a')}
ORDER BY a.seq ASC NULLS FIRST, a.developer_id ASC NULLS LAST, p.sub
"""
"""The actions under a grant whose delegation path has a problem, once per problem."""

BY_CONSENT = f"""
SELECT c.consent_kind, COUNT(*) AS actions
FROM audit a LEFT JOIN check2_consent c ON a.grant_id = c.grant_id
WHERE {agent_action('a')}
GROUP BY c.consent_kind
"""

COLUMNS = ["seq", "developer_id", "agent_id", "grant_id", "root_grant_id", "consent_kind", "action",
           "problem", "detail"]
_ACT_COLUMNS = ["seq", "developer_id", "agent_id", "grant_id", "principal_id", "action"]


def _text(values: Any) -> pa.Array:
    """Text keys for the engine: anything that is not a string (None, NaN) as NULL."""
    return pa.array([v if isinstance(v, str) else None for v in pd.Series(values).astype(object)],
                    type=pa.string())


def sql_check_provenance(
    eds: EngineDataset, *, consent_kinds: Sequence[str] = ("human", "policy")
) -> CheckResult:
    engine = eds.engine
    lookup = _grant_lookup(eds.ds)
    agents = eds.ds.agents.drop_duplicates("agent_id").set_index("agent_id")
    consent = grant_consent(eds.ds)
    by_grant = consent.set_index("grant_id")
    path_problems = _grant_path_problems(consent, consent_kinds)
    engine.register_arrow("check2_grants", pa.table({
        "grant_id": _text(lookup.index), "agent_id": _text(lookup["agent_id"]),
        "principal_id": _text(lookup["principal_id"]), "developer_id": _text(lookup["developer_id"])}))
    engine.register_arrow("check2_agents", pa.table({"agent_id": _text(agents.index),
                                                     "did": _text(agents["did"])}))
    engine.register_arrow("check2_paths", pa.table({
        "grant_id": _text(path_problems["grant_id"]), "problem": _text(path_problems["problem"]),
        "detail": _text(path_problems["detail"]),
        "sub": pa.array(range(len(path_problems)), type=pa.int64())}))
    engine.register_arrow("check2_consent", pa.table({
        "grant_id": _text(consent["grant_id"]), "consent_kind": _text(consent["consent_kind"])}))

    flagged = engine.sql(FLAGGED)
    parts = []
    for problem, _, template in PROBLEMS:
        hit = flagged.loc[flagged[problem].astype(bool), _ACT_COLUMNS]
        if len(hit):
            hit = hit.assign(problem=problem)
            hit["detail"] = [
                template.format(agent_id=a, grant_id=g, principal_id=p)
                for a, g, p in zip(hit["agent_id"], hit["grant_id"], hit["principal_id"], strict=True)
            ]
            parts.append(hit)
    on_paths = engine.sql(ON_BROKEN_PATHS)
    if len(on_paths):
        parts.append(on_paths)
    if parts:
        evidence = pd.concat(parts, ignore_index=True)
        evidence["root_grant_id"] = safe_map(evidence["grant_id"], by_grant["root_grant_id"])
        evidence["consent_kind"] = safe_map(evidence["grant_id"], by_grant["consent_kind"])
        evidence = evidence[COLUMNS]
    else:
        evidence = _frame([], COLUMNS)

    counted = engine.sql(BY_CONSENT)
    tally: dict[str, int] = {}
    for kind, n in zip(counted["consent_kind"].astype(object), counted["actions"], strict=True):
        key = kind if isinstance(kind, str) else "no grant"
        tally[key] = tally.get(key, 0) + int(n)
    actions = sum(tally.values())
    metrics: dict[str, Any] = {
        "actions": actions,
        "actions_by_consent": dict(sorted(tally.items())),
        "problems": _problem_counts(evidence),
        "grants_without_accepted_consent": int(path_problems["grant_id"].nunique()),
        "accepted_consent": list(consent_kinds),
    }
    if evidence.empty:
        summary = (
            f"all {actions} actions trace to a grant held by the acting agent and to a consent "
            f"record ({', '.join(f'{k}: {v}' for k, v in metrics['actions_by_consent'].items())})"
        )
    else:
        summary = (
            f"{evidence['seq'].nunique()} of {actions} actions do not trace to consent: "
            + _listing(metrics["problems"])
        )
    return _result(eds.ds, 2, evidence.empty, summary, evidence, metrics)

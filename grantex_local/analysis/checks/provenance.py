"""Check 2, provenance and consent: every action traces to a grant the agent holds, and that
grant's delegation path to a person's (or a policy's) consent.

Why the consent table is public (:func:`grant_consent`): it is what an auditor looks at next when
a path breaks, one row per grant with its root and who decided.

Why the work is split as it is: the consent side is the library's rule, judged once per grant in
Python over the small tables (the consent table, :func:`.base.consent_kind`, what is wrong with
each path). Grants, agents and the per-grant verdicts go to the engine as small tables; the
audit log never leaves it. One scan returns only the actions failing a per-action test (grant
missing or another's, agent missing or its DID wrong), a join returns the actions standing on a
grant whose path is broken, and a GROUP BY counts the actions by who consented.

Why the summary and metrics come from SQL counts, not from the evidence frame: a sandbox
developer's chain makes every one of its actions a row of evidence (about a million rows at a
million entries), so the check hands back only the first :data:`.base.EVIDENCE_LIMIT` rows, in
the listing's order, and counts the whole listing where it lies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import pyarrow as pa

from ..engines import EngineDataset, engine_dataset
from ..frames import Dataset, safe_map
from . import base
from .base import CheckResult, _frame, _grant_lookup, _listing, _result, consent_kind
from .sql import agent_action


def grant_consent(ds: Dataset | EngineDataset) -> pd.DataFrame:
    """Per grant: its root, the root's consent record, who decided, and what is wrong with the path."""
    grants = ds.grants
    requests = ds.auth_requests.drop_duplicates("auth_request_id").set_index("auth_request_id")
    lookup = grants.drop_duplicates("grant_id").set_index("grant_id")
    root = grants["root_grant_id"]
    request = safe_map(root, lookup["auth_request_id"])
    out = pd.DataFrame(
        {
            "grant_id": grants["grant_id"],
            "root_grant_id": root,
            "auth_request_id": request,
            "decided_by": safe_map(request, requests["decided_by"]),
            "request_status": safe_map(request, requests["status"]),
            "request_principal": safe_map(request, requests["principal_id"]),
            "request_agent": safe_map(request, requests["agent_id"]),
            "root_principal": safe_map(root, lookup["principal_id"]),
            "root_agent": safe_map(root, lookup["agent_id"]),
            "principal_id": grants["principal_id"],
        }
    )
    out["consent_kind"] = [consent_kind(v) for v in out["decided_by"]]
    return out


def _grant_path_problems(consent: pd.DataFrame, kinds: Sequence[str]) -> pd.DataFrame:
    rows = []
    for r in consent.itertuples(index=False):
        if pd.isna(r.root_grant_id):
            rows.append(
                (
                    r.grant_id,
                    "delegation_path_broken",
                    f"the parent links of {r.grant_id} do not reach a root grant (a parent is missing "
                    "or the links loop)",
                )
            )
            continue
        if pd.isna(r.auth_request_id):
            rows.append(
                (
                    r.grant_id,
                    "no_consent_record",
                    f"root grant {r.root_grant_id} has no authorization request (consent record)",
                )
            )
            continue
        if r.consent_kind not in kinds:
            rows.append(
                (
                    r.grant_id,
                    f"consent_by_{r.consent_kind}",
                    f"root grant {r.root_grant_id} was approved by {r.decided_by!s} "
                    f"({r.consent_kind}), not by a person" + (" or a policy" if "policy" in kinds else ""),
                )
            )
        if r.request_status != "exchanged":
            rows.append(
                (
                    r.grant_id,
                    "consent_record_inconsistent",
                    f"consent record {r.auth_request_id} is {r.request_status}, not exchanged",
                )
            )
        if r.request_principal != r.root_principal or r.principal_id != r.root_principal:
            rows.append(
                (
                    r.grant_id,
                    "principal_mismatch_along_path",
                    f"consent was given by {r.request_principal}, the root grant is for "
                    f"{r.root_principal}, this grant for {r.principal_id}",
                )
            )
        if r.request_agent != r.root_agent:
            rows.append(
                (
                    r.grant_id,
                    "consent_for_other_agent",
                    f"consent record {r.auth_request_id} was for agent {r.request_agent}, the root grant "
                    f"went to {r.root_agent}",
                )
            )
    return pd.DataFrame(rows, columns=["grant_id", "problem", "detail"])


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
detail's template), in the order the check lists them for one seq."""

_ACTS = """
FROM audit a
LEFT JOIN check2_grants g ON a.grant_id = g.grant_id
LEFT JOIN check2_agents ag ON a.agent_id = ag.agent_id
"""

_PATH_PART = len(PROBLEMS)
"""The ordinal of the path problems among the parts of the evidence (after the per-action tests)."""

EVIDENCE = (
    "SELECT f.seq, f.developer_id, f.agent_id, f.grant_id, f.principal_id, f.action, t.problem,\n"
    "       t.part, 0 AS sub\n"
    "FROM (\n  SELECT a.seq, a.developer_id, a.agent_id, a.grant_id, a.principal_id, a.action,\n         "
    + ",\n         ".join(f"{condition} AS t{part}" for part, (_, condition, _) in enumerate(PROBLEMS))
    + _ACTS.replace("\n", "\n  ")
    + f"WHERE {agent_action('a')}\n    AND ("
    + "\n      OR ".join(f"({condition})" for _, condition, _ in PROBLEMS)
    + ")\n) f\nJOIN check2_tests t ON CASE t.part "
    + " ".join(f"WHEN {part} THEN f.t{part}" for part in range(len(PROBLEMS)))
    + " ELSE FALSE END\n"
    + "UNION ALL\n"
    "SELECT a.seq, a.developer_id, a.agent_id, a.grant_id, a.principal_id, a.action, p.problem,\n"
    f"       {_PATH_PART} AS part, p.sub\n"
    "FROM audit a JOIN check2_paths p ON a.grant_id = p.grant_id\n"
    f"WHERE {agent_action('a')}"
)
"""Every evidence row, uncapped: once per (action, per-action test it fails), the failing actions
found in one scan with one boolean column per test; then once per (action, problem of its grant's
delegation path). ``part`` and ``sub`` give the listing's order (test, then path problem) and
name the problem and its detail, which Python adds to the rows it fetches: long text kept out of
the engine's sort, the one piece of this check whose memory grows with the log."""

ORDER = (
    "seq ASC NULLS FIRST, part ASC, developer_id ASC NULLS LAST, sub ASC, agent_id ASC NULLS LAST, "
    "grant_id ASC NULLS LAST, principal_id ASC NULLS LAST, action ASC NULLS LAST"
)
"""The evidence's order, total: by seq, then test (path problems last, in the path table's order),
then chain (the loaded frame's order for equal seqs); the rest only breaks ties between copies."""

FIRST_ROWS = (
    "SELECT seq, developer_id, agent_id, grant_id, principal_id, action, part, sub\n"
    "FROM ({evidence}) e ORDER BY {order} LIMIT {limit}"
)
"""The first rows of the evidence, as many as a check hands back (:data:`.base.EVIDENCE_LIMIT`)."""

BY_PROBLEM = "SELECT problem, COUNT(*) AS n FROM ({evidence}) e GROUP BY problem"
"""Evidence rows per problem, counted in full whatever the listing's cap."""

ACTIONS_CITED = (
    "SELECT COUNT(*) AS n FROM (SELECT DISTINCT developer_id, seq FROM ({evidence}) e) cited"
)
"""Actions that do not trace to consent: an action is a (chain, seq), so equal seqs in two
developers' chains are two actions."""

BY_CONSENT = f"""
SELECT c.consent_kind, COUNT(*) AS actions
FROM audit a LEFT JOIN check2_consent c ON a.grant_id = c.grant_id
WHERE {agent_action('a')}
GROUP BY c.consent_kind
"""

COLUMNS = ["seq", "developer_id", "agent_id", "grant_id", "root_grant_id", "consent_kind", "action",
           "problem", "detail"]


def _text(values: Any) -> pa.Array:
    """Text keys for the engine: anything that is not a string (None, NaN) as NULL."""
    return pa.array([v if isinstance(v, str) else None for v in pd.Series(values).astype(object)],
                    type=pa.string())


def check_provenance(
    ds: Dataset | EngineDataset, *, consent_kinds: Sequence[str] = ("human", "policy")
) -> CheckResult:
    """Every action names an existing grant held by the acting agent, whose delegation path
    reaches a root grant with a consent record decided by a person (or a policy)."""
    with engine_dataset(ds) as eds:
        return _check_provenance(eds, consent_kinds)


def _check_provenance(eds: EngineDataset, consent_kinds: Sequence[str]) -> CheckResult:
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
        "sub": pa.array(range(len(path_problems)), type=pa.int64())}))
    engine.register_arrow("check2_consent", pa.table({
        "grant_id": _text(consent["grant_id"]), "consent_kind": _text(consent["consent_kind"])}))
    engine.register_arrow("check2_tests", pa.table({
        "part": pa.array(range(len(PROBLEMS)), type=pa.int64()),
        "problem": pa.array([problem for problem, _, _ in PROBLEMS], type=pa.string())}))

    limit = base.EVIDENCE_LIMIT  # read now: a test (or a caller) may lower it
    by_problem = engine.sql(BY_PROBLEM.format(evidence=EVIDENCE))
    problems = {str(k): int(v) for k, v in sorted(zip(by_problem["problem"], by_problem["n"], strict=True))}
    found = sum(problems.values())
    rows = engine.sql(FIRST_ROWS.format(evidence=EVIDENCE, order=ORDER, limit=int(limit))) if found else None
    if rows is not None and len(rows):
        path_problem, path_detail = path_problems["problem"].tolist(), path_problems["detail"].tolist()
        problem, detail = [], []
        for part, sub, a, g, p in zip(rows["part"].tolist(), rows["sub"].tolist(), rows["agent_id"],
                                      rows["grant_id"], rows["principal_id"], strict=True):
            if part < _PATH_PART:
                problem.append(PROBLEMS[part][0])
                detail.append(PROBLEMS[part][2].format(agent_id=a, grant_id=g, principal_id=p))
            else:
                problem.append(path_problem[sub])
                detail.append(path_detail[sub])
        rows["problem"], rows["detail"] = problem, detail
        rows["root_grant_id"] = safe_map(rows["grant_id"], by_grant["root_grant_id"])
        rows["consent_kind"] = safe_map(rows["grant_id"], by_grant["consent_kind"])
        evidence = rows[COLUMNS]
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
        "problems": problems,
        "grants_without_accepted_consent": int(path_problems["grant_id"].nunique()),
        "accepted_consent": list(consent_kinds),
    }
    if not found:
        summary = (
            f"all {actions} actions trace to a grant held by the acting agent and to a consent "
            f"record ({', '.join(f'{k}: {v}' for k, v in metrics['actions_by_consent'].items())})"
        )
    else:
        summary = (
            f"{int(engine.sql(ACTIONS_CITED.format(evidence=EVIDENCE))['n'].iloc[0])} of {actions} actions "
            "do not trace to consent: "
            + _listing(metrics["problems"])
        )
    return _result(eds.ds, 2, not found, summary, evidence, metrics, evidence_rows=found)

"""Check 2, provenance and consent: every action traces to a grant the agent holds, and that
grant's delegation path to a person's (or a policy's) consent.

Why the consent table is public (:func:`grant_consent`): it is what an auditor looks at next when
a path breaks, one row per grant with its root and who decided.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from ..frames import Dataset, safe_map
from .base import (
    CheckResult,
    _actions,
    _counts,
    _frame,
    _grant_lookup,
    _listing,
    _problem_counts,
    _result,
    _same,
    consent_kind,
)


def grant_consent(ds: Dataset) -> pd.DataFrame:
    """Per grant: its root, the root's consent record, who decided, and what is wrong with the path."""
    grants = ds.grants
    requests = ds.auth_requests.drop_duplicates("auth_request_id").set_index("auth_request_id")
    lookup = _grant_lookup(ds)
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


def check_provenance(ds: Dataset, *, consent_kinds: Sequence[str] = ("human", "policy")) -> CheckResult:
    """Every action names an existing grant held by the acting agent, whose delegation path
    reaches a root grant with a consent record decided by a person (or a policy)."""
    acts = _actions(
        ds, ["seq", "developer_id", "agent_id", "agent_did", "grant_id", "principal_id", "action"]
    )
    lookup = _grant_lookup(ds)
    agents = ds.agents.drop_duplicates("agent_id").set_index("agent_id")
    consent = grant_consent(ds)
    by_grant = consent.set_index("grant_id")
    grant_known = acts["grant_id"].isin(lookup.index)
    checks = [
        (~grant_known, "grant_missing", "the action names grant {grant_id}, which is not among the grants"),
        (
            grant_known & ~_same(acts["agent_id"], safe_map(acts["grant_id"], lookup["agent_id"])),
            "agent_not_grantee",
            "agent {agent_id} acted under grant {grant_id}, which belongs to another agent",
        ),
        (
            grant_known & ~_same(acts["principal_id"], safe_map(acts["grant_id"], lookup["principal_id"])),
            "principal_mismatch",
            "the action names principal {principal_id}, grant {grant_id} is another's",
        ),
        (
            grant_known & ~_same(acts["developer_id"], safe_map(acts["grant_id"], lookup["developer_id"])),
            "grant_other_developer",
            "grant {grant_id} belongs to another developer's chain",
        ),
        (~acts["agent_id"].isin(agents.index), "agent_missing", "agent {agent_id} is not among the agents"),
        (
            acts["agent_id"].isin(agents.index)
            & ~_same(acts["agent_did"], safe_map(acts["agent_id"], agents["did"])),
            "agent_did_mismatch",
            "the action's agentDid is not agent {agent_id}'s DID",
        ),
    ]
    parts = []
    for mask, problem, template in checks:
        hit = acts.loc[mask]
        if len(hit):
            hit = hit.assign(problem=problem)
            hit["detail"] = [
                template.format(agent_id=a, grant_id=g, principal_id=p)
                for a, g, p in zip(hit["agent_id"], hit["grant_id"], hit["principal_id"], strict=True)
            ]
            parts.append(hit)
    path_problems = _grant_path_problems(consent, consent_kinds)
    if len(path_problems):
        parts.append(acts.merge(path_problems, on="grant_id", how="inner"))
    columns = [
        "seq",
        "developer_id",
        "agent_id",
        "grant_id",
        "root_grant_id",
        "consent_kind",
        "action",
        "problem",
        "detail",
    ]
    if parts:
        evidence = pd.concat(parts, ignore_index=True)
        evidence["root_grant_id"] = safe_map(evidence["grant_id"], by_grant["root_grant_id"])
        evidence["consent_kind"] = safe_map(evidence["grant_id"], by_grant["consent_kind"])
        evidence = evidence[columns]
    else:
        evidence = _frame([], columns)
    kinds = safe_map(acts["grant_id"], by_grant["consent_kind"]).fillna("no grant")
    metrics: dict[str, Any] = {
        "actions": len(acts),
        "actions_by_consent": _counts(kinds),
        "problems": _problem_counts(evidence),
        "grants_without_accepted_consent": int(path_problems["grant_id"].nunique()),
        "accepted_consent": list(consent_kinds),
    }
    if evidence.empty:
        summary = (
            f"all {len(acts)} actions trace to a grant held by the acting agent and to a consent "
            f"record ({', '.join(f'{k}: {v}' for k, v in metrics['actions_by_consent'].items())})"
        )
    else:
        summary = (
            # an action is a (chain, seq): equal seqs in two developers' chains are two actions
            f"{len(evidence[['developer_id', 'seq']].drop_duplicates())} of {len(acts)} actions "
            "do not trace to consent: "
            + _listing(metrics["problems"])
        )
    return _result(ds, 2, evidence.empty, summary, evidence, metrics)

"""The auditor's checks over a :class:`~grantex_local.analysis.Dataset`.

Each check returns a :class:`CheckResult`: pass or fail, a one-line summary, the clauses it
serves, metrics, and an evidence DataFrame whose ``seq`` column cites audit entries (the seq of
the entry in its developer's chain; ``developer_id`` is beside it). Every check is vectorised
over the frames, so a million-entry log is judged in seconds.

What is judged: the agents' own actions (entries logged with ``audit.log``; actions not starting
with ``grantex.``). Lifecycle events (``grantex.*``) are the evidence they are judged against:
``grantex.grant.revoked`` (one per grant revoked, metadata ``cause``), ``grantex.grant.issued`` /
``delegated``, ``grantex.consent.approved`` / ``denied``, ``grantex.agent.suspended``, ...
An action is *accepted* unless its status is ``blocked`` (a ``failure`` was still attempted
under the grant; a ``blocked`` one was refused, which is oversight working).

Metadata conventions the checks read:

- ``metadata["scope"]``: the scope the action used. It must be covered by one of the grant's
  scopes under the coverage rule of PROTOCOL §4 (:func:`grantex_local.scopes.uncovered`).
- ``metadata["amount"]``: a number (numeric text is accepted) that must be at most N of the
  grant's matching ``max_N`` constraint: the grant scope equal to the metadata scope when that
  carries ``max_N``, else the largest N among the grant's ``max_N`` scopes with the metadata
  scope's ``resource:action``. A grant scope on that resource:action with no constraint allows
  any amount; with no metadata scope, or no such grant scope, the amount is not judged.

Consent (check 2): a root grant's consent record is the authorization request it was exchanged
from. ``decided_by`` tells who decided: ``sandbox`` (no one: a sandbox developer's automatic
approval), ``policy:<id>`` (an ``auto_approve`` policy, consent given in advance by a rule),
anything else is a person. By default a person or a policy counts as consent, sandbox does not.

Which check serves which clause (:data:`CHECKS` holds the same):

====  ==========================  ==================================================================
 id   check                       clauses
====  ==========================  ==================================================================
  1   log integrity               EU AI Act Art. 12(1) (logs over the lifetime), Art. 19 (logs
                                  kept, intact); SOC 2 CC7.2 (monitoring, tamper evidence)
  2   provenance and consent      EU AI Act Art. 12(2) (traceability), Art. 14 (a human decided);
                                  SOC 2 CC6.1, CC6.2 (access authorised before it is used)
  3   scope and amount            EU AI Act Art. 12(2); SOC 2 CC6.1, CC6.3 (least privilege)
  4   grant window                EU AI Act Art. 12(2); SOC 2 CC6.1, CC6.2
  5   no action after revocation  EU AI Act Art. 14(4)(e) (a stop that works); SOC 2 CC6.2, CC6.3
  6   revocation latency          EU AI Act Art. 14(4)(e); SOC 2 CC6.2, CC7.4 (response)
  7   delegation                  EU AI Act Art. 12(2); SOC 2 CC6.3
  8   grant hygiene               SOC 2 CC6.2, CC6.3 (access reviewed, removed when unused)
  9   oversight evidence          EU AI Act Art. 14(4) (monitor, intervene); SOC 2 CC7.3, CC7.4
 10   retention                   EU AI Act Art. 19(1) (kept at least six months), Art. 12(1);
                                  SOC 2 CC7.2
 11   anomalies                   EU AI Act Art. 14(4)(a) (detect anomalies), Art. 12(2)(a);
                                  SOC 2 CC7.2, CC7.3
====  ==========================  ==================================================================

Check 12, the findings summary, is :func:`grantex_local.analysis.findings`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidInput, InvalidScope
from ..ledger import DEFAULT_MAX_DELEGATION_DEPTH
from ..scopes import Scope, parse_scope, uncovered
from .load import Dataset, is_lifecycle, safe_map, to_utc

SEVERITIES = ("low", "medium", "high", "critical")
ANOMALY_TYPES = (
    "unusual_scope_access",
    "high_frequency",
    "off_hours_activity",
    "new_principal",
    "cascade_delegation",
)
"""The five anomaly types of the Grantex protocol (SPEC §13.3), with its four severities."""

ART12, ART14, ART19 = "EU AI Act Art. 12", "EU AI Act Art. 14", "EU AI Act Art. 19"

CHECKS: dict[int, tuple[str, tuple[str, ...]]] = {
    1: ("log integrity", (ART12, ART19, "SOC 2 CC7.2")),
    2: ("provenance and consent", (ART12, ART14, "SOC 2 CC6.1", "SOC 2 CC6.2")),
    3: ("scope and amount", (ART12, "SOC 2 CC6.1", "SOC 2 CC6.3")),
    4: ("grant window", (ART12, "SOC 2 CC6.1", "SOC 2 CC6.2")),
    5: ("no action after revocation", (ART14, "SOC 2 CC6.2", "SOC 2 CC6.3")),
    6: ("revocation latency", (ART14, "SOC 2 CC6.2", "SOC 2 CC7.4")),
    7: ("delegation", (ART12, "SOC 2 CC6.3")),
    8: ("grant hygiene", ("SOC 2 CC6.2", "SOC 2 CC6.3")),
    9: ("oversight evidence", (ART14, "SOC 2 CC7.3", "SOC 2 CC7.4")),
    10: ("retention", (ART19, ART12, "SOC 2 CC7.2")),
    11: ("anomalies", (ART14, ART12, "SOC 2 CC7.2", "SOC 2 CC7.3")),
}
"""id → (name, clauses it serves)."""

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
HUMAN_INTERVENTIONS = (
    "human_revocation",
    "cascade_revocation",
    "human_token_revocation",
    "human_denial",
    "agent_suspended",
    "agent_deleted",
)


@dataclass
class CheckResult:
    """One check's verdict with the evidence behind it."""

    id: int
    name: str
    passed: bool
    summary: str
    evidence: pd.DataFrame
    clauses: tuple[str, ...]
    metrics: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)

    def cited_seqs(self) -> list[int]:
        """The audit seqs the evidence cites, ascending."""
        if "seq" not in self.evidence.columns or self.evidence.empty:
            return []
        return sorted({int(s) for s in self.evidence["seq"].dropna()})

    def __repr__(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return f"CheckResult({self.id} {self.name}: {verdict}, {len(self.evidence)} evidence rows)"


# ── shared helpers ───────────────────────────────────────────────────────────


def duration(value: Any) -> pd.Timedelta:
    """``"24h"``, ``"30s"``, ``"7d"`` (any pandas spelling too), seconds, or a timedelta."""
    if isinstance(value, pd.Timedelta):
        return value
    if isinstance(value, timedelta):
        return pd.Timedelta(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return pd.Timedelta(seconds=value)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", value)
        if match:
            return pd.Timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])
        try:
            return pd.Timedelta(value)
        except ValueError:
            pass
    raise InvalidInput(f"{value!r} is not a duration (use for example '30s', '24h' or '7d')")


def _result(
    ds: Dataset, check_id: int, passed: bool, summary: str, evidence: pd.DataFrame, metrics: dict[str, Any]
) -> CheckResult:
    name, clauses = CHECKS[check_id]
    return CheckResult(
        check_id,
        name,
        bool(passed),
        summary,
        _tidy_evidence(evidence),
        clauses,
        metrics,
        {"kind": ds.kind, "path": ds.path},
    )


def _tidy_evidence(evidence: pd.DataFrame) -> pd.DataFrame:
    evidence = evidence.reset_index(drop=True)
    if "seq" in evidence.columns:
        evidence["seq"] = pd.to_numeric(evidence["seq"], errors="coerce").astype("Int64")
        evidence = evidence.sort_values("seq", kind="stable", na_position="first").reset_index(drop=True)
    return evidence


def _frame(rows: list[dict[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(columns)) if rows else pd.DataFrame({c: [] for c in columns})


def _actions(ds: Dataset, columns: Sequence[str], *, accepted_only: bool = False) -> pd.DataFrame:
    """The agents' own actions (not ``grantex.*``), selected columns only."""
    audit = ds.audit
    mask = ~is_lifecycle(audit["action"])
    if accepted_only:
        mask &= audit["status"].fillna("") != "blocked"
    return audit.loc[mask, list(columns)]


def _lifecycle(ds: Dataset, action: str, columns: Sequence[str]) -> pd.DataFrame:
    audit = ds.audit
    return audit.loc[audit["action"] == action, list(columns)]


def _grant_lookup(ds: Dataset) -> pd.DataFrame:
    return ds.grants.drop_duplicates("grant_id").set_index("grant_id")


def _event_seq(ds: Dataset, actions: Iterable[str]) -> pd.Series:
    """grant id → seq of its first issue/delegation event."""
    events = ds.audit.loc[ds.audit["action"].isin(list(actions)), ["grant_id", "seq"]]
    return events.dropna(subset=["grant_id"]).drop_duplicates("grant_id").set_index("grant_id")["seq"]


def _grant_event_seq(ds: Dataset) -> pd.Series:
    return _event_seq(ds, ("grantex.grant.issued", "grantex.grant.delegated"))


def _same(left: pd.Series, right: pd.Series) -> pd.Series:
    """Element-wise equality where two missing values count as equal."""
    return ((left == right) | (left.isna() & right.isna())).fillna(False).astype(bool)


def _seconds(delta: pd.Series | pd.Timedelta) -> Any:
    if isinstance(delta, pd.Series):
        return delta.dt.total_seconds()
    return delta.total_seconds()


def _percentiles(values: pd.Series) -> dict[str, float | None]:
    if values.empty:
        return {"p50_seconds": None, "p95_seconds": None, "max_seconds": None}
    return {
        "p50_seconds": float(values.quantile(0.5)),
        "p95_seconds": float(values.quantile(0.95)),
        "max_seconds": float(values.max()),
    }


def _counts(series: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in series.value_counts().sort_index().items()}


def _problem_counts(evidence: pd.DataFrame) -> dict[str, int]:
    """Evidence rows per kind of problem (an empty frame may not even have the column)."""
    return _counts(evidence["problem"]) if len(evidence) else {}


def _listing(counts: dict[str, int]) -> str:
    """``"kind 3, other 1"``: the counts as a summary sentence names them."""
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def _text(values: Any) -> str:
    if isinstance(values, list | tuple):
        return " ".join(str(v) for v in values)
    return "" if values is None or (isinstance(values, float) and math.isnan(values)) else str(values)


def _parse(text: str) -> Scope | None:
    try:
        return parse_scope(text)
    except InvalidScope:
        return None


# ── 1. integrity ─────────────────────────────────────────────────────────────


def check_integrity(ds: Dataset) -> CheckResult:
    """The chain and checkpoints verify (the library's verifier, recorded at load), and the
    head of every chain is covered by its latest signed checkpoint."""
    integrity = ds.integrity
    rows: list[dict[str, Any]] = []
    for found in integrity.errors:
        rows.append(
            {
                "seq": found.get("seq"),
                "developer_id": found.get("developerId"),
                "problem": found.get("reason") or found.get("kind"),
                "detail": found.get("message"),
            }
        )
    heads = ds.audit.groupby("developer_id")["seq"].agg(["max", "count"]) if len(ds.audit) else None
    latest = (
        ds.checkpoints.groupby("developer_id")["entry_count"].max() if len(ds.checkpoints) else pd.Series()
    )
    coverage: dict[str, Any] = {}
    if heads is not None:
        for developer_id, head in heads.iterrows():
            last = int(head["max"])
            covered = int(latest.get(developer_id, 0))
            coverage[str(developer_id)] = {
                "entries": int(head["count"]),
                "headSeq": last,
                "checkpointSize": covered,
            }
            if covered < last:
                rows.append(
                    {
                        "seq": covered + 1,
                        "developer_id": developer_id,
                        "problem": "head_not_checkpointed",
                        "detail": f"entries {covered + 1}..{last} are not covered by a signed checkpoint"
                        + (f" (the latest covers {covered})" if covered else " (none exists)"),
                    }
                )
            elif covered > last:
                rows.append(
                    {
                        "seq": last + 1,
                        "developer_id": developer_id,
                        "problem": "tail_deleted",
                        "detail": f"the latest checkpoint commits to {covered} entries, the log holds {last}",
                    }
                )
    evidence = _frame(rows, ["seq", "developer_id", "problem", "detail"])
    entries = len(ds.audit)
    if integrity.errors:
        located = [e for e in integrity.errors if e.get("seq") is not None]
        where = (
            f" from seq {located[0]['seq']} ({located[0].get('reason')}, developer "
            f"{located[0].get('developerId')})"
            if located
            else ""
        )
        summary = f"the log does not verify{where}: " + "; ".join(
            str(e.get("message")) for e in integrity.errors[:3]
        )
    elif len(evidence):
        summary = f"{entries} entries verify, but {evidence['detail'].iloc[0]}"
    else:
        summary = (
            f"{entries} entries in {len(integrity.chains)} chain(s) verify with {integrity.method}; "
            "every head is covered by a signed checkpoint"
        )
    if integrity.warning:
        summary += f" (note: {integrity.warning})"
    metrics = {
        "method": integrity.method,
        "entries": entries,
        "chains": list(integrity.chains),
        "checkpoints_checked": integrity.checkpoints_checked,
        "key_source": integrity.key_source,
        "coverage": coverage,
        "verified": integrity.valid,
    }
    return _result(ds, 1, integrity.valid and evidence.empty, summary, evidence, metrics)


# ── 2. provenance and consent ────────────────────────────────────────────────


def consent_kind(decided_by: Any) -> str:
    """``human``, ``policy``, ``sandbox`` or ``none`` from an auth request's ``decided_by``."""
    if not isinstance(decided_by, str) or not decided_by:
        return "none"
    if decided_by == "sandbox":
        return "sandbox"
    if decided_by.startswith("policy:"):
        return "policy"
    return "human"


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
    metrics = {
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
            f"{evidence['seq'].nunique()} of {len(acts)} actions do not trace to consent: "
            + _listing(metrics["problems"])
        )
    return _result(ds, 2, evidence.empty, summary, evidence, metrics)


# ── 3. scope and amount ──────────────────────────────────────────────────────


def _judge_scope(scope: Any, held: Any) -> tuple[str | None, float | None, str]:
    """(problem, amount limit, detail) for one metadata scope under one grant's scopes."""
    held = list(held) if isinstance(held, list | tuple) else []
    parsed_held = [p for p in (_parse(h) for h in held) if p is not None]
    if not isinstance(scope, str):
        return None, None, ""
    used = _parse(scope)
    if used is None:
        return "invalid_scope", None, f"metadata scope {scope!r} is not a scope"
    problem, detail = None, ""
    if uncovered([scope], [str(h) for h in parsed_held]):
        problem, detail = (
            "scope_not_granted",
            f"{scope} is not covered by the grant's scopes {' '.join(held)}",
        )
    if scope in held and used.max_amount is not None:
        return problem, float(used.max_amount), detail
    same = [h for h in parsed_held if (h.resource, h.action) == (used.resource, used.action)]
    if not same or any(h.constraint is None for h in same):
        return problem, None, detail
    limits = [h.max_amount for h in same if h.max_amount is not None]
    return problem, (float(max(limits)) if limits else None), detail


def check_scope(ds: Dataset) -> CheckResult:
    """Every accepted action's metadata scope is covered by its grant's scopes, and its amount is
    within the grant's matching ``max_N`` (module docstring)."""
    acts = _actions(
        ds, ["seq", "developer_id", "agent_id", "grant_id", "action", "scope", "amount"], accepted_only=True
    )
    judged = acts.loc[acts["scope"].notna() | acts["amount"].notna()]
    lookup = _grant_lookup(ds)
    judged = judged.loc[judged["grant_id"].isin(lookup.index)]  # unknown grants: check 2
    pairs = judged[["grant_id", "scope"]].astype(object).drop_duplicates()
    verdicts = [(g, s, *_judge_scope(s, lookup.at[g, "scopes"])) for g, s in pairs.itertuples(index=False)]
    table = pd.DataFrame(verdicts, columns=["grant_id", "scope_key", "problem", "limit", "detail"])
    table["scope_key"] = table["scope_key"].astype(object).fillna("\x00")
    merged = judged.assign(scope_key=judged["scope"].astype(object).fillna("\x00")).merge(
        table, on=["grant_id", "scope_key"], how="left"
    )
    merged["limit"] = pd.to_numeric(merged["limit"], errors="coerce")
    merged["grant_scopes"] = safe_map(merged["grant_id"], lookup["scopes"]).map(_text)
    scope_rows = merged.loc[merged["problem"].notna()]
    over = merged.loc[
        merged["amount"].notna() & merged["limit"].notna() & (merged["amount"] > merged["limit"])
    ]
    over = over.assign(
        problem="amount_over_limit",
        detail=[
            f"amount {a:g} is over the grant's limit {lim:g} for {s}"
            for a, lim, s in zip(over["amount"], over["limit"], over["scope"], strict=True)
        ],
    )
    columns = [
        "seq",
        "developer_id",
        "agent_id",
        "grant_id",
        "action",
        "scope",
        "amount",
        "limit",
        "grant_scopes",
        "problem",
        "detail",
    ]
    evidence = (
        pd.concat([scope_rows[columns], over[columns]], ignore_index=True)
        if (len(scope_rows) or len(over))
        else _frame([], columns)
    )
    with_amount = merged["amount"].notna()
    metrics = {
        "accepted_actions": len(acts),
        "with_scope": int(acts["scope"].notna().sum()),
        "with_amount": int(acts["amount"].notna().sum()),
        "amounts_judged": int((with_amount & merged["limit"].notna()).sum()),
        "amounts_not_judged": int((with_amount & merged["limit"].isna()).sum()),
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


# ── 4. grant window ──────────────────────────────────────────────────────────


def check_grant_window(ds: Dataset, *, cache_window: Any = "0s") -> CheckResult:
    """Every accepted action falls between its grant's issue and min(expiry, revocation).

    Actions after the revocation instant but within ``cache_window`` (a verifier's declared
    cache of a token's validity) are listed with ``within_cache_window`` and do not fail.
    """
    window = duration(cache_window)
    acts = _actions(
        ds, ["seq", "developer_id", "agent_id", "grant_id", "action", "timestamp"], accepted_only=True
    )
    lookup = _grant_lookup(ds)
    acts = acts.loc[acts["grant_id"].isin(lookup.index)]
    issued = safe_map(acts["grant_id"], lookup["issued_at"])
    expires = safe_map(acts["grant_id"], lookup["expires_at"])
    revoked = safe_map(acts["grant_id"], lookup["revoked_at"])
    ts = acts["timestamp"]
    late = revoked.notna() & (ts > revoked)
    cached = late & (window > pd.Timedelta(0)) & ((ts - revoked) <= window)
    framed = acts.assign(issued_at=issued, expires_at=expires, revoked_at=revoked, cached=cached)
    parts = []
    for mask, problem in (
        (ts < issued, "before_issue"),
        (ts >= expires, "after_expiry"),
        (late, "after_revocation"),
    ):
        hit = framed.loc[mask].assign(problem=problem)
        if len(hit):
            parts.append(hit)
    columns = [
        "seq",
        "developer_id",
        "agent_id",
        "grant_id",
        "action",
        "timestamp",
        "issued_at",
        "expires_at",
        "revoked_at",
        "problem",
        "within_cache_window",
        "detail",
    ]
    if not parts:
        evidence = _frame([], columns)
    else:
        evidence = pd.concat(parts, ignore_index=True)  # one action may break two bounds
        evidence["within_cache_window"] = (evidence["problem"] == "after_revocation") & evidence["cached"]
        evidence["detail"] = [
            _window_detail(p, t, i, e, r)
            for p, t, i, e, r in zip(
                evidence["problem"],
                evidence["timestamp"],
                evidence["issued_at"],
                evidence["expires_at"],
                evidence["revoked_at"],
                strict=True,
            )
        ]
        evidence = evidence[columns].reset_index(drop=True)
    failing = evidence.loc[~evidence["within_cache_window"].astype(bool)] if len(evidence) else evidence
    metrics = {
        "accepted_actions": len(acts),
        "cache_window_seconds": window.total_seconds(),
        "problems": _counts(failing["problem"]) if len(failing) else {},
        "within_cache_window": int(evidence["within_cache_window"].sum()) if len(evidence) else 0,
    }
    if failing.empty:
        summary = f"all {len(acts)} accepted actions fall within their grant's lifetime"
        if metrics["within_cache_window"]:
            summary += f" ({metrics['within_cache_window']} inside the declared cache window)"
    else:
        summary = (
            f"{len(failing)} actions fall outside their grant's lifetime: " + _listing(metrics["problems"])
        )
    return _result(ds, 4, failing.empty, summary, evidence, metrics)


def _window_detail(
    problem: str, ts: pd.Timestamp, issued: pd.Timestamp, expires: pd.Timestamp, revoked: pd.Timestamp
) -> str:
    if problem == "before_issue":
        return f"{ts.isoformat()} is before the grant was issued at {issued.isoformat()}"
    if problem == "after_expiry":
        return f"{ts.isoformat()} is after the grant expired at {expires.isoformat()}"
    return f"{ts.isoformat()} is {(ts - revoked).total_seconds():g}s after the grant was revoked"


# ── 5. after revocation, 6. latency ──────────────────────────────────────────


def revocation_points(ds: Dataset) -> pd.DataFrame:
    """Per revoked grant: the revocation that applies to it first (its own or an ancestor's).

    Columns ``grant_id, revoked_by`` (the grant whose revocation it is), ``revocation_seq``
    (that ``grantex.grant.revoked`` entry), ``revoked_at`` (its time), ``cause``, ``logged``
    (False: the grant is revoked but no revocation entry exists; time from ``grants.revoked_at``).
    """
    events = _lifecycle(ds, "grantex.grant.revoked", ["seq", "grant_id", "timestamp", "metadata"])
    events = events.dropna(subset=["grant_id"]).sort_values("seq").drop_duplicates("grant_id")
    own = events.set_index("grant_id")
    grants = ds.grants
    seq = safe_map(grants["grant_id"], own["seq"]).astype("Float64")
    when = safe_map(grants["grant_id"], own["timestamp"])
    by = grants["grant_id"].where(seq.notna())
    parent_of = _grant_lookup(ds)["parent_grant_id"]
    current = grants["parent_grant_id"]
    for _ in range(64):
        if current.isna().all():
            break
        up_seq = safe_map(current, own["seq"]).astype("Float64")
        better = up_seq.notna() & (seq.isna() | (up_seq < seq))
        if better.any():
            seq = seq.where(~better, up_seq)
            when = when.where(~better, safe_map(current, own["timestamp"]))
            by = by.where(~better, current)
        current = safe_map(current, parent_of)
    unlogged = seq.isna() & grants["revoked_at"].notna()
    when = when.where(~unlogged, grants["revoked_at"])
    out = pd.DataFrame(
        {
            "grant_id": grants["grant_id"],
            "revoked_by": by.where(~unlogged, grants["grant_id"]),
            "revocation_seq": seq.astype("Int64"),
            "revoked_at": when,
            "logged": ~unlogged,
            "developer_id": grants["developer_id"],
        }
    )
    out = out.loc[out["revocation_seq"].notna() | unlogged].reset_index(drop=True)
    causes = own["metadata"].map(lambda m: m.get("cause") if isinstance(m, dict) else None)
    out["cause"] = out["revoked_by"].map(causes)
    return out


def _after_revocation(ds: Dataset, points: pd.DataFrame) -> pd.DataFrame:
    """Every agent action (any status) recorded after the revocation that applies to its grant."""
    acts = _actions(ds, ["seq", "developer_id", "agent_id", "grant_id", "action", "status", "timestamp"])
    table = points.set_index("grant_id")
    acts = acts.loc[acts["grant_id"].isin(table.index)]
    rev_seq = safe_map(acts["grant_id"], table["revocation_seq"])
    rev_at = safe_map(acts["grant_id"], table["revoked_at"])
    logged = safe_map(acts["grant_id"], table["logged"]).astype(bool)
    after = (logged & (acts["seq"] > rev_seq.astype("Float64").fillna(np.inf))) | (
        ~logged & (acts["timestamp"] > rev_at)
    )
    out = acts.loc[after.fillna(False).astype(bool)].copy()
    out["revoked_by"] = safe_map(out["grant_id"], table["revoked_by"])
    out["revocation_seq"] = safe_map(out["grant_id"], table["revocation_seq"]).astype("Int64")
    out["revoked_at"] = safe_map(out["grant_id"], table["revoked_at"])
    out["seconds_after"] = _seconds(out["timestamp"] - out["revoked_at"])
    out["accepted"] = out["status"].fillna("") != "blocked"
    return out


def check_after_revocation(ds: Dataset, *, cache_window: Any = "0s") -> CheckResult:
    """No accepted action after the revocation of its grant or of any ancestor, decided by chain
    order (seq), not by clocks. Actions within ``cache_window`` of the revocation are listed apart
    (``within_cache_window``) and do not fail; blocked attempts are counted, not held against it."""
    window = duration(cache_window)
    points = revocation_points(ds)
    after = _after_revocation(ds, points)
    accepted = after.loc[after["accepted"]].copy()
    accepted["within_cache_window"] = (window > pd.Timedelta(0)) & (
        accepted["seconds_after"] <= window.total_seconds()
    )
    accepted["problem"] = np.where(
        accepted["within_cache_window"],
        "inside_cache_window",
        np.where(
            accepted["revoked_by"] == accepted["grant_id"],
            "action_after_revocation",
            "action_after_ancestor_revocation",
        ),
    )
    accepted["detail"] = [
        f"{a} under {g}, {s:g}s after revocation seq {r} of {b}"
        for a, g, s, r, b in zip(
            accepted["action"],
            accepted["grant_id"],
            accepted["seconds_after"],
            accepted["revocation_seq"],
            accepted["revoked_by"],
            strict=True,
        )
    ]
    unlogged = points.loc[~points["logged"]]
    missing = pd.DataFrame(
        {
            "seq": pd.Series([pd.NA] * len(unlogged), dtype="Int64"),
            "developer_id": unlogged["developer_id"].to_numpy(),
            "agent_id": None,
            "grant_id": unlogged["grant_id"].to_numpy(),
            "action": None,
            "timestamp": pd.NaT,
            "revoked_by": unlogged["grant_id"].to_numpy(),
            "revocation_seq": pd.Series([pd.NA] * len(unlogged), dtype="Int64"),
            "revoked_at": unlogged["revoked_at"].to_numpy(),
            "seconds_after": np.nan,
            "within_cache_window": False,
            "problem": "revocation_not_logged",
            "detail": [
                f"grant {g} is revoked but no grantex.grant.revoked entry records it"
                for g in unlogged["grant_id"]
            ],
        }
    )
    columns = [
        "seq",
        "developer_id",
        "agent_id",
        "grant_id",
        "action",
        "timestamp",
        "revoked_by",
        "revocation_seq",
        "revoked_at",
        "seconds_after",
        "within_cache_window",
        "problem",
        "detail",
    ]
    evidence = (
        pd.concat([f[columns] for f in (accepted, missing) if len(f)], ignore_index=True)
        if (len(accepted) or len(missing))
        else _frame([], columns)
    )
    failing = evidence.loc[~evidence["within_cache_window"].astype(bool)] if len(evidence) else evidence
    metrics = {
        "revoked_grants": len(points),
        "cache_window_seconds": window.total_seconds(),
        "accepted_after_revocation": len(accepted),
        "within_cache_window": int(accepted["within_cache_window"].sum()),
        "blocked_after_revocation": int((~after["accepted"]).sum()),
        "problems": _counts(failing["problem"]) if len(failing) else {},
    }
    if failing.empty:
        summary = f"no accepted action after any of {len(points)} revocations"
        if metrics["within_cache_window"]:
            summary += f" beyond the cache window ({metrics['within_cache_window']} inside it)"
        if metrics["blocked_after_revocation"]:
            summary += f"; {metrics['blocked_after_revocation']} later attempts were blocked"
    else:
        summary = f"{len(failing)} accepted actions after revocation: " + _listing(metrics["problems"])
    return _result(ds, 5, failing.empty, summary, evidence, metrics)


def revocation_latency(ds: Dataset, *, cache_window: Any = "0s") -> CheckResult:
    """Time from each revocation to the last accepted action after it (0 when none), p50/p95/max.

    Passes when the longest is within ``cache_window``: revocations took effect as declared.
    """
    window = duration(cache_window)
    points = revocation_points(ds)
    after = _after_revocation(ds, points)
    late = after.loc[after["accepted"]]
    last = (
        late.sort_values("seq")
        .groupby("grant_id")
        .agg(seq=("seq", "last"), last_action_at=("timestamp", "last"), late_actions=("seq", "size"))
    )
    table = points.merge(last, left_on="grant_id", right_index=True, how="left")
    table["late_actions"] = table["late_actions"].fillna(0).astype(int)
    table["latency_seconds"] = (
        _seconds(table["last_action_at"] - table["revoked_at"]).fillna(0.0).clip(lower=0)
    )
    evidence = table[
        [
            "seq",
            "developer_id",
            "grant_id",
            "revoked_by",
            "revocation_seq",
            "revoked_at",
            "last_action_at",
            "late_actions",
            "latency_seconds",
        ]
    ].sort_values("latency_seconds", ascending=False, kind="stable")
    metrics = {
        "revoked_grants": len(table),
        "grants_with_late_actions": int((table["late_actions"] > 0).sum()),
        "late_actions": int(table["late_actions"].sum()),
        "cache_window_seconds": window.total_seconds(),
        **_percentiles(table["latency_seconds"]),
    }
    worst = metrics["max_seconds"] or 0.0
    passed = worst <= window.total_seconds()
    if not len(table):
        summary = "no grant was revoked"
    else:
        summary = (
            f"{len(table)} revoked grants: latency p50 {metrics['p50_seconds']:g}s, p95 "
            f"{metrics['p95_seconds']:g}s, max {worst:g}s (cache window {window.total_seconds():g}s)"
        )
    return _result(ds, 6, passed, summary, evidence, metrics)


# ── 7. delegation ────────────────────────────────────────────────────────────


def _depth_limit(ds: Dataset) -> int:
    try:
        return int(ds.settings.get("max_delegation_depth", DEFAULT_MAX_DELEGATION_DEPTH))
    except (TypeError, ValueError):
        return DEFAULT_MAX_DELEGATION_DEPTH


def check_delegation(ds: Dataset) -> CheckResult:
    """Every child grant's scopes are covered by its parent's, it expires no later than the
    parent, it was issued while the parent was live, and its depth is right and within the limit."""
    limit = _depth_limit(ds)
    grants = ds.grants
    lookup = _grant_lookup(ds)
    depth = grants["delegation_depth"]
    child = grants["parent_grant_id"].notna()
    known = child & grants["parent_grant_id"].isin(lookup.index)
    parent = {
        name: safe_map(grants["parent_grant_id"], lookup[name])
        for name in ("scopes", "expires_at", "issued_at", "revoked_at", "delegation_depth", "principal_id")
    }
    parent_revoked = parent["revoked_at"]
    checks: list[tuple[pd.Series, str, str]] = [
        (depth > limit, "depth_over_limit", f"depth {{depth}} is over the limit of {limit}"),
        (
            grants["depth"].notna() & (grants["depth"] != depth).fillna(False),
            "depth_mismatch",
            "delegation_depth says {depth}, the parent links give {links}",
        ),
        (child & ~known, "parent_missing", "parent grant {parent} is not among the grants"),
        (
            known & (grants["expires_at"] > parent["expires_at"]),
            "expires_after_parent",
            "expires {expires}, after its parent ({parent_expires})",
        ),
        (
            known & (grants["issued_at"] < parent["issued_at"]),
            "issued_before_parent",
            "issued before its parent",
        ),
        (
            known & (grants["issued_at"] >= parent["expires_at"]),
            "issued_after_parent_expired",
            "issued after its parent had expired",
        ),
        (
            known & parent_revoked.notna() & (grants["issued_at"] > parent_revoked),
            "issued_after_parent_revoked",
            "issued after its parent was revoked",
        ),
        (
            known & (depth != parent["delegation_depth"] + 1).fillna(False),
            "depth_not_parent_plus_one",
            "depth {depth}, parent depth {parent_depth}",
        ),
        (
            known & ~_same(grants["principal_id"], parent["principal_id"]),
            "principal_mismatch",
            "the child's principal is not its parent's",
        ),
    ]
    rows: list[tuple[str, str, str]] = []
    for mask, problem, template in checks:
        for index in mask[mask.fillna(False).astype(bool)].index:
            rows.append(
                (
                    grants.at[index, "grant_id"],
                    problem,
                    template.format(
                        depth=grants.at[index, "delegation_depth"],
                        links=grants.at[index, "depth"],
                        parent=grants.at[index, "parent_grant_id"],
                        expires=grants.at[index, "expires_at"],
                        parent_expires=parent["expires_at"][index],
                        parent_depth=parent["delegation_depth"][index],
                    ),
                )
            )
    coverage: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[str, str] | None] = {}
    for index in known[known].index:
        key = (tuple(grants.at[index, "scopes"] or ()), tuple(parent["scopes"][index] or ()))
        if key not in coverage:
            try:
                beyond = uncovered(list(key[0]), list(key[1]))
                coverage[key] = (
                    (
                        "scopes_not_covered",
                        f"{' '.join(beyond)} not covered by parent scopes {' '.join(key[1])}",
                    )
                    if beyond
                    else None
                )
            except InvalidScope as exc:
                coverage[key] = ("invalid_scope", exc.message)
        if coverage[key] is not None:
            rows.append((grants.at[index, "grant_id"], *coverage[key]))
    table = pd.DataFrame(rows, columns=["grant_id", "problem", "detail"])
    table["seq"] = safe_map(table["grant_id"], _grant_event_seq(ds))
    for name in ("parent_grant_id", "agent_id", "delegation_depth"):
        table[name] = safe_map(table["grant_id"], lookup[name])
    evidence = table[
        ["seq", "grant_id", "parent_grant_id", "agent_id", "delegation_depth", "problem", "detail"]
    ]
    children = int(child.sum())
    metrics = {
        "grants": len(grants),
        "delegated_grants": children,
        "depth_limit": limit,
        "max_depth": int(depth.max()) if len(grants) else 0,
        "problems": _problem_counts(evidence),
    }
    if evidence.empty:
        summary = (
            f"all {children} delegated grants are within their parents' scopes and lifetimes, "
            f"depth at most {metrics['max_depth']} (limit {limit})"
        )
    else:
        summary = (
            f"{evidence['grant_id'].nunique()} grants break delegation rules: "
            + _listing(metrics["problems"])
        )
    return _result(ds, 7, evidence.empty, summary, evidence, metrics)


# ── 8. grant hygiene ─────────────────────────────────────────────────────────


def check_grant_hygiene(
    ds: Dataset, *, max_ttl: Any = "24h", unused_days: float = 30, as_of: Any = None
) -> CheckResult:
    """No grant lives longer than ``max_ttl``; no grant was issued and never used; no live grant
    has gone unused for ``unused_days``.

    A grant is judged "never used" once it could have been: when its lifetime has ended
    (expired or revoked) by ``as_of``, or it is older than ``unused_days``.
    """
    ttl = duration(max_ttl)
    idle = pd.Timedelta(days=unused_days)
    when = to_utc(as_of) if as_of is not None else ds.as_of
    grants = ds.grants
    acts = _actions(ds, ["grant_id", "timestamp"])
    usage = acts.groupby("grant_id")["timestamp"].agg(["size", "max"])
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
        evidence["seq"] = safe_map(evidence["grant_id"], _grant_event_seq(ds))
        evidence = evidence[columns]
    else:
        evidence = _frame([], columns)
    metrics = {
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


# ── 9. oversight evidence ────────────────────────────────────────────────────


def interventions(ds: Dataset) -> pd.DataFrame:
    """Every oversight event in the log, with its ``kind`` and whether a person made it."""
    life = ds.audit.loc[
        is_lifecycle(ds.audit["action"]),
        ["seq", "developer_id", "agent_id", "grant_id", "action", "status", "timestamp", "metadata"],
    ]
    wanted = life["action"].isin(
        [
            "grantex.grant.revoked",
            "grantex.token.revoked",
            "grantex.consent.denied",
            "grantex.agent.suspended",
            "grantex.agent.deleted",
            "grantex.token.reuse_detected",
        ]
    )
    life = life.loc[wanted].copy()
    life["kind"] = [_intervention_kind(a, m) for a, m in zip(life["action"], life["metadata"], strict=True)]
    blocked = _actions(ds, ["seq", "developer_id", "agent_id", "grant_id", "action", "status", "timestamp"])
    blocked = blocked.loc[blocked["status"] == "blocked"].assign(kind="blocked_action")
    out = (
        pd.concat([life.drop(columns=["metadata"]), blocked], ignore_index=True)
        if len(blocked)
        else life.drop(columns=["metadata"]).reset_index(drop=True)
    )
    out["human"] = out["kind"].isin(HUMAN_INTERVENTIONS)
    return out.sort_values("seq", kind="stable").reset_index(drop=True)


def _intervention_kind(action: str, metadata: Any) -> str:
    meta = metadata if isinstance(metadata, dict) else {}
    if action == "grantex.grant.revoked":
        cause = meta.get("cause")
        if cause == "revoked":
            return "human_revocation"
        return (
            "cascade_revocation"
            if cause in ("ancestor_revoked", "parent_token_revoked")
            else "automatic_revocation"
        )
    if action == "grantex.token.revoked":
        return "human_token_revocation" if meta.get("cause") == "revoked" else "automatic_token_revocation"
    if action == "grantex.consent.denied":
        return "policy_denial" if consent_kind(meta.get("decidedBy")) == "policy" else "human_denial"
    if action == "grantex.token.reuse_detected":
        return "reuse_detected"
    return "agent_suspended" if action == "grantex.agent.suspended" else "agent_deleted"


def oversight_evidence(
    ds: Dataset, *, anomalies: pd.DataFrame | None = None, answer_at_least: str = "high"
) -> CheckResult:
    """Human revocations, denials, blocked actions, and the time from an anomaly to the next human
    intervention on the same agent. Fails when an anomaly of severity ``answer_at_least`` or above
    was never followed by one."""
    found = interventions(ds)
    if anomalies is None:
        anomalies = detect_anomalies(ds).evidence
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    notable = (
        anomalies.loc[anomalies["severity"].map(rank) >= rank["medium"]] if len(anomalies) else anomalies
    )
    human = found.loc[found["human"] & found["agent_id"].notna()]
    responses: list[dict[str, Any]] = []
    if len(notable) and notable["seq"].notna().any():
        left = (
            notable[["seq", "developer_id", "agent_id", "timestamp", "severity", "type"]]
            .dropna(subset=["agent_id", "seq", "developer_id"])
            .astype({"seq": "int64"})
            .sort_values("seq")
        )
        right = (
            human[["seq", "developer_id", "agent_id", "timestamp", "kind"]]
            .rename(columns={"seq": "intervention_seq", "timestamp": "intervention_at"})
            .astype({"intervention_seq": "int64"})
            .sort_values("intervention_seq")
        )
        for frame in (left, right):
            for name in ("developer_id", "agent_id"):
                frame[name] = frame[name].astype(object)
        matched = pd.merge_asof(
            left,
            right,
            left_on="seq",
            right_on="intervention_seq",
            by=["developer_id", "agent_id"],
            direction="forward",
            allow_exact_matches=False,
        )
        matched["answer_key"] = matched["intervention_seq"].astype("Float64").fillna(-1)
        matched["rank"] = matched["severity"].map(rank)
        episodes = (
            matched.groupby(["developer_id", "agent_id", "answer_key"], sort=False)
            .agg(
                seq=("seq", "first"),
                timestamp=("timestamp", "first"),
                anomalies=("seq", "size"),
                rank=("rank", "max"),
                anomaly_types=("type", lambda t: " ".join(sorted(set(t)))),
                intervention=("kind", "first"),
                intervention_at=("intervention_at", "first"),
            )
            .reset_index()
        )
        for e in episodes.itertuples(index=False):
            answered = e.answer_key >= 0
            responses.append(
                {
                    "seq": int(e.seq),
                    "developer_id": e.developer_id,
                    "agent_id": e.agent_id,
                    "grant_id": None,
                    "timestamp": e.timestamp,
                    "anomalies": int(e.anomalies),
                    "severity": SEVERITIES[int(e.rank)],
                    "anomaly_types": e.anomaly_types,
                    "kind": "anomaly_response" if answered else "anomaly_unanswered",
                    "intervention_seq": int(e.answer_key) if answered else None,
                    "intervention": str(e.intervention) if answered else None,
                    "response_seconds": float(_seconds(e.intervention_at - e.timestamp))
                    if answered
                    else None,
                }
            )
    columns = [
        "seq",
        "kind",
        "human",
        "developer_id",
        "agent_id",
        "grant_id",
        "action",
        "timestamp",
        "anomalies",
        "severity",
        "anomaly_types",
        "intervention_seq",
        "intervention",
        "response_seconds",
    ]
    events = found.assign(
        anomalies=None,
        severity=None,
        anomaly_types=None,
        intervention_seq=None,
        intervention=None,
        response_seconds=None,
    )
    answers = pd.DataFrame(responses).assign(human=None, action=None) if responses else _frame([], columns)
    evidence = (
        pd.concat([f[columns] for f in (events, answers) if len(f)], ignore_index=True)
        if (len(events) or len(answers))
        else _frame([], columns)
    )
    unanswered = answers.loc[answers["kind"] == "anomaly_unanswered"] if len(answers) else answers
    must = (
        unanswered.loc[unanswered["severity"].map(rank) >= rank[answer_at_least]]
        if len(unanswered)
        else unanswered
    )
    answered = answers.loc[answers["kind"] == "anomaly_response"] if len(answers) else answers
    times = (
        pd.to_numeric(answered["response_seconds"], errors="coerce").dropna()
        if len(answered)
        else pd.Series()
    )
    kinds = _counts(found["kind"]) if len(found) else {}
    metrics = {
        "human_revocations": kinds.get("human_revocation", 0),
        "cascade_revocations": kinds.get("cascade_revocation", 0),
        "human_denials": kinds.get("human_denial", 0),
        "policy_denials": kinds.get("policy_denial", 0),
        "blocked_actions": kinds.get("blocked_action", 0),
        "agent_suspensions": kinds.get("agent_suspended", 0),
        "events_by_kind": kinds,
        "anomaly_episodes_answered": len(answered),
        "anomaly_episodes_unanswered": len(unanswered),
        "response": _percentiles(times),
        "answer_at_least": answer_at_least,
    }
    summary = (
        f"{metrics['human_revocations']} human revocations, {metrics['human_denials']} human denials, "
        f"{metrics['blocked_actions']} blocked actions, {metrics['agent_suspensions']} suspensions; "
        f"{len(answered)} anomaly episodes answered"
    )
    if len(answered):
        summary += f" (median {metrics['response']['p50_seconds']:g}s to intervention)"
    if len(unanswered):
        summary += f", {len(unanswered)} unanswered ({len(must)} of severity {answer_at_least} or above)"
    return _result(ds, 9, must.empty, summary, evidence, metrics)


# ── 10. retention ────────────────────────────────────────────────────────────


def check_retention(ds: Dataset, *, review_start: Any = None, review_end: Any = None) -> CheckResult:
    """The log covers the review period and has no seq gaps, duplicates or missing head.

    A chain that starts at seq 1 holds everything since its first event, so it covers any period
    that starts earlier; one that does not start at seq 1 must reach back to ``review_start``.
    The end is covered when the log was read (``as_of``: export or load time) after ``review_end``.
    """
    start = to_utc(review_start) if review_start is not None else None
    end = to_utc(review_end) if review_end is not None else None
    rows: list[dict[str, Any]] = []
    audit = ds.audit
    heads: dict[str, int] = {}
    for developer_id, seqs in audit.groupby("developer_id", sort=True)["seq"]:
        values = np.sort(seqs.to_numpy(dtype=np.int64))
        heads[str(developer_id)] = int(values[0])
        if values[0] != 1:
            rows.append(
                {
                    "seq": int(values[0]),
                    "developer_id": developer_id,
                    "problem": "head_missing",
                    "detail": f"the chain starts at seq {values[0]}: entries 1..{values[0] - 1} are gone",
                }
            )
        steps = np.diff(values)
        for index in np.flatnonzero(steps > 1):
            low, high = int(values[index]), int(values[index + 1])
            rows.append(
                {
                    "seq": low + 1,
                    "developer_id": developer_id,
                    "problem": "seq_gap",
                    "detail": f"seq {low + 1}..{high - 1} missing ({high - low - 1} entries)",
                }
            )
        for index in np.flatnonzero(steps == 0):
            rows.append(
                {
                    "seq": int(values[index]),
                    "developer_id": developer_id,
                    "problem": "duplicate_seq",
                    "detail": f"seq {values[index]} appears more than once",
                }
            )
        if start is not None and values[0] != 1:
            first_at = audit.loc[seqs.index, "timestamp"].min()
            if first_at > start:
                rows.append(
                    {
                        "seq": int(values[0]),
                        "developer_id": developer_id,
                        "problem": "period_start_not_covered",
                        "detail": f"the oldest entry left is from {first_at.isoformat()}, after the review "
                        f"start {start.isoformat()}",
                    }
                )
    if end is not None and ds.as_of < end:
        rows.append(
            {
                "seq": None,
                "developer_id": None,
                "problem": "period_end_not_covered",
                "detail": f"the log was read at {ds.as_of.isoformat()}, before the review end "
                f"{end.isoformat()}",
            }
        )
    evidence = _frame(rows, ["seq", "developer_id", "problem", "detail"])
    first = audit["timestamp"].min() if len(audit) else None
    last = audit["timestamp"].max() if len(audit) else None
    in_period = audit["timestamp"].between(
        start if start is not None else pd.Timestamp.min.tz_localize("UTC"),
        end if end is not None else pd.Timestamp.max.tz_localize("UTC"),
    )
    metrics = {
        "entries": len(audit),
        "first_entry_at": first,
        "last_entry_at": last,
        "span_days": float(_seconds(last - first) / 86400) if first is not None else 0.0,
        "review_start": start,
        "review_end": end,
        "entries_in_period": int(in_period.sum()),
        "chain_heads": heads,
        "problems": _problem_counts(evidence),
    }
    if evidence.empty:
        summary = (
            f"{len(audit)} entries, complete from seq 1 with no gaps, spanning "
            f"{metrics['span_days']:.1f} days"
        )
        if start is not None or end is not None:
            summary += f"; {metrics['entries_in_period']} in the review period"
    else:
        summary = "the log is not complete: " + _listing(metrics["problems"])
    return _result(ds, 10, evidence.empty, summary, evidence, metrics)


# ── 11. anomalies ────────────────────────────────────────────────────────────


def _rolling_counts(
    codes: np.ndarray, stamps_ms: np.ndarray, window_ms: int
) -> tuple[np.ndarray, np.ndarray]:
    """For rows sorted by (code, time): how many rows of the same code fall in (t - window, t],
    and the index where that window starts."""
    span = int(stamps_ms.max()) + window_ms + 1 if len(stamps_ms) else 1
    if len(codes) and int(codes.max()) * span < 2**62:
        keys = codes.astype(np.int64) * span + stamps_ms
        starts = np.searchsorted(keys, keys - window_ms, side="right")
    else:  # too many codes to pack into one key: per code
        starts = np.empty(len(codes), dtype=np.int64)
        bounds = np.flatnonzero(np.diff(codes)) + 1
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(codes)], strict=True):
            part = stamps_ms[lo:hi]
            starts[lo:hi] = lo + np.searchsorted(part, part - window_ms, side="right")
    return np.arange(len(codes)) - starts + 1, starts


def _high_frequency(acts: pd.DataFrame, per_minute: int) -> pd.DataFrame:
    if acts.empty:
        return acts.assign(type=[], severity=[], detail=[])
    order = acts.sort_values(["agent_id", "timestamp", "seq"], kind="stable")
    codes, _ = pd.factorize(order["agent_id"].astype(object))
    base = order["timestamp"].min()
    stamps = ((order["timestamp"] - base).dt.total_seconds() * 1000).round().to_numpy(dtype=np.int64)
    counts, starts = _rolling_counts(codes.astype(np.int64), stamps, 60_000)
    over = counts > per_minute
    if not over.any():
        return order.iloc[0:0].assign(type=[], severity=[], detail=[])
    index = np.arange(len(order))
    marks = np.zeros(len(order) + 1, dtype=np.int64)
    np.add.at(marks, starts[over], 1)
    np.add.at(marks, index[over] + 1, -1)
    marked = np.cumsum(marks)[:-1] > 0
    episode = np.cumsum(marked & ~np.r_[False, marked[:-1]])
    peak = pd.Series(counts[over]).groupby(episode[over]).max()
    peaks = pd.Series(episode[marked]).map(peak).to_numpy()
    flagged = order.loc[marked].copy()
    flagged["type"] = "high_frequency"
    flagged["severity"] = np.select(
        [peaks >= 5 * per_minute, peaks >= 2 * per_minute], ["critical", "high"], "medium"
    )
    flagged["detail"] = [f"{p} actions by the agent within 60 s (threshold {per_minute})" for p in peaks]
    return flagged


def _off_hours(acts: pd.DataFrame, off_hours: tuple[int, int], tz: str, burst: int) -> pd.DataFrame:
    start, end = off_hours
    local = acts["timestamp"].dt.tz_convert(tz)
    hour = local.dt.hour
    off = ((hour >= start) | (hour < end)) if start > end else ((hour >= start) & (hour < end))
    flagged = acts.loc[off].copy()
    if flagged.empty:
        return flagged.assign(type=[], severity=[], detail=[])
    night = (local[off] - pd.Timedelta(hours=start)).dt.floor("D")
    keys = pd.DataFrame({"agent": flagged["agent_id"].astype(object), "night": night})
    size = keys.groupby(["agent", "night"], dropna=False)["agent"].transform("size")
    flagged["type"] = "off_hours_activity"
    flagged["severity"] = np.where(size.to_numpy() >= burst, "medium", "low")
    flagged["detail"] = [
        f"at {t.tz_convert(tz).strftime('%H:%M')} {tz}, outside {start:02d}:00-{end:02d}:00 hours; "
        f"{n} off-hours actions by the agent that night"
        for t, n in zip(flagged["timestamp"], size, strict=True)
    ]
    return flagged


def _firsts_after_baseline(acts: pd.DataFrame, column: str, baseline: int) -> pd.DataFrame:
    order = acts.sort_values("seq", kind="stable")
    agent = order["agent_id"].astype(object)
    prior = order.groupby(agent, sort=False).cumcount()
    first = ~pd.DataFrame({"a": agent, "v": order[column].astype(object)}).duplicated()
    return order.loc[first & (prior >= baseline)]


def detect_anomalies(
    ds: Dataset,
    *,
    off_hours: tuple[int, int] = (22, 6),
    high_frequency_per_minute: int = 30,
    baseline_actions: int = 20,
    off_hours_burst: int = 5,
    tz: str = "UTC",
) -> CheckResult:
    """The protocol's five anomaly types over the agents' actions, each with a severity.

    - ``high_frequency``: more than ``high_frequency_per_minute`` actions by one agent within 60 s;
      every action of such a window is listed; medium, high at 2x, critical at 5x the threshold.
    - ``off_hours_activity``: an action between ``off_hours`` (start, end hour, wrapping midnight,
      in ``tz``); low, medium when the agent made ``off_hours_burst`` or more that night.
    - ``unusual_scope_access``: a scope outside the action's grant (high), or a scope the agent had
      never used, after a baseline of ``baseline_actions`` scoped actions (medium).
    - ``new_principal``: the agent acts for a principal it never served, after a baseline of
      ``baseline_actions`` actions (low).
    - ``cascade_delegation``: a grant at depth limit - 1 (medium) or at the limit (high), over it
      (critical).

    Passes when nothing is medium or above.
    """
    threshold = int(high_frequency_per_minute)
    acts = _actions(ds, ["seq", "developer_id", "agent_id", "principal_id", "grant_id", "timestamp", "scope"])
    found = [_high_frequency(acts, threshold), _off_hours(acts, off_hours, tz, off_hours_burst)]
    scoped = acts.loc[acts["scope"].notna()]
    if len(scoped):
        lookup = _grant_lookup(ds)
        pairs = scoped[["grant_id", "scope"]].astype(object).drop_duplicates()
        outside = {
            (g, s)
            for g, s in pairs.itertuples(index=False)
            if g in lookup.index and _judge_scope(s, lookup.at[g, "scopes"])[0] is not None
        }
        keys = pd.Series(
            list(zip(scoped["grant_id"].astype(object), scoped["scope"].astype(object), strict=True)),
            index=scoped.index,
        )
        beyond = scoped.loc[keys.isin(outside)].assign(type="unusual_scope_access", severity="high")
        beyond["detail"] = [f"scope {s} is outside the grant's scopes" for s in beyond["scope"]]
        new = _firsts_after_baseline(scoped, "scope", baseline_actions)
        new = new.loc[~new.index.isin(beyond.index)].assign(type="unusual_scope_access", severity="medium")
        new["detail"] = [
            f"first use of {s} by the agent, after {baseline_actions}+ scoped actions" for s in new["scope"]
        ]
        found += [beyond, new]
    principals = _firsts_after_baseline(acts, "principal_id", baseline_actions).assign(
        type="new_principal", severity="low"
    )
    principals["detail"] = [
        f"first action for principal {p}, after {baseline_actions}+ actions for others"
        for p in principals["principal_id"]
    ]
    found.append(principals)
    found.append(_cascade(ds))
    columns = [
        "seq",
        "type",
        "severity",
        "developer_id",
        "agent_id",
        "principal_id",
        "grant_id",
        "timestamp",
        "detail",
    ]
    parts = [f[columns] for f in found if len(f)]
    evidence = pd.concat(parts, ignore_index=True) if parts else _frame([], columns)
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    serious = evidence.loc[evidence["severity"].map(rank) >= rank["medium"]] if len(evidence) else evidence
    metrics = {
        "anomalies": len(evidence),
        "by_type": {t: int((evidence["type"] == t).sum()) for t in ANOMALY_TYPES}
        if len(evidence)
        else dict.fromkeys(ANOMALY_TYPES, 0),
        "by_severity": {s: int((evidence["severity"] == s).sum()) for s in SEVERITIES}
        if len(evidence)
        else dict.fromkeys(SEVERITIES, 0),
        "agents_flagged": int(serious["agent_id"].nunique()) if len(serious) else 0,
        "thresholds": {
            "off_hours": list(off_hours),
            "tz": tz,
            "high_frequency_per_minute": threshold,
            "baseline_actions": baseline_actions,
            "off_hours_burst": off_hours_burst,
        },
    }
    if evidence.empty:
        summary = f"no anomalies in {len(acts)} actions"
    else:
        severities = ", ".join(f"{s} {n}" for s, n in metrics["by_severity"].items() if n)
        types = ", ".join(f"{t} {n}" for t, n in metrics["by_type"].items() if n)
        summary = f"{len(evidence)} anomalies ({severities}): {types}"
    return _result(ds, 11, serious.empty, summary, evidence, metrics)


def _cascade(ds: Dataset) -> pd.DataFrame:
    limit = _depth_limit(ds)
    grants = ds.grants
    depth = grants["delegation_depth"]
    deep = grants.loc[(depth >= 1) & (depth >= limit - 1)].copy()
    if deep.empty:
        return deep.assign(seq=[], type=[], severity=[], timestamp=[], detail=[])
    level = deep["delegation_depth"].to_numpy()
    deep["severity"] = np.select([level > limit, level == limit], ["critical", "high"], "medium")
    deep["type"] = "cascade_delegation"
    events = _grant_event_seq(ds)
    deep["seq"] = safe_map(deep["grant_id"], events)
    deep["timestamp"] = deep["issued_at"]
    deep["detail"] = [f"delegation depth {d} with a limit of {limit}" for d in level]
    return deep


# ── all of them ──────────────────────────────────────────────────────────────


def run_all(
    ds: Dataset,
    *,
    review_start: Any = None,
    review_end: Any = None,
    max_ttl: Any = "24h",
    unused_days: float = 30,
    cache_window: Any = "0s",
    off_hours: tuple[int, int] = (22, 6),
    high_frequency_per_minute: int = 30,
) -> list[CheckResult]:
    """Checks 1 to 11 in order. ``review_end`` (else ``ds.as_of``) is also the instant grant
    hygiene is judged at."""
    anomalies = detect_anomalies(ds, off_hours=off_hours, high_frequency_per_minute=high_frequency_per_minute)
    return [
        check_integrity(ds),
        check_provenance(ds),
        check_scope(ds),
        check_grant_window(ds, cache_window=cache_window),
        check_after_revocation(ds, cache_window=cache_window),
        revocation_latency(ds, cache_window=cache_window),
        check_delegation(ds),
        check_grant_hygiene(ds, max_ttl=max_ttl, unused_days=unused_days, as_of=review_end),
        oversight_evidence(ds, anomalies=anomalies.evidence),
        check_retention(ds, review_start=review_start, review_end=review_end),
        anomalies,
    ]

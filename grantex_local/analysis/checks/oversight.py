"""Check 9, oversight evidence: people intervened (revocations, denials, suspensions, blocked
actions), and every serious anomaly was answered by one.

Why it imports :mod:`.anomalies`: the anomalies are what oversight must answer; by default this
check detects them itself (all of them, not check 11's capped evidence), and :func:`~.run_all`
hands it the ones check 11 found instead.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..engines import EngineDataset, engine_dataset
from ..frames import Dataset
from .anomalies import _detect
from .base import SEVERITIES, CheckResult, _counts, _frame, _percentiles, _result, _seconds, consent_kind
from .sql import agent_action, audit_order, like_audit, parse_json_once

HUMAN_INTERVENTIONS = (
    "human_revocation",
    "cascade_revocation",
    "human_token_revocation",
    "human_denial",
    "agent_suspended",
    "agent_deleted",
)


OVERSIGHT_ACTIONS = (
    "grantex.grant.revoked",
    "grantex.token.revoked",
    "grantex.consent.denied",
    "grantex.agent.suspended",
    "grantex.agent.deleted",
    "grantex.token.reuse_detected",
)

LIFECYCLE = f"""
SELECT seq, developer_id, agent_id, grant_id, action, status, timestamp, metadata FROM audit
WHERE action IN ({", ".join(f"'{a}'" for a in OVERSIGHT_ACTIONS)})
{audit_order('')}
"""
"""The oversight events (few), with their metadata as JSON text: the kind of intervention
(who revoked, who denied) is read from it in Python, the dialects' JSON paths differing."""

BLOCKED = f"""
SELECT a.seq, a.developer_id, a.agent_id, a.grant_id, a.action, a.status, a.timestamp FROM audit a
WHERE {agent_action('a')} AND a.status = 'blocked'
{audit_order('a')}
"""
"""The agents' actions the ledger refused: oversight working."""


def interventions(ds: Dataset | EngineDataset) -> pd.DataFrame:
    """Every oversight event in the log, with its ``kind`` and whether a person made it."""
    with engine_dataset(ds) as eds:
        life = like_audit(eds.engine.sql(LIFECYCLE))
        blocked = like_audit(eds.engine.sql(BLOCKED)).assign(kind="blocked_action")
    metas = parse_json_once(life["metadata"])
    life["kind"] = [_intervention_kind(a, m) for a, m in zip(life["action"], metas, strict=True)]
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
    ds: Dataset | EngineDataset, *, anomalies: pd.DataFrame | None = None, answer_at_least: str = "high"
) -> CheckResult:
    """Human revocations, denials, blocked actions, and the time from an anomaly to the next human
    intervention on the same agent. Fails when an anomaly of severity ``answer_at_least`` or above
    was never followed by one."""
    with engine_dataset(ds) as eds:  # one engine for both when ds is a loaded Dataset
        found = interventions(eds)
        if anomalies is None:  # every anomaly, not the first EVIDENCE_LIMIT: each may need an answer
            anomalies = _detect(eds).evidence
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
    metrics: dict[str, Any] = {
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

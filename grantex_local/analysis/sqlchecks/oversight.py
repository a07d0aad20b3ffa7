"""Check 9 (oversight evidence) in SQL: the oversight events and blocked actions come from the
engine (the lifecycle ones with their metadata text, parsed in Python once per distinct text, for
the kind of intervention); the anomalies are check 11's SQL detectors; the matching of anomalies
to the next human intervention is pandas over those two small frames, as today.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from ..checks.base import SEVERITIES, CheckResult, _counts, _frame, _percentiles, _result, _seconds
from ..checks.oversight import HUMAN_INTERVENTIONS, _intervention_kind
from ..checks.sql import agent_action
from ..engines import Engine, EngineDataset
from .anomalies import sql_detect_anomalies
from .hygiene import like_audit

OVERSIGHT_ACTIONS = ("grantex.grant.revoked", "grantex.token.revoked", "grantex.consent.denied",
                     "grantex.agent.suspended", "grantex.agent.deleted", "grantex.token.reuse_detected")

LIFECYCLE = f"""
SELECT seq, developer_id, agent_id, grant_id, action, status, timestamp, metadata FROM audit
WHERE action IN ({", ".join(f"'{a}'" for a in OVERSIGHT_ACTIONS)})
ORDER BY seq ASC NULLS FIRST, developer_id ASC NULLS LAST
"""

BLOCKED = f"""
SELECT a.seq, a.developer_id, a.agent_id, a.grant_id, a.action, a.status, a.timestamp FROM audit a
WHERE {agent_action('a')} AND a.status = 'blocked'
ORDER BY a.seq ASC NULLS FIRST, a.developer_id ASC NULLS LAST
"""


def sql_interventions(engine: Engine) -> pd.DataFrame:
    """The pandas ``interventions`` from the engine: every oversight event with its ``kind``."""
    life = like_audit(engine.sql(LIFECYCLE))
    parsed = {t: json.loads(t) for t in set(life["metadata"].dropna())}
    life["kind"] = [_intervention_kind(a, parsed.get(m) if isinstance(m, str) else None)
                    for a, m in zip(life["action"], life["metadata"], strict=True)]
    blocked = like_audit(engine.sql(BLOCKED)).assign(kind="blocked_action")
    out = (
        pd.concat([life.drop(columns=["metadata"]), blocked], ignore_index=True)
        if len(blocked)
        else life.drop(columns=["metadata"]).reset_index(drop=True)
    )
    out["human"] = out["kind"].isin(HUMAN_INTERVENTIONS)
    return out.sort_values("seq", kind="stable").reset_index(drop=True)


def sql_oversight_evidence(
    eds: EngineDataset, *, anomalies: pd.DataFrame | None = None, answer_at_least: str = "high"
) -> CheckResult:
    found = sql_interventions(eds.engine)
    if anomalies is None:
        anomalies = sql_detect_anomalies(eds).evidence
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
    return _result(eds.ds, 9, must.empty, summary, evidence, metrics)

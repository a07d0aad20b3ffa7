"""Check 9, oversight evidence: people intervened (revocations, denials, suspensions, blocked
actions), and every serious anomaly was answered by one.

Why it imports :mod:`.anomalies`: the anomalies are what oversight must answer, all of them, not
check 11's capped evidence. They are millions of rows in a large log, so they stay in the engine
(:func:`.anomalies.anomaly_set`, registered once per dataset: in :func:`~.run_all` by check 11)
and the matching to interventions and the grouping into episodes are SQL; Python sees the
episodes, a few hundred.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyarrow as pa

from ..engines import EngineDataset, engine_dataset
from ..frames import Dataset, empty_frame
from .anomalies import anomaly_set
from .base import SEVERITIES, CheckResult, _counts, _frame, _percentiles, _result, _seconds, consent_kind
from .sql import agent_action, arrow_table, audit_order, like_audit, parse_json_once

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


EPISODES = """
{anomalies},
notable AS (
  SELECT seq, developer_id, agent_id, timestamp, type, {rank} AS severity_rank FROM anomalies
  WHERE seq IS NOT NULL AND developer_id IS NOT NULL AND agent_id IS NOT NULL AND {rank} >= {least}
),
events AS (
  SELECT seq, developer_id, agent_id, timestamp, type, severity_rank, 1 AS side FROM notable
  UNION ALL
  SELECT seq, developer_id, agent_id, timestamp, '' AS type, 0 AS severity_rank, 0 AS side FROM check9_human
),
answered AS (
  SELECT e.*, MIN(CASE WHEN e.side = 0 THEN e.seq END) OVER (
    PARTITION BY e.developer_id, e.agent_id ORDER BY e.seq ASC NULLS FIRST, e.side ASC
    ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) AS answer
  FROM events e
)
SELECT developer_id, agent_id, COALESCE(answer, -1) AS answer, type, MIN(seq) AS seq,
       min_by(timestamp, seq) AS timestamp, COUNT(*) AS anomalies, MAX(severity_rank) AS severity_rank
FROM answered WHERE side = 1
GROUP BY developer_id, agent_id, COALESCE(answer, -1), type
ORDER BY seq ASC NULLS FIRST, developer_id ASC NULLS LAST, agent_id ASC NULLS LAST, answer ASC NULLS LAST,
         type ASC NULLS LAST
"""
"""Each notable anomaly's answer, the smallest human intervention seq above its own on the same
(developer, agent) (the legacy ``merge_asof``: forward, no exact match), as a MIN over the
following rows of one window: at equal seq an intervention sorts before the anomaly, so never
answers it, and the order among equal anomalies changes no answer. Then the episodes (an
agent's anomalies one intervention answered, or none did) by type: few rows, whatever the log's
size. Types are joined in Python: no string aggregate reads the same in both dialects."""

RANK = "CASE severity " + " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(SEVERITIES)) + " END"

HANDED = ("WITH anomalies AS "
          "(SELECT seq, developer_id, agent_id, timestamp, severity, type FROM check9_anomalies)")


def _register_handed(eds: EngineDataset, anomalies: pd.DataFrame) -> str:
    """A caller's anomaly frame as the anomaly set: the same SQL then matches it."""
    seqs = pd.to_numeric(anomalies["seq"], errors="coerce")
    eds.engine.register_arrow("check9_anomalies", arrow_table({
        "seq": ([None if pd.isna(v) else int(v) for v in seqs], pa.int64()),
        "developer_id": (anomalies["developer_id"], pa.string()),
        "agent_id": (anomalies["agent_id"], pa.string()),
        "timestamp": (anomalies["timestamp"], pa.timestamp("us", tz="UTC")),
        "severity": (anomalies["severity"], pa.string()),
        "type": (anomalies["type"], pa.string()),
    }))
    return HANDED


def _episodes(eds: EngineDataset, found: pd.DataFrame, anomalies: str) -> list[dict[str, Any]]:
    """The anomaly episodes (first seq, its instant, count, peak severity, types, the answer's
    seq), matched and grouped in the engine; Python merges the per-type rows."""
    human = found.loc[found["human"] & found["agent_id"].notna() & found["seq"].notna()]
    eds.engine.register_arrow("check9_human", arrow_table({
        "seq": ([int(v) for v in human["seq"]], pa.int64()),
        "developer_id": (human["developer_id"], pa.string()),
        "agent_id": (human["agent_id"], pa.string()),
        "timestamp": (human["timestamp"], pa.timestamp("us", tz="UTC")),
    }))
    rows = eds.engine.sql(EPISODES.format(anomalies=anomalies, rank=RANK, least=SEVERITIES.index("medium")))
    episodes: dict[tuple[Any, Any, int], dict[str, Any]] = {}
    for r in rows.itertuples(index=False):
        key = (r.developer_id, r.agent_id, int(r.answer))
        e = episodes.get(key)
        if e is None:
            e = episodes[key] = {"seq": int(r.seq), "timestamp": r.timestamp, "anomalies": 0, "rank": 0,
                                 "types": set()}
        elif int(r.seq) < e["seq"]:
            e["seq"], e["timestamp"] = int(r.seq), r.timestamp
        e["anomalies"] += int(r.anomalies)
        e["rank"] = max(e["rank"], int(r.severity_rank))
        e["types"].add(str(r.type))
    answers: dict[tuple[Any, Any, int], tuple[Any, Any]] = {}
    for d, a, q, k, t in zip(human["developer_id"].astype(object), human["agent_id"].astype(object),
                             human["seq"], human["kind"], human["timestamp"], strict=True):
        answers.setdefault((d, a, int(q)), (k, t))
    unit = empty_frame("audit")["timestamp"].dtype.unit  # the instant as the audit frame holds it
    out = []
    ordered = sorted(episodes.items(), key=lambda i: (i[1]["seq"], i[0][0], i[0][1]))  # first seq, then who
    for (developer, agent, answer), e in ordered:
        answered = answer >= 0
        kind, at = answers[(developer, agent, answer)] if answered else (None, None)
        stamp = e["timestamp"] if pd.isna(e["timestamp"]) else pd.Timestamp(e["timestamp"]).as_unit(unit)
        out.append({
            "seq": e["seq"],
            "developer_id": developer,
            "agent_id": agent,
            "grant_id": None,
            "timestamp": stamp,
            "anomalies": e["anomalies"],
            "severity": SEVERITIES[e["rank"]],
            "anomaly_types": " ".join(sorted(e["types"])),
            "kind": "anomaly_response" if answered else "anomaly_unanswered",
            "intervention_seq": answer if answered else None,
            "intervention": str(kind) if answered else None,
            "response_seconds": float(_seconds(at - stamp)) if answered else None,
        })
    return out


def oversight_evidence(
    ds: Dataset | EngineDataset, *, anomalies: pd.DataFrame | None = None, answer_at_least: str = "high",
    thresholds: dict[str, Any] | None = None,
) -> CheckResult:
    """Human revocations, denials, blocked actions, and the time from an anomaly to the next human
    intervention on the same agent. Fails when an anomaly of severity ``answer_at_least`` or above
    was never followed by one.

    The anomalies are a frame a caller hands over, else every anomaly check 11 finds with
    ``thresholds`` (its keyword arguments; its defaults when None), read as SQL
    (:func:`.anomalies.anomaly_set`): never check 11's capped evidence, each may need an answer."""
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    with engine_dataset(ds) as eds:  # one engine for both when ds is a loaded Dataset
        found = interventions(eds)
        if anomalies is None:
            responses = _episodes(eds, found, anomaly_set(eds, **(thresholds or {})))
        elif len(anomalies):
            responses = _episodes(eds, found, _register_handed(eds, anomalies))
        else:
            responses = []
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

"""Check 11, anomalies: the protocol's five anomaly types (SPEC §13.3) over the agents' actions,
each with a severity; the thresholds are keyword arguments of :func:`detect_anomalies`.

What runs where, and why:

- ``high_frequency``: a GROUP BY (agent, minute) finds the agents with some minute and the one
  before it holding more than the threshold (a 60 s window (t - 60 s, t] spans at most two
  minutes, so no other agent can have one); only those agents' actions are fetched and the
  pandas rolling count and episode rule run on them. Episodes are runs of flagged rows in
  (agent, time, seq) order, and a run may cross from one agent to the next: the rows of agents
  not fetched are accounted for by breaking a run where the next fetched agent is not the next
  agent in the full order.
- ``off_hours_activity``: the engine's session clock is UTC in both engines and zone conversion
  is spelled differently (``AT TIME ZONE`` / ``from_utc_timestamp``), so SQL selects the UTC
  hours that can fall off hours under any offset the zone used over the log's span, and Python
  applies the exact local-time rule to those rows only.
- ``unusual_scope_access``: as check 3, the coverage rule judges each distinct (grant's scope
  set, scope) pair in Python; the first use of a scope after the baseline is a GROUP BY
  (agent, scope) MIN(seq) against the seq of the agent's baseline-th scoped action (one
  ROW_NUMBER window), joined back for the rows.
- ``new_principal``: the same first-after-baseline query over (agent, principal).
- ``cascade_delegation``: the grants table (small) and the first issue seq per grant.

Limit: the rows of an agent with a busy minute are all fetched (a busy agent's whole history),
since the rolling count and its episode rule run in Python.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ..engines import Engine, EngineDataset, engine_dataset
from ..frames import Dataset, safe_map
from .base import ANOMALY_TYPES, SEVERITIES, CheckResult, _depth_limit, _frame, _judge_scope, _result
from .sql import agent_action, audit_order, grant_event_seq, like_audit


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


ROW = "a.seq, a.developer_id, a.agent_id, a.principal_id, a.grant_id, a.timestamp, a.scope"
ORDER = audit_order("a")

ACTIONS = f"""
SELECT COUNT(*) AS actions, MIN(a.timestamp) AS first_at, MAX(a.timestamp) AS last_at
FROM audit a WHERE {agent_action('a')}
"""

AGENTS = f"SELECT DISTINCT a.agent_id FROM audit a WHERE {agent_action('a')}"

BUSY = f"""
WITH m AS (
  SELECT a.agent_id, date_trunc('minute', a.timestamp) AS minute, COUNT(*) AS n
  FROM audit a WHERE {agent_action('a')} AND a.timestamp IS NOT NULL
  GROUP BY a.agent_id, date_trunc('minute', a.timestamp)
)
SELECT DISTINCT m.agent_id FROM m LEFT JOIN m p
  ON m.agent_id IS NOT DISTINCT FROM p.agent_id AND p.minute = m.minute - INTERVAL '1' MINUTE
WHERE m.n + COALESCE(p.n, 0) > {{threshold}}
"""
"""Agents with more than the threshold in some minute and the minute before it together."""

BUSY_ROWS = f"""
SELECT {ROW} FROM audit a JOIN check11_busy b ON a.agent_id IS NOT DISTINCT FROM b.agent_id
WHERE {agent_action('a')}
{ORDER}
"""

OFF_ROWS = f"""
SELECT {ROW} FROM audit a
WHERE {agent_action('a')} AND EXTRACT(HOUR FROM a.timestamp) IN ({{hours}})
{ORDER}
"""

SCOPE_PAIRS = f"""
SELECT DISTINCT g.scopes_key, a.scope
FROM audit a JOIN check11_grants g ON a.grant_id = g.grant_id
WHERE {agent_action('a')} AND a.scope IS NOT NULL
"""

BEYOND = f"""
SELECT {ROW} FROM audit a
JOIN check11_grants g ON a.grant_id = g.grant_id
JOIN check11_outside o ON g.scopes_key = o.scopes_key AND a.scope = o.scope
WHERE {agent_action('a')}
{ORDER}
"""

FIRSTS = f"""
WITH s AS (
  SELECT {ROW} FROM audit a WHERE {agent_action('a')} AND a.agent_id IS NOT NULL {{only_scoped}}
),
firsts AS (SELECT agent_id, {{column}} AS value, MIN(seq) AS seq FROM s GROUP BY agent_id, {{column}}),
marks AS (
  SELECT agent_id, seq AS mark FROM (
    SELECT agent_id, seq, ROW_NUMBER() OVER (PARTITION BY agent_id ORDER BY seq ASC NULLS FIRST) AS n FROM s
  ) r WHERE n = {{baseline}}
)
SELECT a.seq, a.developer_id, a.agent_id, a.principal_id, a.grant_id, a.timestamp, a.scope
FROM s a
JOIN firsts f ON a.agent_id = f.agent_id AND a.{{column}} IS NOT DISTINCT FROM f.value AND a.seq = f.seq
JOIN marks m ON a.agent_id = m.agent_id
WHERE a.seq > m.mark
{ORDER}
"""
"""The first action of an agent for each value of ``column`` (a scope, a principal) that came
after ``baseline`` earlier actions of the agent: its seq is above the baseline-th one's."""

FIRSTS_NO_BASELINE = """
WITH s AS (
  SELECT {row} FROM audit a WHERE {agent} AND a.agent_id IS NOT NULL {only_scoped}
),
firsts AS (SELECT agent_id, {column} AS value, MIN(seq) AS seq FROM s GROUP BY agent_id, {column})
SELECT a.seq, a.developer_id, a.agent_id, a.principal_id, a.grant_id, a.timestamp, a.scope
FROM s a
JOIN firsts f ON a.agent_id = f.agent_id AND a.{column} IS NOT DISTINCT FROM f.value AND a.seq = f.seq
{order}
"""

COLUMNS = [
    "seq", "type", "severity", "developer_id", "agent_id", "principal_id", "grant_id", "timestamp", "detail",
]


def _scopes_key(scopes: Any) -> str:
    """A grant's scope list as canonical JSON text: grants with the same scopes share one key, so
    the coverage rule judges each distinct (scope set, scope) pair once, however many grants."""
    return json.dumps(list(scopes) if isinstance(scopes, list | tuple) else [], separators=(",", ":"))


def _empty_flags(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.iloc[0:0].assign(type=[], severity=[], detail=[])


def _agent_order(agents: pd.Series) -> dict[Any, int]:
    """Each agent's place in the pandas sort (text ascending, a missing agent last)."""
    ordered = pd.Series(agents.astype(object).unique()).astype(pd.StringDtype(na_value=np.nan))
    ordered = ordered.sort_values(kind="stable", na_position="last").reset_index(drop=True)
    return {(None if pd.isna(a) else a): i for i, a in enumerate(ordered)}


def _high_frequency(engine: Engine, per_minute: int, base: pd.Timestamp) -> pd.DataFrame:
    busy = engine.sql(BUSY.format(threshold=int(per_minute)))
    if busy.empty:
        return pd.DataFrame()
    engine.register_arrow("check11_busy", pa.table({"agent_id": pa.array(
        [None if pd.isna(a) else a for a in busy["agent_id"]], type=pa.string())}))
    rows = like_audit(engine.sql(BUSY_ROWS))
    place = _agent_order(engine.sql(AGENTS)["agent_id"])
    order = rows.sort_values(["agent_id", "timestamp", "seq"], kind="stable")
    codes, _ = pd.factorize(order["agent_id"].astype(object))
    stamps = ((order["timestamp"] - base).dt.total_seconds() * 1000).round().to_numpy(dtype=np.int64)
    counts, starts = _rolling_counts(codes.astype(np.int64), stamps, 60_000)
    over = counts > per_minute
    if not over.any():
        return _empty_flags(order)
    index = np.arange(len(order))
    marks = np.zeros(len(order) + 1, dtype=np.int64)
    np.add.at(marks, starts[over], 1)
    np.add.at(marks, index[over] + 1, -1)
    marked = np.cumsum(marks)[:-1] > 0
    rank = np.array([place[None if pd.isna(a) else a] for a in order["agent_id"]], dtype=np.int64)
    joined = np.r_[False, (rank[1:] == rank[:-1]) | (rank[1:] == rank[:-1] + 1)]
    before = np.r_[False, marked[:-1]] & joined
    episode = np.cumsum(marked & ~before)
    peak = pd.Series(counts[over]).groupby(episode[over]).max()
    peaks = pd.Series(episode[marked]).map(peak).to_numpy()
    flagged = order.loc[marked].copy()
    flagged["type"] = "high_frequency"
    flagged["severity"] = np.select([peaks >= 5 * per_minute, peaks >= 2 * per_minute], ["critical", "high"],
                                    "medium")
    flagged["detail"] = [f"{p} actions by the agent within 60 s (threshold {per_minute})" for p in peaks]
    return flagged


def _utc_hours(off_hours: tuple[int, int], tz: str, first: pd.Timestamp, last: pd.Timestamp) -> list[int]:
    """The UTC hours that can hold an off-hours local time, under every offset ``tz`` used
    between ``first`` and ``last``."""
    start, end = off_hours
    off = {h for h in range(24) if ((h >= start) or (h < end)) if start > end} | {
        h for h in range(24) if start <= end and start <= h < end}
    instants = pd.date_range(first.floor("D") - pd.Timedelta(days=1), last.ceil("D") + pd.Timedelta(days=1),
                             freq="h", tz="UTC")
    offsets = {int(t.tz_convert(tz).utcoffset().total_seconds() // 60) for t in instants}
    hours = set()
    for hour in range(24):
        for offset in offsets:
            if any(((hour * 60 + minute + offset) % 1440) // 60 in off for minute in range(0, 60)):
                hours.add(hour)
    return sorted(hours)


def _off_hours(engine: Engine, off_hours: tuple[int, int], tz: str, burst: int, first: pd.Timestamp,
               last: pd.Timestamp) -> pd.DataFrame:
    hours = _utc_hours(off_hours, tz, first, last)
    if not hours:
        return pd.DataFrame()
    acts = like_audit(engine.sql(OFF_ROWS.format(hours=", ".join(str(h) for h in hours))))
    start, end = off_hours
    local = acts["timestamp"].dt.tz_convert(tz)
    hour = local.dt.hour
    off = ((hour >= start) | (hour < end)) if start > end else ((hour >= start) & (hour < end))
    flagged = acts.loc[off].copy()
    if flagged.empty:
        return _empty_flags(flagged)
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


def _firsts(engine: Engine, column: str, baseline: int, *, scoped: bool) -> pd.DataFrame:
    only = "AND a.scope IS NOT NULL" if scoped else ""
    if baseline > 0:
        sql = FIRSTS.format(only_scoped=only, column=column, baseline=int(baseline))
    else:
        sql = FIRSTS_NO_BASELINE.format(row=ROW, agent=agent_action("a"), only_scoped=only, column=column,
                                        order=ORDER)
    rows = like_audit(engine.sql(sql))
    return rows.drop_duplicates(["agent_id", column]).reset_index(drop=True)


def _cascade(eds: EngineDataset) -> pd.DataFrame:
    limit = _depth_limit(eds.ds)
    grants = eds.grants
    depth = grants["delegation_depth"]
    deep = grants.loc[(depth >= 1) & (depth >= limit - 1)].copy()
    if deep.empty:
        return deep.assign(seq=[], type=[], severity=[], timestamp=[], detail=[])
    level = deep["delegation_depth"].to_numpy()
    deep["severity"] = np.select([level > limit, level == limit], ["critical", "high"], "medium")
    deep["type"] = "cascade_delegation"
    deep["seq"] = safe_map(deep["grant_id"], grant_event_seq(eds))
    deep["timestamp"] = deep["issued_at"]
    deep["detail"] = [f"delegation depth {d} with a limit of {limit}" for d in level]
    return deep


def detect_anomalies(
    ds: Dataset | EngineDataset,
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
    with engine_dataset(ds) as eds:
        return _detect(
            eds, off_hours=off_hours, high_frequency_per_minute=high_frequency_per_minute,
            baseline_actions=baseline_actions, off_hours_burst=off_hours_burst, tz=tz,
        )


def _detect(
    eds: EngineDataset, *, off_hours: tuple[int, int], high_frequency_per_minute: int,
    baseline_actions: int, off_hours_burst: int, tz: str,
) -> CheckResult:
    threshold = int(high_frequency_per_minute)
    engine = eds.engine
    totals = engine.sql(ACTIONS)
    actions = int(totals["actions"].iloc[0])
    found: list[pd.DataFrame] = []
    if actions:
        first, last = totals["first_at"].iloc[0], totals["last_at"].iloc[0]
        found += [_high_frequency(engine, threshold, first),
                  _off_hours(engine, off_hours, tz, off_hours_burst, first, last)]
    lookup = eds.grants.drop_duplicates("grant_id").set_index("grant_id")
    keys = pd.DataFrame({"grant_id": lookup.index.astype(object),
                         "scopes_key": [_scopes_key(s) for s in lookup["scopes"]]})
    engine.register_arrow("check11_grants", pa.table({
        "grant_id": pa.array(keys["grant_id"].tolist(), type=pa.string()),
        "scopes_key": pa.array(keys["scopes_key"].tolist(), type=pa.string())}))
    pairs = engine.sql(SCOPE_PAIRS)
    outside = [(k, s) for k, s in zip(pairs["scopes_key"], pairs["scope"], strict=True)
               if _judge_scope(s, json.loads(k))[0] is not None]
    engine.register_arrow("check11_outside", pa.table({
        "scopes_key": pa.array([k for k, _ in outside], type=pa.string()),
        "scope": pa.array([s for _, s in outside], type=pa.string())}))
    beyond = like_audit(engine.sql(BEYOND)).assign(type="unusual_scope_access", severity="high")
    beyond["detail"] = [f"scope {s} is outside the grant's scopes" for s in beyond["scope"]]
    new = _firsts(engine, "scope", baseline_actions, scoped=True)
    flagged = set(zip(beyond["seq"], beyond["developer_id"].astype(object), strict=True))
    keep = [(s, d) not in flagged
            for s, d in zip(new["seq"], new["developer_id"].astype(object), strict=True)]
    new = new.loc[keep].assign(type="unusual_scope_access", severity="medium")
    new["detail"] = [f"first use of {s} by the agent, after {baseline_actions}+ scoped actions"
                     for s in new["scope"]]
    found += [beyond, new]
    principals = _firsts(engine, "principal_id", baseline_actions, scoped=False).assign(
        type="new_principal", severity="low")
    principals["detail"] = [f"first action for principal {p}, after {baseline_actions}+ actions for others"
                            for p in principals["principal_id"]]
    found.append(principals)
    found.append(_cascade(eds))
    parts = [f[COLUMNS] for f in found if len(f)]
    evidence = pd.concat(parts, ignore_index=True) if parts else _frame([], COLUMNS)
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    serious = evidence.loc[evidence["severity"].map(rank) >= rank["medium"]] if len(evidence) else evidence
    metrics: dict[str, Any] = {
        "anomalies": len(evidence),
        "by_type": {t: int((evidence["type"] == t).sum()) for t in ANOMALY_TYPES}
        if len(evidence) else dict.fromkeys(ANOMALY_TYPES, 0),
        "by_severity": {s: int((evidence["severity"] == s).sum()) for s in SEVERITIES}
        if len(evidence) else dict.fromkeys(SEVERITIES, 0),
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
        summary = f"no anomalies in {actions} actions"
    else:
        severities = ", ".join(f"{s} {n}" for s, n in metrics["by_severity"].items() if n)
        types = ", ".join(f"{t} {n}" for t, n in metrics["by_type"].items() if n)
        summary = f"{len(evidence)} anomalies ({severities}): {types}"
    return _result(eds.ds, 11, serious.empty, summary, evidence, metrics)

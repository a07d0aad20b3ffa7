"""Check 11, anomalies: the protocol's five anomaly types (SPEC §13.3) over the agents' actions,
each with a severity; the thresholds are keyword arguments of :func:`detect_anomalies`.

What runs where, and why:

- ``high_frequency``: SQL windows per agent over (time, seq): an action's count is its position
  minus the agent's actions at or before t - 60 s (a RANGE frame over the timestamp), it is
  flagged when an action over the threshold comes at or after it less than 60 s later (a MIN
  over the following rows), and flagged actions form runs. The runs (few) come to Python, which
  joins a run ending an agent's actions to one starting the next agent's (the rule always let an
  episode cross agents) and names each episode's severity from its peak.
- ``off_hours_activity``: zone conversion is spelled differently (``AT TIME ZONE`` /
  ``from_utc_timestamp``), so SQL counts actions per agent and UTC quarter hour in the UTC hours
  that can be off hours; Python judges each quarter hour in local time (every zone's offset is
  whole quarter hours) and counts each agent's night.
- ``unusual_scope_access``: as check 3, the coverage rule judges each distinct (grant's scope
  set, scope) pair in Python; the first use of a scope after the baseline is a GROUP BY
  (agent, scope) MIN(seq) against the seq of the agent's baseline-th scoped action (one
  ROW_NUMBER window), joined back for the rows.
- ``new_principal``: the same first-after-baseline query over (agent, principal).
- ``cascade_delegation``: the grants table (small) and the first issue seq per grant.

The evidence frame holds the first :data:`.base.EVIDENCE_LIMIT` rows (seq order), fetched with a
LIMIT per detector; the counts by type and severity, the summary and the verdict cover them all.
Check 9 needs every row, so the detection also leaves the whole set in the engine as SQL
(:func:`anomaly_set`: the bursts and off-hours actions read back through their small verdict
tables, the other detectors' few rows registered), once per dataset and thresholds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ..engines import Engine, EngineDataset, engine_dataset
from ..frames import Dataset, safe_map
from . import base
from .base import ANOMALY_TYPES, SEVERITIES, CheckResult, _depth_limit, _frame, _judge_scope, _result
from .sql import agent_action, arrow_table, audit_order, grant_event_seq, like_audit, scopes_key

ROW = "a.seq, a.developer_id, a.agent_id, a.principal_id, a.grant_id, a.timestamp, a.scope"
ORDER = audit_order("a")

ACTIONS = f"""
SELECT COUNT(*) AS actions, MIN(a.timestamp) AS first_at, MAX(a.timestamp) AS last_at
FROM audit a WHERE {agent_action('a')}
"""

AGENTS = f"""
SELECT a.agent_id, COUNT(*) AS actions FROM audit a
WHERE {agent_action('a')} AND a.timestamp IS NOT NULL
GROUP BY a.agent_id
"""
"""Each agent with timed actions, and how many: where its last row stands in the burst order."""

RUNS = f"""
WITH acts AS (
  SELECT a.seq, a.developer_id, a.agent_id, a.principal_id, a.grant_id, a.timestamp,
    ROW_NUMBER() OVER (PARTITION BY a.agent_id
                       ORDER BY a.timestamp ASC, a.seq ASC NULLS FIRST, a.developer_id ASC NULLS LAST) AS pos,
    COUNT(*) OVER (PARTITION BY a.agent_id ORDER BY a.timestamp ASC
                   RANGE BETWEEN UNBOUNDED PRECEDING AND INTERVAL '60' SECOND PRECEDING) AS earlier
  FROM audit a WHERE {agent_action('a')} AND a.timestamp IS NOT NULL
),
counted AS (SELECT c.*, c.pos - c.earlier AS n FROM acts c),
reach AS (
  SELECT c.*, MIN(CASE WHEN c.n > {{threshold}} THEN c.timestamp END) OVER (
    PARTITION BY c.agent_id ORDER BY c.pos ASC ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING) AS next_burst
  FROM counted c
),
marked AS (
  SELECT r.*, COALESCE(r.next_burst < r.timestamp + INTERVAL '60' SECOND, FALSE) AS marked FROM reach r
),
stepped AS (
  SELECT m.*, LAG(m.marked, 1, FALSE) OVER (PARTITION BY m.agent_id ORDER BY m.pos ASC) AS prev_marked
  FROM marked m
),
runs AS (
  SELECT s.*, COUNT(CASE WHEN s.marked AND NOT s.prev_marked THEN 1 END) OVER (
    PARTITION BY s.agent_id ORDER BY s.pos ASC ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS run
  FROM stepped s
)
"""
"""Every timed agent action with ``n``, the agent's actions in (t - 60 s, t] up to it in
(time, seq) order (its position minus the actions at or before t - 60 s), whether it lies in the
window of an action over the threshold (``marked``: such an action comes at or after it, less
than 60 s later) and ``run``, which run of marked actions of its agent it belongs to."""

RUN_SUMMARY = RUNS + """
SELECT agent_id, run, COUNT(*) AS actions, MAX(CASE WHEN n > {threshold} THEN n END) AS peak,
       MIN(pos) AS first_pos, MAX(pos) AS last_pos
FROM runs WHERE marked GROUP BY agent_id, run
"""

RUN_ROWS = RUNS + """
SELECT r.seq, r.developer_id, r.agent_id, r.principal_id, r.grant_id, r.timestamp, e.severity, e.peak
FROM runs r JOIN {runs_table} e ON r.agent_id IS NOT DISTINCT FROM e.agent_id AND r.run = e.run
WHERE r.marked
ORDER BY r.seq ASC NULLS FIRST, r.agent_id ASC NULLS LAST, r.timestamp ASC, r.developer_id ASC NULLS LAST
{limit}
"""
"""The first flagged actions in the evidence's order (seq, then the detector's (agent, time))."""

RUN_SET = """
SELECT r.seq, r.developer_id, r.agent_id, r.timestamp, e.severity, 'high_frequency' AS type
FROM runs r JOIN {runs_table} e ON r.agent_id IS NOT DISTINCT FROM e.agent_id AND r.run = e.run
WHERE r.marked
"""
"""Every flagged action of the anomaly set (after the ``RUNS`` CTEs): the rows, unordered."""

QUARTER = "FLOOR(EXTRACT(MINUTE FROM a.timestamp) / 15)"

OFF_BUCKETS = f"""
SELECT a.agent_id, date_trunc('hour', a.timestamp) AS hour, {QUARTER} AS quarter, COUNT(*) AS n
FROM audit a
WHERE {agent_action('a')} AND EXTRACT(HOUR FROM a.timestamp) IN ({{hours}})
GROUP BY a.agent_id, date_trunc('hour', a.timestamp), {QUARTER}
"""
"""Actions per agent and UTC quarter hour, in the UTC hours that can be off hours locally. Every
zone's offset is a whole number of quarter hours, so a quarter hour is one local hour and night."""

OFF_JOIN = f"""
FROM audit a JOIN {{off_table}} o ON a.agent_id IS NOT DISTINCT FROM o.agent_id
  AND date_trunc('hour', a.timestamp) = o.hour AND {QUARTER} = o.quarter
WHERE {agent_action('a')}
"""

OFF_ROWS = f"SELECT {ROW}, o.severity, o.night_actions" + OFF_JOIN + f"""{ORDER}
{{limit}}
"""

OFF_SET = ("SELECT a.seq, a.developer_id, a.agent_id, a.timestamp, o.severity, 'off_hours_activity' AS type"
           + OFF_JOIN)
"""Every off-hours action of the anomaly set: the rows, unordered."""

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


@dataclass
class _Found:
    """One detector's output: the first ``limit`` evidence rows in the evidence's order, and the
    counts over all of them (the evidence frame is capped, the metrics never are)."""

    head: pd.DataFrame
    by_severity: dict[str, int] = field(default_factory=dict)
    serious_agents: set[str] = field(default_factory=set)
    rows: str = ""
    """The detector's every row as a SELECT for the anomaly set (empty: it found none, or its
    rows are in the small table), so check 9 reads them in SQL rather than as a frame."""

    @classmethod
    def of(cls, frame: pd.DataFrame) -> _Found:
        """A detector whose evidence is small (fetched whole): its counts from the frame."""
        counts = {str(k): int(v) for k, v in frame["severity"].value_counts().items()} if len(frame) else {}
        rank = {s: i for i, s in enumerate(SEVERITIES)}
        serious = frame.loc[frame["severity"].map(rank) >= rank["medium"], "agent_id"] if len(frame) else []
        return cls(frame, counts, {str(a) for a in serious if pd.notna(a)})

    @property
    def total(self) -> int:
        return sum(self.by_severity.values())


def _agent_order(agents: pd.Series) -> list[Any]:
    """The agents in the detector's sort (text ascending, a missing agent last)."""
    ordered = pd.Series(agents.astype(object).unique()).astype(pd.StringDtype(na_value=np.nan))
    ordered = ordered.sort_values(kind="stable", na_position="last").reset_index(drop=True)
    return [None if pd.isna(a) else a for a in ordered]


def _limit(limit: int | None) -> str:
    return "" if limit is None else f"LIMIT {int(limit)}"


def _severity(peaks: Any, per_minute: int) -> Any:
    peaks = np.asarray(peaks, dtype=np.int64)
    return np.select([peaks >= 5 * per_minute, peaks >= 2 * per_minute], ["critical", "high"], "medium")


def _high_frequency(engine: Engine, per_minute: int, limit: int | None, tag: str) -> _Found:
    """More than ``per_minute`` actions of one agent in 60 s: every action of such a window.

    An action's count is its agent's actions with timestamp in (t - 60 s, t] that come at or
    before it in (time, seq) order (so of two actions at the same instant the later counts the
    earlier, not the other way round); an action is flagged when it lies in the window of an
    action over the threshold. Episodes are runs of flagged actions in (agent, time, seq) order;
    a run may continue from one agent's last action to the next agent's first (the rows
    between are all flagged), as it always has; an episode's severity is its peak count's.
    Actions with no timestamp are not counted. Windows, counts and runs are SQL windows per
    agent; Python only joins runs across agents and names the severities."""
    runs = engine.sql(RUN_SUMMARY.format(threshold=int(per_minute)))
    if runs.empty:
        return _Found(_frame([], COLUMNS))
    sizes = engine.sql(AGENTS)
    last_pos = {(None if pd.isna(a) else a): int(n) for a, n in zip(sizes["agent_id"], sizes["actions"],
                                                                         strict=True)}
    order = _agent_order(sizes["agent_id"])
    place = {a: i for i, a in enumerate(order)}
    runs["agent"] = [None if pd.isna(a) else a for a in runs["agent_id"]]
    runs["place"] = [place[a] for a in runs["agent"]]
    runs = runs.sort_values(["place", "run"], kind="stable").reset_index(drop=True)
    episode, previous = [], None
    current = -1
    for r in runs.itertuples(index=False):
        joins = (  # the previous agent's last action and this agent's first are both flagged
            previous is not None and r.place == previous.place + 1 and int(r.first_pos) == 1
            and int(previous.last_pos) == last_pos[previous.agent]
        )
        current += 0 if joins else 1
        episode.append(current)
        previous = r
    runs["episode"] = episode
    runs["peak"] = runs.groupby("episode")["peak"].transform("max").astype("int64")
    runs["severity"] = _severity(runs["peak"], per_minute)
    runs_table = f"check11_runs{tag}"
    engine.register_arrow(runs_table, pa.table({
        "agent_id": pa.array(runs["agent"].tolist(), type=pa.string()),
        "run": pa.array(runs["run"].astype("int64").tolist(), type=pa.int64()),
        "severity": pa.array(runs["severity"].tolist(), type=pa.string()),
        "peak": pa.array(runs["peak"].tolist(), type=pa.int64()),
    }))
    rows = like_audit(engine.sql(RUN_ROWS.format(threshold=int(per_minute), limit=_limit(limit),
                                                  runs_table=runs_table)))
    head = rows.drop(columns=["severity", "peak"]).assign(type="high_frequency")
    head["severity"] = _severity(rows["peak"], per_minute)
    head["detail"] = [f"{int(p)} actions by the agent within 60 s (threshold {per_minute})"
                      for p in rows["peak"]]
    counts = runs.groupby("severity")["actions"].sum()
    return _Found(head[COLUMNS], {str(k): int(v) for k, v in counts.items()},
                  {str(a) for a in runs["agent"] if a is not None}, RUN_SET.format(runs_table=runs_table))


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
               last: pd.Timestamp, limit: int | None, tag: str) -> _Found:
    """Actions between the ``off_hours`` in ``tz``; medium for an agent's night of ``burst`` or more.

    Zone conversion is spelled differently in the two dialects, so SQL counts actions per agent
    and UTC quarter hour (in the UTC hours that can be off hours), Python judges each quarter hour
    in local time and counts the nights, and SQL fetches the first flagged actions back."""
    hours = _utc_hours(off_hours, tz, first, last)
    if not hours:
        return _Found(_frame([], COLUMNS))
    buckets = engine.sql(OFF_BUCKETS.format(hours=", ".join(str(h) for h in hours)))
    if buckets.empty:
        return _Found(_frame([], COLUMNS))
    start, end = off_hours
    quarter = pd.to_numeric(buckets["quarter"]).astype("int64")
    local = (buckets["hour"] + pd.to_timedelta(quarter * 15, unit="min")).dt.tz_convert(tz)
    hour = local.dt.hour
    off = ((hour >= start) | (hour < end)) if start > end else ((hour >= start) & (hour < end))
    flagged = pd.DataFrame({"agent": buckets["agent_id"].astype(object), "hour": buckets["hour"],
                            "quarter": quarter, "n": buckets["n"].astype("int64")}).loc[off]
    if flagged.empty:
        return _Found(_frame([], COLUMNS))
    flagged["night"] = (local[off] - pd.Timedelta(hours=start)).dt.floor("D")
    flagged["night_actions"] = flagged.groupby(["agent", "night"], dropna=False)["n"].transform("sum")
    flagged["severity"] = np.where(flagged["night_actions"].to_numpy() >= burst, "medium", "low")
    off_table = f"check11_off{tag}"
    engine.register_arrow(off_table, pa.table({
        "agent_id": pa.array([None if pd.isna(a) else a for a in flagged["agent"]], type=pa.string()),
        "hour": pa.array(flagged["hour"].dt.as_unit("us"), type=pa.timestamp("us", tz="UTC")),
        "quarter": pa.array(flagged["quarter"].tolist(), type=pa.int64()),
        "severity": pa.array(flagged["severity"].tolist(), type=pa.string()),
        "night_actions": pa.array(flagged["night_actions"].tolist(), type=pa.int64()),
    }))
    rows = like_audit(engine.sql(OFF_ROWS.format(limit=_limit(limit), off_table=off_table)))
    head = rows.drop(columns=["severity", "night_actions"]).assign(type="off_hours_activity")
    head["severity"] = np.where(rows["night_actions"].to_numpy(dtype=np.int64) >= burst, "medium", "low")
    head["detail"] = [
        f"at {t.tz_convert(tz).strftime('%H:%M')} {tz}, outside {start:02d}:00-{end:02d}:00 hours; "
        f"{int(n)} off-hours actions by the agent that night"
        for t, n in zip(rows["timestamp"], rows["night_actions"], strict=True)
    ]
    counts = flagged.groupby("severity")["n"].sum()
    medium = flagged.loc[flagged["severity"] == "medium", "agent"]
    return _Found(head[COLUMNS], {str(k): int(v) for k, v in counts.items()},
                  {str(a) for a in medium if pd.notna(a)}, OFF_SET.format(off_table=off_table))


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


SET_COLUMNS = ["seq", "developer_id", "agent_id", "timestamp", "severity", "type"]


def _set_key(off_hours: tuple[int, int], threshold: int, baseline: int, burst: int, tz: str) -> str:
    return json.dumps([list(off_hours), int(threshold), int(baseline), int(burst), tz])


def _register_set(engine: Engine, tag: str, threshold: int, detected: list[_Found],
                  small: list[pd.DataFrame]) -> str:
    """The anomaly set's SQL: the two big detectors' rows read again from the log through their
    small verdict tables (runs, off-hours quarter hours), the four small ones' rows registered
    whole. Why not a frame: a burst cites every action, millions in a large log."""
    table = f"check11_rest{tag}"
    parts = [f[SET_COLUMNS] for f in small if len(f)]
    rest = pd.concat(parts, ignore_index=True) if parts else _frame([], SET_COLUMNS)
    seqs = pd.to_numeric(rest["seq"], errors="coerce")  # a cascade's grant may have no issue event
    engine.register_arrow(table, arrow_table({
        "seq": ([None if pd.isna(v) else int(v) for v in seqs], pa.int64()),
        "developer_id": (rest["developer_id"], pa.string()),
        "agent_id": (rest["agent_id"], pa.string()),
        "timestamp": (rest["timestamp"], pa.timestamp("us", tz="UTC")),
        "severity": (rest["severity"], pa.string()),
        "type": (rest["type"], pa.string()),
    }))
    members = [f.rows for f in detected if f.rows]
    members.append(f"SELECT seq, developer_id, agent_id, timestamp, severity, type FROM {table}")
    prefix = RUNS.format(threshold=int(threshold)) + "," if detected[0].rows else "WITH"
    return f"{prefix} anomalies AS (\n" + "\nUNION ALL\n".join(members) + "\n)"


def anomaly_set(
    eds: EngineDataset, *, off_hours: tuple[int, int] = (22, 6), high_frequency_per_minute: int = 30,
    baseline_actions: int = 20, off_hours_burst: int = 5, tz: str = "UTC",
) -> str:
    """Every anomaly check 11 finds with these thresholds, as the head of a query: ``WITH ...,
    anomalies AS (...)`` (columns ``seq, developer_id, agent_id, timestamp, severity, type``, one
    row per evidence row, unordered) for the caller to continue with its own CTEs and SELECT.

    Why SQL: check 9 must see every anomaly, not check 11's capped evidence, and at ten million
    entries they are millions of rows; the engine matches them, Python sees the episodes. The
    detectors run once per dataset and thresholds (``eds.cache``): in ``run_all`` check 11 has
    already registered the tables this reads."""
    key = _set_key(off_hours, high_frequency_per_minute, baseline_actions, off_hours_burst, tz)
    if key not in eds.cache.get("anomaly_sets", {}):
        _detect(eds, off_hours=off_hours, high_frequency_per_minute=high_frequency_per_minute,
                baseline_actions=baseline_actions, off_hours_burst=off_hours_burst, tz=tz, limit=0)
    return str(eds.cache["anomaly_sets"][key][1])


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
      Precisely: an action's window is its agent's actions with timestamp in (t - 60 s, t] that
      come at or before it in (time, seq) order; instants compare to the microsecond (the ledger
      writes milliseconds); an action with no timestamp is in no window.
    - ``off_hours_activity``: an action between ``off_hours`` (start, end hour, wrapping midnight,
      in ``tz``); low, medium when the agent made ``off_hours_burst`` or more that night.
    - ``unusual_scope_access``: a scope outside the action's grant (high), or a scope the agent had
      never used, after a baseline of ``baseline_actions`` scoped actions (medium).
    - ``new_principal``: the agent acts for a principal it never served, after a baseline of
      ``baseline_actions`` actions (low).
    - ``cascade_delegation``: a grant at depth limit - 1 (medium) or at the limit (high), over it
      (critical).

    Passes when nothing is medium or above. The evidence holds the first
    :data:`~.base.EVIDENCE_LIMIT` rows in seq order (``evidence_rows`` counts them all; a burst
    cites every action, so a large log has millions); metrics and summary count every row.
    """
    with engine_dataset(ds) as eds:
        return _detect(
            eds, off_hours=off_hours, high_frequency_per_minute=high_frequency_per_minute,
            baseline_actions=baseline_actions, off_hours_burst=off_hours_burst, tz=tz,
            limit=base.EVIDENCE_LIMIT,
        )


def _detect(
    eds: EngineDataset, *, off_hours: tuple[int, int] = (22, 6), high_frequency_per_minute: int = 30,
    baseline_actions: int = 20, off_hours_burst: int = 5, tz: str = "UTC", limit: int | None = None,
) -> CheckResult:
    """:func:`detect_anomalies` on an engine, its evidence capped at ``limit`` rows (None: all of
    them, which the developer-facing grouping of :mod:`..detection` stores). It also registers the
    uncapped anomaly set (:func:`anomaly_set`) check 9 matches in SQL, so that a ``run_all``
    detects once."""
    threshold = int(high_frequency_per_minute)
    engine = eds.engine
    key = _set_key(off_hours, threshold, baseline_actions, off_hours_burst, tz)
    sets = eds.cache.setdefault("anomaly_sets", {})
    tag = sets[key][0] if key in sets else f"_{len(sets)}"  # one table name per threshold set
    totals = engine.sql(ACTIONS)
    actions = int(totals["actions"].iloc[0])
    found = [_Found(_frame([], COLUMNS)), _Found(_frame([], COLUMNS))]
    if actions:
        first, last = totals["first_at"].iloc[0], totals["last_at"].iloc[0]
        found = [_high_frequency(engine, threshold, limit, tag),
                 _off_hours(engine, off_hours, tz, off_hours_burst, first, last, limit, tag)]
    lookup = eds.grants.drop_duplicates("grant_id").set_index("grant_id")
    keys = pd.DataFrame({"grant_id": lookup.index.astype(object),
                         "scopes_key": [scopes_key(s) for s in lookup["scopes"]]})
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
    principals = _firsts(engine, "principal_id", baseline_actions, scoped=False).assign(
        type="new_principal", severity="low")
    principals["detail"] = [f"first action for principal {p}, after {baseline_actions}+ actions for others"
                            for p in principals["principal_id"]]
    small = [f[COLUMNS] if len(f) else f for f in (beyond, new, principals, _cascade(eds))]
    found += [_Found.of(f) for f in small]
    sets[key] = (tag, _register_set(engine, tag, threshold, found[:2], small))
    kinds = ("high_frequency", "off_hours_activity", "unusual_scope_access", "unusual_scope_access",
             "new_principal", "cascade_delegation")
    by_type = dict.fromkeys(ANOMALY_TYPES, 0)
    by_severity = dict.fromkeys(SEVERITIES, 0)
    for kind, part in zip(kinds, found, strict=True):
        by_type[kind] += part.total
        for severity, n in part.by_severity.items():
            by_severity[severity] += n
    total = sum(by_type.values())
    parts = [f.head[COLUMNS] for f in found if len(f.head)]
    evidence = pd.concat(parts, ignore_index=True) if parts else _frame([], COLUMNS)
    if limit is not None and len(evidence) > limit:  # the first rows in the evidence's own order
        evidence["seq"] = pd.to_numeric(evidence["seq"], errors="coerce").astype("Int64")
        evidence = evidence.sort_values("seq", kind="stable", na_position="first").head(limit)
    serious = sum(n for s, n in by_severity.items() if SEVERITIES.index(s) >= SEVERITIES.index("medium"))
    metrics: dict[str, Any] = {
        "anomalies": total,
        "by_type": by_type,
        "by_severity": by_severity,
        "agents_flagged": len(set().union(*(f.serious_agents for f in found))),
        "thresholds": {
            "off_hours": list(off_hours),
            "tz": tz,
            "high_frequency_per_minute": threshold,
            "baseline_actions": baseline_actions,
            "off_hours_burst": off_hours_burst,
        },
    }
    if not total:
        summary = f"no anomalies in {actions} actions"
    else:
        severities = ", ".join(f"{s} {n}" for s, n in by_severity.items() if n)
        types = ", ".join(f"{t} {n}" for t, n in by_type.items() if n)
        summary = f"{total} anomalies ({severities}): {types}"
    return _result(eds.ds, 11, not serious, summary, evidence, metrics, evidence_rows=total,
                   capped=limit is not None)

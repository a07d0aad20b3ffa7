"""Check 11, anomalies: the protocol's five anomaly types (SPEC §13.3) over the agents' actions,
each with a severity; the thresholds are keyword arguments of :func:`detect_anomalies`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..frames import Dataset, safe_map
from .base import (
    ANOMALY_TYPES,
    SEVERITIES,
    CheckResult,
    _actions,
    _depth_limit,
    _frame,
    _grant_event_seq,
    _grant_lookup,
    _judge_scope,
    _result,
)


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
    metrics: dict[str, Any] = {
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

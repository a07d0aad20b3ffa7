"""Detection for one developer: the analysis detectors over a ledger, grouped into anomalies a
person reads as one, stored through :mod:`grantex_local.anomalies`.

Why grouping: :func:`.checks.detect_anomalies` lists evidence rows (every action of a burst, every
off-hours action), which is what an auditor cites but not what a developer acknowledges. One
anomaly here is one ``high_frequency`` burst per agent, one ``off_hours_activity`` night per
agent, one ``unusual_scope_access`` per (grant, scope), one ``new_principal`` per (agent,
principal), one ``cascade_delegation`` per grant. Each group's fingerprint is its type, its key
and its first audit seq, so running detection again finds the same groups and stores nothing new.

This is the one function the server route, the CLI and the TUI call: the detectors' defaults are
the thresholds everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..anomalies import SEVERITIES, DetectResult, Finding, store
from ..audit.trail import count_entries
from ..progress import Progress, Tally
from .checks.anomalies import _detect
from .engines import engine_dataset
from .frames import Dataset
from .load import load

if TYPE_CHECKING:
    from ..founding import Ledger

BURST_GAP = pd.Timedelta(seconds=60)
"""Flagged actions of one agent further apart than the detector's window start a new burst."""
OFF_HOURS_START = 22
"""The detectors' default off-hours start (UTC): a night runs from it to the next morning."""

_RANK = {s: i for i, s in enumerate(SEVERITIES)}


def detect(ledger: Ledger, developer_id: str, progress: Progress | None = None) -> DetectResult:
    """Run the detectors on the ledger, keep ``developer_id``'s findings, group and store them
    (and apply the developer's response policy, see :func:`grantex_local.anomalies.store`).

    ``progress`` is told audit entries: loading verifies and reads each one (two units, see
    :func:`.load.load`) and the detectors judge each one (the third, counted when they end).
    """
    entries = count_entries(ledger) if progress is not None else 0  # a count only when watched
    tally = Tally(progress, 3 * entries)
    ds = load(ledger, progress=(lambda done, _total: tally.reach(done)) if progress is not None else None)
    tally.reach(2 * entries)
    found = findings(ds, developer_id)
    tally.finish()
    return store(ledger, developer_id, found)


def findings(ds: Dataset, developer_id: str) -> list[Finding]:
    """The grouped findings of one developer in a loaded dataset, oldest first."""
    with engine_dataset(ds) as eds:  # every anomaly, not check 11's capped evidence: each group is stored
        evidence = _detect(eds).evidence
    if evidence.empty:
        return []
    rows = evidence.loc[evidence["developer_id"].astype(object) == developer_id]
    if rows.empty:
        return []
    audit = ds.audit.loc[ds.audit["developer_id"].astype(object) == developer_id, ["seq", "scope"]]
    scopes = {int(s): _text(v) for s, v in zip(audit["seq"], audit["scope"], strict=True) if pd.notna(s)}
    records = [_record(r, scopes) for r in rows.to_dict("records")]
    out: list[Finding] = []
    for kind, keyer, describe in _GROUPINGS:
        same = [r for r in records if r["type"] == kind]
        if kind == "high_frequency":
            groups = _bursts(same)
        else:
            groups = _group(same, keyer)
        out += [_finding(kind, key, members, describe) for key, members in groups.items()]
    out.sort(key=lambda f: (f.metadata.get("firstAt") or "", f.first_seq or 0, f.type))
    return out


# ── rows into groups ─────────────────────────────────────────────────────────


def _text(value: Any) -> str | None:
    return None if value is None or (not isinstance(value, list | dict) and pd.isna(value)) else str(value)


def _stamp(value: Any) -> str | None:
    if value is None or pd.isna(value):
        return None
    ts = pd.Timestamp(value).tz_convert("UTC")
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _record(r: dict[str, Any], scopes: dict[int, str | None]) -> dict[str, Any]:
    seq = None if r.get("seq") is None or pd.isna(r["seq"]) else int(r["seq"])
    when = r.get("timestamp")
    ts = None if when is None or pd.isna(when) else pd.Timestamp(when).tz_convert("UTC")
    night = None
    if ts is not None:
        night = (ts - pd.Timedelta(hours=OFF_HOURS_START)).floor("D").strftime("%Y-%m-%d")
    return {"seq": seq, "type": str(r["type"]), "severity": str(r["severity"]),
            "agent_id": _text(r.get("agent_id")), "principal_id": _text(r.get("principal_id")),
            "grant_id": _text(r.get("grant_id")), "ts": ts, "night": night,
            "scope": scopes.get(seq) if seq is not None else None, "detail": _text(r.get("detail")) or ""}


def _group(rows: list[dict[str, Any]], keyer: Callable[[dict[str, Any]], tuple[str, ...]]
           ) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(keyer(r), []).append(r)
    return groups


def _bursts(rows: list[dict[str, Any]]) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    """One group per agent and run of flagged actions no further apart than the window."""
    ordered = sorted(rows, key=lambda r: (r["agent_id"] or "", r["ts"] or pd.Timestamp(0, tz="UTC"),
                                          r["seq"] or 0))
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    current: list[dict[str, Any]] = []
    for r in ordered:
        if current and (r["agent_id"] != current[-1]["agent_id"] or r["ts"] is None
                        or current[-1]["ts"] is None or r["ts"] - current[-1]["ts"] > BURST_GAP):
            groups[(current[0]["agent_id"] or "", _stamp(current[0]["ts"]) or "")] = current
            current = []
        current.append(r)
    if current:
        groups[(current[0]["agent_id"] or "", _stamp(current[0]["ts"]) or "")] = current
    return groups


def _only(members: Sequence[dict[str, Any]], name: str) -> str | None:
    values = {m[name] for m in members}
    return values.pop() if len(values) == 1 else None


def _finding(kind: str, key: tuple[str, ...], members: list[dict[str, Any]],
             describe: Callable[[list[dict[str, Any]], dict[str, Any]], str]) -> Finding:
    seqs = sorted(m["seq"] for m in members if m["seq"] is not None)
    stamps = sorted(m["ts"] for m in members if m["ts"] is not None)
    worst = max(members, key=lambda m: _RANK.get(m["severity"], 0))
    metadata: dict[str, Any] = {
        "count": len(members),
        "firstSeq": seqs[0] if seqs else None,
        "lastSeq": seqs[-1] if seqs else None,
        "firstAt": _stamp(stamps[0]) if stamps else None,
        "lastAt": _stamp(stamps[-1]) if stamps else None,
        "detail": worst["detail"],
        "detector": "analysis.detect_anomalies",
    }
    if kind == "high_frequency":
        # The detector's peak is per run of flagged rows, which can join bursts hours apart
        # when nothing unflagged lies between them: the peak is recomputed within the group.
        metadata["peakPerMinute"] = _peak(stamps)
        metadata["detail"] = f"up to {metadata['peakPerMinute']} actions within 60 s"
    if kind == "unusual_scope_access":
        metadata["scope"] = key[1]
    if kind == "off_hours_activity":
        metadata["night"] = key[1]
    grants = sorted({m["grant_id"] for m in members if m["grant_id"]})
    if len(grants) > 1:
        metadata["grantIds"] = grants
    return Finding(type=kind, severity=worst["severity"], description=describe(members, metadata),
                   key=tuple(str(k) for k in key), first_seq=metadata["firstSeq"],
                   agent_id=_only(members, "agent_id"), principal_id=_only(members, "principal_id"),
                   grant_id=_only(members, "grant_id"), metadata=metadata)


def _peak(stamps: Sequence[pd.Timestamp]) -> int:
    """The most of ``stamps`` (sorted) inside any 60 s window (t - 60 s, t]."""
    best, start = 0, 0
    for end, t in enumerate(stamps):
        while t - stamps[start] >= BURST_GAP:
            start += 1
        best = max(best, end - start + 1)
    return best


def _agent(members: list[dict[str, Any]]) -> str:
    return _only(members, "agent_id") or "an agent"


_Keyer = Callable[[dict[str, Any]], tuple[str, ...]]
_Describer = Callable[[list[dict[str, Any]], dict[str, Any]], str]


def _k(*names: str) -> _Keyer:
    return lambda r: tuple(str(r[n] or "") for n in names)


_GROUPINGS: tuple[tuple[str, _Keyer, _Describer], ...] = (
    ("high_frequency", _k("agent_id"),
     lambda m, md: f"Agent {_agent(m)} made a burst of {md['count']} actions between {md['firstAt']} "
                   f"and {md['lastAt']} ({md['detail']})."),
    ("off_hours_activity", _k("agent_id", "night"),
     lambda m, md: f"Agent {_agent(m)} made {md['count']} off-hours actions in the night of "
                   f"{md['night']} (UTC), the first at {md['firstAt']}."),
    ("unusual_scope_access", _k("grant_id", "scope"),
     lambda m, md: f"Agent {_agent(m)} used scope {md['scope']} under grant "
                   f"{_only(m, 'grant_id') or 'unknown'}: {md['detail']}."),
    ("new_principal", _k("agent_id", "principal_id"),
     lambda m, md: f"Agent {_agent(m)} acted for a new principal "
                   f"{_only(m, 'principal_id') or 'unknown'} ({md['detail']})."),
    ("cascade_delegation", _k("grant_id"),
     lambda m, md: f"Grant {_only(m, 'grant_id') or 'unknown'} of agent {_agent(m)} is deep in a "
                   f"delegation chain ({md['detail']})."),
)

__all__ = ["detect", "findings"]

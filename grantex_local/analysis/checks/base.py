"""What every check stands on: the clause map, :class:`CheckResult`, and the shared helpers.

Why one module: each check is a module of its own (:mod:`grantex_local.analysis.checks`), and
what two of them share lives here, below all of them, so no check imports another for a helper
(scope coverage is judged the same way by checks 3 and 11, the depth limit read the same way by
checks 7 and 11, who gave consent the same way by checks 2 and 9). :data:`CHECKS` is the one
table of which check serves which clause; the package's docstring shows it as text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pandas as pd

from ...errors import InvalidInput, InvalidScope
from ...ledger import DEFAULT_MAX_DELEGATION_DEPTH
from ...scopes import AnyScope, Scope, parse_scope, uncovered
from ..engines import EngineDataset
from ..frames import Dataset

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
    12: ("offline logs", (ART12, ART19, "SOC 2 CC7.2")),
}
"""id → (name, clauses it serves)."""

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

EVIDENCE_LIMIT = 100_000
"""Evidence rows a check hands back at most (the first, in seq order); see
:attr:`CheckResult.evidence_rows`. 100,000 rows are about 50 MB of pandas."""


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
    evidence_rows: int = -1
    """How many evidence rows the check found; ``evidence`` holds the first
    :data:`EVIDENCE_LIMIT` of them (in seq order) when there are more. Why a cap: two checks cite
    every action of a problem (each action under an unconsented grant, each action of a burst),
    which on a ten-million-entry log is millions of rows no notebook needs in memory; the summary
    and metrics always count them all."""

    def __post_init__(self) -> None:
        if self.evidence_rows < 0:
            self.evidence_rows = len(self.evidence)

    @property
    def evidence_truncated(self) -> bool:
        return self.evidence_rows > len(self.evidence)

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
    ds: Dataset | EngineDataset,
    check_id: int,
    passed: bool,
    summary: str,
    evidence: pd.DataFrame,
    metrics: dict[str, Any],
    *,
    evidence_rows: int = -1,
    capped: bool = True,
) -> CheckResult:
    """``evidence_rows``: the full count when the check fetched at most :data:`EVIDENCE_LIMIT`
    rows; evidence longer than the limit is cut here (the first rows in seq order kept), so no
    check hands back more, whatever it fetched. ``capped=False`` is for the library's own callers
    that asked for every row (the anomaly grouping of :mod:`..detection`)."""
    name, clauses = CHECKS[check_id]
    tidy = _tidy_evidence(evidence)
    evidence_rows = max(evidence_rows, len(tidy))
    if capped and len(tidy) > EVIDENCE_LIMIT:
        tidy = tidy.iloc[:EVIDENCE_LIMIT].copy()
    return CheckResult(
        check_id,
        name,
        bool(passed),
        summary,
        tidy,
        clauses,
        metrics,
        {"kind": ds.kind, "path": ds.path},
        evidence_rows,
    )


def _tidy_evidence(evidence: pd.DataFrame) -> pd.DataFrame:
    evidence = evidence.reset_index(drop=True)
    if "seq" in evidence.columns:
        evidence["seq"] = pd.to_numeric(evidence["seq"], errors="coerce").astype("Int64")
        evidence = evidence.sort_values("seq", kind="stable", na_position="first").reset_index(drop=True)
    return evidence


def _frame(rows: list[dict[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(columns)) if rows else pd.DataFrame({c: [] for c in columns})


def _grant_lookup(ds: Dataset) -> pd.DataFrame:
    return ds.grants.drop_duplicates("grant_id").set_index("grant_id")


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


def _parse(text: str) -> AnyScope | None:
    try:
        return parse_scope(text, stored=True)
    except InvalidScope:
        return None


def consent_kind(decided_by: Any) -> str:
    """``human``, ``policy``, ``sandbox`` or ``none`` from an auth request's ``decided_by``."""
    if not isinstance(decided_by, str) or not decided_by:
        return "none"
    if decided_by == "sandbox":
        return "sandbox"
    if decided_by.startswith("policy:"):
        return "policy"
    return "human"


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
    if not isinstance(used, Scope):
        return problem, None, detail  # a plain scope carries no amount
    same = [h for h in parsed_held
            if isinstance(h, Scope) and (h.resource, h.action) == (used.resource, used.action)]
    if not same or any(h.constraint is None for h in same):
        return problem, None, detail
    limits = [h.max_amount for h in same if h.max_amount is not None]
    return problem, (float(max(limits)) if limits else None), detail


def _depth_limit(ds: Dataset) -> int:
    try:
        return int(ds.settings.get("max_delegation_depth", DEFAULT_MAX_DELEGATION_DEPTH))
    except (TypeError, ValueError):
        return DEFAULT_MAX_DELEGATION_DEPTH

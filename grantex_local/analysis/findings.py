"""The findings summary, as JSON an auditor files next to the report (every check's verdict).

Why JSON beside the notebook: the report is for people, ``findings.json`` is for the next
tool (a GRC system, a diff between two quarters). It holds every check's verdict, summary,
clauses, metrics, how many evidence rows there were and the audit seqs they cite, so each
finding can be traced back to entries of the log (and, with an inclusion proof, to a checkpoint).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .checks import CHECKS, CheckResult

FORMAT = "grantex-local-findings"
VERSION = 1
MAX_CITED = 10_000
"""Cited seqs kept per check; ``citedSeqsTotal`` counts every seq the evidence rows cite (all
the rows, unless ``evidenceTruncated``: a check keeps :data:`~.checks.base.EVIDENCE_LIMIT` rows,
``evidenceRows`` counts them all)."""


def jsonable(value: Any) -> Any:
    """Plain JSON values from what metrics hold (NumPy and pandas scalars, timestamps, NaN)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        if value.tzinfo is None:
            return value.isoformat()
        return value.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"  # PROTOCOL §1 form
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, pd.Timedelta):
        return value.total_seconds()
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        number = float(value)
        return None if math.isnan(number) or math.isinf(number) else number
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, int | str):
        return value
    return str(value)


def findings(results: Sequence[CheckResult]) -> dict[str, Any]:
    """The findings of a run of checks as a JSON-able dict (``generatedAt``, ``source``, ``passed``,
    ``checks`` with id/name/passed/summary/clauses/metrics/evidenceRows/evidenceTruncated/citedSeqs,
    and ``clauses``: each clause with the checks serving it and whether they all passed)."""
    checks = []
    clauses: dict[str, dict[str, Any]] = {}
    for result in results:
        cited = result.cited_seqs()
        checks.append(
            {
                "id": result.id,
                "name": result.name,
                "passed": result.passed,
                "summary": result.summary,
                "clauses": list(result.clauses),
                "metrics": jsonable(result.metrics),
                "evidenceRows": result.evidence_rows,
                "evidenceTruncated": result.evidence_truncated,
                "citedSeqs": cited[:MAX_CITED],
                "citedSeqsTotal": len(cited),
            }
        )
        for clause in result.clauses:
            entry = clauses.setdefault(clause, {"checks": [], "passed": True})
            entry["checks"].append(result.id)
            entry["passed"] = entry["passed"] and result.passed
    source = next((r.source for r in results if r.source), {})
    return {
        "format": FORMAT,
        "version": VERSION,
        "generatedAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "source": jsonable(source),
        "passed": all(r.passed for r in results),
        "checks": checks,
        "clauses": dict(sorted(clauses.items())),
        "checkNames": {str(i): name for i, (name, _) in CHECKS.items()},
    }


def write_findings(results: Sequence[CheckResult], path: str | os.PathLike[str]) -> dict[str, Any]:
    """Write :func:`findings` to ``path`` (a directory gets ``findings.json`` inside); returns the dict."""
    target = Path(path)
    if target.is_dir():
        target = target / "findings.json"
    data = findings(results)
    target.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return data

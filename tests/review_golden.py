"""The review's results as plain JSON values, to compare a run with the committed golden file.

Why a golden file: the checks were rewritten from pandas into SQL run by an engine (issue 17), and
the results on the committed sample must stay what the pandas checks gave; the file
``tests/golden/sample_review.json`` holds what they gave (written by the pandas checks of commit
667cde3, before the SQL ones replaced them), every evidence cell and dtype included.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from grantex_local.analysis import CheckResult


def plain(value: Any) -> Any:
    """A JSON value that keeps what equality needs: full-precision instants, None for missing."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [plain(v) for v in value]
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, pd.Timedelta):
        return value.isoformat()
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        return None if math.isnan(float(value)) else float(value)
    return value


def review(results: Sequence[CheckResult]) -> list[dict[str, Any]]:
    return [
        {
            "id": r.id,
            "name": r.name,
            "passed": r.passed,
            "summary": r.summary,
            "clauses": list(r.clauses),
            "metrics": plain(r.metrics),
            "evidenceRows": r.evidence_rows if hasattr(r, "evidence_rows") else len(r.evidence),
            "citedSeqs": r.cited_seqs(),
            "columns": list(r.evidence.columns),
            "dtypes": [str(t) for t in r.evidence.dtypes],
            "evidence": [plain(list(row)) for row in r.evidence.itertuples(index=False)],
        }
        for r in results
    ]

"""Loaders and compliance checks for auditors: pandas for what people read, an SQL engine
(DuckDB, or Spark with ``pip install 'grantex-local[spark]'``) for the audit log's heavy work.

An auditor handed a ledger file, an export bundle or a parquet export answers with evidence:
is the log intact, did every action run under a valid grant that traces to a human's consent,
did anything happen after a revocation, how fast did revocations take effect, which agents
behave unusually::

    from grantex_local.analysis import load, run_all, write_findings

    ds = load("export-2026-q1/")            # or "grantex.db", or a parquet export directory
    results = run_all(ds, review_start="2026-01-01", review_end="2026-04-01", cache_window="30s")
    # a log larger than memory stays in the engine: load("OUT", engine="duckdb") (or "spark")
    for r in results:
        print(r.id, r.name, "PASS" if r.passed else "FAIL", r.summary)
    write_findings(results, "findings.json")

Nothing here re-implements verification: integrity comes from the library's own verifiers
(see :mod:`.load`). This package is the only part of grantex-local that imports pandas and
DuckDB; the library's core never imports it, and the CLI and the MCP server only inside the
commands that analyse (``export --format parquet``, ``anomalies detect``, the compliance tool).

Metadata conventions the checks read (agents put them in ``audit.log(..., metadata=...)``):

- ``metadata["scope"]``: the scope the action used; it must be covered by the grant's scopes
  (PROTOCOL §4 coverage, :func:`grantex_local.scopes.uncovered`). Check 3.
- ``metadata["amount"]``: a number that must be at most N of the grant's matching ``max_N``:
  the grant scope equal to the metadata scope when it carries ``max_N``, else the largest N of
  the grant's ``max_N`` scopes on the same ``resource:action``; not judged without a metadata
  scope or such a grant scope (an unconstrained grant scope on it allows any amount). Check 3.
- ``status`` ``blocked`` means the action was refused: it is oversight evidence (check 9), never
  held against the grant; ``success`` and ``failure`` are accepted actions.

The Dataset's audit frame carries both as flattened ``scope`` and ``amount`` columns. The check →
clause map (EU AI Act Art. 12, 14, 19; SOC 2 CC6, CC7) and every threshold are in :mod:`.checks`
and :data:`CHECKS`; the frames' schema in :mod:`.frames`, the on-disk formats in :mod:`.sources` and
:mod:`.parquet`.
"""

from __future__ import annotations

from .checks import (
    ANOMALY_TYPES,
    CHECKS,
    SEVERITIES,
    CheckResult,
    check_after_revocation,
    check_delegation,
    check_grant_hygiene,
    check_grant_window,
    check_integrity,
    check_offline_logs,
    check_provenance,
    check_retention,
    check_scope,
    detect_anomalies,
    oversight_evidence,
    revocation_latency,
    run_all,
)
from .findings import findings, write_findings
from .frames import SCHEMAS, Dataset, Integrity
from .load import load
from .notebook import progress_line
from .parquet import export_parquet

__all__ = [
    "ANOMALY_TYPES",
    "CHECKS",
    "SCHEMAS",
    "SEVERITIES",
    "CheckResult",
    "Dataset",
    "Integrity",
    "check_after_revocation",
    "check_delegation",
    "check_grant_hygiene",
    "check_grant_window",
    "check_integrity",
    "check_offline_logs",
    "check_provenance",
    "check_retention",
    "check_scope",
    "detect_anomalies",
    "export_parquet",
    "findings",
    "load",
    "oversight_evidence",
    "progress_line",
    "revocation_latency",
    "run_all",
    "write_findings",
]

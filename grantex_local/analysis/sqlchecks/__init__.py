"""SPIKE (issue 17 item 2): checks 3, 5 and 10 defined once in portable SQL, run by any engine.

Each check is: SQL texts that do the heavy work over the audit table where it lives (DuckDB or
Spark, see :mod:`..engines`), returning small frames (the evidence rows, a GROUP BY, counts),
and Python that turns those into the same :class:`~..checks.CheckResult` today's pandas check
makes (summary, metrics, evidence with its dtypes). The Python half is the same whatever engine
ran the SQL, so two engines cannot disagree on wording or types, only on what the SQL returned.

The existing pandas checks are untouched (the spike compares against them).
"""

from __future__ import annotations

from .retention import sql_check_retention
from .revocation import sql_check_after_revocation
from .scope import sql_check_scope

__all__ = ["sql_check_after_revocation", "sql_check_retention", "sql_check_scope"]

"""SPIKE (issue 17 item 2): checks 3, 5 and 10 defined once in portable SQL, run by any engine.

Each check is: SQL texts that do the heavy work over the audit table where it lives (DuckDB or
Spark, see :mod:`..engines`), returning small frames (the evidence rows, a GROUP BY, counts),
and Python that turns those into the same :class:`~..checks.CheckResult` today's pandas check
makes (summary, metrics, evidence with its dtypes). The Python half is the same whatever engine
ran the SQL, so two engines cannot disagree on wording or types, only on what the SQL returned.

The existing pandas checks are untouched (the spike compares against them).
"""

from __future__ import annotations

__all__: list[str] = []  # checks 3, 5, 6 and 10 now live in their own modules of ..checks

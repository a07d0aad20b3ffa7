"""SQL fragments every check shares, in the subset of SQL DuckDB and Spark both read the same way.

Why fragments rather than views: a view is engine state, a fragment is text the reader sees in
the check's own query. ``grantex.*`` is matched with LIKE (``starts_with`` is ``startswith`` in
Spark); a missing action or status is an agent action / not blocked, as in pandas, hence the
COALESCE (``NULL NOT LIKE`` is NULL, which a WHERE drops).
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd
import pyarrow as pa

from ..engines import EngineDataset
from ..frames import empty_frame

AGENT_ACTION = "COALESCE({a}.action, '') NOT LIKE 'grantex.%'"
"""An agent's own action (the pandas ``~is_lifecycle``)."""
NOT_BLOCKED = "COALESCE({a}.status, '') <> 'blocked'"
"""Accepted: any status but ``blocked``."""


def agent_action(alias: str = "a") -> str:
    return AGENT_ACTION.format(a=alias)


def accepted(alias: str = "a") -> str:
    return f"{agent_action(alias)} AND {NOT_BLOCKED.format(a=alias)}"




def arrow_table(columns: dict[str, tuple[Any, pa.DataType]]) -> pa.Table:
    """Small pandas-side values (a Series or a list per column) as a typed Arrow table to
    register, every missing value (None, NaN, NA, NaT) a NULL.

    Why typed by hand: Arrow's inference from pandas gives a null-typed column for an empty or
    all-missing list, which Spark refuses, and NaN in a text column, which neither engine reads
    as missing; a check's small inputs (verdicts, revocation points, chains to walk) must join
    the ``audit`` view null-safely whatever engine holds it."""
    arrays = []
    for values, kind in columns.values():
        items = values.astype(object).tolist() if isinstance(values, pd.Series) else list(values)
        cells = [None if item is None or item is pd.NA or item is pd.NaT
                 or (isinstance(item, float) and math.isnan(item)) else item for item in items]
        if pa.types.is_timestamp(kind):
            stamps = pd.to_datetime(pd.Series(cells, dtype=object), utc=True)
            arrays.append(pa.array(stamps.dt.as_unit("us"), type=kind, from_pandas=True))
        else:
            arrays.append(pa.array(cells, type=kind))
    return pa.Table.from_arrays(arrays, names=list(columns))


def scopes_key(scopes: Any) -> str:
    """A grant's scope set as canonical JSON text: the key SQL groups and joins on when a rule
    is judged once per distinct scope set (checks 3 and 11). Why text: no JSON function reads
    the same in DuckDB and Spark, and none is needed; Python parses each distinct key once."""
    return json.dumps(list(scopes) if isinstance(scopes, list | tuple) else [], separators=(",", ":"))


# ── what several checks read ──

AUDIT_ORDER = "ORDER BY {a}seq ASC NULLS FIRST, {a}developer_id ASC NULLS LAST"
"""A total order for rows fetched from the log that equals the loaded audit frame's for rows of
equal seq (the frame is developer-major), so evidence built from a fetch is in pandas' order."""


def audit_order(alias: str = "a") -> str:
    return AUDIT_ORDER.format(a=f"{alias}." if alias else "")


GRANT_EVENT_SEQ = """
SELECT grant_id, seq FROM (
  SELECT grant_id, seq,
         ROW_NUMBER() OVER (PARTITION BY grant_id
                            ORDER BY developer_id ASC NULLS LAST, seq ASC NULLS LAST) AS n
  FROM audit
  WHERE action IN ('grantex.grant.issued', 'grantex.grant.delegated') AND grant_id IS NOT NULL
) first_event WHERE n = 1
"""
"""grant id → seq of its first issue/delegation entry in the loaded frame's order (by chain, then
seq): the entry that cites a grant's creation (checks 7, 8 and 11)."""


def grant_event_seq(eds: EngineDataset) -> pd.Series:
    """grant id → seq of its first issue/delegation event, computed once per dataset: checks 8
    and 11 (and 7) cite a grant by it, and ``run_all`` should not scan the log for each."""
    cached = eds.cache.get("grant_event_seq")
    if cached is None:
        events = eds.engine.sql(GRANT_EVENT_SEQ)
        cached = pd.Series(events["seq"].astype("int64").to_numpy(), index=events["grant_id"].astype(object),
                           name="seq", dtype="int64")
        eds.cache["grant_event_seq"] = cached
    return cached.copy()


def like_audit(frame: pd.DataFrame) -> pd.DataFrame:
    """An engine's result with the loaded audit frame's dtype for every audit column it holds
    (text as the frame's string dtype, seq as int64; metadata stays JSON text), so evidence built
    from it equals what the frame-based checks produced, dtype for dtype."""
    dtypes = empty_frame("audit").dtypes
    out = frame.copy()
    for name in out.columns:
        if name in dtypes.index and name != "metadata":
            out[name] = out[name].astype(dtypes[name])
    return out


def parse_json_once(texts: pd.Series) -> pd.Series:
    """JSON text → value (None where missing). Lifecycle metadata repeats a few shapes, so each
    distinct text is parsed once; SQL never parses JSON (the two dialects' JSON paths differ)."""
    cache = {t: json.loads(t) for t in set(texts.dropna())}
    return pd.Series([cache.get(t) if isinstance(t, str) else None for t in texts], index=texts.index,
                     dtype=object)

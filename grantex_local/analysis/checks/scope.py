"""Check 3, scope and amount: what an action used is covered by its grant (PROTOCOL §4), and an
amount is within the grant's matching ``max_N`` (the rule is in the package's docstring).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..frames import Dataset, safe_map
from .base import (
    CheckResult,
    _actions,
    _frame,
    _grant_lookup,
    _judge_scope,
    _listing,
    _problem_counts,
    _result,
    _text,
)


def check_scope(ds: Dataset) -> CheckResult:
    """Every accepted action's metadata scope is covered by its grant's scopes, and its amount is
    within the grant's matching ``max_N`` (module docstring)."""
    acts = _actions(
        ds, ["seq", "developer_id", "agent_id", "grant_id", "action", "scope", "amount"], accepted_only=True
    )
    judged = acts.loc[acts["scope"].notna() | acts["amount"].notna()]
    lookup = _grant_lookup(ds)
    judged = judged.loc[judged["grant_id"].isin(lookup.index)]  # unknown grants: check 2
    pairs = judged[["grant_id", "scope"]].astype(object).drop_duplicates()
    verdicts = [(g, s, *_judge_scope(s, lookup.at[g, "scopes"])) for g, s in pairs.itertuples(index=False)]
    table = pd.DataFrame(verdicts, columns=["grant_id", "scope_key", "problem", "limit", "detail"])
    table["scope_key"] = table["scope_key"].astype(object).fillna("\x00")
    merged = judged.assign(scope_key=judged["scope"].astype(object).fillna("\x00")).merge(
        table, on=["grant_id", "scope_key"], how="left"
    )
    merged["limit"] = pd.to_numeric(merged["limit"], errors="coerce")
    merged["grant_scopes"] = safe_map(merged["grant_id"], lookup["scopes"]).map(_text)
    scope_rows = merged.loc[merged["problem"].notna()]
    over = merged.loc[
        merged["amount"].notna() & merged["limit"].notna() & (merged["amount"] > merged["limit"])
    ]
    over = over.assign(
        problem="amount_over_limit",
        detail=[
            f"amount {a:g} is over the grant's limit {lim:g} for {s}"
            for a, lim, s in zip(over["amount"], over["limit"], over["scope"], strict=True)
        ],
    )
    columns = [
        "seq",
        "developer_id",
        "agent_id",
        "grant_id",
        "action",
        "scope",
        "amount",
        "limit",
        "grant_scopes",
        "problem",
        "detail",
    ]
    evidence = (
        pd.concat([scope_rows[columns], over[columns]], ignore_index=True)
        if (len(scope_rows) or len(over))
        else _frame([], columns)
    )
    with_amount = merged["amount"].notna()
    metrics: dict[str, Any] = {
        "accepted_actions": len(acts),
        "with_scope": int(acts["scope"].notna().sum()),
        "with_amount": int(acts["amount"].notna().sum()),
        "amounts_judged": int((with_amount & merged["limit"].notna()).sum()),
        "amounts_not_judged": int((with_amount & merged["limit"].isna()).sum()),
        "problems": _problem_counts(evidence),
    }
    if evidence.empty:
        summary = (
            f"{metrics['with_scope']} scoped actions are within their grants' scopes; "
            f"{metrics['amounts_judged']} amounts within their limits"
        )
    else:
        summary = f"{len(evidence)} actions exceed their grant: " + _listing(metrics["problems"])
    return _result(ds, 3, evidence.empty, summary, evidence, metrics)

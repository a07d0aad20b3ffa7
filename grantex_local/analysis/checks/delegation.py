"""Check 7, delegation: a child grant stays inside its parent (scopes, lifetime, principal) and its
depth is counted right and within the ledger's limit.

Why the audit log is read only once, for one seq per grant: every rule here reads the grants
table (small, pandas), and the log serves only to cite the entry that created each grant. The
engine hands back that narrow slice (:func:`.sql.grant_event_seq`), whatever the log's size.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ...errors import InvalidScope
from ...scopes import uncovered
from ..engines import EngineDataset, engine_dataset
from ..frames import Dataset, safe_map
from .base import (
    CheckResult,
    _depth_limit,
    _grant_lookup,
    _listing,
    _problem_counts,
    _result,
    _same,
)
from .sql import grant_event_seq


def check_delegation(ds: Dataset | EngineDataset) -> CheckResult:
    """Every child grant's scopes are covered by its parent's, it expires no later than the
    parent, it was issued while the parent was live, and its depth is right and within the limit."""
    with engine_dataset(ds) as eds:
        event_seq = grant_event_seq(eds)
    small = eds.ds
    limit = _depth_limit(small)
    grants = small.grants
    lookup = _grant_lookup(small)
    depth = grants["delegation_depth"]
    child = grants["parent_grant_id"].notna()
    known = child & grants["parent_grant_id"].isin(lookup.index)
    parent = {
        name: safe_map(grants["parent_grant_id"], lookup[name])
        for name in ("scopes", "expires_at", "issued_at", "revoked_at", "delegation_depth", "principal_id")
    }
    parent_revoked = parent["revoked_at"]
    checks: list[tuple[pd.Series, str, str]] = [
        (depth > limit, "depth_over_limit", f"depth {{depth}} is over the limit of {limit}"),
        (
            grants["depth"].notna() & (grants["depth"] != depth).fillna(False),
            "depth_mismatch",
            "delegation_depth says {depth}, the parent links give {links}",
        ),
        (child & ~known, "parent_missing", "parent grant {parent} is not among the grants"),
        (
            known & (grants["expires_at"] > parent["expires_at"]),
            "expires_after_parent",
            "expires {expires}, after its parent ({parent_expires})",
        ),
        (
            known & (grants["issued_at"] < parent["issued_at"]),
            "issued_before_parent",
            "issued before its parent",
        ),
        (
            known & (grants["issued_at"] >= parent["expires_at"]),
            "issued_after_parent_expired",
            "issued after its parent had expired",
        ),
        (
            known & parent_revoked.notna() & (grants["issued_at"] > parent_revoked),
            "issued_after_parent_revoked",
            "issued after its parent was revoked",
        ),
        (
            known & (depth != parent["delegation_depth"] + 1).fillna(False),
            "depth_not_parent_plus_one",
            "depth {depth}, parent depth {parent_depth}",
        ),
        (
            known & ~_same(grants["principal_id"], parent["principal_id"]),
            "principal_mismatch",
            "the child's principal is not its parent's",
        ),
    ]
    rows: list[tuple[str, str, str]] = []
    for mask, problem, template in checks:
        for index in mask[mask.fillna(False).astype(bool)].index:
            rows.append(
                (
                    grants.at[index, "grant_id"],
                    problem,
                    template.format(
                        depth=grants.at[index, "delegation_depth"],
                        links=grants.at[index, "depth"],
                        parent=grants.at[index, "parent_grant_id"],
                        expires=grants.at[index, "expires_at"],
                        parent_expires=parent["expires_at"][index],
                        parent_depth=parent["delegation_depth"][index],
                    ),
                )
            )
    coverage: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[str, str] | None] = {}
    for index in known[known].index:
        key = (tuple(grants.at[index, "scopes"] or ()), tuple(parent["scopes"][index] or ()))
        if key not in coverage:
            try:
                beyond = uncovered(list(key[0]), list(key[1]))
                coverage[key] = (
                    (
                        "scopes_not_covered",
                        f"{' '.join(beyond)} not covered by parent scopes {' '.join(key[1])}",
                    )
                    if beyond
                    else None
                )
            except InvalidScope as exc:
                coverage[key] = ("invalid_scope", exc.message)
        found = coverage[key]
        if found is not None:
            rows.append((grants.at[index, "grant_id"], *found))
    table = pd.DataFrame(rows, columns=["grant_id", "problem", "detail"])
    table["seq"] = safe_map(table["grant_id"], event_seq)
    for name in ("parent_grant_id", "agent_id", "delegation_depth"):
        table[name] = safe_map(table["grant_id"], lookup[name])
    evidence = table[
        ["seq", "grant_id", "parent_grant_id", "agent_id", "delegation_depth", "problem", "detail"]
    ]
    children = int(child.sum())
    metrics: dict[str, Any] = {
        "grants": len(grants),
        "delegated_grants": children,
        "depth_limit": limit,
        "max_depth": int(depth.max()) if len(grants) else 0,
        "problems": _problem_counts(evidence),
    }
    if evidence.empty:
        summary = (
            f"all {children} delegated grants are within their parents' scopes and lifetimes, "
            f"depth at most {metrics['max_depth']} (limit {limit})"
        )
    else:
        summary = (
            f"{evidence['grant_id'].nunique()} grants break delegation rules: "
            + _listing(metrics["problems"])
        )
    return _result(ds, 7, evidence.empty, summary, evidence, metrics)

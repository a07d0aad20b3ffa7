"""SPIKE (issue 17 item 2, helper F): checks 2, 4, 6 and 7 written once for an engine give, on
DuckDB and on Spark, exactly the CheckResults of today's pandas checks (verdict, summary,
metrics, evidence with its seqs, dtypes and row order), on the datasets the spike's own tests use:
the committed bundle as frames, the sample ledger regenerated from its seed and exported to
parquet, the dirty ledger with planted problems (as parquet), and frames edited to hold what the
library refuses to write (a missing grant and agent, a wrong DID, a broken delegation path, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import test_engines_spike as spike
from test_analysis_checks import Story
from test_engines_spike import PLANTED, REVIEW, assert_same, planted

from grantex_local.analysis import (
    Dataset,
    check_delegation,
    check_grant_window,
    check_provenance,
    revocation_latency,
)
from grantex_local.analysis.checks import CheckResult
from grantex_local.analysis.engines import Engine, EngineDataset, from_dataset, from_parquet
from grantex_local.analysis.sqlchecks.delegation import sql_check_delegation
from grantex_local.analysis.sqlchecks.latency import sql_revocation_latency
from grantex_local.analysis.sqlchecks.provenance import sql_check_provenance
from grantex_local.analysis.sqlchecks.window import sql_check_grant_window

# the spike's fixtures (one engine per module and engine, the sample and dirty datasets), shared
engine_name, engine, sample, dirty = spike.engine_name, spike.engine, spike.sample, spike.dirty

Pair = tuple[Callable[..., CheckResult], Callable[..., CheckResult], dict[str, Any]]


def pairs(cache_window: str) -> dict[int, Pair]:
    """check id → (pandas check, engine check, keyword arguments both take)."""
    return {
        2: (check_provenance, sql_check_provenance, {}),
        4: (check_grant_window, sql_check_grant_window, {"cache_window": cache_window}),
        6: (revocation_latency, sql_revocation_latency, {"cache_window": cache_window}),
        7: (check_delegation, sql_check_delegation, {}),
    }


def run_both(ds: Dataset, eds: EngineDataset, checks: dict[int, Pair]) -> dict[int, CheckResult]:
    results = {}
    for check_id, (pandas_check, sql_check, options) in checks.items():
        expected = pandas_check(ds, **options)
        got = sql_check(eds, **options)
        assert_same(expected, got)
        results[check_id] = got
    return results


def test_committed_bundle_as_frames(engine: Engine, sample: tuple[Dataset, Path, Dataset]) -> None:
    bundle, _, _ = sample
    results = run_both(bundle, from_dataset(engine, bundle), pairs(REVIEW["cache_window"]))
    for check_id in (4, 6):
        assert planted(check_id) and set(planted(check_id)) <= set(results[check_id].cited_seqs())
        assert not results[check_id].passed
    assert results[2].metrics["actions"] > 0 and results[7].metrics["grants"] > 0


def test_sample_parquet_export(engine: Engine, sample: tuple[Dataset, Path, Dataset]) -> None:
    bundle, directory, loaded = sample
    eds = from_parquet(engine, directory, as_of=PLANTED["period"]["end"])
    results = run_both(loaded, eds, pairs(REVIEW["cache_window"]))
    on_bundle = run_both(bundle, from_dataset(engine, bundle), pairs(REVIEW["cache_window"]))
    for check_id, result in results.items():
        assert (result.passed, result.summary) == (on_bundle[check_id].passed, on_bundle[check_id].summary)


def test_dirty_parquet_export(engine: Engine, dirty: tuple[Story, Path, Dataset]) -> None:
    story, directory, ds = dirty
    eds = from_parquet(engine, directory, as_of=ds.as_of)
    for window in ("0s", "30s"):
        results = run_both(ds, eds, pairs(window))
        assert story.seqs["after_expiry"] in results[4].cited_seqs()
        assert results[6].metrics["grants_with_late_actions"] > 0
    assert not results[2].passed  # the dirty ledger holds a sandbox consent


def _edited(original: Dataset, story: Story) -> Dataset:
    """What the library refuses to write, planted in the loaded frames: an action under a grant
    that does not exist, by an agent that does not exist, with another agent's DID, under another
    principal; a child grant whose parent is gone, one issued before its parent, an offline entry
    acted on the device before a revocation, a revocation never logged, a duplicated seq."""
    audit = original.audit.copy()
    grants = original.grants.copy()
    agents = original.agents.copy()
    main = story.ids["dev_main"]
    actions = audit.index[~audit["action"].str.startswith("grantex.").fillna(False).astype(bool)]
    first, second, _, fourth = actions[:4]
    audit.loc[first, "grant_id"] = "grant_nowhere"
    audit.loc[second, "agent_id"] = "agent_nowhere"
    by_payer = audit.index[audit["seq"].isin([story.seqs["ok_payment"]]) & (audit["developer_id"] == main)]
    audit.loc[by_payer, "agent_did"] = "did:example:someone-else"
    audit.loc[fourth, "principal_id"] = None
    # the same seq failing the same test in two chains: listed by chain, as the frame holds them
    other = audit.loc[actions].loc[audit.loc[actions, "developer_id"] != main]
    moved = audit.loc[actions].loc[audit.loc[actions, "developer_id"] == main].index[-1]
    audit.loc[moved, "seq"] = other["seq"].iloc[0]
    tied = audit.index.isin([moved, other.index[0]])
    audit.loc[tied, "agent_id"] = "agent_nowhere"
    audit.loc[tied, "timestamp"] -= pd.Timedelta(days=3650)
    audit = pd.concat([audit, audit.loc[(audit["developer_id"] == main) & (audit["seq"] == 40)]],
                      ignore_index=True)
    late = (audit["developer_id"] == main) & (audit["seq"] == story.seqs["after_revocation"])
    audit.loc[late, "device_timestamp"] = audit.loc[late, "timestamp"] - pd.Timedelta(hours=1)
    unlogged = (audit["action"] == "grantex.grant.revoked") & (audit["grant_id"] == story.ids["g_help"])
    audit = audit.loc[~unlogged].reset_index(drop=True)
    short = grants["grant_id"] == story.ids["g_short"]
    grants.loc[short, "revoked_at"] = grants.loc[short, "issued_at"] + pd.Timedelta(minutes=10)
    sub = grants["grant_id"] == story.ids["g_sub"]
    grants.loc[sub, "parent_grant_id"] = "grant_gone"
    child = grants.index[grants["parent_grant_id"].notna() & ~sub]
    if len(child):
        grants.loc[child[0], "issued_at"] = grants.loc[child[0], "issued_at"] - pd.Timedelta(days=400)
    grants.loc[grants["grant_id"] == story.ids["g_pay"], "issued_at"] += pd.Timedelta(days=3650)
    agents = agents.loc[agents["agent_id"] != story.ids["shorty"]]
    return Dataset(**{**original.frames(), "audit": audit, "grants": grants, "agents": agents},
                   kind=original.kind, path=original.path, settings=original.settings,
                   integrity=original.integrity, as_of=original.as_of)


def test_planted_frames(engine: Engine, dirty: tuple[Story, Path, Dataset]) -> None:
    story, _, original = dirty
    ds = _edited(original, story)
    results = run_both(ds, from_dataset(engine, ds), pairs("0s"))
    for check_id in (2, 4):  # a seq cited from two chains in one part: the order is tested
        evidence = results[check_id].evidence
        assert evidence.duplicated(["seq", "problem"]).any()
    assert {"grant_missing", "agent_missing", "agent_did_mismatch", "principal_mismatch"} <= set(
        results[2].evidence["problem"])
    assert {"before_issue", "after_expiry"} <= set(results[4].evidence["problem"])
    assert {"parent_missing", "issued_before_parent"} <= set(results[7].evidence["problem"])
    assert results[6].metrics["revoked_grants"] == len(results[6].evidence)
    assert results[6].metrics["grants_with_late_actions"] > 0

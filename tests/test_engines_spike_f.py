"""Checks 2, 4, 6 and 7, now one SQL definition each, give on DuckDB and on Spark exactly the
CheckResults of the frozen pandas checks (``legacy_checks``: verdict, summary, metrics, evidence
with its seqs, dtypes and row order), on the committed bundle as frames, the sample ledger
regenerated from its seed and exported to parquet, the dirty ledger with planted problems (as
parquet), and frames edited to hold what the library refuses to write (a missing grant and agent,
a wrong DID, a broken delegation path, ...).

Why against a frozen copy: the pandas bodies are gone, so the only witness of "same results as
before" is the old package kept aside; the lead replaces this file with a golden-file test.
Each case is parametrized by check (``-k check6`` selects check 6 alone).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from test_analysis_checks import Story, build_dirty

from grantex_local.analysis import (
    Dataset,
    check_delegation,
    check_grant_window,
    check_provenance,
    export_parquet,
    load,
    revocation_latency,
)
from grantex_local.analysis.checks import CheckResult, base
from grantex_local.analysis.engines import Engine, EngineDataset, from_dataset, from_parquet, open_engine
from grantex_local.sample import generate

legacy = pytest.importorskip("legacy_checks")

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
PLANTED = json.loads((SAMPLE / "planted.json").read_text())
REVIEW = PLANTED["reviewParameters"]

Check = Callable[..., CheckResult]
CHECKS: dict[int, tuple[str, Check, bool]] = {
    2: ("check_provenance", check_provenance, False),
    4: ("check_grant_window", check_grant_window, True),
    6: ("revocation_latency", revocation_latency, True),
    7: ("check_delegation", check_delegation, False),
}
"""check id → (function name, the new function, whether it takes ``cache_window``)."""


@pytest.fixture(scope="module", params=["duckdb", "spark"])
def engine_name(request: pytest.FixtureRequest) -> str:
    if request.param == "spark":
        pytest.importorskip("pyspark")
        if shutil.which("java") is None:
            pytest.skip("Spark needs a JDK")
    return str(request.param)


@pytest.fixture(scope="module")
def engine(engine_name: str) -> Iterator[Engine]:
    with open_engine(engine_name) as opened:
        yield opened


@pytest.fixture(params=sorted(CHECKS), ids=[f"check{c}" for c in sorted(CHECKS)])
def check_id(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, Path, Dataset]:
    """The committed bundle loaded, and the ledger the generator makes from the same seed,
    exported to parquet (the engines' format) and loaded as frames too."""
    root = tmp_path_factory.mktemp("sample")
    generate(root / "sample.db", seed=PLANTED["seed"], months=PLANTED["months"], size=PLANTED["size"])
    export_parquet(root / "sample.db", root / "parquet")
    end = PLANTED["period"]["end"]
    return load(SAMPLE / "bundle", as_of=end), root / "parquet", load(root / "parquet", as_of=end)


@pytest.fixture(scope="module")
def dirty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Story, Path, Dataset]:
    root = tmp_path_factory.mktemp("dirty")
    story = build_dirty(root / "dirty.db")
    export_parquet(story.gx.ledger, root / "parquet")
    return story, root / "parquet", load(root / "parquet")


def assert_same(expected: CheckResult, got: CheckResult) -> None:
    assert (got.id, got.name, got.passed, got.clauses) == (
        expected.id, expected.name, expected.passed, expected.clauses)
    assert got.summary == expected.summary
    assert got.metrics == expected.metrics
    assert got.cited_seqs() == expected.cited_seqs()
    pd.testing.assert_frame_equal(got.evidence, expected.evidence)
    assert got.evidence_rows == len(got.evidence) and not got.evidence_truncated


def judge(check_id: int, frames: Dataset, eds: Dataset | EngineDataset, cache_window: str) -> CheckResult:
    """The frozen pandas check on ``frames`` (expected) and the new one on ``eds`` (got): equal."""
    name, check, windowed = CHECKS[check_id]
    options: dict[str, Any] = {"cache_window": cache_window} if windowed else {}
    got = check(eds, **options)
    assert_same(getattr(legacy, name)(frames, **options), got)
    return got


def planted(check_id: int) -> list[int]:
    return sorted(s for p in PLANTED["planted"].values() for s in p["foundBy"].get(str(check_id), []))


def test_committed_bundle_as_frames(
    engine: Engine, engine_name: str, sample: tuple[Dataset, Path, Dataset], check_id: int
) -> None:
    bundle, _, _ = sample
    result = judge(check_id, bundle, from_dataset(engine, bundle), REVIEW["cache_window"])
    if engine_name == "duckdb":  # a pandas Dataset goes through engine_dataset's own DuckDB
        assert_same(result, judge(check_id, bundle, bundle, REVIEW["cache_window"]))
    if check_id in (4, 6):
        assert planted(check_id) and set(planted(check_id)) <= set(result.cited_seqs())
        assert not result.passed
    if check_id == 2:
        assert result.metrics["actions"] > 0
    if check_id == 7:
        assert result.metrics["grants"] > 0


def test_sample_parquet_export(engine: Engine, sample: tuple[Dataset, Path, Dataset], check_id: int) -> None:
    bundle, directory, loaded = sample
    eds = from_parquet(engine, directory, as_of=PLANTED["period"]["end"])
    result = judge(check_id, loaded, eds, REVIEW["cache_window"])
    on_bundle = judge(check_id, bundle, from_dataset(engine, bundle), REVIEW["cache_window"])
    assert (result.passed, result.summary) == (on_bundle.passed, on_bundle.summary)


@pytest.mark.parametrize("cache_window", ["0s", "30s"])
def test_dirty_parquet_export(
    engine: Engine, dirty: tuple[Story, Path, Dataset], check_id: int, cache_window: str
) -> None:
    story, directory, ds = dirty
    result = judge(check_id, ds, from_parquet(engine, directory, as_of=ds.as_of), cache_window)
    if check_id == 4:
        assert story.seqs["after_expiry"] in result.cited_seqs()
    if check_id == 6:
        assert result.metrics["grants_with_late_actions"] > 0
    if check_id == 2:
        assert not result.passed  # the dirty ledger holds a sandbox consent


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


def test_planted_frames(engine: Engine, dirty: tuple[Story, Path, Dataset], check_id: int) -> None:
    story, _, original = dirty
    ds = _edited(original, story)
    result = judge(check_id, ds, from_dataset(engine, ds), "0s")
    if check_id in (2, 4):  # a seq cited from two chains in one part: the order is tested
        assert result.evidence.duplicated(["seq", "problem"]).any()
    if check_id == 2:
        assert {"grant_missing", "agent_missing", "agent_did_mismatch", "principal_mismatch"} <= set(
            result.evidence["problem"])
        # two chains' actions with one seq are two actions (legacy counted seq numbers once)
        assert result.summary.startswith(
            f"{len(result.evidence[['developer_id', 'seq']].drop_duplicates())} of ")
    if check_id == 4:
        assert {"before_issue", "after_expiry"} <= set(result.evidence["problem"])
    if check_id == 7:
        assert {"parent_missing", "issued_before_parent"} <= set(result.evidence["problem"])
    if check_id == 6:
        assert result.metrics["revoked_grants"] == len(result.evidence)
        assert result.metrics["grants_with_late_actions"] > 0


def test_provenance_evidence_capped(
    engine: Engine, dirty: tuple[Story, Path, Dataset], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Check 2 past the evidence limit: the first rows of the full listing, the full count beside
    them, and the summary and metrics of the whole (read at call time, so a test can lower it)."""
    story, _, original = dirty
    ds = _edited(original, story)
    eds = from_dataset(engine, ds)
    full = check_provenance(eds)
    limit = 3
    assert len(full.evidence) > limit
    monkeypatch.setattr(base, "EVIDENCE_LIMIT", limit)
    capped = check_provenance(eds)
    assert len(capped.evidence) == limit and capped.evidence_truncated
    assert capped.evidence_rows == len(full.evidence)
    pd.testing.assert_frame_equal(capped.evidence, full.evidence.head(limit))
    assert (capped.passed, capped.summary, capped.metrics) == (full.passed, full.summary, full.metrics)

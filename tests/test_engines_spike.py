"""SPIKE (issue 17 item 2): checks 3, 5 and 10 written once in SQL give, on DuckDB and on Spark,
exactly the CheckResults of today's pandas checks (verdict, summary, metrics, evidence with its
seqs and dtypes), on the committed sample (as loaded frames and as a parquet export of the ledger
the generator makes from the same seed) and on the dirty ledger with planted problems.

Spark runs in local mode (``local[2]``); its tests are skipped when pyspark or a JDK is absent.
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
    check_after_revocation,
    check_retention,
    check_scope,
    export_parquet,
    load,
)
from grantex_local.analysis.checks import CheckResult
from grantex_local.analysis.engines import Engine, EngineDataset, from_dataset, from_parquet, open_engine
from grantex_local.analysis.sqlchecks import (
    sql_check_after_revocation,
    sql_check_retention,
    sql_check_scope,
)
from grantex_local.sample import generate

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
PLANTED = json.loads((SAMPLE / "planted.json").read_text())
REVIEW = PLANTED["reviewParameters"]

Pair = tuple[Callable[..., CheckResult], Callable[..., CheckResult], dict[str, Any]]


def pairs(review_start: Any, review_end: Any, cache_window: str) -> dict[int, Pair]:
    """check id → (pandas check, SQL check, keyword arguments both take)."""
    return {
        3: (check_scope, sql_check_scope, {}),
        5: (check_after_revocation, sql_check_after_revocation, {"cache_window": cache_window}),
        10: (check_retention, sql_check_retention, {"review_start": review_start, "review_end": review_end}),
    }


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


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, Path, Dataset]:
    """The committed bundle loaded, and the ledger the generator makes from the same seed,
    exported to parquet (the engines' format) and loaded by pandas too."""
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


def run_both(ds: Dataset, eds: EngineDataset, checks: dict[int, Pair]) -> dict[int, CheckResult]:
    results = {}
    for check_id, (pandas_check, sql_check, options) in checks.items():
        expected = pandas_check(ds, **options)
        got = sql_check(eds, **options)
        assert_same(expected, got)
        results[check_id] = got
    return results


def planted(check_id: int) -> list[int]:
    return sorted(s for p in PLANTED["planted"].values() for s in p["foundBy"].get(str(check_id), []))


def test_committed_bundle_as_frames(engine: Engine, sample: tuple[Dataset, Path, Dataset]) -> None:
    bundle, _, _ = sample
    results = run_both(bundle, from_dataset(engine, bundle),
                       pairs(REVIEW["review_start"], REVIEW["review_end"], REVIEW["cache_window"]))
    assert results[3].cited_seqs() == planted(3) and not results[3].passed
    assert results[5].cited_seqs() == planted(5) and not results[5].passed
    assert results[10].passed and results[10].metrics["entries"] == PLANTED["counts"]["auditEntries"]


def test_sample_parquet_export(engine: Engine, sample: tuple[Dataset, Path, Dataset]) -> None:
    bundle, directory, loaded = sample
    eds = from_parquet(engine, directory, as_of=PLANTED["period"]["end"])
    review = pairs(REVIEW["review_start"], REVIEW["review_end"], REVIEW["cache_window"])
    results = run_both(loaded, eds, review)
    assert results[3].cited_seqs() == planted(3) and results[5].cited_seqs() == planted(5)
    # the same findings as on the committed bundle (the seqs are the generator's, hashes differ)
    on_bundle = run_both(bundle, from_dataset(engine, bundle),
                         pairs(REVIEW["review_start"], REVIEW["review_end"], REVIEW["cache_window"]))
    for check_id, result in results.items():
        assert (result.passed, result.summary) == (on_bundle[check_id].passed, on_bundle[check_id].summary)


@pytest.mark.parametrize("cache_window", ["0s", "30s"])
def test_dirty_parquet_export(engine: Engine, dirty: tuple[Story, Path, Dataset], cache_window: str) -> None:
    story, directory, ds = dirty
    eds = from_parquet(engine, directory, as_of=ds.as_of)
    results = run_both(ds, eds, pairs("2026-03-01", "2026-04-01", cache_window))
    assert {story.seqs["scope_outside"], story.seqs["amount_over"]} <= set(results[3].cited_seqs())
    assert story.seqs["after_ancestor"] in results[5].cited_seqs()
    assert results[5].metrics["blocked_after_revocation"] == 1
    assert [p for p in results[10].evidence["problem"]] == ["period_end_not_covered"]


def test_planted_gaps_duplicates_and_unlogged_revocation(
    engine: Engine, dirty: tuple[Story, Path, Dataset]
) -> None:
    """What the library refuses to write, planted in the loaded frames (as the pandas checks'
    tests do): a missing head, a gap, a duplicate seq, an offline entry, a revocation never logged."""
    story, _, original = dirty
    audit = original.audit.copy()
    main = story.ids["dev_main"]
    in_main = audit["developer_id"] == main
    gone = audit.index[in_main & audit["seq"].isin([1, 2, 30, 31])]
    twice = audit.loc[in_main & (audit["seq"] == 40)]
    audit = pd.concat([audit.drop(index=gone), twice], ignore_index=True)
    late = (audit["developer_id"] == main) & (audit["seq"] == story.seqs["after_revocation"])
    audit.loc[late, "device_timestamp"] = audit.loc[late, "timestamp"] - pd.Timedelta(hours=1)
    grants = original.grants.copy()
    short = grants["grant_id"] == story.ids["g_short"]
    grants.loc[short, "revoked_at"] = grants.loc[short, "issued_at"] + pd.Timedelta(minutes=10)
    ds = Dataset(**{**original.frames(), "audit": audit, "grants": grants}, kind=original.kind,
                 path=original.path, settings=original.settings, integrity=original.integrity,
                 as_of=original.as_of)
    results = run_both(ds, from_dataset(engine, ds), pairs("2026-03-01", None, "0s"))
    problems = set(results[10].evidence["problem"])
    assert {"head_missing", "seq_gap", "duplicate_seq", "period_start_not_covered"} <= problems
    assert "revocation_not_logged" in set(results[5].evidence["problem"])
    assert story.seqs["after_revocation"] not in results[5].cited_seqs()  # the device acted before


def test_duckdb_and_spark_agree(sample: tuple[Dataset, Path, Dataset]) -> None:
    """The two engines side by side on the parquet export (both must be installed)."""
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("Spark needs a JDK")
    _, directory, _ = sample
    checks = pairs(REVIEW["review_start"], REVIEW["review_end"], "30s")
    with open_engine("duckdb") as duck, open_engine("spark") as spark:
        left, right = from_parquet(duck, directory), from_parquet(spark, directory)
        for _, sql_check, options in checks.values():
            assert_same(sql_check(left, **options), sql_check(right, **options))

"""The notebooks are deliverables: they run top to bottom on the sample data, and are committed clean.

Why: a notebook that only works on its author's machine, or that carries last week's outputs,
misleads the auditor reading it. Each notebook is executed with nbclient (what CI runs) in a
temporary directory, with its ``parameters`` cell pointed at the committed sample bundle by
absolute path, the way papermill would inject parameters; any cell error fails the test.

Each runs under every ``ENGINE`` a reader may pick on a laptop (``duckdb``, the default, and
``pandas``), and what they print must agree: the numbers are one SQL text whichever engine holds
the log. Spark is left to tests/test_engines.py (the checks' SQL on both engines): a Spark session
here would add a JVM start to each notebook run on CI's two cores.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
BUNDLE = ROOT / "sample_data" / "bundle"
PLANTED = json.loads((ROOT / "sample_data" / "planted.json").read_text())
NAMES = ("audit_trail_analysis.ipynb", "compliance_review.ipynb")
ENGINES = ("duckdb", "pandas")
CELL_TIMEOUT = 300


def parameters_cell(book: Any) -> Any:
    cell = next(c for c in book.cells if c.cell_type == "code")
    assert "parameters" in cell.metadata.get("tags", []), "the first code cell must be tagged 'parameters'"
    return cell


def execute(name: str, workdir: Path, engine: str = "duckdb") -> Any:
    """Run a notebook in ``workdir`` with SOURCE, OUTPUT_DIR and ENGINE overridden (other
    parameters kept)."""
    pytest.importorskip("grantex_local.analysis")
    book = nbformat.read(NOTEBOOKS / name, as_version=4)
    cell = parameters_cell(book)
    given = {"SOURCE": str(BUNDLE), "OUTPUT_DIR": str(workdir), "ENGINE": engine}
    kept = [line for line in cell.source.splitlines() if not line.startswith(tuple(f"{k} =" for k in given))]
    cell.source = "\n".join([*(f"{k} = {v!r}" for k, v in given.items()), *kept])
    client = NotebookClient(book, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}})
    client.execute()  # raises CellExecutionError naming the cell that failed
    return book


Run = Callable[[str], tuple[Any, Path]]


def runner(name: str, factory: pytest.TempPathFactory) -> Run:
    """Each engine's run of ``name`` once per module: the per-engine tests and the test that
    compares the engines read the same runs."""
    runs: dict[str, tuple[Any, Path]] = {}

    def run(engine: str) -> tuple[Any, Path]:
        if engine not in runs:
            workdir = factory.mktemp(f"{Path(name).stem}-{engine}")
            runs[engine] = (execute(name, workdir, engine), workdir)
        return runs[engine]

    return run


@pytest.fixture(scope="module")
def analysis(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return runner("audit_trail_analysis.ipynb", tmp_path_factory)


@pytest.fixture(scope="module")
def review(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return runner("compliance_review.ipynb", tmp_path_factory)


def printed(cell: Any) -> str:
    """What a code cell printed and displayed as text."""
    return "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in cell.outputs)


def totals_line(book: Any) -> str:
    """The loading cell's "N audit entries, M of them agent actions, from ... to ..." line."""
    text = "".join(printed(c) for c in book.cells if c.cell_type == "code")
    return next(line for line in text.splitlines() if " audit entries, " in line)


@pytest.mark.parametrize("engine", ENGINES)
def test_audit_trail_analysis_runs_on_the_sample(analysis: Run, engine: str) -> None:
    book, workdir = analysis(engine)
    images = [o for c in book.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "display_data" and "image/png" in o.data]
    assert len(images) >= 5, "every plot is shown"
    assert {p.name for p in workdir.glob("*.png")} >= {"activity_per_week.png", "delegation_trees.png",
                                                        "least_privilege.png", "failure_rates.png"}
    text = "".join(o.get("text", "") for c in book.cells if c.cell_type == "code" for o in c.outputs)
    assert "chain: verified" in text
    from grantex_local.analysis import load

    ds = load(BUNDLE)  # the counts as the pandas frames give them, not through any SQL
    actions = ds.actions()
    assert totals_line(book).startswith(
        f"{len(ds.audit):,} audit entries, {len(actions):,} of them agent actions, "
        f"from {actions['timestamp'].min():%Y-%m-%d} to {actions['timestamp'].max():%Y-%m-%d}"
    )


def test_the_analysis_prints_the_same_numbers_under_every_engine(analysis: Run) -> None:
    """Every table and line the notebook prints after loading, and the totals line, are the
    same whichever engine scanned the log (the loading cell also prints the dataset's repr and
    the loading rate, which differ)."""
    books = {engine: analysis(engine)[0] for engine in ENGINES}
    first, *others = ENGINES
    for engine in others:
        assert totals_line(books[engine]) == totals_line(books[first])
        cells = zip(books[first].cells, books[engine].cells, strict=True)
        loaded = False
        for index, (a, b) in enumerate(cells):
            if a.cell_type != "code":
                continue
            if loaded:
                assert printed(b) == printed(a), f"cell {index}: {engine} prints otherwise than {first}"
            loaded = loaded or "load(" in a.source


@pytest.mark.parametrize("engine", ENGINES)
def test_compliance_review_writes_findings_naming_the_planted_problems(review: Run, engine: str) -> None:
    _, workdir = review(engine)
    report = json.loads((workdir / "findings.json").read_text())
    by_id = {c["id"]: c for c in report["checks"]}
    assert sorted(by_id) == list(range(1, 13))
    planted = {p["check"]: p for p in PLANTED["planted"].values()}
    for check_id, problem in planted.items():
        assert not by_id[check_id]["passed"], f"check {check_id} should fail on the planted problem"
        assert set(problem["seqs"]) <= set(by_id[check_id]["citedSeqs"])
    failing = {c["id"] for c in report["checks"] if not c["passed"]}
    also = {int(k) for p in PLANTED["planted"].values() for k in p["foundBy"]}
    assert failing == also, "only the planted problems fail"
    assert report["passed"] is False


def test_the_review_finds_the_same_under_every_engine(review: Run) -> None:
    reports = {engine: json.loads((review(engine)[1] / "findings.json").read_text()) for engine in ENGINES}
    for report in reports.values():
        report.pop("generatedAt")
    first, *others = ENGINES
    for engine in others:
        assert reports[engine] == reports[first], f"{engine} finds otherwise than {first}"


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebooks_are_stripped(name: str) -> None:
    """Outputs are never committed: no outputs, no execution counts, nothing in widget state."""
    book = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(book)
    for cell in book.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name}: a code cell has outputs"
            assert cell.execution_count is None, f"{name}: a code cell has an execution count"
    assert "widgets" not in book.metadata


@pytest.mark.parametrize("name", NAMES)
def test_parameters_point_at_the_sample_and_the_library_does_the_work(name: str) -> None:
    book = nbformat.read(NOTEBOOKS / name, as_version=4)
    params = parameters_cell(book).source
    assert 'SOURCE = "../sample_data/bundle"' in params and 'OUTPUT_DIR = "."' in params
    code = "\n".join(c.source for c in book.cells if c.cell_type == "code")
    assert "from grantex_local.analysis import" in code
    assert 'matplotlib.use("Agg")' in code
    for reimplemented in ("hashlib", "sha256", "verify_chain", "verify_rows", "sqlite3"):
        assert reimplemented not in code, f"{name} must leave {reimplemented} to the library"

"""What a fresh process imports: the package and the CLI load only what a command needs.

Each check runs a new interpreter, since this one already holds everything the other tests
imported. No timings here (bench/cold_start.py measures the cold start); these keep out the
imports that made ``grantex-local tokens verify`` start slowly.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import grant_for

import grantex_local
from grantex_local import Grantex

MARKER = "modules: "

# Never loaded by ``tokens verify`` (nor by importing the CLI): other commands' libraries and
# the analysis, server and TUI stacks. (email and http come with jwt itself, so they are allowed.)
NOT_FOR_VERIFY = [
    "grantex_local.analysis", "grantex_local.authorization", "grantex_local.client",
    "grantex_local.delegation", "grantex_local.demo", "grantex_local.export", "grantex_local.info",
    "grantex_local.policies", "grantex_local.sample", "grantex_local.server", "grantex_local.tui",
    "pandas", "pyarrow", "numpy", "jinja2", "fastapi", "starlette", "uvicorn", "httpx", "textual",
    "sqlite_utils", "zoneinfo",
]

# The write side: issuance, ULIDs (whose import reads importlib.metadata, and with it csv), the
# audit trail and its checkpoint machinery, agents, and the signing pool's thread machinery.
NOT_FOR_VERIFY_WRITE_SIDE = [
    "grantex_local.tokens", "grantex_local.audit", "grantex_local.agents", "grantex_local.ids", "ulid",
    "csv", "concurrent.futures", "logging",
]

PROBE = f"""
import sys
from grantex_local.cli import main
try:
    main()
finally:
    print({MARKER!r} + " ".join(sorted(sys.modules)))
"""


def _loaded(names: set[str], module: str) -> list[str]:
    """``module`` and its submodules among ``names``."""
    return sorted(n for n in names if n == module or n.startswith(module + "."))


def _fresh_modules(code: str, *args: str, cwd: Path) -> set[str]:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    assert lines, done.stderr
    return set(lines[-1].removeprefix(MARKER).split())


@pytest.fixture(scope="module")
def verify_modules(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """``sys.modules`` after ``grantex-local tokens verify TOKEN`` succeeded in a fresh process."""
    work = tmp_path_factory.mktemp("cold-start")
    path = work / "grantex.db"
    with Grantex(path) as gx:
        token = grant_for(gx, ["calendar:read"]).grant_token
    done = subprocess.run([sys.executable, "-c", PROBE, "tokens", "verify", token, "--ledger", str(path)],
                          capture_output=True, text=True, cwd=work)
    assert done.returncode == 0 and done.stdout.startswith("valid\n"), done.stderr
    return set(done.stdout.splitlines()[-1].removeprefix(MARKER).split())


@pytest.mark.parametrize("module", NOT_FOR_VERIFY)
def test_tokens_verify_does_not_import(verify_modules: set[str], module: str) -> None:
    assert _loaded(verify_modules, module) == []


@pytest.mark.parametrize("module", NOT_FOR_VERIFY_WRITE_SIDE)
def test_tokens_verify_does_not_import_the_write_side(verify_modules: set[str], module: str) -> None:
    assert _loaded(verify_modules, module) == []


def test_tokens_verify_imports_what_it_needs(verify_modules: set[str]) -> None:
    assert {"click", "jwt", "sqlite3", "grantex_local.ledger", "grantex_local.online",
            "grantex_local.verify"} <= verify_modules


def test_importing_the_cli_loads_no_command_library(tmp_path: Path) -> None:
    code = f"import sys, grantex_local.cli; print({MARKER!r} + ' '.join(sys.modules))"
    loaded = {m for m in _fresh_modules(code, cwd=tmp_path) if m.startswith("grantex_local")}
    # the error boundary, the ledger opener (and its group commit, standard library only) and the
    # shapes it prints; commands import the rest
    assert loaded == {"grantex_local", "grantex_local.cli", "grantex_local.clock", "grantex_local.errors",
                      "grantex_local.groupcommit", "grantex_local.ledger", "grantex_local.migrations",
                      "grantex_local.models"}


def test_importing_the_package_loads_nothing_else(tmp_path: Path) -> None:
    code = f"import sys, grantex_local; print({MARKER!r} + ' '.join(sys.modules))"
    assert _loaded(_fresh_modules(code, cwd=tmp_path), "grantex_local") == ["grantex_local"]


def test_every_public_name_still_resolves() -> None:
    assert set(grantex_local.__all__) <= set(dir(grantex_local))
    for name in grantex_local.__all__:
        assert getattr(grantex_local, name) is not None, name
    assert grantex_local.describe_scope is grantex_local.scopes.describe
    assert grantex_local.Grantex.__module__ == "grantex_local.client"
    with pytest.raises(AttributeError, match="no_such_name"):
        grantex_local.no_such_name  # noqa: B018


def test_star_import_and_submodule_import_still_work(tmp_path: Path) -> None:
    code = ("from grantex_local import *\n"
            "from grantex_local import cli, tokens, Ledger, verify_grant_token, __version__\n"
            "import grantex_local\n"
            "missing = [n for n in grantex_local.__all__ if n not in globals()]\n"
            f"print({MARKER!r} + ' '.join(missing or ['ok']))")
    assert _fresh_modules(code, cwd=tmp_path) == {"ok"}


def test_python_dash_m_runs_the_cli(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "grantex_local", "--version"], capture_output=True,
                          text=True, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == f"grantex-local {grantex_local.__version__}\n"


def test_lazy_names_match_all() -> None:
    assert set(grantex_local._LAZY) | {"__version__"} == set(grantex_local.__all__)

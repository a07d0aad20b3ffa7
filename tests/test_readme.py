"""The README's examples run, and it names every command the CLI has."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from grantex_local.cli import cli

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


def test_first_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(_blocks("python")[0], "README.md", "exec"), namespace)
    assert namespace["token"].scopes == ("flights:book", "hotels:search")  # type: ignore[attr-defined]
    assert (tmp_path / "grantex.db").exists()
    assert os.stat(tmp_path / "grantex.db").st_mode & 0o777 == 0o600


def test_readme_names_every_top_level_command() -> None:
    table = README.read_text().split("## Commands", 1)[1]
    for name in cli.commands:
        assert f"`{name}" in table, f"README's command table does not mention {name!r}"


def test_readme_starts_with_the_two_setup_commands() -> None:
    bash = _blocks("bash")
    assert "grantex-local demo" in bash[0] and "pytest" in bash[1]
    text = README.read_text()
    assert text.index("<!-- main-command -->") < text.index("<!-- test-command -->")

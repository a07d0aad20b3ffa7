"""The README's examples run, and it names every command the CLI has."""

from __future__ import annotations

import os
import pty
import re
import shutil
import subprocess
import sys
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


# ── the shell, verbatim ─────────────────────────────────────────────────────
# A user pastes the main command into their shell (it activates .venv there), then the README's
# examples and the lines the demo prints. These tests do the same in a fresh directory, with this
# interpreter's bin directory first on PATH (what the activation does), through a real bash.

BIN = Path(sys.executable).parent
INTERACTIVE = re.compile(r"\bgrantex-local (serve|tui)\b")


def _shell(script: str, cwd: Path, answer: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in bash; with ``answer``, stdin is a terminal that types it (a prompt's reply)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRANTEX_", "VIRTUAL_ENV"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    command = ["bash", "-e", "-o", "pipefail", "-c", script]
    if answer is None:
        return subprocess.run(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=300)
    typist, terminal = pty.openpty()
    try:
        os.write(typist, answer.encode())
        return subprocess.run(command, cwd=cwd, env=env, stdin=terminal, capture_output=True, text=True,
                              timeout=300)
    finally:
        os.close(typist)
        os.close(terminal)


def _main_command_tail() -> str:
    """What the main command runs once the package is installed and the venv active."""
    main = _blocks("bash")[0].strip()
    steps = [s.strip() for s in main.split("&&")]
    assert ". .venv/bin/activate" in steps, "the main command must activate the venv in the user's shell"
    assert steps[-1].startswith("grantex-local demo")
    return steps[-1]


def test_every_shell_block_runs_verbatim_in_a_fresh_directory(tmp_path: Path) -> None:
    assert shutil.which("grantex-local", path=str(BIN)), "the test needs the installed console script"
    first = _shell(_main_command_tail(), tmp_path)
    assert first.returncode == 0, first.stderr
    examples = [b for b in _blocks("bash")[2:] if not INTERACTIVE.search(b)]
    assert len(examples) >= 2, "the README lost its shell examples"
    for block in examples:
        done = _shell(block, tmp_path)
        assert done.returncode == 0, f"README block failed:\n{block}\nstderr:\n{done.stderr}"
        assert "Traceback" not in done.stderr


def test_the_lines_the_demo_prints_run_verbatim(tmp_path: Path) -> None:
    demo = _shell(_main_command_tail(), tmp_path)
    assert demo.returncode == 0, demo.stderr
    lines = [line.strip() for line in demo.stdout.split("Try next:", 1)[1].splitlines()]
    commands = [line for line in lines if line and not line.startswith("#")]
    assert commands and all(c.startswith("grantex-local ") for c in commands), commands
    assert any(" consent approve areq_" in c for c in commands), "the demo offers a request to approve"
    for command in commands:  # the revoke asks first, at a terminal: answer yes, as the reader would
        done = _shell(command, tmp_path, answer="y\n")
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"

"""Running the CLI in-process for tests: success, JSON output, and clean failures."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner, Result

from grantex_local.cli import cli as cli_group


def invoke(*args: object, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli_group, [str(a) for a in args], input=input, env=env)


def ok(*args: object, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    result = invoke(*args, input=input, env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 0, result.output
    return result


def ok_json(*args: object) -> Any:
    return json.loads(ok(*args, "--json").stdout)


def fails(exit_code: int, *args: object, input: str | None = None) -> Result:
    """A clean failure: the exit code, one ``error:`` line on stderr, no traceback."""
    result = invoke(*args, input=input)
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == exit_code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return result

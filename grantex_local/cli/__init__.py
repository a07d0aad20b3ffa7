"""The ``grantex-local`` command line: thin click commands over the library.

This package's ``__init__`` is the CLI's base layer: the root group, the error boundary, the
shared options and the output helpers. They live here rather than in a module of their own
because every command needs them and ``import grantex_local.cli`` is to load nothing else of the
package. Each command group lives in its own module (:data:`COMMANDS` names them) and imports
only from here and from the library, never from another group's module.

Every command that reads or writes a ledger goes through :func:`with_ledger`,
which opens the file with ``create=False`` (a typo'd path must fail, not
quietly make a new ledger), and every :class:`~grantex_local.errors.GrantexLocalError`
is turned into one ``error: ...`` line and an exit code in
:meth:`GrantexGroup.invoke`, so no command handles errors itself. Exit codes:
0 success, 1 a check that failed (an invalid token), 2 bad usage or input.

Commands act on the whole file, as the local administrator: lookups take
``developer_id=None`` (any developer), and flows that need a developer use the
one that owns the agent involved; only creating things defaults to the
ledger's default developer (``--developer`` picks another).

A cold start pays only for what its command needs: the root group imports a group's module
when that command is looked up (:class:`LazyCommands`), and library modules are imported
inside the commands that use them, so ``tokens verify`` never loads exports, policies or
checkpoints (tests/test_cli_imports.py keeps it that way; it also pins that importing this
package loads no submodule of it). Choices that a library module defines are read through
:class:`LibraryChoice` for the same reason.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .. import __version__, errors
from ..ledger import default_path
from ..models import ExchangeTokenResponse

if TYPE_CHECKING:
    from ..founding import Ledger

EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2

_LEDGER_KEY = "grantex_local.ledger_path"
F = TypeVar("F", bound=Callable[..., Any])


# ── the error boundary ──────────────────────────────────────────────────────


class CliError(click.ClickException):
    """An error shown as one ``error: ...`` line on stderr, never a traceback; exits 2 (bad input)."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str) -> None:
        from ..text import escape  # here, not at the top: importing the CLI stays minimal

        super().__init__(escape(" ".join(message.split())))  # stored text may carry a bidi override

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


class CheckFailed(CliError):
    """A check that failed (an invalid token, a broken chain, a refusal to go on): exits 1.

    A class per exit code, as click does it (``exit_code`` is a class variable there).
    """

    exit_code = EXIT_CHECK_FAILED


class GrantexGroup(click.Group):
    """A group that maps the library's errors to exit codes in one place."""

    group_class = type  # subgroups are GrantexGroups too

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Refuse arguments that are not text before any command sees them: bytes that are not
        UTF-8 reach Python as lone surrogates (``\\udcff``), which no ledger lookup can bind."""
        if ctx.parent is None:
            from ..text import check_text

            for number, arg in enumerate(args, 1):
                try:
                    check_text(arg, f"command-line argument {number}")
                except errors.InvalidInput as exc:
                    raise CliError(f"{exc.message} (arguments must be UTF-8 text)") from None
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except errors.TokenInvalid as exc:
            raise CheckFailed(exc.message) from None
        except errors.GrantexLocalError as exc:
            raise CliError(exc.message) from None


# ── the ledger path and opening it ───────────────────────────────────────────


def _remember_ledger(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    # ctx.meta is shared by the whole command chain, and the leaf is parsed
    # after the group, so a leaf --ledger overrides a group --ledger.
    if value is not None:
        ctx.meta[_LEDGER_KEY] = value


def ledger_option(fn: F) -> F:
    """``--ledger PATH``, accepted both on the group and on every command."""
    return click.option(
        "--ledger", "ledger_path", metavar="PATH", default=None, expose_value=False,
        callback=_remember_ledger,
        help="Ledger file (default: $GRANTEX_LEDGER, else ./grantex.db).",
    )(fn)


def ledger_path() -> str:
    """The ledger path the user chose: leaf option, group option, env, default."""
    return click.get_current_context().meta.get(_LEDGER_KEY) or default_path()


def with_ledger(fn: F) -> F:
    """Run a command with the existing ledger open as its first argument."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        from ..founding import Ledger  # here, not at the top: importing the CLI stays minimal

        with Ledger(ledger_path(), create=False) as ledger:
            return fn(ledger, *args, **kwargs)

    return ledger_option(run)  # type: ignore[return-value]


def library(module: str) -> Any:
    """Import a library module by its name in the package (``"agents"``, ``"audit.trail"``)."""
    return import_module(f"..{module}", __name__)


class LibraryChoice(click.Choice):
    """A :class:`click.Choice` of values a library module defines, read when a command first needs them.

    Options are built when this module is imported; reading e.g. ``policies.EFFECTS`` then would
    import ``policies`` (and ``zoneinfo``) on every command's cold start.
    """

    def __init__(self, load: Callable[[], Iterable[str]]) -> None:
        self._load = load
        self.case_sensitive = True

    @functools.cached_property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self._load())


_GET_KEY = "grantex_local.get_field"


def _remember_field(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.meta[_GET_KEY] = value


def json_option(fn: F) -> F:
    """``--json``, and ``--get FIELD`` for shell scripts: ``ID=$(grantex-local ... --get id)``.

    Why a field picker of our own: the README's shell examples must run verbatim on a fresh
    machine, which has no ``jq``, and chaining commands needs one value per line.
    """
    fn = click.option("--get", "get_field", metavar="FIELD", default=None, expose_value=False,
                      callback=_remember_field,
                      help="Print only this field of the JSON output (e.g. id, code, grantToken; "
                           "a dotted path such as agents.0.id reaches into lists).")(fn)
    return click.option("--json", "as_json", is_flag=True,
                        help="Print JSON (the library's camelCase shapes) instead of text.")(fn)


def yes_option(fn: F) -> F:
    return click.option("--yes", "-y", is_flag=True, help="Do it without asking for confirmation.")(fn)


def developer_option(fn: F) -> F:
    return click.option("--developer", "developer_id", metavar="DEV_ID", default=None,
                        help="Developer to act as (default: the ledger's default developer).")(fn)


def developer_or_default(ledger: Ledger, developer_id: str | None) -> str:
    from .. import developers

    return developer_id or developers.default_developer(ledger).id


def developer_of_agent(ledger: Ledger, agent_id: str) -> str:
    """Flows run as the developer that owns the agent, whoever that is in this file."""
    from .. import agents

    return agents.get(ledger, None, agent_id).developer_id


def read_arg(value: str, what: str) -> str:
    """The value itself, or stdin for ``-`` (keeps bearer secrets out of shell history)."""
    text = sys.stdin.read().strip() if value == "-" else value.strip()
    if not text:
        raise CliError(f"no {what} given")
    return text


def _interactive() -> bool:
    return sys.stdin.isatty()


def confirm(action: str, yes: bool) -> None:
    """Ask before a destructive change; without a terminal to ask on, refuse rather than guess."""
    if yes:
        return
    if not _interactive():
        raise CliError(f"will not {action} without confirmation (stdin is not a terminal); pass --yes")
    if not click.confirm(f"Really {action}?", default=False):
        raise CheckFailed("cancelled; nothing was changed")


# ── output ───────────────────────────────────────────────────────────────────


def cell(value: object) -> str:
    """One value as a person reads it: text escaped where it could pass for something else
    (a bidi override, a newline, a lone surrogate in a row stored before the checks)."""
    from ..text import escape

    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return " ".join(escape(str(v)) for v in value) or "-"
    return escape(str(value))


def json_text(data: object) -> str:
    """Indented JSON, raw UTF-8 unless a lone surrogate (possible in audit metadata) forces escapes."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(data, indent=2)
    return text


def echo_json(data: object) -> None:
    click.echo(json_text(data))


def echo_table(headers: Sequence[str], rows: Iterable[Sequence[object]], empty: str) -> None:
    """Columns padded to their widest cell: readable in a terminal, greppable in a script."""
    cells = [[cell(v) for v in row] for row in rows]
    if not cells:
        click.echo(empty)
        return
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    for line in [list(headers), *cells]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def echo_fields(pairs: Iterable[tuple[str, object]]) -> None:
    items = list(pairs)
    width = max(len(k) for k, _ in items)
    for key, value in items:
        click.echo(f"{key.ljust(width)}  {cell(value)}")


def pick_field(data: object, path: str) -> object:
    """``data``'s value at a dotted ``path`` (list items by index); a clear error naming what exists."""
    value = data
    for step in path.split("."):
        if isinstance(value, dict) and step in value:
            value = value[step]
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            if isinstance(value, dict):
                known = ", ".join(sorted(value)) or "none"
                raise CliError(f"--get {path}: no field {step!r} here; fields: {known}")
            size = len(value) if isinstance(value, list) else 0
            raise CliError(f"--get {path}: {step!r} is not an index of a list of {size} item(s)"
                           if isinstance(value, list) else f"--get {path}: nothing below {step!r}")
    return value


def emit(as_json: bool, data: object, human: Callable[[], None]) -> None:
    field = click.get_current_context().meta.get(_GET_KEY)
    if field is not None:
        value = pick_field(data, field)
        if value is None:
            raise CliError(f"--get {field}: the field is empty (null) in this output")
        from ..text import escape_surrogates

        click.echo(escape_surrogates(value) if isinstance(value, str)
                   else value if isinstance(value, int | float) and not isinstance(value, bool)
                   else json_text(value))
    elif as_json:
        echo_json(data)
    else:
        human()


def _token_fields(issued: ExchangeTokenResponse) -> list[tuple[str, object]]:
    return [("grant", issued.grant_id), ("token id", issued.token_id), ("scopes", issued.scopes),
            ("expires", issued.expires_at), ("grant token", issued.grant_token),
            ("refresh token", issued.refresh_token)]


def echo_issued(issued: ExchangeTokenResponse, as_json: bool) -> None:
    def human() -> None:
        echo_fields(_token_fields(issued))
        click.echo("(the ledger keeps only a hash of the refresh token: store it now)", err=True)

    emit(as_json, issued.to_dict(), human)


# ── options and checks that several groups share ─────────────────────────────


def scope_option(required: bool, help_text: str) -> Callable[[F], F]:
    return click.option("--scope", "scopes", multiple=True, required=required, metavar="SCOPE",
                        help=help_text + " Repeat for several.")


def failed_checks(fn: F) -> F:
    """A check that fails (broken chain, forged checkpoint, bad proof or bundle) exits 1, not 2."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except errors.GrantexLocalError as exc:
            from ..audit.note import CheckpointInvalid  # here, not at import: see the module docstring
            from ..export import ExportInvalid

            if not isinstance(exc, errors.ChainBroken | CheckpointInvalid | ExportInvalid):
                raise
            raise CheckFailed(exc.message) from None

    return run  # type: ignore[return-value]


def _load_verifier_key(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """The key text given, or read from the file it names; checked here so a typo is a usage error."""
    from ..audit import checkpoints as audit_checkpoints
    from ..audit.note import CheckpointInvalid

    if value is None:
        if param.required:  # click 8.2+ runs callbacks before its own missing-value check
            raise click.MissingParameter(ctx=ctx, param=param)
        return None
    path = Path(value)
    text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else value
    try:
        audit_checkpoints.parse_verifier_key(text)
    except CheckpointInvalid as exc:
        raise click.BadParameter(exc.message) from None
    return text.strip()


def key_option(required: bool, help_text: str) -> Callable[[F], F]:
    return click.option("--key", "verifier_key", metavar="KEY_OR_FILE", default=None, required=required,
                        callback=_load_verifier_key, help=help_text)


def failure_json(exc: errors.GrantexLocalError, **extra: object) -> dict[str, object]:
    out: dict[str, object] = {"valid": False, "error": exc.code, "message": exc.message, **extra}
    if isinstance(exc, errors.ChainBroken):
        out.update(seq=exc.seq, reason=exc.reason)
    file = getattr(exc, "file", None)
    if file is not None:
        out["file"] = file
    return out


# ── the root group ───────────────────────────────────────────────────────────

COMMANDS: dict[str, str] = {
    "init": "ledger_setup:init", "info": "ledger_setup:info", "config": "ledger_setup:config",
    "demo": "ledger_setup:demo",
    "agents": "agents:agents_group",
    "authorize": "consent:authorize", "consent": "consent:consent",
    "tokens": "tokens:tokens_group",
    "grants": "grants:grants_group",
    "policies": "policies:policies_group",
    "events": "events:events_group",
    "webhooks": "webhooks:webhooks_group",
    "keys": "keys:keys_group",
    "developers": "developers:developers_group",
    "audit": "audit:audit_group",
    "export": "export:export_command", "verify-export": "export:verify_export",
    "tui": "tui:tui",
    "serve": "serve:serve_command",
    "seed": "seed:seed",
    "mcp": "mcp:mcp_command",
    "principals": "principals:principals_group",
    "anomalies": "anomalies:anomalies_group",
    "budgets": "budgets:budgets_group",
    "decisions": "decisions:decisions_group",
    "vault": "vault:vault_group",
    "bundles": "bundles:bundles_group",
}
"""Each top-level command and where it is defined: ``module:attribute``, the module in this package."""


class LazyCommands(MutableMapping[str, click.Command]):
    """The root group's commands: every name known up front, each module imported on first lookup.

    A mapping rather than click's documented ``LazyGroup`` override of ``get_command`` and
    ``list_commands``, so that ``cli.commands`` keeps working for whoever walks the command tree
    (the tests, the README check) while ``name in cli.commands`` and listing names import nothing.
    """

    def __init__(self, where: Mapping[str, str]) -> None:
        self._where = dict(where)
        self._loaded: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._loaded:
            module, attribute = self._where[name].split(":")  # KeyError: no such command
            command = getattr(import_module(f".{module}", __name__), attribute)
            if not isinstance(command, click.Command) or command.name != name:
                raise TypeError(f"{module}.{attribute} is not the command {name!r}")
            self._loaded[name] = command
        return self._loaded[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._where.setdefault(name, "")
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        del self._where[name]
        self._loaded.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._where

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


@click.group(cls=GrantexGroup, commands=LazyCommands(COMMANDS),
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="grantex-local", message="%(prog)s %(version)s")
@ledger_option
def cli() -> None:
    """grantex-local: the Grantex authorization protocol for AI agents, in one SQLite file.

    Start with 'grantex-local init' (an empty ledger) or 'grantex-local demo'
    (a ledger full of examples). Exit codes: 0 success, 1 a failed check,
    2 bad usage or input.
    """


def main() -> None:
    """Console-script entry point: a bug shows as one line, never a traceback."""
    for stream in (sys.stdout, sys.stderr):  # text no encoder takes is printed escaped, not fatal
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    try:
        cli(prog_name="grantex-local")
    except Exception as exc:
        click.echo(f"error: internal error ({type(exc).__name__}): {' '.join(str(exc).split())}",
                   err=True)
        sys.exit(EXIT_BAD_INPUT)


"""The ``grantex-local`` command line: thin click commands over the library.

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

Library modules are imported inside the commands that use them, not at the
top: a cold start then pays only for what its command needs, so
``tokens verify`` never loads exports, policies or checkpoints
(tests/test_cli_imports.py keeps it that way). Choices that a library module
defines are read through :class:`LibraryChoice` for the same reason.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from . import __version__, errors
from .clock import format_duration
from .ledger import Ledger, default_path
from .models import (
    Agent,
    AuditEntry,
    AuthorizationRequest,
    ConsentDecision,
    CreatePolicyParams,
    ExchangeTokenResponse,
    Grant,
    Policy,
    UpdatePolicyParams,
)

if TYPE_CHECKING:
    from .audit.chain import ChainReport
    from .audit.note import Checkpoint

EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2

_LEDGER_KEY = "grantex_local.ledger_path"
F = TypeVar("F", bound=Callable[..., Any])


# ── the error boundary ──────────────────────────────────────────────────────


class CliError(click.ClickException):
    """An error shown as one ``error: ...`` line on stderr, never a traceback."""

    def __init__(self, message: str, exit_code: int = EXIT_BAD_INPUT) -> None:
        from .text import escape  # here, not at the top: importing the CLI stays minimal

        super().__init__(escape(" ".join(message.split())))  # stored text may carry a bidi override
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


class GrantexGroup(click.Group):
    """A group that maps the library's errors to exit codes in one place."""

    group_class = type  # subgroups are GrantexGroups too

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Refuse arguments that are not text before any command sees them: bytes that are not
        UTF-8 reach Python as lone surrogates (``\\udcff``), which no ledger lookup can bind."""
        if ctx.parent is None:
            from .text import check_text

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
            raise CliError(exc.message, EXIT_CHECK_FAILED) from None
        except errors.GrantexLocalError as exc:
            raise CliError(exc.message, EXIT_BAD_INPUT) from None


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
        with Ledger(ledger_path(), create=False) as ledger:
            return fn(ledger, *args, **kwargs)

    return ledger_option(run)  # type: ignore[return-value]


def _library(module: str) -> Any:
    """Import a module of this package by its relative name (``"agents"``, ``"audit.trail"``)."""
    return import_module(f".{module}", __package__)


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


def _developer(ledger: Ledger, developer_id: str | None) -> str:
    from . import developers

    return developer_id or developers.default_developer(ledger).id


def _developer_of_agent(ledger: Ledger, agent_id: str) -> str:
    """Flows run as the developer that owns the agent, whoever that is in this file."""
    from . import agents

    return agents.get(ledger, None, agent_id).developer_id


def _read_arg(value: str, what: str) -> str:
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
        raise CliError("cancelled; nothing was changed", EXIT_CHECK_FAILED)


# ── output ───────────────────────────────────────────────────────────────────


def _cell(value: object) -> str:
    """One value as a person reads it: text escaped where it could pass for something else
    (a bidi override, a newline, a lone surrogate in a row stored before the checks)."""
    from .text import escape

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
    cells = [[_cell(v) for v in row] for row in rows]
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
        click.echo(f"{key.ljust(width)}  {_cell(value)}")


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
        from .text import escape_surrogates

        click.echo(escape_surrogates(value) if isinstance(value, str)
                   else value if isinstance(value, int | float) and not isinstance(value, bool)
                   else json_text(value))
    elif as_json:
        echo_json(data)
    else:
        human()


def _agent_fields(agent: Agent) -> list[tuple[str, object]]:
    return [("id", agent.id), ("did", agent.did), ("name", agent.name),
            ("description", agent.description or None), ("status", agent.status),
            ("developer", agent.developer_id), ("scopes", agent.scopes),
            ("redirect uris", agent.redirect_uris), ("key", agent.key_thumbprint),
            ("created", agent.created_at), ("updated", agent.updated_at)]


def _grant_fields(grant: Grant) -> list[tuple[str, object]]:
    return [("id", grant.id), ("status", grant.status), ("agent", f"{grant.agent_id} ({grant.agent_did})"),
            ("principal", grant.principal_id), ("developer", grant.developer_id),
            ("scopes", grant.scopes), ("depth", grant.delegation_depth),
            ("parent", grant.parent_grant_id), ("audience", grant.audience),
            ("issued", grant.issued_at), ("expires", grant.expires_at), ("revoked", grant.revoked_at)]


def _request_fields(request: AuthorizationRequest) -> list[tuple[str, object]]:
    how = None
    if request.policy_enforced:
        how = f"approved by policy {request.policy_id}"
    elif request.sandbox:
        how = "approved at once (sandbox developer)"
    return [("request", request.request_id), ("status", request.status), ("decided", how),
            ("agent", request.agent_id), ("principal", request.principal_id),
            ("developer", request.developer_id), ("scopes", request.scopes),
            ("grant lifetime", request.expires_in), ("request expires", request.expires_at),
            ("consent url", request.consent_url), ("redirect uri", request.redirect_uri),
            ("state", request.state), ("audience", request.audience), ("code", request.code)]


def _token_fields(issued: ExchangeTokenResponse) -> list[tuple[str, object]]:
    return [("grant", issued.grant_id), ("token id", issued.token_id), ("scopes", issued.scopes),
            ("expires", issued.expires_at), ("grant token", issued.grant_token),
            ("refresh token", issued.refresh_token)]


def _echo_issued(issued: ExchangeTokenResponse, as_json: bool) -> None:
    def human() -> None:
        echo_fields(_token_fields(issued))
        click.echo("(the ledger keeps only a hash of the refresh token: store it now)", err=True)

    emit(as_json, issued.to_dict(), human)


def _format_window(window: dict[str, Any] | None) -> str | None:
    if not window:
        return None
    text = (f"{window['startHour']:02d}:{window.get('startMinute', 0):02d}-"
            f"{window['endHour']:02d}:{window.get('endMinute', 0):02d} {window.get('tz', 'UTC')}")
    if window.get("days"):
        text += " days " + ",".join(str(d) for d in window["days"])
    return text


def _policy_conditions(policy: Policy) -> list[object]:
    """Agent, principal, scopes and time window, with "any" where the rule does not look."""
    return [policy.agent_id or "any", policy.principal_id or "any",
            policy.scopes if policy.scopes is not None else "any",
            _format_window(policy.time_window) or "any time"]


def _policy_fields(policy: Policy) -> list[tuple[str, object]]:
    conditions = zip(("agent", "principal", "scopes", "time window"), _policy_conditions(policy),
                     strict=True)
    return [("id", policy.id), ("name", policy.name), ("effect", policy.effect),
            ("priority", policy.priority), *conditions, ("developer", policy.developer_id),
            ("created", policy.created_at), ("updated", policy.updated_at)]


# ── the group ────────────────────────────────────────────────────────────────


@click.group(cls=GrantexGroup, context_settings={"help_option_names": ["-h", "--help"]})
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


# ── init, info, config, demo ─────────────────────────────────────────────────


@cli.command()
@click.option("--issuer", default=None, metavar="URL",
              help="Issuer URL put in every token (default http://127.0.0.1:8421, no trailing '/').")
@click.option("--max-delegation-depth", type=int, default=None, metavar="N",
              help="Deepest delegation allowed (default 3, at most 10).")
@click.option("--max-expires-in", default=None, metavar="DURATION",
              help="Longest grant lifetime a request may ask for, e.g. 24h or 7d (default 24h).")
@json_option
@ledger_option
def init(issuer: str | None, max_delegation_depth: int | None, max_expires_in: str | None,
         as_json: bool) -> None:
    """Create a new, empty ledger (refuses to touch an existing file)."""
    from .demo import remove_ledger_files

    path = ledger_path()
    if Path(path).exists():
        raise CliError(f"{path} already exists; init never overwrites a file")
    try:
        with Ledger(path, create=True, issuer=issuer) as ledger:
            if max_delegation_depth is not None:
                ledger.set_setting("max_delegation_depth", str(max_delegation_depth))
            if max_expires_in is not None:
                ledger.set_setting("max_expires_in", max_expires_in)
            _echo_info(ledger, as_json)
    except errors.GrantexLocalError:
        remove_ledger_files(path)  # a half-made ledger would block the next init
        raise


def _echo_info(ledger: Ledger, as_json: bool) -> None:
    from .info import summary

    info = summary(ledger)

    def human() -> None:
        settings = info["settings"]
        counts = info["counts"]
        dev = info["defaultDeveloper"]
        echo_fields([
            ("ledger", info["path"]), ("schema version", info["schemaVersion"]),
            ("issuer", info["issuer"]),
            *[("past issuer", f"{p['issuer']} (replaced {p['retiredAt']}; its tokens verify until "
                              f"{p['acceptedUntil']})") for p in reversed(info["pastIssuers"])],
            ("jwks url", info["jwksUrl"]),
            ("max delegation depth", settings.get("max_delegation_depth")),
            ("max expires in", format_duration(int(settings["max_expires_in"]))),
            ("created", settings.get("created_at")), ("active kid", info["activeKid"]),
            ("default developer", f"{dev['id']} ({dev['name']}, sandbox={_cell(dev['sandbox'])})"),
            ("agents", counts["agents"]),
            ("grants", f"{counts['grants']} ({counts['activeGrants']} active)"),
            ("tokens", counts["tokens"]), ("pending requests", counts["pendingRequests"]),
        ])

    emit(as_json, info, human)


@cli.command()
@json_option
@with_ledger
def info(ledger: Ledger, as_json: bool) -> None:
    """Show the ledger: path, issuer, JWKS URL, settings, active key and counts."""
    _echo_info(ledger, as_json)


@cli.group()
def config() -> None:
    """Read and change ledger settings (issuer, max_delegation_depth, max_expires_in)."""


@config.command("get")
@click.argument("key", required=False)
@json_option
@with_ledger
def config_get(ledger: Ledger, key: str | None, as_json: bool) -> None:
    """Print one setting KEY, or all of them."""
    if key is not None:
        value = ledger.setting(key)
        emit(as_json, {key: value}, lambda: click.echo(value))
        return
    settings = ledger.settings()
    emit(as_json, settings, lambda: echo_fields(sorted(settings.items())))


@config.command("set")
@click.argument("key")
@click.argument("value")
@with_ledger
def config_set(ledger: Ledger, key: str, value: str) -> None:
    """Set KEY to VALUE (validated).

    The issuer is what new tokens carry and what clients must use as their base URL; tokens
    issued under the previous issuer keep verifying until they expire (`info` lists it).
    `serve` never changes the issuer unless asked (`serve --issuer URL`).
    """
    previous = ledger.issuer if key == "issuer" else None
    click.echo(f"{key} = {ledger.set_setting(key, value)}")
    for past in ledger.past_issuers() if previous is not None else ():
        if past["issuer"] == previous:
            click.echo(f"note: tokens issued under the previous issuer {previous} keep verifying "
                       f"until they expire (the last at {past['acceptedUntil']})", err=True)


@cli.command()
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed for the demo's structure: names, principals, scopes, tree shapes and "
                   "statuses repeat for a seed; ids, keys and tokens are random every run "
                   "(with --size, ids and the planted problems' seqs repeat too).")
@click.option("--force", is_flag=True,
              help="Replace an existing ledger at the path (deletes it and its -wal/-shm first).")
@click.option("--size", type=click.Choice(["small", "large"]), default=None,
              help="Build the analysis sample instead of the short demo: months of activity by dozens "
                   "of agents with three planted problems for the compliance checks (small: 2,000 "
                   "audit entries; large: 100,000, or --entries).")
@click.option("--entries", type=click.IntRange(1_000, 10_000_000), default=None, metavar="N",
              help="With --size: exactly N audit entries (up to 10,000,000).")
@click.option("--months", type=click.IntRange(1, 24), default=3, show_default=True,
              help="With --size: how many months of activity.")
@ledger_option
def demo(seed: int, force: bool, size: str | None, entries: int | None, months: int) -> None:
    """Build a demo ledger: delegation trees, a revoked branch, an expired grant and more.

    With --size, build the sample the notebooks and compliance checks are tested on, and print
    the seqs of its planted problems.
    """
    if size is not None:
        from .sample import generate, summary_lines

        path = ledger_path()
        manifest = generate(path, seed=seed, months=months, size=size, entries=entries, force=force)
        for line in summary_lines(manifest, path):
            click.echo(line)
        return
    if entries is not None:
        raise CliError("--entries needs --size (the short demo has a fixed shape)")
    from .demo import run_demo

    for line in run_demo(ledger_path(), seed=seed, force=force, program=this_program()):
        click.echo(line)


def this_program() -> str:
    """How the shell that ran us can run us again: ``grantex-local`` when that name on PATH is
    this very program, else the path it was started by (``.venv/bin/grantex-local``), else
    ``python -m grantex_local`` with this interpreter. Commands we print must run verbatim."""
    import os
    import shlex
    import shutil

    started = sys.argv[0] if sys.argv else ""
    on_path = shutil.which("grantex-local")
    if started and on_path and os.path.realpath(on_path) == os.path.realpath(started):
        return "grantex-local"
    if Path(started).name == "grantex-local" and os.access(started, os.X_OK):
        shown = started if os.sep in started else f".{os.sep}{started}"
        return shlex.quote(shown)
    return f"{shlex.quote(sys.executable)} -m grantex_local"


# ── agents ───────────────────────────────────────────────────────────────────


@cli.group("agents")
def agents_group() -> None:
    """Register agents and manage their lifecycle and keys."""


def _scope_option(required: bool, help_text: str) -> Callable[[F], F]:
    return click.option("--scope", "scopes", multiple=True, required=required, metavar="SCOPE",
                        help=help_text + " Repeat for several.")


@agents_group.command("register")
@click.argument("name")
@_scope_option(False, "A scope the agent may ask for (resource:action[:constraint]).")
@click.option("--description", default="", help="What the agent does (shown on consent screens).")
@click.option("--redirect-uri", "redirect_uris", multiple=True, metavar="URL",
              help="A redirect URI the agent may use. Repeat for several.")
@developer_option
@json_option
@with_ledger
def agents_register(ledger: Ledger, name: str, scopes: tuple[str, ...], description: str,
                    redirect_uris: tuple[str, ...], developer_id: str | None, as_json: bool) -> None:
    """Register an agent NAME with its own key pair and DID."""
    from . import agents

    agent = agents.register(ledger, _developer(ledger, developer_id), name=name, scopes=list(scopes),
                            description=description, redirect_uris=list(redirect_uris))
    emit(as_json, agent.to_dict(), lambda: echo_fields(_agent_fields(agent)))


@agents_group.command("list")
@click.option("--status", type=LibraryChoice(lambda: _library("agents").STATUSES), default=None,
              help="Only agents in this status (default: all but deleted).")
@click.option("--developer", "developer_id", metavar="DEV_ID", default=None,
              help="Only this developer's agents (default: every developer in the file).")
@json_option
@with_ledger
def agents_list(ledger: Ledger, status: str | None, developer_id: str | None, as_json: bool) -> None:
    """List agents."""
    from . import agents

    found = agents.list_agents(ledger, developer_id, status=status)
    emit(as_json, {"agents": [a.to_dict() for a in found]}, lambda: echo_table(
        ["ID", "NAME", "STATUS", "DEVELOPER", "SCOPES"],
        [[a.id, a.name, a.status, a.developer_id, a.scopes] for a in found], "no agents"))


@agents_group.command("show")
@click.argument("agent_id")
@json_option
@with_ledger
def agents_show(ledger: Ledger, agent_id: str, as_json: bool) -> None:
    """Show agent AGENT_ID."""
    from . import agents

    agent = agents.get(ledger, None, agent_id)
    emit(as_json, agent.to_dict(), lambda: echo_fields(_agent_fields(agent)))


@agents_group.command("update")
@click.argument("agent_id")
@click.option("--name", default=None, help="New name.")
@click.option("--description", default=None, help="New description.")
@_scope_option(False, "Replace the agent's scopes with these.")
@click.option("--redirect-uri", "redirect_uris", multiple=True, metavar="URL",
              help="Replace the agent's redirect URIs with these. Repeat for several.")
@json_option
@with_ledger
def agents_update(ledger: Ledger, agent_id: str, name: str | None, description: str | None,
                  scopes: tuple[str, ...], redirect_uris: tuple[str, ...], as_json: bool) -> None:
    """Change an agent's name, description, scopes or redirect URIs."""
    from . import agents

    agent = agents.update(ledger, None, agent_id, name=name, description=description,
                          scopes=list(scopes) or None, redirect_uris=list(redirect_uris) or None)
    emit(as_json, agent.to_dict(), lambda: echo_fields(_agent_fields(agent)))


@agents_group.command("suspend")
@click.argument("agent_id")
@with_ledger
def agents_suspend(ledger: Ledger, agent_id: str) -> None:
    """Suspend an agent: its tokens, and those delegated from it, stop verifying at once."""
    from . import agents

    agent = agents.suspend(ledger, None, agent_id)
    click.echo(f"agent {agent.id} ({agent.name}) is {agent.status}")


@agents_group.command("reactivate")
@click.argument("agent_id")
@with_ledger
def agents_reactivate(ledger: Ledger, agent_id: str) -> None:
    """Reactivate a suspended agent: its unexpired, unrevoked tokens verify again."""
    from . import agents

    agent = agents.reactivate(ledger, None, agent_id)
    click.echo(f"agent {agent.id} ({agent.name}) is {agent.status}")


@agents_group.command("delete")
@click.argument("agent_id")
@yes_option
@with_ledger
def agents_delete(ledger: Ledger, agent_id: str, yes: bool) -> None:
    """Delete an agent for good (a tombstone: grants and history keep their references)."""
    from . import agents

    agent = agents.get(ledger, None, agent_id)
    confirm(f"delete agent {agent.id} ({agent.name}) for good", yes)
    agents.delete(ledger, None, agent_id)
    click.echo(f"agent {agent.id} ({agent.name}) deleted")


@agents_group.command("rotate-key")
@click.argument("agent_id")
@json_option
@with_ledger
def agents_rotate_key(ledger: Ledger, agent_id: str, as_json: bool) -> None:
    """Give an agent a new key pair; its DID stays the same."""
    from . import agents

    agent = agents.rotate_key(ledger, None, agent_id)
    emit(as_json, agent.to_dict(), lambda: click.echo(f"agent {agent.id} key is now {agent.key_thumbprint}"))


@agents_group.command("did")
@click.argument("agent_id")
@with_ledger
def agents_did(ledger: Ledger, agent_id: str) -> None:
    """Print an agent's DID document (JSON)."""
    from . import agents

    echo_json(agents.did_document(ledger, None, agent_id))


# ── authorize and consent ────────────────────────────────────────────────────


def _echo_request(request: AuthorizationRequest, as_json: bool) -> None:
    def human() -> None:
        echo_fields(_request_fields(request))
        if request.code is not None:
            click.echo(f"next: grantex-local tokens exchange --agent {request.agent_id} --code CODE",
                       err=True)
        elif request.status == "pending":
            click.echo(f"next: grantex-local consent approve {request.request_id}", err=True)

    emit(as_json, request.to_dict(), human)


@cli.command()
@click.option("--agent", "agent_id", required=True, metavar="AGENT_ID", help="The agent asking.")
@click.option("--principal", required=True, metavar="USER", help="The human the agent will act for.")
@_scope_option(True, "A scope the agent asks for.")
@click.option("--expires-in", default=None, metavar="DURATION",
              help="Grant lifetime, e.g. 1h (default 24h, at most the ledger's max_expires_in).")
@click.option("--redirect-uri", default=None, metavar="URL", help="Where the consent page sends the code.")
@click.option("--state", default=None, help="Opaque value echoed back with the code.")
@click.option("--audience", default=None, help="The 'aud' the grant's tokens will carry.")
@click.option("--code-challenge", default=None,
              help="PKCE S256 challenge: base64url SHA-256 of the code verifier (43 characters).")
@json_option
@with_ledger
def authorize(ledger: Ledger, agent_id: str, principal: str, scopes: tuple[str, ...],
              expires_in: str | None, redirect_uri: str | None, state: str | None,
              audience: str | None, code_challenge: str | None, as_json: bool) -> None:
    """Start an authorization request (policies, then sandbox, else it waits for consent)."""
    from . import authorization

    request = authorization.authorize(
        ledger, _developer_of_agent(ledger, agent_id), agent_id=agent_id, principal_id=principal,
        scopes=list(scopes), expires_in=expires_in, redirect_uri=redirect_uri, state=state,
        audience=audience, code_challenge=code_challenge,
    )
    _echo_request(request, as_json)


@cli.group()
def consent() -> None:
    """Decide authorization requests as the local human, for any developer in the file."""


@consent.command("list")
@click.option("--status", type=LibraryChoice(lambda: [*_library("authorization").STATUSES, "all"]),
              default="pending", show_default=True, help="Which requests to list.")
@json_option
@with_ledger
def consent_list(ledger: Ledger, status: str, as_json: bool) -> None:
    """List authorization requests (by default those waiting for a decision), each waiting one
    with the approval code that decides it on the consent page."""
    from . import approval, authorization

    found = authorization.list_requests(ledger, None, status=None if status == "all" else status)
    codes = {r.request_id: approval.approval_code(ledger, r.request_id)
             for r in found if r.status == "pending"}
    rows = [dict(r.to_dict(), **({"approvalCode": codes[r.request_id]} if r.request_id in codes else {}))
            for r in found]
    emit(as_json, {"requests": rows}, lambda: echo_table(
        ["ID", "STATUS", "AGENT", "PRINCIPAL", "DEVELOPER", "SCOPES", "EXPIRES", "APPROVAL CODE"],
        [[r.request_id, r.status, r.agent_id, r.principal_id, r.developer_id, r.scopes, r.expires_at,
          codes.get(r.request_id)] for r in found],
        f"no {status} requests" if status != "all" else "no requests"))


@consent.command("show")
@click.argument("request_id")
@json_option
@with_ledger
def consent_show(ledger: Ledger, request_id: str, as_json: bool) -> None:
    """Show what a consent screen shows for REQUEST_ID: who asks, for whom, and what; while it
    waits, also the approval code that decides it on the consent page (only you see it)."""
    from . import approval, authorization

    details = authorization.consent_details(ledger, request_id, None)
    pending = details["request"]["status"] == "pending"
    if pending:
        details["approvalCode"] = approval.approval_code(ledger, request_id)

    def human() -> None:
        request, agent, dev = details["request"], details["agent"], details["developer"]
        echo_fields([
            ("request", f"{request['authRequestId']} ({request['status']})"),
            ("agent", f"{agent['name']} ({agent['id']}, {agent['status']})"),
            ("agent did", agent["did"]), ("description", agent["description"] or None),
            ("developer", f"{dev['name']} ({dev['id']})"), ("principal", request["principalId"]),
            ("grant lifetime", details["grantExpiresIn"]),
            ("request expires", details["requestExpiresAt"]),
        ])
        click.echo("asks to:")
        for item in details["scopes"]:
            click.echo(f"  - {item['description']}  ({item['scope']})")
        if pending:
            code = details["approvalCode"]
            echo_fields([("approval code", code),
                         ("consent page", f"{request['consentUrl']}#approval={code}")])

    emit(as_json, details, human)


def _echo_decision(decision: ConsentDecision, as_json: bool) -> None:
    emit(as_json, decision.to_dict(), lambda: echo_fields(
        [("request", decision.request_id), ("status", decision.status), ("code", decision.code),
         ("redirect uri", decision.redirect_uri), ("state", decision.state)]))


@consent.command("approve")
@click.argument("request_id")
@click.option("--decided-by", default=None, metavar="NAME",
              help="Who approves (recorded; default: your operating-system user name).")
@json_option
@with_ledger
def consent_approve(ledger: Ledger, request_id: str, decided_by: str | None, as_json: bool) -> None:
    """Approve REQUEST_ID and print its single-use code (valid 10 minutes)."""
    from . import authorization

    _echo_decision(authorization.approve(ledger, request_id, decided_by=decided_by or authorization.os_user(),
                                         channel="cli"), as_json)


@consent.command("deny")
@click.argument("request_id")
@click.option("--decided-by", default=None, metavar="NAME",
              help="Who denies (recorded; default: your operating-system user name).")
@json_option
@with_ledger
def consent_deny(ledger: Ledger, request_id: str, decided_by: str | None, as_json: bool) -> None:
    """Deny REQUEST_ID (no code is issued)."""
    from . import authorization

    _echo_decision(authorization.deny(ledger, request_id, decided_by=decided_by or authorization.os_user(),
                                      channel="cli"), as_json)


# ── tokens ───────────────────────────────────────────────────────────────────


@cli.group("tokens")
def tokens_group() -> None:
    """Exchange codes, verify, decode, refresh and revoke grant tokens."""


@tokens_group.command("exchange")
@click.option("--code", required=True, help="The authorization code ('-' reads it from stdin).")
@click.option("--agent", "agent_id", required=True, metavar="AGENT_ID",
              help="The agent the code was issued to.")
@click.option("--code-verifier", default=None, help="The PKCE verifier, when the request had a challenge.")
@click.option("--redirect-uri", default=None, metavar="URL", help="Must match the request's, when given.")
@json_option
@with_ledger
def tokens_exchange(ledger: Ledger, code: str, agent_id: str, code_verifier: str | None,
                    redirect_uri: str | None, as_json: bool) -> None:
    """Trade an authorization code for a grant token and a refresh token."""
    from . import tokens

    issued = tokens.exchange(ledger, _developer_of_agent(ledger, agent_id), code=_read_arg(code, "code"),
                             agent_id=agent_id, code_verifier=code_verifier, redirect_uri=redirect_uri)
    _echo_issued(issued, as_json)


def _verification(ledger: Ledger, token: str, offline: bool, required: list[str]) -> dict[str, Any]:
    """The verification answer as a dict; raises TokenInvalid for a token that fails."""
    from .online import verify_online

    if offline:
        return {"valid": True, **ledger.verify_offline(token, required or None).to_dict()}
    return verify_online(ledger, token, required_scopes=required or None).to_dict()


@tokens_group.command("verify")
@click.argument("token")
@click.option("--offline", is_flag=True,
              help="Check signature, claims and expiry only (no revocation or agent status).")
@click.option("--required-scope", "required", multiple=True, metavar="SCOPE",
              help="A scope the token must cover. Repeat for several.")
@json_option
@with_ledger
def tokens_verify(ledger: Ledger, token: str, offline: bool, required: tuple[str, ...],
                  as_json: bool) -> None:
    """Verify TOKEN ('-' reads stdin) against the ledger; exit 1 when it is invalid."""
    try:
        result = _verification(ledger, _read_arg(token, "token"), offline, list(required))
    except errors.TokenInvalid as exc:
        result = {"valid": False, "reason": exc.reason, "message": exc.message}
    if as_json:
        echo_json(result)
    if not result["valid"]:
        detail = result.get("message")
        raise CliError(f"token is invalid: {result['reason']}" + (f" ({detail})" if detail else ""),
                       EXIT_CHECK_FAILED)
    if not as_json:
        click.echo("valid" + (" (offline check only)" if offline else ""))
        echo_fields([(k, v) for k, v in result.items() if k != "valid"])


@tokens_group.command("decode")
@click.argument("token")
@json_option
@ledger_option
def tokens_decode(token: str, as_json: bool) -> None:
    """Show TOKEN's header and claims WITHOUT verifying anything ('-' reads stdin)."""
    import jwt

    raw = _read_arg(token, "token")
    try:
        header = jwt.get_unverified_header(raw)
        claims = jwt.decode(raw, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise CliError(f"not a decodable JWT: {exc}") from None
    decoded = {"verified": False, "header": header, "claims": claims}

    def human() -> None:
        click.echo("UNVERIFIED: signature, issuer, expiry and revocation were NOT checked")
        click.echo("header:")
        click.echo(json.dumps(header, indent=2))
        click.echo("claims:")
        click.echo(json.dumps(claims, indent=2))

    emit(as_json, decoded, human)


@tokens_group.command("refresh")
@click.option("--refresh-token", required=True, help="The refresh token ('-' reads it from stdin).")
@click.option("--agent", "agent_id", required=True, metavar="AGENT_ID", help="The agent holding the grant.")
@json_option
@with_ledger
def tokens_refresh(ledger: Ledger, refresh_token: str, agent_id: str, as_json: bool) -> None:
    """Swap a refresh token for a new grant token (same grant, same expiry)."""
    from . import tokens

    issued = tokens.refresh(ledger, _developer_of_agent(ledger, agent_id),
                            refresh_token=_read_arg(refresh_token, "refresh token"), agent_id=agent_id)
    _echo_issued(issued, as_json)


@tokens_group.command("revoke")
@click.argument("jti")
@with_ledger
def tokens_revoke(ledger: Ledger, jti: str) -> None:
    """Revoke one token by its id (jti); grants delegated from it are revoked too."""
    from . import tokens

    cascaded = tokens.revoke(ledger, None, jti)
    click.echo(f"token {jti} revoked")
    if cascaded:
        click.echo(f"also revoked {len(cascaded)} delegated grant(s): {' '.join(cascaded)}")


# ── grants ───────────────────────────────────────────────────────────────────


@cli.group("grants")
def grants_group() -> None:
    """List, inspect, revoke and delegate grants."""


@grants_group.command("list")
@click.option("--agent", "agent_id", default=None, metavar="AGENT_ID", help="Only this agent's grants.")
@click.option("--principal", default=None, metavar="USER", help="Only this principal's grants.")
@click.option("--status", type=LibraryChoice(lambda: _library("grants").STATUSES), default=None,
              help="Only grants in this status.")
@json_option
@with_ledger
def grants_list(ledger: Ledger, agent_id: str | None, principal: str | None, status: str | None,
                as_json: bool) -> None:
    """List grants with their parent and delegation depth."""
    from . import grants

    found = grants.list_grants(ledger, None, agent_id=agent_id, principal_id=principal, status=status)
    emit(as_json, {"grants": [g.to_dict() for g in found]}, lambda: echo_table(
        ["ID", "STATUS", "DEPTH", "PARENT", "AGENT", "PRINCIPAL", "SCOPES", "EXPIRES"],
        [[g.id, g.status, g.delegation_depth, g.parent_grant_id, g.agent_id, g.principal_id,
          g.scopes, g.expires_at] for g in found], "no grants"))


@grants_group.command("show")
@click.argument("grant_id")
@json_option
@with_ledger
def grants_show(ledger: Ledger, grant_id: str, as_json: bool) -> None:
    """Show GRANT_ID and the chain of grants it was delegated from."""
    from . import grants

    grant = grants.get(ledger, None, grant_id)
    chain = grants.ancestors(ledger, grant_id)

    def human() -> None:
        echo_fields(_grant_fields(grant))
        click.echo("ancestors:" if chain else "ancestors: none (a root grant)")
        for parent in chain:
            click.echo(f"  depth {parent.delegation_depth}  {parent.id}  {parent.agent_id}  "
                       f"[{parent.status}]")

    emit(as_json, {**grant.to_dict(), "ancestors": [g.to_dict() for g in chain]}, human)


def _node_label(node: dict[str, Any]) -> str:
    from .text import escape

    count = len(node["scopes"])
    label = (f"{escape(node['agentName'])} [{node['status']}]  {count} scope{'s' if count != 1 else ''}  "
             f"depth {node['delegationDepth']}  {escape(node['principalId'])}  {node['id']}")
    if node["agentStatus"] != "active":
        label += f"  (agent {node['agentStatus']})"
    return label


def tree_lines(nodes: list[dict[str, Any]], prefix: str = "") -> Iterator[str]:
    """ASCII lines for nested ``grants.tree`` nodes (ASCII so any terminal shows it)."""
    for index, node in enumerate(nodes):
        last = index == len(nodes) - 1
        yield prefix + ("`-- " if last else "|-- ") + _node_label(node)
        yield from tree_lines(node["children"], prefix + ("    " if last else "|   "))


@grants_group.command("tree")
@click.argument("grant_id", required=False)
@json_option
@with_ledger
def grants_tree(ledger: Ledger, grant_id: str | None, as_json: bool) -> None:
    """Draw delegation trees: all of them, or the one under GRANT_ID."""
    from . import grants

    roots = grants.tree(ledger, None, grant_id)

    def human() -> None:
        if not roots:
            click.echo("no grants")
        for root in roots:
            click.echo(_node_label(root))
            for line in tree_lines(root["children"]):
                click.echo(line)

    emit(as_json, roots, human)


@grants_group.command("revoke")
@click.argument("grant_id")
@yes_option
@with_ledger
def grants_revoke(ledger: Ledger, grant_id: str, yes: bool) -> None:
    """Revoke GRANT_ID and everything delegated from it; shows the blast radius first."""
    from . import grants

    radius = grants.blast_radius(ledger, grant_id)
    if radius["grantIds"]:
        click.echo(f"revoking {grant_id} revokes {len(radius['grantIds'])} grant(s) "
                   f"({radius['descendants']} delegated), held by: {', '.join(radius['agents'])}; "
                   f"{radius['liveTokens']} live token(s) stop verifying")
        confirm(f"revoke grant {grant_id} and its {radius['descendants']} descendant(s)", yes)
    result = grants.revoke(ledger, None, grant_id)
    click.echo(f"revoked {len(result.revoked_grant_ids)} grant(s) at {result.revoked_at}: "
               f"{' '.join(result.revoked_grant_ids)}")


@grants_group.command("delegate")
@click.option("--parent-token", required=True, help="The parent's grant token ('-' reads it from stdin).")
@click.option("--agent", "agent_id", required=True, metavar="AGENT_ID",
              help="The sub-agent receiving the grant.")
@_scope_option(True, "A scope for the sub-agent; the parent's scopes must cover it.")
@click.option("--expires-in", default=None, metavar="DURATION",
              help="Lifetime, e.g. 30m (default 1h; never past the parent's expiry).")
@json_option
@with_ledger
def grants_delegate(ledger: Ledger, parent_token: str, agent_id: str, scopes: tuple[str, ...],
                    expires_in: str | None, as_json: bool) -> None:
    """Delegate part of a grant to a sub-agent, one level deeper."""
    from . import delegation

    issued = delegation.delegate(
        ledger, _developer_of_agent(ledger, agent_id),
        parent_grant_token=_read_arg(parent_token, "parent token"), sub_agent_id=agent_id,
        scopes=list(scopes), expires_in=expires_in,
    )
    _echo_issued(issued, as_json)


# ── policies ─────────────────────────────────────────────────────────────────


@cli.group("policies")
def policies_group() -> None:
    """Rules applied at authorize: deny first, then allow, by priority."""


def _parse_days(days: str | None) -> list[int] | None:
    if days is None:
        return None
    try:
        return [int(d) for d in days.split(",")]
    except ValueError:
        raise click.BadParameter("use ISO weekdays separated by commas, e.g. 1,2,3,4,5",
                                 param_hint="--days") from None


def _policy_fields_from_options(options: dict[str, Any]) -> dict[str, Any]:
    """The library's policy parameters from the command's options (None means 'not given')."""
    hours = (options["start_hour"], options["end_hour"], options["days"], options["tz"])
    window = None
    if any(v is not None for v in hours):
        window = {k: v for k, v in (("startHour", options["start_hour"]),
                                    ("endHour", options["end_hour"]),
                                    ("days", _parse_days(options["days"])), ("tz", options["tz"]))
                  if v is not None}
    return {"effect": options["effect"], "priority": options["priority"],
            "agent_id": options["agent_id"], "principal_id": options["principal"],
            "scopes": list(options["scopes"]) or None, "time_of_day_start": options["time_start"],
            "time_of_day_end": options["time_end"], "time_window": window}


def policy_options(fn: F) -> F:
    """The condition and effect options shared by create and update."""
    decorators = [
        click.option("--effect", type=LibraryChoice(lambda: sorted(_library("policies").EFFECTS)),
                     default=None, help="What a match does (auto_approve = allow, auto_deny = deny)."),
        click.option("--priority", type=int, default=None,
                     help="Higher runs first within denies and within allows (default 0)."),
        click.option("--agent", "agent_id", default=None, metavar="AGENT_ID",
                     help="Only requests from this agent (default any)."),
        click.option("--principal", default=None, metavar="USER",
                     help="Only requests for this principal (default any)."),
        _scope_option(False, "Allow: every requested scope must be listed; deny: any listed one matches."),
        click.option("--time-start", default=None, metavar="HH:MM", help="Window start, UTC."),
        click.option("--time-end", default=None, metavar="HH:MM",
                     help="Window end, UTC (may wrap midnight)."),
        click.option("--start-hour", type=int, default=None, help="Window start hour 0-23 (with --tz)."),
        click.option("--end-hour", type=int, default=None, help="Window end hour 0-23 (with --tz)."),
        click.option("--days", default=None, metavar="1,2,..",
                     help="ISO weekdays the window applies on (1 = Monday)."),
        click.option("--tz", default=None,
                     help="Time zone of the hour window, e.g. Europe/Paris (default UTC)."),
    ]
    for decorator in reversed(decorators):
        fn = decorator(fn)
    return fn


@policies_group.command("create")
@click.argument("name")
@policy_options
@developer_option
@json_option
@with_ledger
def policies_create(ledger: Ledger, name: str, developer_id: str | None, as_json: bool,
                    **options: Any) -> None:
    """Create a policy NAME (--effect is required)."""
    from . import policies

    fields = _policy_fields_from_options(options)
    if fields["effect"] is None:
        raise click.BadParameter("an effect is required", param_hint="--effect")
    fields["priority"] = fields["priority"] or 0
    params = CreatePolicyParams(name=name, **fields)
    policy = policies.create(ledger, _developer(ledger, developer_id), params)
    emit(as_json, policy.to_dict(), lambda: echo_fields(_policy_fields(policy)))


@policies_group.command("list")
@developer_option
@json_option
@with_ledger
def policies_list(ledger: Ledger, developer_id: str | None, as_json: bool) -> None:
    """List policies in evaluation order (denies first)."""
    from . import policies

    found = policies.list_policies(ledger, _developer(ledger, developer_id))
    emit(as_json, {"policies": [p.to_dict() for p in found], "total": len(found)}, lambda: echo_table(
        ["ID", "EFFECT", "PRIORITY", "NAME", "AGENT", "PRINCIPAL", "SCOPES", "WINDOW"],
        [[p.id, p.effect, p.priority, p.name, *_policy_conditions(p)] for p in found], "no policies"))


@policies_group.command("show")
@click.argument("policy_id")
@developer_option
@json_option
@with_ledger
def policies_show(ledger: Ledger, policy_id: str, developer_id: str | None, as_json: bool) -> None:
    """Show policy POLICY_ID."""
    from . import policies

    policy = policies.get(ledger, _developer(ledger, developer_id), policy_id)
    emit(as_json, policy.to_dict(), lambda: echo_fields(_policy_fields(policy)))


@policies_group.command("update")
@click.argument("policy_id")
@click.option("--name", default=None, help="New name.")
@policy_options
@developer_option
@json_option
@with_ledger
def policies_update(ledger: Ledger, policy_id: str, name: str | None, developer_id: str | None,
                    as_json: bool, **options: Any) -> None:
    """Change the options given on POLICY_ID; the others stay as they are."""
    from . import policies

    params = UpdatePolicyParams(name=name, **_policy_fields_from_options(options))
    policy = policies.update(ledger, _developer(ledger, developer_id), policy_id, params)
    emit(as_json, policy.to_dict(), lambda: echo_fields(_policy_fields(policy)))


@policies_group.command("delete")
@click.argument("policy_id")
@developer_option
@with_ledger
def policies_delete(ledger: Ledger, policy_id: str, developer_id: str | None) -> None:
    """Delete policy POLICY_ID."""
    from . import policies

    policies.delete(ledger, _developer(ledger, developer_id), policy_id)
    click.echo(f"policy {policy_id} deleted")


# ── keys ─────────────────────────────────────────────────────────────────────


@cli.group("keys")
def keys_group() -> None:
    """The issuer's signing keys and its JWKS."""


@keys_group.command("rotate")
@json_option
@with_ledger
def keys_rotate(ledger: Ledger, as_json: bool) -> None:
    """Start signing with a new key; old tokens keep verifying until they expire."""
    from . import keys

    rotated = keys.rotate_signing_key(ledger)
    emit(as_json, rotated, lambda: echo_fields(
        [("new kid", rotated["kid"]), ("retired", rotated["retiredKids"]), ("at", rotated["rotatedAt"])]))


@keys_group.command("jwks")
@with_ledger
def keys_jwks(ledger: Ledger) -> None:
    """Print the JWKS served at ISSUER/.well-known/jwks.json."""
    from . import keys

    echo_json(keys.jwks(ledger))


@keys_group.command("list")
@json_option
@with_ledger
def keys_list(ledger: Ledger, as_json: bool) -> None:
    """List signing keys, active and retired."""
    from . import keys

    found = keys.list_signing_keys(ledger)
    emit(as_json, {"keys": found}, lambda: echo_table(
        ["KID", "STATUS", "CREATED", "RETIRED", "LAST TOKEN EXPIRY"],
        [[k["kid"], k["status"], k["createdAt"], k["retiredAt"], k["lastTokenExpiry"]] for k in found],
        "no keys"))


# ── developers ───────────────────────────────────────────────────────────────


@cli.group("developers")
def developers_group() -> None:
    """Developers in this ledger and their API keys for the REST server."""


@developers_group.command("list")
@json_option
@with_ledger
def developers_list(ledger: Ledger, as_json: bool) -> None:
    """List developers."""
    from . import developers

    found = developers.list_developers(ledger)
    emit(as_json, {"developers": [d.to_dict() for d in found]}, lambda: echo_table(
        ["ID", "NAME", "SANDBOX", "DEFAULT", "CREATED"],
        [[d.id, d.name, d.sandbox, d.is_default, d.created_at] for d in found], "no developers"))


@developers_group.command("create")
@click.argument("name")
@click.option("--sandbox/--no-sandbox", default=False, show_default=True,
              help="Sandbox developers get codes at once; others wait for consent.")
@json_option
@with_ledger
def developers_create(ledger: Ledger, name: str, sandbox: bool, as_json: bool) -> None:
    """Create a developer NAME."""
    from . import developers

    dev = developers.create_developer(ledger, name, sandbox=sandbox)
    emit(as_json, dev.to_dict(), lambda: echo_fields(
        [("id", dev.id), ("name", dev.name), ("sandbox", dev.sandbox), ("created", dev.created_at)]))


@developers_group.command("create-key")
@developer_option
@click.option("--name", default="", help="A label for the key.")
@json_option
@with_ledger
def developers_create_key(ledger: Ledger, developer_id: str | None, name: str, as_json: bool) -> None:
    """Create an API key; it is printed once and cannot be shown again."""
    from . import developers

    key = developers.create_api_key(ledger, _developer(ledger, developer_id), name)
    emit(as_json, key.to_dict(), lambda: echo_fields(
        [("id", key.id), ("developer", key.developer_id), ("api key", key.key)]))
    click.echo("note: the ledger keeps only a hash of this key; it cannot be shown again", err=True)


@developers_group.command("list-keys")
@click.option("--developer", "developer_id", metavar="DEV_ID", default=None,
              help="Only this developer's keys (default: every developer's).")
@json_option
@with_ledger
def developers_list_keys(ledger: Ledger, developer_id: str | None, as_json: bool) -> None:
    """List API keys, revoked ones too (ids and prefixes only: the secrets are never stored)."""
    from . import developers

    found = developers.list_api_keys(ledger, developer_id)
    emit(as_json, {"keys": [k.to_dict() for k in found]}, lambda: echo_table(
        ["ID", "PREFIX", "NAME", "DEVELOPER", "CREATED", "REVOKED"],
        [[k.id, k.prefix + "…", k.name or None, k.developer_id, k.created_at, k.revoked_at] for k in found],
        "no API keys"))


@developers_group.command("revoke-key")
@click.argument("key_id")
@json_option
@with_ledger
def developers_revoke_key(ledger: Ledger, key_id: str, as_json: bool) -> None:
    """Revoke API key KEY_ID; the server refuses it from the very next request."""
    from . import developers

    key = developers.revoke_api_key(ledger, key_id)
    emit(as_json, key.to_dict(), lambda: echo_fields(
        [("id", key.id), ("developer", key.developer_id), ("revoked", key.revoked_at)]))


# ── audit ────────────────────────────────────────────────────────────────────

PROGRESS_THRESHOLD = 50_000
"""Chains longer than this get a progress bar on stderr while they are verified."""


def failed_checks(fn: F) -> F:
    """A check that fails (broken chain, forged checkpoint, bad proof or bundle) exits 1, not 2."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except errors.GrantexLocalError as exc:
            from .audit.note import CheckpointInvalid  # here, not at import: see the module docstring
            from .export import ExportInvalid

            if not isinstance(exc, errors.ChainBroken | CheckpointInvalid | ExportInvalid):
                raise
            raise CliError(exc.message, EXIT_CHECK_FAILED) from None

    return run  # type: ignore[return-value]


def _load_verifier_key(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """The key text given, or read from the file it names; checked here so a typo is a usage error."""
    from .audit import checkpoints as audit_checkpoints
    from .audit.note import CheckpointInvalid

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


def _failure_json(exc: errors.GrantexLocalError, **extra: object) -> dict[str, object]:
    out: dict[str, object] = {"valid": False, "error": exc.code, "message": exc.message, **extra}
    if isinstance(exc, errors.ChainBroken):
        out.update(seq=exc.seq, reason=exc.reason)
    file = getattr(exc, "file", None)
    if file is not None:
        out["file"] = file
    return out


def _flag_cell(entry: AuditEntry) -> str | None:
    return "! " + ",".join(entry.flags) if entry.flags else None


def _entry_fields(entry: AuditEntry) -> list[tuple[str, object]]:
    return [("entry", entry.entry_id), ("seq", entry.seq), ("developer", entry.developer_id),
            ("timestamp", entry.timestamp), ("action", entry.action), ("status", entry.status),
            ("flags", _flag_cell(entry)), ("agent", entry.agent_id), ("agent did", entry.agent_did),
            ("grant", entry.grant_id), ("principal", entry.principal_id), ("hash", entry.hash),
            ("prev hash", entry.prev_hash)]


OUTSIDE_CHECKPOINT_NOTE = (
    "note: the checkpoints checked are stored in this same file; only a checkpoint kept outside it "
    "('audit checkpoint --out FILE', then 'audit verify --against FILE') also catches a rewrite of the "
    "whole file")

FLAG_LEGEND = "! = logged under a grant that was already revoked or expired (recorded all the same)"
UNRENDERABLE_LEGEND = ("unrenderable = the stored entry holds text the ledger now refuses (a lone surrogate, "
                       "a non-character or bytes that are not UTF-8), shown escaped (e.g. \\ud800); "
                       "'audit verify' judges its stored bytes")


def _echo_flag_legend(entries: Iterable[AuditEntry]) -> None:
    """The legend of the flags shown, each explained only when it appears."""
    from .audit.trail import UNRENDERABLE

    shown = {flag for entry in entries for flag in entry.flags}
    if shown - {UNRENDERABLE}:
        click.echo(FLAG_LEGEND)
    if UNRENDERABLE in shown:
        click.echo(UNRENDERABLE_LEGEND)


@cli.group("audit")
def audit_group() -> None:
    """The hash-chained audit trail: query, append, verify, checkpoint and prove."""


@audit_group.command("list")
@click.option("--developer", "developer_id", metavar="DEV_ID", default=None,
              help="Only this developer's chain (default: every developer in the file).")
@click.option("--agent", "agent_id", metavar="AGENT_ID", default=None, help="Only this agent's entries.")
@click.option("--grant", "grant_id", metavar="GRANT_ID", default=None, help="Only this grant's entries.")
@click.option("--principal", metavar="USER", default=None, help="Only entries for this principal.")
@click.option("--action", default=None, help="Only this action, e.g. grantex.grant.revoked.")
@click.option("--status", type=LibraryChoice(lambda: _library("audit.trail").STATUSES), default=None,
              help="Only entries with this status.")
@click.option("--since", metavar="TIME", default=None,
              help="Only entries at or after TIME (ISO-8601, e.g. 2026-02-01T12:00:00Z).")
@click.option("--until", metavar="TIME", default=None, help="Only entries before TIME (ISO-8601).")
@click.option("--page", type=int, default=1, show_default=True, help="Which page, from 1.")
@click.option("--page-size", type=int, default=100, show_default=True, help="Entries per page (1-10000).")
@click.option("--newest-first", is_flag=True, help="Newest first within each chain (default oldest first).")
@json_option
@with_ledger
def audit_list(ledger: Ledger, developer_id: str | None, agent_id: str | None, grant_id: str | None,
               principal: str | None, action: str | None, status: str | None, since: str | None,
               until: str | None, page: int, page_size: int, newest_first: bool, as_json: bool) -> None:
    """List audit entries in chain order; '!' marks actions taken under a revoked or expired grant."""
    from .audit import trail as audit_trail

    found = audit_trail.list_entries(
        ledger, developer_id, agent_id=agent_id, grant_id=grant_id, principal_id=principal, action=action,
        status=status, since=since, until=until, page=page, page_size=page_size, newest_first=newest_first)

    def human() -> None:
        several = len({e.developer_id for e in found}) > 1
        headers = ["SEQ", "TIMESTAMP", "ACTION", "STATUS", "AGENT", "GRANT", *(["DEVELOPER"] * several),
                   "FLAGS"]
        echo_table(headers, [[e.seq, e.timestamp, e.action, e.status, e.agent_id, e.grant_id,
                              *([e.developer_id] * several), _flag_cell(e)] for e in found],
                   "no audit entries" if page == 1 else f"no audit entries on page {page}")
        _echo_flag_legend(found)

    emit(as_json, {"entries": [e.to_dict() for e in found], "page": page, "pageSize": page_size}, human)


@audit_group.command("show")
@click.argument("entry_id")
@json_option
@with_ledger
def audit_show(ledger: Ledger, entry_id: str, as_json: bool) -> None:
    """Show audit entry ENTRY_ID with its metadata."""
    from .audit import trail as audit_trail
    from .text import escape as escape_text

    entry = audit_trail.get_entry(ledger, None, entry_id)

    def human() -> None:
        echo_fields(_entry_fields(entry))
        click.echo("metadata:")
        click.echo("\n".join(map(escape_text, json_text(entry.metadata).split("\n"))))
        _echo_flag_legend([entry])

    emit(as_json, entry.to_dict(), human)


@audit_group.command("log")
@click.option("--agent", "agent_id", required=True, metavar="AGENT_ID", help="The agent that acted.")
@click.option("--grant", "grant_id", required=True, metavar="GRANT_ID",
              help="The grant it acted under (must be the agent's).")
@click.option("--action", required=True, help="What it did, e.g. calendar.read ('grantex.' is reserved).")
@click.option("--status", type=LibraryChoice(lambda: _library("audit.trail").STATUSES), default="success",
              show_default=True, help="How it went.")
@click.option("--metadata", default=None, metavar="JSON",
              help="A JSON object recorded with the entry ('-' reads it from stdin).")
@json_option
@with_ledger
def audit_log(ledger: Ledger, agent_id: str, grant_id: str, action: str, status: str,
              metadata: str | None, as_json: bool) -> None:
    """Append an action to the chain of the developer that owns the agent."""
    from .audit import trail as audit_trail

    parsed = None
    if metadata is not None:
        try:
            parsed = json.loads(_read_arg(metadata, "metadata"))
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--metadata") from None
    entry = audit_trail.log(ledger, _developer_of_agent(ledger, agent_id), agent_id=agent_id,
                            grant_id=grant_id, action=action, status=status, metadata=parsed)

    def human() -> None:
        echo_fields(_entry_fields(entry))
        if entry.flags:  # the same flags and legend 'audit list' and 'audit show' give this entry
            click.echo(FLAG_LEGEND)

    emit(as_json, entry.to_dict(), human)


def _verify_with_progress(ledger: Ledger, developer_id: str, checkpoint: Checkpoint | None) -> ChainReport:
    """The library's verifier; long chains (counted first, cheaply) get a progress bar on stderr."""
    from .audit import chain as audit_chain
    from .audit import trail as audit_trail

    total = audit_trail.count_entries(ledger, developer_id)
    if total <= PROGRESS_THRESHOLD:
        return audit_chain.verify_chain(ledger, developer_id, checkpoint=checkpoint)
    with click.progressbar(length=total, label=f"verifying {developer_id}", file=sys.stderr) as bar:
        def advance(done: int) -> None:
            bar.update(max(0, done - bar.pos))

        return audit_chain.verify_chain(ledger, developer_id, checkpoint=checkpoint, progress=advance)


def _developer_of_checkpoint(ledger: Ledger, note_text: str) -> str:
    """The chain in this ledger that a checkpoint's origin line names."""
    from .audit import chain as audit_chain
    from .audit import checkpoints as audit_checkpoints
    from .audit import note as audit_note
    from .audit.note import CheckpointInvalid

    origin = audit_note.parse(note_text)[0].origin
    for developer_id in audit_chain.chain_developers(ledger):
        if audit_checkpoints.origin(ledger, developer_id) == origin:
            return developer_id
    raise CheckpointInvalid(f"checkpoint is for {origin}, not a chain in this ledger")


@audit_group.command("verify")
@click.option("--developer", "developer_id", metavar="DEV_ID", default=None,
              help="Only this developer's chain (default: every chain in the file).")
@click.option("--against", type=click.Path(exists=True, dir_okay=False), default=None, metavar="FILE",
              help="A checkpoint kept outside the ledger: also catches a deleted tail or a rewritten chain.")
@key_option(False, "Public checkpoint key (text or file) to check --against with, instead of the "
                   "ledger's own key.")
@json_option
@with_ledger
def audit_verify(ledger: Ledger, developer_id: str | None, against: str | None, verifier_key: str | None,
                 as_json: bool) -> None:
    """Walk the hash chain(s) from the stored bytes and check them against every checkpoint
    stored in the file; exit 1 at the first broken seq. Only a checkpoint kept outside the file
    (--against) also catches a rewrite of the whole file."""
    from . import developers
    from .audit import chain as audit_chain
    from .audit import checkpoints as audit_checkpoints
    from .audit.note import CheckpointInvalid

    if verifier_key is not None and against is None:
        raise click.UsageError("--key only applies together with --against")
    if developer_id is not None:
        developers.get_developer(ledger, developer_id)
    reports: list[ChainReport] = []
    current = developer_id
    try:
        if against is not None:
            text = Path(against).read_text(encoding="utf-8", errors="replace")  # not UTF-8: not a note
            current = developer_id or _developer_of_checkpoint(ledger, text)
            checkpoint = audit_checkpoints.verify_against(ledger, current, text, verifier_key)
            reports.append(_verify_with_progress(ledger, current, checkpoint))
        else:
            for current in [developer_id] if developer_id else audit_chain.chain_developers(ledger):
                reports.append(_verify_with_progress(ledger, current, None))
    except (errors.ChainBroken, CheckpointInvalid) as exc:
        if as_json:
            echo_json(_failure_json(exc, developerId=current, chains=[r.to_dict() for r in reports]))
        where = f" (developer {current})" if current is not None else ""
        raise CliError(exc.message + where, EXIT_CHECK_FAILED) from None

    def human() -> None:
        for report in reports:
            line = (f"{report.developer_id}: {report.entries} entries intact, head "
                    f"{report.head_hash or '-'}")
            if report.stored_checkpoints:
                line += (f", matches its {report.stored_checkpoints} stored checkpoint"
                         + "s" * (report.stored_checkpoints > 1))
            if report.checkpoint_size is not None:
                line += f", consistent with the checkpoint of {report.checkpoint_size} entries"
            click.echo(line)
        if against is None:
            click.echo(OUTSIDE_CHECKPOINT_NOTE, err=True)

    emit(as_json, {"valid": True, "chains": [r.to_dict() for r in reports]}, human)


@audit_group.command("checkpoint")
@developer_option
@click.option("--out", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Write the signed checkpoint to FILE (keep it outside the ledger) instead of printing it.")
@json_option
@failed_checks
@with_ledger
def audit_checkpoint(ledger: Ledger, developer_id: str | None, out: str | None, as_json: bool) -> None:
    """Sign a checkpoint over the chain as it is now (checked against the previous one) and store it."""
    from .audit import checkpoints as audit_checkpoints

    made = audit_checkpoints.create(ledger, _developer(ledger, developer_id))
    if out is not None:
        Path(out).write_text(made["signedCheckpoint"], encoding="utf-8")

    def human() -> None:
        if out is None:
            click.echo(made["signedCheckpoint"], nl=False)
        else:
            click.echo(f"checkpoint of {made['entryCount']} entries of {made['developerId']} written to "
                       f"{out}; keep a copy outside the ledger and check with "
                       f"'grantex-local audit verify --against {out}'")

    emit(as_json, made, human)


@audit_group.command("checkpoints")
@click.option("--developer", "developer_id", metavar="DEV_ID", default=None,
              help="Only this developer's checkpoints (default: every developer).")
@json_option
@with_ledger
def audit_checkpoints_list(ledger: Ledger, developer_id: str | None, as_json: bool) -> None:
    """List the stored checkpoints, smallest first."""
    from .audit import chain as audit_chain
    from .audit import checkpoints as audit_checkpoints

    chains = [developer_id] if developer_id else audit_chain.chain_developers(ledger)
    found = [c for d in chains for c in audit_checkpoints.list_checkpoints(ledger, d)]
    emit(as_json, {"checkpoints": found}, lambda: echo_table(
        ["ID", "DEVELOPER", "ENTRIES", "ROOT", "HEAD ENTRY", "TIMESTAMP"],
        [[c["checkpointId"], c["developerId"], c["entryCount"], c["rootHash"][:16] + "...",
          c["headEntryId"], c["timestamp"]] for c in found],
        "no checkpoints; write one with 'grantex-local audit checkpoint'"))


@audit_group.command("prove")
@click.argument("entry_id")
@click.option("--out", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Write the proof to FILE instead of printing it.")
@failed_checks
@with_ledger
def audit_prove(ledger: Ledger, entry_id: str, out: str | None) -> None:
    """Print an inclusion proof (JSON) of ENTRY_ID under the latest checkpoint covering it."""
    from .audit import checkpoints as audit_checkpoints

    proof = audit_checkpoints.prove(ledger, entry_id)
    text = json_text(proof) + "\n"
    if out is None:
        click.echo(text, nl=False)
        return
    Path(out).write_text(text, encoding="utf-8")
    click.echo(f"inclusion proof of {entry_id} (seq {proof['seq']}) under the checkpoint of "
               f"{proof['treeSize']} entries written to {out}")


@audit_group.command("verify-proof")
@click.argument("proof_file", type=click.Path(exists=True, dir_okay=False))
@key_option(True, "The public checkpoint key (text or file) from 'grantex-local audit public-key', "
                  "obtained out of band.")
@json_option
@ledger_option
def audit_verify_proof(proof_file: str, verifier_key: str, as_json: bool) -> None:
    """Check an inclusion proof offline with only the proof and the public key; exit 1 when invalid."""
    from .audit import checkpoints as audit_checkpoints
    from .audit.note import CheckpointInvalid

    try:
        try:
            proof = json.loads(Path(proof_file).read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise audit_checkpoints.ProofInvalid("the proof file is not JSON") from None
        checkpoint = audit_checkpoints.verify_proof(proof, verifier_key)
        try:  # named from the verified bytes, not from the proof's unchecked entryId label
            entry_id = json.loads(proof["preimage"])["id"]
        except (ValueError, KeyError, TypeError):
            raise audit_checkpoints.ProofInvalid("the proven entry's bytes are not an audit entry") from None
    except CheckpointInvalid as exc:
        if as_json:
            echo_json(_failure_json(exc))
        raise CliError(f"proof is invalid: {exc.message}", EXIT_CHECK_FAILED) from None
    result = {"valid": True, "entryId": entry_id, "seq": int(proof["leafIndex"]) + 1,
              "entryHash": proof["entryHash"], "treeSize": checkpoint.size, "origin": checkpoint.origin,
              "rootHash": checkpoint.root_hash.hex(), "checkpointTimestamp": checkpoint.timestamp}
    emit(as_json, result, lambda: click.echo(
        f"valid: entry {entry_id} (seq {result['seq']}) is in the log {checkpoint.origin} as "
        f"checkpointed at {checkpoint.size} entries on {checkpoint.timestamp}"))


@audit_group.command("public-key")
@with_ledger
def audit_public_key(ledger: Ledger) -> None:
    """Print the public checkpoint key to hand to auditors (for verify-proof and verify-export)."""
    from .audit import checkpoints as audit_checkpoints

    click.echo(audit_checkpoints.verifier_key(ledger))


# ── export bundles ───────────────────────────────────────────────────────────


@cli.command("export")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Replace an earlier export bundle at OUT.")
@click.option("--format", "fmt", type=click.Choice(["bundle", "parquet"]), default="bundle",
              show_default=True,
              help="bundle: JSON Lines + CSV, checked by verify-export; parquet: one file per table "
                   "for fast loading into pandas (grantex_local.analysis.load).")
@json_option
@failed_checks
@with_ledger
def export_command(ledger: Ledger, out: str, force: bool, fmt: str, as_json: bool) -> None:
    """Write a signed, self-contained bundle of the ledger (no secrets) to directory OUT."""
    from .export import bundle_file_count, export_bundle

    if fmt == "parquet":
        from .analysis.parquet import export_parquet  # pandas and pyarrow only on this path

        written = export_parquet(ledger, out, force=force)
        emit(as_json, written, lambda: click.echo(f"parquet export written to {written['path']}"))
        return
    manifest = export_bundle(ledger, out, force=force)

    def human() -> None:
        files = manifest["files"]
        echo_fields([("bundle", manifest["path"]), ("ledger", manifest["ledgerId"]),
                     ("created", manifest["createdAt"]), ("files", bundle_file_count(manifest)),
                     *((name.removesuffix(".jsonl").replace("_", " "), files[name]["rows"])
                       for name in files if name.endswith(".jsonl")),
                     ("chains", len(manifest["chains"])), ("checkpoint key", manifest["checkpointKey"])])
        click.echo(f"check it anywhere with: grantex-local verify-export {out} --key KEY", err=True)

    emit(as_json, manifest, human)


@cli.command("verify-export")
@click.argument("path", type=click.Path(exists=True))
@key_option(False, "The public checkpoint key (text or file) obtained out of band (default: the key "
                   "in the bundle, which only shows the bundle is self-consistent).")
@json_option
@ledger_option
def verify_export(path: str, verifier_key: str | None, as_json: bool) -> None:
    """Check an export bundle (or a hosted-service audit export) offline; exit 1 naming what is wrong."""
    from .audit.note import CheckpointInvalid
    from .export import ExportInvalid, verify_bundle

    try:
        summary = verify_bundle(path, verifier_key=verifier_key)
    except (ExportInvalid, errors.ChainBroken, CheckpointInvalid) as exc:
        if as_json:
            echo_json(_failure_json(exc))
        raise CliError(f"export does not verify: {exc.message}", EXIT_CHECK_FAILED) from None
    if summary.get("warning"):
        click.echo(f"warning: {summary['warning']}", err=True)

    def human() -> None:
        click.echo(f"valid: {summary['entries']} audit entries in {len(summary['chains'])} chain(s)"
                   + (f", {summary['files']} files" if "files" in summary else ""))
        for chain in summary["chains"]:
            click.echo(f"  {chain['developerId']}: {chain['entries']} entries, "
                       f"head {chain['headHash'] or '-'}")

    emit(as_json, summary, human)


@cli.command("tui")
@click.option("--export", "bundle", metavar="BUNDLE", default=None, type=click.Path(exists=True),
              help="Open an export bundle read-only (auditor mode) instead of a ledger.")
@key_option(False, "With --export: the public checkpoint key (text or file) to check the bundle with.")
@ledger_option
def tui(bundle: str | None, verifier_key: str | None) -> None:
    """Open the terminal UI: delegation trees, grant details, consent inbox, audit trail."""
    from .tui import run  # Textual is imported only here

    run(None if bundle is not None else ledger_path(), export=bundle, verifier_key=verifier_key)


@cli.command("serve")
@click.option("--host", default=None,
              help="Address to listen on (default: the issuer's host when the issuer is an http:// "
                   "loopback URL, else 127.0.0.1). Does not change the issuer.")
@click.option("--port", default=None, type=click.IntRange(0, 65535),
              help="Port to listen on, 0 for any free one (default: the issuer's port when the "
                   "issuer is an http:// loopback URL, else 8421). Does not change the issuer.")
@click.option("--issuer", default=None, metavar="URL",
              help="Change the ledger's issuer to URL first (asks for confirmation; --yes skips it). "
                   "Tokens issued before keep verifying until they expire.")
@yes_option
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="A Host name to answer besides loopback names and the issuer's host, e.g. this "
                   "machine's LAN name (repeatable); other names get 421.")
@click.option("--rate-limit", default=None, type=click.IntRange(min=1), metavar="N",
              help="Requests per API key per minute (default 600).")
@click.option("--max-body", default=None, type=click.IntRange(min=1), metavar="BYTES",
              help="Largest request body accepted (default 1 MiB); larger ones get 413.")
@click.option("--quiet", is_flag=True, help="No access log.")
@click.option("--open-consent", is_flag=True,
              help="Demo mode: the consent page decides without an approval code, so anyone who can "
                   "open a consentUrl (the agent that asked, too) can approve it. Without it, the "
                   "approval code of each waiting request is printed here.")
@ledger_option
def serve_command(host: str | None, port: int | None, issuer: str | None, yes: bool,
                  allowed_hosts: tuple[str, ...], rate_limit: int | None, max_body: int | None,
                  quiet: bool, open_consent: bool) -> None:
    """Serve the Grantex REST API, the consent page and /docs over the ledger (Ctrl+C stops).

    The ledger's issuer (`info` shows it) stays put: it is in every token, and clients must use
    it as their base URL (the SDK checks tokens against the URL it is given; consentUrls start
    with it). So the server listens where the issuer says. With --host/--port it listens there
    instead, the issuer is unchanged and the banner says which URL clients must use; to move
    the issuer, pass --issuer URL or run 'config set issuer URL'.
    """
    from .server import DEFAULT_MAX_BODY, DEFAULT_RATE_LIMIT, serve  # FastAPI is imported only here
    from .server.run import issuer_change

    change = issuer_change(ledger_path(), issuer)
    if change is not None:
        confirm(f"change the ledger's issuer from {change[0]} to {change[1]} (clients must then use "
                "the new URL; tokens issued before keep verifying until they expire)", yes)
    try:
        serve(ledger_path(), host, port, issuer, change_issuer=change is not None,
              allowed_hosts=allowed_hosts, rate_limit=rate_limit or DEFAULT_RATE_LIMIT,
              max_body=max_body or DEFAULT_MAX_BODY, access_log=not quiet, open_consent=open_consent)
    except OSError as exc:
        raise CliError(exc.strerror or str(exc)) from None

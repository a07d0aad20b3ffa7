"""``init``, ``info``, ``config`` and ``demo``: making a ledger and reading or changing its settings."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .. import errors
from ..clock import format_duration
from . import (
    CliError,
    GrantexGroup,
    cell,
    echo_fields,
    emit,
    json_option,
    ledger_option,
    ledger_path,
    with_ledger,
)

if TYPE_CHECKING:
    from ..founding import Ledger


@click.command()
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
    from ..demo import remove_ledger_files
    from ..founding import Ledger

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
    from ..info import summary

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
            ("default developer", f"{dev['id']} ({dev['name']}, sandbox={cell(dev['sandbox'])})"),
            ("agents", counts["agents"]),
            ("grants", f"{counts['grants']} ({counts['activeGrants']} active)"),
            ("tokens", counts["tokens"]), ("pending requests", counts["pendingRequests"]),
        ])

    emit(as_json, info, human)


@click.command()
@json_option
@with_ledger
def info(ledger: Ledger, as_json: bool) -> None:
    """Show the ledger: path, issuer, JWKS URL, settings, active key and counts."""
    _echo_info(ledger, as_json)


@click.group(cls=GrantexGroup)
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


@click.command()
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
    from .progress import progress_bar

    if size is not None:
        from ..sample import generate, summary_lines

        path = ledger_path()
        with progress_bar("building the sample") as bar:
            manifest = generate(path, seed=seed, months=months, size=size, entries=entries, force=force,
                                progress=bar)
        for line in summary_lines(manifest, path):
            click.echo(line)
        return
    if entries is not None:
        raise CliError("--entries needs --size (the short demo has a fixed shape)")
    from ..demo import run_demo

    with progress_bar("building the demo", "steps") as bar:
        lines = run_demo(ledger_path(), seed=seed, force=force, program=this_program(), progress=bar)
    for line in lines:
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

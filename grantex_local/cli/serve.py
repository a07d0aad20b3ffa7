"""``serve``: the REST API, the consent page and /docs over a ledger (FastAPI loads only when it runs)."""

from __future__ import annotations

from typing import Any

import click

from . import _LEDGER_KEY, CliError, confirm, ledger_option, ledger_path, yes_option


@click.command("serve")
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
@click.option("--ephemeral", is_flag=True,
              help="Serve a new ledger in a temporary directory, deleted when the server stops "
                   "(its issuer is the URL it listens on).")
@click.option("--seed", "seed_file", default=None, metavar="FILE", type=click.Path(dir_okay=False),
              help="With --ephemeral: load this seed file (YAML or JSON, see 'seed') first.")
@click.option("--insecure-store", is_flag=True,
              help="Let the vault store secrets though the ledger has no passphrase (NOT protected).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1), metavar="N",
              help="Processes serving the socket, each on its own ledger connections (at most twice "
                   "the cores); the rate limit is shared out among them.")
@ledger_option
def serve_command(host: str | None, port: int | None, issuer: str | None, yes: bool,
                  allowed_hosts: tuple[str, ...], rate_limit: int | None, max_body: int | None,
                  quiet: bool, open_consent: bool, ephemeral: bool, seed_file: str | None,
                  insecure_store: bool, workers: int) -> None:
    """Serve the Grantex REST API, the consent page and /docs over the ledger (Ctrl+C stops).

    The ledger's issuer (`info` shows it) stays put: it is in every token, and clients must use
    it as their base URL (the SDK checks tokens against the URL it is given; consentUrls start
    with it). So the server listens where the issuer says. With --host/--port it listens there
    instead, the issuer is unchanged and the banner says which URL clients must use; to move
    the issuer, pass --issuer URL or run 'config set issuer URL'.
    """
    from ..server import DEFAULT_MAX_BODY, DEFAULT_RATE_LIMIT, serve  # FastAPI is imported only here
    from ..server.run import check_workers, issuer_change, serve_ephemeral

    options: dict[str, Any] = dict(
        allowed_hosts=allowed_hosts, rate_limit=rate_limit or DEFAULT_RATE_LIMIT,
        max_body=max_body or DEFAULT_MAX_BODY, access_log=not quiet, open_consent=open_consent,
        vault_insecure_store=insecure_store, workers=workers)
    check_workers(workers)  # before --ephemeral makes a directory or the issuer question is asked
    if ephemeral:
        if click.get_current_context().meta.get(_LEDGER_KEY) is not None:
            raise CliError("--ephemeral serves a temporary ledger of its own; leave out --ledger")
        try:
            serve_ephemeral(seed_file, host, port, issuer=issuer, **options)
        except OSError as exc:
            raise CliError(exc.strerror or str(exc)) from None
        return
    if seed_file is not None:
        raise CliError("--seed needs --ephemeral (to seed a ledger file: grantex-local seed FILE)")
    change = issuer_change(ledger_path(), issuer)
    if change is not None:
        confirm(f"change the ledger's issuer from {change[0]} to {change[1]} (clients must then use "
                "the new URL; tokens issued before keep verifying until they expire)", yes)
    try:
        serve(ledger_path(), host, port, issuer, change_issuer=change is not None, **options)
    except OSError as exc:
        raise CliError(exc.strerror or str(exc)) from None

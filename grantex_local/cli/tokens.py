"""``tokens``: exchange codes, verify, decode, refresh and revoke grant tokens."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from .. import errors
from . import (
    CheckFailed,
    CliError,
    GrantexGroup,
    developer_of_agent,
    echo_fields,
    echo_issued,
    echo_json,
    emit,
    json_option,
    ledger_option,
    read_arg,
    with_ledger,
)

if TYPE_CHECKING:
    from ..founding import Ledger


@click.group("tokens", cls=GrantexGroup)
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
    from .. import tokens

    issued = tokens.exchange(ledger, developer_of_agent(ledger, agent_id), code=read_arg(code, "code"),
                             agent_id=agent_id, code_verifier=code_verifier, redirect_uri=redirect_uri)
    echo_issued(issued, as_json)


def _verification(ledger: Ledger, token: str, offline: bool, required: list[str]) -> dict[str, Any]:
    """The verification answer as a dict; raises TokenInvalid for a token that fails."""
    from ..online import verify_online

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
        result = _verification(ledger, read_arg(token, "token"), offline, list(required))
    except errors.TokenInvalid as exc:
        result = {"valid": False, "reason": exc.reason, "message": exc.message}
    if as_json:
        echo_json(result)
    if not result["valid"]:
        detail = result.get("message")
        raise CheckFailed(f"token is invalid: {result['reason']}" + (f" ({detail})" if detail else ""))
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

    raw = read_arg(token, "token")
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
    from .. import tokens

    issued = tokens.refresh(ledger, developer_of_agent(ledger, agent_id),
                            refresh_token=read_arg(refresh_token, "refresh token"), agent_id=agent_id)
    echo_issued(issued, as_json)


@tokens_group.command("revoke")
@click.argument("jti")
@with_ledger
def tokens_revoke(ledger: Ledger, jti: str) -> None:
    """Revoke one token by its id (jti); grants delegated from it are revoked too."""
    from .. import tokens

    cascaded = tokens.revoke(ledger, None, jti)
    click.echo(f"token {jti} revoked")
    if cascaded:
        click.echo(f"also revoked {len(cascaded)} delegated grant(s): {' '.join(cascaded)}")

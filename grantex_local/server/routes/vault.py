"""``/v1/vault/credentials`` (SDK-SURFACE §14): the credential vault.

Store, list, get and delete take the developer's API key and answer metadata only, never a
secret. ``POST /v1/vault/credentials/exchange`` takes no API key: its bearer is the agent's
**grant token**, which must be live and carry a vault scope for the service (401 / 403 from the
library). ``delivery: "reference"`` answers a one-time reference instead of the secret, redeemed
once within a minute by the relying party at ``POST /v1/vault/references/redeem`` with the
developer's API key. A ledger served without a passphrase refuses to store (409
``VAULT_LOCKED``, saying how) unless the server was started with ``--insecure-store``
(``create_app(vault_insecure_store=True)``); credentials stored that way say so in every answer.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from ... import vault
from ..auth import CallerDep, server_state
from ..schemas import Body
from . import created, no_content, ok

router = APIRouter(tags=["vault"])
"""``vault``: upstream credentials per principal and service, exchanged for a live grant token."""


class StoreCredential(Body):
    """Types are the library's to check (its 400s never repeat a secret)."""

    principalId: Any = None
    service: Any = None
    accessToken: Any = None
    credentialType: Any = None
    refreshToken: Any = None
    tokenExpiresAt: Any = None
    metadata: Any = None


class ExchangeCredential(Body):
    service: Any = None
    delivery: Any = None


class RedeemReference(Body):
    credentialRef: Any = None


@router.post("/v1/vault/credentials", summary="Store (upsert) a principal's credential for a service")
def store_credential(body: StoreCredential, caller: CallerDep, request: Request) -> JSONResponse:
    insecure = bool(getattr(request.app.state, "vault_insecure_store", False))
    stored = vault.store(caller.ledger(), caller.developer_id, body.principalId, body.service,
                         body.accessToken, credential_type=body.credentialType,
                         refresh_token=body.refreshToken, token_expires_at=body.tokenExpiresAt,
                         metadata=body.metadata, insecure=insecure)
    return created(stored.to_dict())


@router.get("/v1/vault/credentials", summary="Stored credentials (metadata only, no secrets)")
def list_credentials(caller: CallerDep,
                     principalId: str | None = Query(None, description="Only this principal's"),
                     service: str | None = Query(None, description="Only this service's")) -> JSONResponse:
    found = vault.list_credentials(caller.ledger(), caller.developer_id, principal_id=principalId,
                                   service=service)
    return ok({"credentials": [c.to_dict() for c in found], "total": len(found)})


@router.post("/v1/vault/credentials/exchange",
             summary="Exchange a live grant token (as the bearer) for the upstream credential")
def exchange_credential(body: ExchangeCredential, request: Request) -> JSONResponse:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        token = ""
    answer = vault.exchange(server_state(request).ledgers.get(), token.strip(), body.service,
                            delivery=body.delivery)
    return ok(answer.to_dict())


@router.post("/v1/vault/references/redeem",
             summary="Redeem a one-time credential reference (the relying party, with the API key)")
def redeem_reference(body: RedeemReference, caller: CallerDep) -> JSONResponse:
    return ok(vault.redeem_reference(caller.ledger(), caller.developer_id, body.credentialRef).to_dict())


@router.get("/v1/vault/credentials/{credential_id}", summary="One credential (metadata only)")
def get_credential(credential_id: str, caller: CallerDep) -> JSONResponse:
    return ok(vault.get(caller.ledger(), caller.developer_id, credential_id).to_dict())


@router.delete("/v1/vault/credentials/{credential_id}", summary="Delete a credential", status_code=204)
def delete_credential(credential_id: str, caller: CallerDep) -> Response:
    vault.delete(caller.ledger(), caller.developer_id, credential_id)
    return no_content()

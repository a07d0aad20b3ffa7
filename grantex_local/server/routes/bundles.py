"""Consent bundles for offline devices (issue 14, SDK-SURFACE §21): create, list, read, revoke,
and ``POST /v1/audit/offline-sync``, where a device's signed log comes home.

This router is registered before ``audit``'s, so ``/v1/audit/offline-sync`` is never taken for
an entry id. A bundle's grant that waits for a human answers 409 ``CONSENT_REQUIRED`` with the
``consentUrl``; the approval's code, sent back as ``code`` with the same body, makes the bundle.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ... import bundles, errors
from ..auth import CallerDep
from ..errors import error_response
from ..schemas import Body
from . import created, ok

router = APIRouter(tags=["consent bundles"])


class CreateBundle(Body):
    """Types are the library's to check."""

    agentId: Any = None
    userId: Any = None
    scopes: Any = None
    offlineTTL: Any = "72h"
    code: Any = None


class OfflineSync(Body):
    bundleId: Any = None
    entries: Any = None


@router.post("/v1/consent-bundles", status_code=201, summary="Issue a consent bundle for an offline device")
def create_bundle(body: CreateBundle, caller: CallerDep, request: Request) -> JSONResponse:
    """The answer holds the only copy of the bundle's Ed25519 private key."""
    if body.code is not None and not isinstance(body.code, str):
        raise errors.InvalidInput("code must be a string")
    try:
        made = bundles.create(caller.ledger(), caller.developer_id, agent_id=body.agentId,
                              principal_id=body.userId, scopes=body.scopes, offline_ttl=body.offlineTTL,
                              code=body.code)
    except bundles.ConsentPending as exc:
        response = error_response(request, exc.status, exc.code, exc.message)
        payload = json.loads(bytes(response.body))
        payload.update(consentUrl=exc.consent_url, authRequestId=exc.auth_request_id)
        return ok(payload, exc.status)
    return created(made)


@router.get("/v1/consent-bundles", summary="The developer's bundles and how far each was synced")
def list_bundles(caller: CallerDep, grantId: str | None = None) -> JSONResponse:
    return ok({"bundles": bundles.list_bundles(caller.ledger(), caller.developer_id, grant_id=grantId)})


@router.get("/v1/consent-bundles/{bundle_id}", summary="One bundle (public key only)")
def get_bundle(bundle_id: str, caller: CallerDep) -> JSONResponse:
    return ok(bundles.get(caller.ledger(), caller.developer_id, bundle_id))


@router.post("/v1/consent-bundles/{bundle_id}/revoke", summary="Revoke the bundle and its grant (cascading)")
def revoke_bundle(bundle_id: str, caller: CallerDep) -> JSONResponse:
    return ok(bundles.revoke(caller.ledger(), caller.developer_id, bundle_id))


@router.post("/v1/audit/offline-sync", summary="Sync a device's signed offline log")
def offline_sync(body: OfflineSync, caller: CallerDep) -> JSONResponse:
    """``{accepted, rejected, revocationStatus, newBundle?}`` plus ``duplicates`` and
    ``rejections: [{seq, reason}]``. Malformed entries are 400 and nothing is written."""
    entries = bundles.parse_entries(body.entries)
    outcome = bundles.sync(caller.ledger(), caller.developer_id, body.bundleId, entries, renew=True)
    return ok(outcome.to_dict())

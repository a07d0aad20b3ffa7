"""``/v1/webhooks``: registrations and their delivery log (SDK-SURFACE §2).

Delivery itself runs in the app's background worker (see ``app.create_app``'s lifespan and
:class:`grantex_local.webhooks.DeliveryWorker`), never in a request.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from ... import webhooks
from ..auth import CallerDep
from ..schemas import Body
from . import created, no_content, ok

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


class CreateWebhook(Body):
    """Both fields are checked by the library, so that a missing one and an unknown event
    type get the reference server's messages."""

    url: str | None = None
    events: list[Any] | None = None


@router.post("", status_code=201, summary="Register a webhook (the secret is returned only here)")
def create_webhook(body: CreateWebhook, caller: CallerDep) -> JSONResponse:
    hook = webhooks.create(caller.ledger(), caller.developer_id, body.url, body.events)
    return created(hook.to_dict())


@router.get("", summary="List webhooks, newest first (never their secrets)")
def list_webhooks(caller: CallerDep) -> JSONResponse:
    found = webhooks.list_webhooks(caller.ledger(), caller.developer_id)
    return ok({"webhooks": [h.to_dict() for h in found]})


@router.delete("/{webhook_id}", status_code=204, summary="Delete a webhook; its pending deliveries stop")
def delete_webhook(webhook_id: str, caller: CallerDep) -> Response:
    webhooks.delete(caller.ledger(), caller.developer_id, webhook_id)
    return no_content()


@router.get("/{webhook_id}/deliveries", summary="A webhook's delivery log, newest first")
def list_deliveries(
    webhook_id: str,
    caller: CallerDep,
    status: str | None = Query(None, description="pending, delivered or failed"),
    page: Annotated[int, Query(ge=1, le=1_000_000_000)] = 1,
    pageSize: Annotated[int, Query(ge=1, le=100)] = 20,
) -> JSONResponse:
    found, total = webhooks.list_deliveries(caller.ledger(), caller.developer_id, webhook_id,
                                            status=status, page=page, page_size=pageSize)
    return ok({"deliveries": [d.to_dict() for d in found], "total": total, "page": page,
               "pageSize": pageSize})

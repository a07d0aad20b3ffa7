"""``POST /v1/testing/reset``: only in an app made with ``create_app(test_mode=True)``.

A session-scoped test server is shared by many tests; between them it must be put back as it
started, also when the test talks to it from another process (an agent under test that only
knows the URL). The route erases the ledger's content, so :func:`..app.create_app` includes
this router in test mode alone: a normal ``serve`` answers 404.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from ..auth import CallerDep
from . import no_content

router = APIRouter(tags=["testing"])


@router.post("/v1/testing/reset", summary="Restore the ledger as the test server started (test mode)")
def reset(request: Request, caller: CallerDep) -> Response:
    """204 once the ledger holds what it held when the app was made; any API key of that
    ledger may ask (it is a test server, on loopback)."""
    del caller  # authenticated like every /v1 route; who asked does not matter
    request.app.state.grantex.reset()
    return no_content()

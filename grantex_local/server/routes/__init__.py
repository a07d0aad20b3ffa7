"""The REST routes of PROTOCOL §13, one module per resource.

Route functions are plain ``def``: FastAPI runs them in its thread pool, each
thread on its own ledger connection (see :mod:`..state`). They map the
camelCase body to the library's arguments, call the library, and return the
``to_dict()`` shape; errors are the library's, rendered by :mod:`..errors`.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse, Response

from ..errors import SafeJSONResponse


def ok(data: Any, status: int = 200) -> JSONResponse:
    """A JSON response built directly (the library's dicts need no re-validation); it renders
    whatever text the ledger holds (see :class:`~..errors.SafeJSONResponse`)."""
    return SafeJSONResponse(data, status_code=status)


def created(data: Any) -> JSONResponse:
    return SafeJSONResponse(data, status_code=201)


def no_content() -> Response:
    """204 with an empty body (PROTOCOL §13: never an empty 200)."""
    return Response(status_code=204)

"""Every error the server sends is ``{message, code, requestId}`` JSON (PROTOCOL §13).

The library's errors carry their own ``status`` and ``code``; the server adds
only the errors that exist because of HTTP itself (no key, throttled, body
too large, malformed JSON, unknown route). Messages of 5xx errors are replaced
by a generic text: they can name files on the server, and a client can do
nothing with them (the full text goes to the server's log with the request id).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import errors

log = logging.getLogger("grantex_local.server")

REQUEST_ID_KEY = "grantex.request_id"
"""Where the middleware puts the request id in the ASGI scope."""

_HTTP_CODES = {
    400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED", 406: "NOT_ACCEPTABLE", 409: "CONFLICT", 413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE", 429: "RATE_LIMITED", 500: "INTERNAL_ERROR", 503: "UNAVAILABLE",
}


class ApiError(Exception):
    """An error raised by the HTTP layer itself (the library raises GrantexLocalError)."""

    def __init__(self, status: int, code: str, message: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


class SafeJSONResponse(JSONResponse):
    """JSON that always renders: raw UTF-8 as usual, ``\\u``-escaped when a value holds a lone
    surrogate (an audit entry stored before the text checks existed, or an error message that
    quotes one). The escaped form is the same JSON value, so nothing is lost."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, ensure_ascii=True, allow_nan=False, indent=None,
                              separators=(",", ":")).encode("ascii")


def request_id_of(scope: Mapping[str, Any]) -> str:
    return str(scope.get(REQUEST_ID_KEY, ""))


def error_body(status: int, code: str, message: str, request_id: str) -> dict[str, str]:
    return {"message": message, "code": code, "requestId": request_id}


def error_response(request: Request, status: int, code: str, message: str,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    return SafeJSONResponse(error_body(status, code, message, request_id_of(request.scope)),
                        status_code=status, headers=dict(headers or {}))


async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(request, exc.status, exc.code, exc.message, exc.headers)


async def on_library_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.GrantexLocalError)
    status = int(getattr(exc, "status", 400))
    headers: dict[str, str] = {}
    message = exc.message
    if status >= 500:
        log.error("request %s failed: %s: %s", request_id_of(request.scope), exc.code, exc.message)
        if isinstance(exc, errors.LedgerBusy):
            message = "the ledger is busy (another process holds the write lock); retry shortly"
            headers["Retry-After"] = "1"
        else:
            message = f"the server could not use its ledger ({exc.code}); see the server log"
    return error_response(request, status, exc.code, message, headers)


async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 becomes a 400 naming the first problem; malformed JSON gets its own code."""
    assert isinstance(exc, RequestValidationError)
    problems = list(exc.errors())
    if any(p.get("type") == "json_invalid" for p in problems):
        return error_response(request, 400, "INVALID_JSON", "request body is not valid JSON")
    if any(p.get("type") == "missing" and tuple(p.get("loc", ())) == ("body",) for p in problems):
        return error_response(request, 400, "INVALID_JSON", "request body is empty: send a JSON object")
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if (not (media == "application/json" or media.endswith("+json"))
            and any(p.get("loc", ("",))[0] == "body" for p in problems)):
        # FastAPI reads a body as JSON only when it says so (a guard against cross-site forms).
        return error_response(request, 415, "UNSUPPORTED_MEDIA_TYPE",
                              "send the request body as JSON with 'Content-Type: application/json'")
    texts = []
    for p in problems[:3]:
        loc = [str(part) for part in p.get("loc", ()) if part not in ("body", "query", "path", "header")]
        where = ".".join(loc)
        texts.append(f"{where}: {p.get('msg', 'invalid')}" if where else str(p.get("msg", "invalid")))
    return error_response(request, 400, "BAD_REQUEST", "; ".join(texts) or "invalid request")


async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own errors (unknown route, wrong method) in the same JSON shape."""
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    code = _HTTP_CODES.get(status, "ERROR")
    if status == 404:
        message = f"no route {request.method} {request.url.path}"
    elif status == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail) if exc.detail else code.lower().replace("_", " ")
    return error_response(request, status, code, message, exc.headers)

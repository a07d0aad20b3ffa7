"""The outermost layer of every HTTP request, as plain ASGI (it runs on every request, so it
stays cheap): a request id, the body-size limit, the rate-limit headers and the last-resort
500.

- ``x-request-id`` on every response (the SDK reads it into its errors); a well-formed id
  sent by the client is kept so logs on both sides line up.
- Bodies are read here, up to ``max_body`` bytes, before any route runs: a larger one is
  refused with 413 whether or not it announced its length, and a route never sees half a body.
- The rate-limit decision is made by the authentication dependency (it needs the key) and
  left in the scope; the headers are added here so that every authenticated response carries
  them, error responses included.
- An exception nothing else handled is logged with its traceback and answered with a JSON 500
  that says nothing about it: no stack trace ever reaches a client.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import REQUEST_ID_KEY, error_body

log = logging.getLogger("grantex_local.server")

RATE_KEY = "grantex.ratelimit"
_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
_CLIENT_ID = re.compile(rb"[A-Za-z0-9._:-]{8,64}")
_BASE_HEADERS = [(b"x-content-type-options", b"nosniff")]


def new_request_id() -> str:
    return "req_" + secrets.token_hex(10)


class GrantexMiddleware:
    def __init__(self, app: ASGIApp, *, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        length_header: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"x-request-id" and _CLIENT_ID.fullmatch(value):
                request_id = value.decode()
            elif name == b"content-length":
                length_header = value
        request_id = request_id or new_request_id()
        scope[REQUEST_ID_KEY] = request_id
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                headers.extend(_BASE_HEADERS)
                decision = scope.get(RATE_KEY)
                if decision is not None:
                    names = {n.lower() for n, _ in headers}
                    headers.extend((k.lower().encode(), v.encode()) for k, v in decision.headers().items()
                                   if k.lower().encode() not in names)
                message = dict(message, headers=headers)
            await send(message)

        async def refuse(status: int, code: str, text: str) -> None:
            body = json.dumps(error_body(status, code, text, request_id)).encode()
            await send_with_headers({"type": "http.response.start", "status": status, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body})

        app_receive = receive
        if scope["method"] in _BODY_METHODS:
            if length_header is not None:
                if not length_header.isdigit():
                    await refuse(400, "BAD_REQUEST", "Content-Length is not a number")
                    return
                if int(length_header) > self.max_body:
                    await refuse(413, "PAYLOAD_TOO_LARGE",
                                 f"request body is larger than {self.max_body} bytes")
                    return
            chunks: list[bytes] = []
            size = 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return  # the client went away; nothing to answer
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body:
                    await refuse(413, "PAYLOAD_TOO_LARGE",
                                 f"request body is larger than {self.max_body} bytes")
                    return
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            app_receive = _replay(b"".join(chunks), receive)

        try:
            await self.app(scope, app_receive, send_with_headers)
        except Exception:
            log.exception("request %s (%s %s) failed", request_id, scope["method"], scope["path"])
            if not started:
                await refuse(500, "INTERNAL_ERROR", "internal server error; the server log has the "
                             f"details under request id {request_id}")


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the already-read body over once, then defers to the real one."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return dict(await receive())

    return replay

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
- A request whose ``Host`` is not a loopback name (``localhost``, ``127.0.0.0/8``, ``[::1]``),
  the issuer's host or a host allowed by the operator is refused with 421 before anything
  else runs. A web page can make a browser send requests to this loopback server under a
  name of the page's own (DNS rebinding) and then read the answers as same-origin; such
  requests carry that name in ``Host``, so they never reach a route or a consent cookie.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import secrets
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import errors
from .errors import REQUEST_ID_KEY, error_body

log = logging.getLogger("grantex_local.server")

RATE_KEY = "grantex.ratelimit"
_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
_CLIENT_ID = re.compile(rb"[A-Za-z0-9._:-]{8,64}")
_BASE_HEADERS = [(b"x-content-type-options", b"nosniff")]
_HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")
_PORT = re.compile(r"[0-9]{1,5}")


def new_request_id() -> str:
    return "req_" + secrets.token_hex(10)


def normalise_host(name: str) -> str | None:
    """A host as compared here: lower case, IPv6 without brackets; None when it is not a
    plausible DNS name or IP address (which no client of ours would send)."""
    name = name.lower()
    if name.startswith("[") and name.endswith("]"):
        try:
            return str(ipaddress.IPv6Address(name[1:-1]))
        except ValueError:
            return None
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        pass
    return name if len(name) <= 253 and _HOST_NAME.fullmatch(name) else None


def host_of(header: str) -> str | None:
    """The host part of a ``Host`` header (any port is fine), normalised; None if malformed."""
    if header.startswith("["):
        end = header.find("]")
        if end < 0:
            return None
        name, rest = header[:end + 1], header[end + 1:]
    else:
        name, colon, port = header.partition(":")
        rest = colon + port
    if rest and not (rest[0] == ":" and _PORT.fullmatch(rest[1:])):
        return None
    return normalise_host(name)


def is_loopback_host(host: str) -> bool:
    """``localhost`` or an address in 127.0.0.0/8 or ::1 (already normalised)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def issuer_host(issuer: str) -> str:
    """The host of the issuer URL: clients use the issuer as their base URL, so they send it."""
    return normalise_host(urlsplit(issuer).hostname or "") or "localhost"


def allowed_host_names(names: Iterable[str]) -> frozenset[str]:
    """Operator-given host names, normalised; a malformed one is refused rather than ignored."""
    if isinstance(names, str):
        names = [names]
    allowed = set()
    for name in names:
        host = normalise_host(name.strip()) if isinstance(name, str) else None
        if host is None:
            raise errors.InvalidInput(
                f"allowed host {name!r} must be a host name or an IP address, without port or scheme")
        allowed.add(host)
    return frozenset(allowed)


class GrantexMiddleware:
    def __init__(self, app: ASGIApp, *, max_body: int, allowed_hosts: Iterable[str] = ()) -> None:
        self.app = app
        self.max_body = max_body
        self.allowed_hosts = frozenset(allowed_hosts)
        self._verdicts: dict[bytes, bool] = {}  # Host header -> allowed (a few distinct values)

    def host_allowed(self, header: bytes | None) -> bool:
        """Whether a request naming ``header`` in ``Host`` is for this server (remembered)."""
        if header is None:
            return False  # HTTP/1.1 requires it; browsers always send it
        verdict = self._verdicts.get(header)
        if verdict is None:
            host = host_of(header.decode("latin-1"))
            verdict = host is not None and (is_loopback_host(host) or host in self.allowed_hosts)
            if len(self._verdicts) >= 256:
                self._verdicts.clear()
            self._verdicts[header] = verdict
        return verdict

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        length_header: bytes | None = None
        host_header: bytes | None = None
        hosts = 0
        for name, value in scope["headers"]:
            if name == b"x-request-id" and _CLIENT_ID.fullmatch(value):
                request_id = value.decode()
            elif name == b"content-length":
                length_header = value
            elif name == b"host":
                host_header = value
                hosts += 1
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

        if hosts > 1 or not self.host_allowed(host_header):
            shown = repr(host_header.decode("latin-1")[:100]) if host_header is not None else "none"
            await refuse(421, "MISDIRECTED_REQUEST",
                         f"this server does not answer for Host {shown}: use a loopback address "
                         "(127.0.0.1, localhost, [::1]) or the issuer's host; to serve other names "
                         "(a LAN), start it with --allowed-host NAME")
            return

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

"""``GET /permissions``: the page where a principal sees every grant given in their name and
takes any of them back (issue 12; SDK-SURFACE §5).

The page is public and holds no data: a static shell, and one same-origin script
(``/permissions/assets/permissions.js``) that reads the session token from ``#session=`` (or
``?session=``), removes it from the address bar, keeps it in memory only and sends it as
``Authorization: Bearer`` to the ``/v1/principal/*`` routes. No cookie is ever involved, so a
cross-site page cannot act for the principal; those routes also refuse a foreign ``Origin``.

Headers, stricter than the consent page's since nothing here is a form: no inline script or
style, nothing loaded or fetched from another origin, no framing, no referrer (the token may
still be in the address bar for the moment before the script runs), no caching.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from .auth import server_state

router = APIRouter(include_in_schema=False)

HERE = Path(__file__).parent
_CSS = (HERE / "static" / "permissions.css").read_bytes()
_JS = (HERE / "static" / "permissions.js").read_bytes()
_templates = Environment(loader=FileSystemLoader(HERE / "templates"),
                         autoescape=select_autoescape(default=True, default_for_string=True))

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


@router.get("/permissions")
def permissions_page(request: Request) -> HTMLResponse:
    """The shell; without a session in the URL the script says how to get one."""
    html = _templates.get_template("permissions.html").render(issuer=server_state(request).issuer)
    return HTMLResponse(html, headers=HEADERS)


@router.get("/permissions/assets/permissions.css")
def stylesheet() -> Response:
    return Response(_CSS, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})


@router.get("/permissions/assets/permissions.js")
def script() -> Response:
    return Response(_JS, media_type="text/javascript", headers={"Cache-Control": "public, max-age=3600"})

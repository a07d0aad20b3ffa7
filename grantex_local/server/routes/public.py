"""Routes without an API key: health, the issuer's JWKS, and a pointer to the docs."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ... import __version__
from ...keys import jwks
from ..auth import server_state
from . import ok

router = APIRouter(tags=["public"])


@router.get("/", include_in_schema=False)
def index(request: Request) -> JSONResponse:
    state = server_state(request)
    return ok({"service": "grantex-local", "version": __version__, "issuer": state.ledgers.get().issuer,
               "docs": "/docs", "openapi": "/openapi.json", "jwks": "/.well-known/jwks.json"})


@router.get("/health", summary="Liveness, and that the ledger can be read")
def health(request: Request) -> JSONResponse:
    """Public. Reads one setting from the ledger, so a broken file shows here."""
    issuer = server_state(request).ledgers.get().issuer
    return ok({"status": "ok", "issuer": issuer, "version": __version__})


@router.get("/.well-known/jwks.json", summary="The issuer's public signing keys (RSA only)")
def well_known_jwks(request: Request) -> JSONResponse:
    """Public, without rate-limit headers: relying parties fetch it to verify tokens offline.

    Only RSA keys are published (PROTOCOL §2); a retired key stays while tokens it signed live.
    """
    keys = jwks(server_state(request).ledgers.get())
    keys = {"keys": [k for k in keys["keys"] if k.get("kty") == "RSA"]}
    return JSONResponse(keys, headers={"Cache-Control": "public, max-age=60"})

"""``grantex-local serve``: the Grantex REST API (PROTOCOL §13) over one ledger file.

The server only translates HTTP to library calls: every decision (validation,
policies, signing, revocation, the audit chain) is made by the library, and
every :class:`~grantex_local.errors.GrantexLocalError` becomes a JSON error
``{message, code, requestId}`` with the status the error class names.

``create_app`` builds the ASGI application (FastAPI); ``serve`` runs it on
uvicorn with graceful shutdown; ``running_server`` (in :mod:`.testing`) runs
one in a background thread for tests and notebooks.
"""

from __future__ import annotations

from .app import DEFAULT_MAX_BODY, DEFAULT_RATE_LIMIT, DEFAULT_RATE_WINDOW, create_app
from .run import serve

__all__ = ["DEFAULT_MAX_BODY", "DEFAULT_RATE_LIMIT", "DEFAULT_RATE_WINDOW", "create_app", "serve"]

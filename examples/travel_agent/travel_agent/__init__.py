"""A tiny travel agent's booking service, guarded by Grantex (see ``app.py``)."""

from .app import BOOK_SCOPE, PAY_SCOPE, create_app, spending_limit

__all__ = ["BOOK_SCOPE", "PAY_SCOPE", "create_app", "spending_limit"]

"""Page numbers and sizes, bounded so that no page can overflow the SQL it turns into.

SQLite integers stop at 2^63 - 1: a ``LIMIT``/``OFFSET`` beyond that is an
``OverflowError`` in the driver, not an empty page, and ``page * pageSize``
reaches it long before ``page`` does. The audit listing and the paged HTTP
routes take their window from :func:`window` (the routes also declare the
bounds in OpenAPI), so a huge number is a 400 (or exit 2) that says what is
allowed.
"""

from __future__ import annotations

from .errors import InvalidInput

MAX_PAGE = 1_000_000_000
"""A billion pages: more than any ledger holds, and times :data:`MAX_PAGE_SIZE` far below 2^63."""
MAX_PAGE_SIZE = 10_000


def _whole(value: object, name: str, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise InvalidInput(f"{name} must be a whole number from 1 to {high}")
    return value


def window(page: object, page_size: object, *, page_name: str = "page",
           size_name: str = "pageSize") -> tuple[int, int]:
    """(limit, offset) of page ``page`` (from 1) of ``page_size`` rows; InvalidInput if out of range."""
    number = _whole(page, page_name, MAX_PAGE)
    size = _whole(page_size, size_name, MAX_PAGE_SIZE)
    return size, (number - 1) * size


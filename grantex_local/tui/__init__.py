"""The terminal UI (``grantex-local tui``): browse delegation trees, watch the audit trail,
approve consent, revoke safely.

Textual is imported only when :func:`run` (or :mod:`.app`) is used, so the
library and the CLI work without it installed.
"""

from __future__ import annotations

import os

from ..clock import Clock
from ..errors import GrantexLocalError


def run(ledger_path: str | os.PathLike[str] | None = None, export: str | os.PathLike[str] | None = None,
        *, verifier_key: str | None = None, clock: Clock | None = None) -> None:
    """Open the TUI on a ledger file, or (``export``) on an export bundle, read-only.

    ``ledger_path`` None means ``$GRANTEX_LEDGER`` or ``./grantex.db``. The file
    must exist: the TUI never creates a ledger. Raises GrantexLocalError (the
    CLI prints it) when the file or bundle cannot be opened or Textual is
    missing.
    """
    try:
        from .app import GrantexApp
        from .data import TuiData
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise GrantexLocalError(
            f"the TUI needs Textual ({exc.name} is missing): pip install 'grantex-local[tui]'") from None
    data = (TuiData.open_bundle(export, clock=clock, verifier_key=verifier_key) if export is not None
            else TuiData.open(ledger_path, clock=clock))
    try:
        GrantexApp(data).run()
    finally:
        data.close()


__all__ = ["run"]

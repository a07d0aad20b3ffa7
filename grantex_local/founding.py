"""The public :class:`Ledger`: an open ledger file, plus what a new one is made of and the audit
entry every settings change leaves.

Why a floor of its own: the file itself (:class:`~grantex_local.ledger.LedgerFile`) is what the
developers, keys and audit-trail modules stand on, so it cannot call them; founding a file (the
default developer, the first signing key) and recording a settings change need all three. This
class stands on them and is what ``grantex_local.Ledger``, the client, the CLI, the server and the
TUI open. Its imports of the floors below are made where they are used, so opening a ledger to
verify a token loads no audit trail, developers or key generation.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from .ledger import LedgerFile


class Ledger(LedgerFile):
    """An open ledger file that founds new files completely and records every settings change.

    ``create=True`` creates the file when missing (keys, default developer and settings
    included); ``create=False`` refuses a missing path, which is what the CLI wants for every
    command but ``init``.
    """

    def _prepare_founding(self) -> object:
        from .keymaterial import generate_signing_key  # an RSA key takes a while: before the lock

        return generate_signing_key(self.passphrase)

    def _found(self, conn: sqlite3.Connection, now: str, materials: object) -> None:
        from .developers import insert_default_developer
        from .keymaterial import NewKey
        from .keys import insert_signing_key

        assert isinstance(materials, NewKey)
        insert_default_developer(conn, now)
        insert_signing_key(conn, materials, now)

    def set_setting(self, key: str, value: str) -> str:
        """Validate and store one setting, recording the change in the default developer's audit
        chain in the same transaction; returns the stored text."""
        from .audit.trail import record
        from .developers import default_developer

        value = self.validate_setting(key, value)
        metadata: dict[str, Any] = {"key": key, "value": value}
        with self.write() as conn:
            previous = self.store_setting(conn, key, value)
            if previous is not None:
                metadata["previous"] = previous
            record(self, conn, default_developer(self).id, "grantex.settings.changed", metadata=metadata)
        return value

"""The ledger: one SQLite file that holds everything.

Why this shape: every part of grantex-local (library, CLI, TUI, server,
notebooks) works on the same file, often from several processes at once, so
the file is opened the same way everywhere: WAL mode (readers never block the
writer), a busy timeout, foreign keys on, ``BEGIN IMMEDIATE`` for every write
so two writers queue instead of failing half-way, and ``synchronous=FULL`` so
that a write that returned (a revocation above all) survives a power cut.

sqlite3 errors never leave this module's boundary untranslated: callers see
:class:`~grantex_local.errors.LedgerError` subclasses.

This module is the floor the library stands on, so it imports nothing that keeps rows in the
file: :class:`LedgerFile` knows the file, its connection, transactions, settings and the parsed
keys it signs and verifies with. What a *new* ledger is made of (the default developer, the first
signing key) and the audit entry every settings change leaves are the public
:class:`grantex_local.founding.Ledger`'s, a subclass that stands on the developers, keys and
audit-trail modules (which themselves only need this floor). See docs/architecture.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from . import errors, groupcommit
from .clock import Clock, iso, system_clock
from .migrations import SCHEMA_VERSION, apply_migrations

if TYPE_CHECKING:
    from .verify import Verifier

APPLICATION_ID = 0x47784C64  # "GxLd": marks a SQLite file as a grantex-local ledger
DEFAULT_PATH = "grantex.db"
DEFAULT_ISSUER = "http://127.0.0.1:8421"
DEFAULT_MAX_DELEGATION_DEPTH = 3
MAX_DELEGATION_DEPTH_CAP = 10
DEFAULT_MAX_EXPIRES_IN = 24 * 3600
BUSY_TIMEOUT_MS = 15_000

SETTINGS_DEFAULTS: dict[str, str] = {
    "issuer": DEFAULT_ISSUER,
    "max_delegation_depth": str(DEFAULT_MAX_DELEGATION_DEPTH),
    "max_expires_in": str(DEFAULT_MAX_EXPIRES_IN),
}
PAST_ISSUERS = "past_issuers"
"""The settings row (JSON) listing earlier issuers whose tokens may still be live. It is kept by
:meth:`LedgerFile.store_setting` alone, in the transaction that changes the issuer, and is not a
setting anyone sets."""


def default_path() -> str:
    """``$GRANTEX_LEDGER`` or ``./grantex.db``."""
    return os.environ.get("GRANTEX_LEDGER") or DEFAULT_PATH


def translate(exc: sqlite3.Error, path: str) -> errors.LedgerError:
    """Map a sqlite3 error to the typed error a caller can act on."""
    text = str(exc).lower()
    if "readonly" in text or "read-only" in text:
        return errors.LedgerReadOnly(f"ledger {path} is read-only; nothing was written")
    if "locked" in text or "busy" in text:
        return errors.LedgerBusy(f"ledger {path} is busy (another process holds the write lock)")
    if "not a database" in text or "file is encrypted" in text:
        return errors.NotALedger(f"{path} is not a grantex-local ledger (not a SQLite database)")
    if "malformed" in text or "corrupt" in text or "disk i/o" in text:
        return errors.LedgerCorrupt(f"ledger {path} is corrupt: {exc}")
    if isinstance(exc, sqlite3.IntegrityError):
        return errors.LedgerError(f"ledger {path} refused a write: {exc}")
    return errors.LedgerError(f"ledger {path}: {exc}")


_UNENCODABLE = ("a lookup value contains a lone UTF-16 surrogate, which is not text "
                "(send the character itself, not half of its surrogate pair)")

class LedgerFile:
    """An open ledger file: connection, transactions, settings and the parsed signing keys.

    ``create=True`` creates the file when missing; ``create=False`` refuses a missing path,
    which is what the CLI wants for every command but ``init``. A new file is founded by
    :meth:`_found`, which this class leaves to :class:`grantex_local.founding.Ledger` (the
    class everyone opens ledgers with): on its own it refuses to make a ledger with no
    developer or key, instead of leaving a half-made file that later opens as complete.
    Library functions take a ``LedgerFile`` when they need no more than this.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        create: bool = True,
        clock: Clock | None = None,
        passphrase: str | None = None,
        issuer: str | None = None,
    ) -> None:
        self.path = str(path if path is not None else default_path())
        self.clock: Clock = clock or system_clock
        env_pass = os.environ.get("GRANTEX_LOCAL_PASSPHRASE")
        self.passphrase: str | None = passphrase if passphrase is not None else (env_pass or None)
        # Parsed keys are kept for the life of the object: parsing a PEM
        # private key costs tens of milliseconds.
        self._signing_key: tuple[str, Any] | None = None
        self._signing_key_stamp: tuple[int, int] | None = None
        self._verifier: Verifier | None = None
        self._verifier_stamp: tuple[int, int] | None = None
        self.readonly = False
        self.created = False
        if issuer is not None:
            validate_issuer(issuer)  # before a file is made
        self._conn = self._connect(create)
        self._group = groupcommit.group_for(self.path)
        try:
            self._prepare(issuer)
        except BaseException:
            self._conn.close()
            if self._made_file:
                for suffix in ("", "-wal", "-shm"):
                    with contextlib.suppress(OSError):
                        os.remove(self.path + suffix)
            raise

    # ── opening ──────────────────────────────────────────────────────────

    def _connect(self, create: bool) -> sqlite3.Connection:
        p = Path(self.path)
        self._made_file = False
        if p.exists():
            if not p.is_file():
                raise errors.NotALedger(f"{self.path} is not a file")
            st = p.stat()
            self.readonly = not (st.st_mode & stat.S_IWUSR) or not os.access(p, os.W_OK)
            if st.st_size == 0:
                if not create or self.readonly:
                    raise errors.NotALedger(
                        f"{self.path} is an empty file, not a ledger; create one with 'grantex-local init'")
                self.created = True
                os.chmod(p, 0o600)  # keys are about to be written into it
        else:
            if not create:
                raise errors.LedgerNotFound(
                    f"no ledger at {self.path}; create one with 'grantex-local init'"
                )
            if not p.parent.exists():
                raise errors.LedgerNotFound(f"directory {p.parent} does not exist")
            try:
                fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                pass
            except OSError as exc:
                raise errors.LedgerError(f"cannot create ledger {self.path}: {exc.strerror}") from None
            else:
                os.close(fd)
                self.created = True
                self._made_file = True
            os.chmod(p, 0o600)
        uri = p.resolve().as_uri() + ("?mode=ro" if self.readonly else "")
        try:
            conn = sqlite3.connect(
                uri, uri=True, isolation_level=None, check_same_thread=False,
                timeout=BUSY_TIMEOUT_MS / 1000,
            )
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None
        conn.row_factory = sqlite3.Row
        return conn

    @property
    def conn(self) -> sqlite3.Connection:
        """The connection to use now: the shared write transaction's while this thread runs a
        write body on this file (whichever ledger object began it), else this object's own."""
        return self._group.current() or self._conn

    def _prepare(self, issuer: str | None) -> None:
        conn = self._conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            has_tables = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
            ).fetchone()[0]
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None
        if app_id != APPLICATION_ID and (app_id != 0 or has_tables):
            raise errors.NotALedger(
                f"{self.path} is a SQLite database but not a grantex-local ledger"
            )
        if version > SCHEMA_VERSION:
            raise errors.SchemaTooNew(
                f"ledger {self.path} has schema version {version}, newer than this "
                f"grantex-local understands ({SCHEMA_VERSION}); upgrade grantex-local"
            )
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            if not self.readonly:
                conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None
        if version < SCHEMA_VERSION:
            if self.readonly:
                raise errors.LedgerReadOnly(
                    f"ledger {self.path} needs a schema upgrade but is read-only"
                )
            self._initialise_or_upgrade(issuer)

    def _initialise_or_upgrade(self, issuer: str | None) -> None:
        try:
            self._conn.execute("PRAGMA journal_mode = WAL")
            outside = self._conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None
        # Slow preparation (an RSA key) happens outside the lock, and only for a new file.
        materials = self._prepare_founding() if outside == 0 else None
        with self.write() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version >= SCHEMA_VERSION:
                return  # another process got there first
            apply_migrations(conn, version)
            if version == 0:
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                now = iso(self.clock())
                settings = dict(SETTINGS_DEFAULTS, created_at=now)
                if issuer is not None:
                    settings["issuer"] = validate_issuer(issuer)
                conn.executemany(
                    "INSERT INTO settings (key, value) VALUES (?, ?)", settings.items()
                )
                if materials is None:  # not seen: versions only go up, so outside was 0 too
                    materials = self._prepare_founding()
                self._found(conn, now, materials)
        self.created = True

    def _prepare_founding(self) -> object:
        """What founding a new file needs that is slow to make, made before the write lock."""
        return None

    def _found(self, conn: sqlite3.Connection, now: str, materials: object) -> None:
        """Write what a new ledger is made of besides its schema and settings, inside the
        transaction that creates them. :class:`grantex_local.founding.Ledger` does it; here a new
        file is refused (the transaction rolls back and a file this object made is removed)."""
        raise errors.LedgerError(
            f"no ledger at {self.path}: a new ledger is made by grantex_local.Ledger, not LedgerFile")

    # ── transactions ─────────────────────────────────────────────────────

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; nested calls (on any ledger object of this file, in this
        thread) join the outer one.

        Concurrent writers of this process share a transaction and its fsync (group commit, see
        :mod:`grantex_local.groupcommit`): the body runs inside its own savepoint, so an error
        undoes this body alone, and the call returns only once the shared commit is durable."""
        if self.readonly:
            raise errors.LedgerReadOnly(f"ledger {self.path} is read-only; nothing was written")
        group = self._group
        shared = group.current()
        if shared is not None:
            yield shared
            return
        try:
            member = group.join(self._conn, _begin_immediate)
        except groupcommit.BatchFailed as exc:
            raise self._failed(exc) from None
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None
        wrote = False
        try:
            try:
                member.begin_body()
            except groupcommit.BatchFailed as exc:
                raise self._failed(exc) from None
            except sqlite3.Error as exc:
                raise translate(exc, self.path) from None
            try:
                yield member.conn
            except BaseException as exc:
                self.forget_keys()  # they may hold a key or issuer that was rolled back
                self._end_body(member, ok=False)
                if isinstance(exc, sqlite3.Error):
                    raise translate(exc, self.path) from None
                raise
            self._end_body(member, ok=True)
            wrote = True
        finally:
            try:
                member.leave(wrote)
            except groupcommit.BatchFailed as exc:
                self.forget_keys()
                raise self._failed(exc) from None

    def _end_body(self, member: groupcommit.Member, *, ok: bool) -> None:
        try:
            member.end_body(ok)
        except groupcommit.BatchFailed as exc:
            self.forget_keys()
            raise self._failed(exc) from None
        except sqlite3.Error as exc:
            self.forget_keys()
            raise translate(exc, self.path) from None

    def _failed(self, exc: groupcommit.BatchFailed) -> errors.LedgerError:
        """What a writer whose shared transaction was lost is told: the cause's own translation
        (busy, full disk, ...) when SQLite gave one. Nothing of its write was kept."""
        if isinstance(exc.cause, sqlite3.Error):
            return translate(exc.cause, self.path)
        return errors.LedgerError(f"ledger {self.path}: {exc}; nothing was written")

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for several queries (joins a write when inside one)."""
        shared = self._group.current()
        if shared is not None:
            yield shared
            return
        conn = self._conn
        try:
            conn.execute("BEGIN")
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None
        try:
            yield conn
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("COMMIT")

    def query(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[sqlite3.Row]:
        """Rows of one read query, errors translated.

        A parameter SQLite cannot take (a lone surrogate cannot be encoded as UTF-8) is the
        caller's bad input, not a crash: no stored row can match it anyway.
        """
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None
        except UnicodeEncodeError:
            raise errors.InvalidInput(_UNENCODABLE) from None

    def query_one(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> sqlite3.Row | None:
        try:
            row: sqlite3.Row | None = self.conn.execute(sql, params).fetchone()
            return row
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None
        except UnicodeEncodeError:
            raise errors.InvalidInput(_UNENCODABLE) from None

    # ── time and settings ────────────────────────────────────────────────

    def now(self) -> float:
        return self.clock()

    def settings(self) -> dict[str, str]:
        rows = self.query("SELECT key, value FROM settings")
        return {r["key"]: r["value"] for r in rows}

    def setting(self, key: str) -> str:
        row = self.query_one("SELECT value FROM settings WHERE key = ?", (key,))
        if row is not None:
            return str(row["value"])
        if key not in SETTINGS_DEFAULTS:
            raise errors.InvalidInput(
                f"unknown setting {key!r}; known: {', '.join(sorted(self.settings()))}")
        return SETTINGS_DEFAULTS[key]

    def validate_setting(self, key: str, value: str) -> str:
        """The text a setting would be stored as; InvalidInput for unknown keys and bad values.
        Called before the write lock is taken, so bad input never waits for it."""
        if key == "issuer":
            value = validate_issuer(value)
        elif key == "max_delegation_depth":
            value = str(_int_in_range(key, value, 0, MAX_DELEGATION_DEPTH_CAP))
        elif key == "max_expires_in":
            from .clock import parse_expires_in

            value = str(parse_expires_in(value, maximum=365 * 86400))
        else:
            raise errors.InvalidInput(
                f"unknown setting {key!r}; known: issuer, max_delegation_depth, max_expires_in"
            )
        return value

    def store_setting(self, conn: sqlite3.Connection, key: str, value: str) -> str | None:
        """Store one validated setting inside the caller's write transaction; returns the issuer
        it replaced (None for other keys, or when the issuer does not change).

        Not ``set_setting``: every change of a setting is recorded in the audit trail, which is
        :meth:`grantex_local.founding.Ledger.set_setting`'s job, one floor up.
        """
        previous = self._retire_issuer(conn, value) if key == "issuer" else None
        conn.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
        self._verifier = None  # a rollback drops it again (write() forgets the keys)
        return previous

    def _retire_issuer(self, conn: sqlite3.Connection, new: str) -> str | None:
        """Before the issuer becomes ``new``: put the current one on the past-issuer list, with
        the latest expiry of any token then live (tokens issued under it cannot outlive that;
        issuance reads the issuer inside its own write transaction, so none can slip in
        between), and drop past issuers whose tokens have all expired. Returns the issuer that
        was replaced (None when it does not change). The caller holds the write transaction."""
        row = conn.execute("SELECT value FROM settings WHERE key = 'issuer'").fetchone()
        current = str(row[0]) if row is not None else DEFAULT_ISSUER
        if current == new:
            return None
        now = self.now()
        now_iso = iso(now)
        keep_after = iso(now - 60)  # a minute's grace beyond the verifiers' leeway
        past = [p for p in _past_issuers(conn) if p["acceptedUntil"] > keep_after
                and p["issuer"] not in (current, new)]
        until = conn.execute("SELECT max(expires_at) FROM tokens WHERE expires_at > ?",
                             (now_iso,)).fetchone()[0]
        if until is not None:  # with no live token, nothing can carry the old issuer any more
            past.append({"issuer": current, "retiredAt": now_iso, "acceptedUntil": str(until)})
        conn.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (PAST_ISSUERS, json.dumps(past, separators=(",", ":"))),
        )
        return current

    @property
    def issuer(self) -> str:
        return self.setting("issuer")

    def past_issuers(self) -> list[dict[str, str]]:
        """Earlier issuers of this ledger whose tokens may still be live, oldest first:
        ``{"issuer", "retiredAt", "acceptedUntil"}`` (the latest expiry of any token live
        when it was replaced). Online verification accepts them besides the current one."""
        return _past_issuers(self.conn, self.path)

    def accepted_issuers(self) -> tuple[str, ...]:
        """The ``iss`` values this ledger's verification accepts: the current issuer first,
        then the past ones, newest first."""
        stored = {r[0]: r[1] for r in self.query(  # one statement: a consistent pair
            "SELECT key, value FROM settings WHERE key IN ('issuer', ?)", (PAST_ISSUERS,))}
        current = str(stored.get("issuer", DEFAULT_ISSUER))
        past = [p["issuer"] for p in reversed(_parse_past_issuers(stored.get(PAST_ISSUERS)))]
        return (current, *[p for p in past if p != current])

    @property
    def max_delegation_depth(self) -> int:
        return int(self.setting("max_delegation_depth"))

    @property
    def max_expires_in(self) -> int:
        return int(self.setting("max_expires_in"))

    # ── keys (parsed once, kept) ─────────────────────────────────────────

    def stamp(self) -> tuple[int, int]:
        """Changes whenever anyone else may have committed to the file: another connection
        (another process, ``PRAGMA data_version`` of this object's own connection) or a shared
        transaction of this process (the group's commit count: a batch led on this object's
        connection may carry another object's key rotation, which its data_version would not
        show). Cached keys and issuer are checked against it, one pragma instead of a query per
        call; this object's own changes to them drop the caches where they are made."""
        try:
            version = int(self._conn.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None
        return version, self._group.commits

    def signing_key(self) -> tuple[str, Any]:
        """(kid, private key object) of the active signing key."""
        from .keymaterial import load_private_key  # not at the top: opening a file needs no crypto

        stamp = self.stamp()
        if self._signing_key is not None and stamp == self._signing_key_stamp:
            return self._signing_key
        row = self.query_one(
            "SELECT kid, private_pem, encrypted FROM signing_keys WHERE retired_at IS NULL "
            "ORDER BY created_at DESC LIMIT 1"
        )
        if row is None:
            raise errors.LedgerCorrupt(f"ledger {self.path} has no active signing key")
        if self._signing_key is None or self._signing_key[0] != row["kid"]:
            pem, encrypted = bytes(row["private_pem"]), bool(row["encrypted"])
            # The parse (and the decryption's key derivation) is shared by every ledger object of
            # the process: the server opens one per thread, and a thread's first token would
            # otherwise pay it again. The cache is keyed by the passphrase given too, so a wrong
            # one still fails here.
            cache_key = (hashlib.sha256(pem).digest(), self.passphrase if encrypted else None)
            with _PARSED_KEYS_LOCK:
                key = _PARSED_KEYS.get(cache_key)
            if key is None:
                key = load_private_key(pem, encrypted, self.passphrase)
                with _PARSED_KEYS_LOCK:
                    if len(_PARSED_KEYS) >= _PARSED_KEYS_MAX:
                        _PARSED_KEYS.clear()
                    _PARSED_KEYS[cache_key] = key
            self._signing_key = (row["kid"], key)
        self._signing_key_stamp = stamp
        return self._signing_key

    def verifier(self) -> Verifier:
        """The offline verifier for this ledger's own keys and issuer (cached).

        It holds every key the ledger ever had (``keys.jwks(include_all=True)``): an expired
        token must fail as expired, not as an unknown kid."""
        stamp = self.stamp()
        if self._verifier is not None and stamp == self._verifier_stamp:
            return self._verifier
        from .verify import Verifier

        issuers = self.accepted_issuers()  # another process may have changed them
        if self._verifier is None or self._verifier.issuers != issuers:
            rows = self.query("SELECT public_jwk FROM signing_keys ORDER BY created_at DESC")
            every_key = {"keys": [json.loads(r["public_jwk"]) for r in rows]}
            self._verifier = Verifier(every_key, issuer=issuers, clock=self.clock)
        self._verifier_stamp = stamp
        return self._verifier

    def verify_offline(self, token: str, required_scopes: Any = None) -> Any:
        """Offline verification with this ledger's keys; reloads once on an unknown kid
        (another process may have rotated the key). Raises TokenInvalid."""
        try:
            return self.verifier().verify(token, required_scopes)
        except errors.TokenInvalid as exc:
            if exc.reason != "unknown_kid":
                raise
        self.forget_keys()
        return self.verifier().verify(token, required_scopes)

    def passphrase_for_new_keys(self) -> str | None:
        """The passphrase new private keys are stored under.

        When the ledger's keys are encrypted, a missing or wrong passphrase is
        refused here, before anything is written, so a rotation can never
        leave a key in the clear or under a passphrase the owner does not know.
        """
        row = self.query_one(
            "SELECT encrypted FROM signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC LIMIT 1"
        )
        if row is not None and row["encrypted"]:
            self.signing_key()  # raises PassphraseError when missing or wrong
        return self.passphrase

    def forget_keys(self) -> None:
        """Drop cached keys (after a rotation, or when a kid is unknown)."""
        self._signing_key = None
        self._verifier = None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_PARSED_KEYS: dict[tuple[bytes, str | None], Any] = {}
_PARSED_KEYS_LOCK = threading.Lock()
_PARSED_KEYS_MAX = 32


def _begin_immediate(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")


def _past_issuers(conn: sqlite3.Connection, path: str = "") -> list[dict[str, str]]:
    """The stored past-issuer list. Entries that are not well formed (the row edited by hand)
    are left out: an issuer is accepted only when the ledger clearly says so."""
    try:
        row = conn.execute("SELECT value FROM settings WHERE key = ?", (PAST_ISSUERS,)).fetchone()
    except sqlite3.Error as exc:
        raise translate(exc, path) from None
    return _parse_past_issuers(row[0] if row is not None else None)


def _parse_past_issuers(text: Any) -> list[dict[str, str]]:
    if text is None:
        return []
    try:
        stored = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return []
    if not isinstance(stored, list):
        return []
    fields = ("issuer", "retiredAt", "acceptedUntil")
    return [{f: entry[f] for f in fields} for entry in stored
            if isinstance(entry, dict) and all(isinstance(entry.get(f), str) and entry[f] for f in fields)]


def validate_issuer(value: str) -> str:
    """An issuer URL as clients spell their base URL: http(s), a host, no trailing '/'."""
    from urllib.parse import urlsplit

    if not isinstance(value, str) or not value:
        raise errors.InvalidInput("issuer must be a URL such as http://127.0.0.1:8421")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise errors.InvalidInput(f"issuer {value!r} must be an http(s) URL with a host")
    if value.endswith("/") or parts.query or parts.fragment or not value.isascii():
        raise errors.InvalidInput(
            f"issuer {value!r} must have no trailing '/', query or fragment and be ASCII"
        )
    return value


def _int_in_range(name: str, value: object, low: int, high: int) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise errors.InvalidInput(f"{name} must be a whole number, not {value!r}") from None
    if not low <= number <= high:
        raise errors.InvalidInput(f"{name} must be between {low} and {high}, not {number}")
    return number


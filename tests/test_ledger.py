"""The ledger file: creation, mode, refusing files that are not ledgers, read-only files."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest
from helpers import dump, grant_for

from grantex_local import (
    Grantex,
    InvalidInput,
    Ledger,
    LedgerCorrupt,
    LedgerError,
    LedgerNotFound,
    LedgerReadOnly,
    NotALedger,
    SchemaTooNew,
)
from grantex_local.ledger import APPLICATION_ID
from grantex_local.migrations import SCHEMA_VERSION


def test_new_ledger_file_is_private_wal_and_recorded(ledger_path: Path) -> None:
    with Ledger(ledger_path) as ledger:
        assert ledger.created
        assert stat.S_IMODE(os.stat(ledger_path).st_mode) == 0o600
        conn = ledger.conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        names = [r[0] for r in conn.execute("SELECT name FROM _migrations")]
        assert len(names) == SCHEMA_VERSION and names[0] == "m001_core"
        assert ledger.issuer == "http://127.0.0.1:8421"
    for suffix in ("-wal", "-shm"):
        extra = Path(str(ledger_path) + suffix)
        if extra.exists():
            assert stat.S_IMODE(extra.stat().st_mode) == 0o600


def test_reopening_keeps_everything(ledger_path: Path) -> None:
    with Grantex(ledger_path) as gx:
        token = grant_for(gx, ["calendar:read"])
        kid = gx.ledger.signing_key()[0]
    with Grantex(ledger_path, create=False) as gx:
        assert not gx.ledger.created
        assert gx.ledger.signing_key()[0] == kid
        assert gx.tokens.verify(token.grant_token).valid


def test_ledger_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "env.db"
    monkeypatch.setenv("GRANTEX_LEDGER", str(target))
    with Ledger() as ledger:
        assert ledger.path == str(target)
    assert target.exists()


def test_missing_file_without_create(tmp_path: Path) -> None:
    with pytest.raises(LedgerNotFound, match="grantex-local init"):
        Ledger(tmp_path / "nope.db", create=False)
    assert not (tmp_path / "nope.db").exists()
    with pytest.raises(LedgerNotFound):
        Ledger(tmp_path / "no-such-dir" / "x.db")


@pytest.mark.parametrize("content", [b"hello, I am a text file\n" * 50, os.urandom(8192)])
def test_non_ledger_file_is_refused_unchanged(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(content)
    with pytest.raises(NotALedger):
        Ledger(path)
    assert path.read_bytes() == content


def test_other_sqlite_database_is_refused_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO customers (name) VALUES ('x')")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(NotALedger, match="not a grantex-local ledger"):
        Ledger(path)
    assert path.read_bytes() == before


def test_newer_schema_is_refused_unchanged(ledger_path: Path) -> None:
    Ledger(ledger_path).close()
    conn = sqlite3.connect(ledger_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    before = dump(ledger_path)
    with pytest.raises(SchemaTooNew, match="upgrade grantex-local"):
        Ledger(ledger_path)
    assert dump(ledger_path) == before


def test_corrupt_ledger_gives_typed_error(ledger_path: Path) -> None:
    with Grantex(ledger_path) as gx:
        for i in range(30):
            grant_for(gx, ["calendar:read"], agent_name=f"agent-{i}")
    conn = sqlite3.connect(ledger_path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(ledger_path.read_bytes())
    page = 4096
    for offset in range(2 * page, len(data), page):  # keep page 1 (the header), smash the rest
        data[offset:offset + 200] = os.urandom(200)
    ledger_path.write_bytes(bytes(data))
    with pytest.raises(LedgerError) as err:
        with Grantex(ledger_path, create=False) as gx:
            gx.grants.list()
            gx.agents.list()
    assert isinstance(err.value, LedgerCorrupt | NotALedger)


def test_read_only_file_reads_but_refuses_writes(ledger_path: Path) -> None:
    with Grantex(ledger_path) as gx:
        token = grant_for(gx, ["calendar:read"])
    os.chmod(ledger_path, 0o400)
    try:
        before = dump(ledger_path)
        with Grantex(ledger_path, create=False) as gx:
            assert gx.ledger.readonly
            assert gx.tokens.verify(token.grant_token).valid
            assert len(gx.grants.list().grants) == 1
            with pytest.raises(LedgerReadOnly):
                gx.agents.register(name="x", scopes=[])
            with pytest.raises(LedgerReadOnly):
                gx.grants.revoke(token.grant_id)
        assert dump(ledger_path) == before
    finally:
        os.chmod(ledger_path, 0o600)


@pytest.mark.parametrize(
    ("key", "value"),
    [("issuer", "http://127.0.0.1:8421/"), ("issuer", "ftp://x"), ("issuer", "not a url"),
     ("max_delegation_depth", "11"), ("max_delegation_depth", "-1"), ("max_delegation_depth", "three"),
     ("max_expires_in", "forever"), ("color", "blue")],
)
def test_settings_are_validated(ledger_path: Path, key: str, value: str) -> None:
    with Ledger(ledger_path) as ledger:
        before = ledger.settings()
        with pytest.raises(InvalidInput):
            ledger.set_setting(key, value)
        assert ledger.settings() == before


def test_max_expires_in_setting_bounds_authorize(gx: Grantex) -> None:
    from grantex_local import InvalidExpiresIn

    agent = gx.agents.register(name="a", scopes=["calendar:read"])
    with pytest.raises(InvalidExpiresIn, match="maximum of 1d"):
        gx.authorize(agent_id=agent.id, user_id="u", scopes=["calendar:read"], expires_in="2d")
    gx.ledger.set_setting("max_expires_in", "7d")
    assert gx.authorize(agent_id=agent.id, user_id="u", scopes=["calendar:read"], expires_in="2d").code

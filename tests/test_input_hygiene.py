"""Text the ledger refuses, page numbers it bounds, and readers that survive what is already stored.

Refusals are checked at the three doors (library, HTTP on a real loopback server, CLI) with the
ledger file compared before and after. The readers are checked on ledgers that already hold an
unrenderable row, written the only way it can get there now: with raw sqlite3 (an entry an older
version stored with a lone surrogate, one whose bytes are not UTF-8, an agent name with a
right-to-left override).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_helpers import fails, invoke, ok, ok_json
from helpers import dump, grant_for
from ulid import ULID

from grantex_local import Grantex, InvalidInput, Ledger, analysis, developers, paging
from grantex_local.audit.hashing import canonical_json, preimage_text
from grantex_local.models import CreatePolicyParams
from grantex_local.server.testing import running_server
from grantex_local.text import check_name, check_text, escape

RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE
HUGE = str(2**63 - 1)


# ── the rules themselves ─────────────────────────────────────────────────────


@pytest.mark.parametrize(("value", "expected"), [
    ("pay\ud800", "action: U+D800 (a lone UTF-16 surrogate, not a character) at position 4 is not allowed"),
    ("x\ufffe", "action: U+FFFE (a Unicode non-character) at position 2"),
    ("\ufdd0", "action: U+FDD0 (a Unicode non-character) at position 1"),
    ("ok \U0010ffff", "action: U+10FFFF (a Unicode non-character) at position 4"),
    ("a\ud83d\ude00", "action: U+D83D at position 2 is not allowed (half of a surrogate pair: send the "
                      "character U+1F600 itself)"),
])
def test_every_field_refuses_surrogates_and_non_characters(value: str, expected: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_text(value, "action")
    assert caught.value.message.startswith(expected)


@pytest.mark.parametrize(("value", "expected"), [
    (f"trav{RLO}el", "agent name: U+202E RIGHT-TO-LEFT OVERRIDE at position 5 is not allowed"),
    ("pay\u200bpal", "agent name: U+200B ZERO WIDTH SPACE at position 4"),
    ("a\u200db", "agent name: U+200D ZERO WIDTH JOINER at position 2"),
    ("\ufeffbot", "agent name: U+FEFF ZERO WIDTH NO-BREAK SPACE at position 1"),
    ("bot\u2066x", "agent name: U+2066 LEFT-TO-RIGHT ISOLATE at position 4"),
    ("a\u200fb", "agent name: U+200F RIGHT-TO-LEFT MARK at position 2"),
    ("a\u061cb", "agent name: U+061C ARABIC LETTER MARK at position 2"),
    ("a\u180eb", "agent name: U+180E MONGOLIAN VOWEL SEPARATOR at position 2"),
    ("\u3164", "agent name: U+3164 HANGUL FILLER at position 1"),
    ("two\nlines", "agent name: U+000A LINE FEED at position 4"),
    ("tab\there", "agent name: U+0009 CHARACTER TABULATION at position 4"),
    ("a\u2028b", "agent name: U+2028 LINE SEPARATOR at position 2"),
    ("bell\x07", "agent name: U+0007 (a control character) at position 5"),
])
def test_names_also_refuse_control_bidi_and_invisible_characters(value: str, expected: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_name(value, "agent name")
    assert caught.value.message.startswith(expected)
    assert "\n" not in caught.value.message and RLO not in caught.value.message


@pytest.mark.parametrize("value", ["travel-booker", "Zo\u00eb\u2019s café", "日本語のエージェント",
                                   "agent 😀", "Ünïcödé (beta) #2", "नमस्ते", "שלום", "\u00a0spaced"])
def test_ordinary_names_in_any_script_are_accepted(value: str) -> None:
    assert check_name(value, "agent name") == value


def test_escape_shows_what_a_name_may_not_hold_and_leaves_the_rest() -> None:
    assert escape(f"trav{RLO}el") == "trav\\u202eel"
    assert escape("pay\ud800") == "pay\\ud800"
    assert escape("a\nb\x1b") == "a\\nb\\x1b"
    assert escape("Zoë 😀 日本") == "Zoë 😀 日本"


# ── refused at the library, nothing written ──────────────────────────────────


@pytest.fixture
def world(gx: Grantex) -> dict[str, str]:
    token = grant_for(gx, ["calendar:read"])
    grant = gx.grants.get(token.grant_id)
    return {"agent_id": grant.agent_id, "grant_id": grant.id}


LIBRARY_CASES: dict[str, tuple[Any, str]] = {
    "agent name surrogate": (lambda gx, w: gx.agents.register(name="x\ud800", scopes=["calendar:read"]),
                             "agent name: U+D800"),
    "agent name bidi": (lambda gx, w: gx.agents.register(name=f"good{RLO}lave", scopes=["calendar:read"]),
                        "agent name: U+202E RIGHT-TO-LEFT OVERRIDE at position 5"),
    "agent name zero width": (lambda gx, w: gx.agents.register(name="pay\u200bpal", scopes=[]),
                              "agent name: U+200B ZERO WIDTH SPACE at position 4"),
    "agent name newline": (lambda gx, w: gx.agents.register(name="a\nb", scopes=[]),
                           "agent name: U+000A LINE FEED at position 2"),
    "agent description bidi": (lambda gx, w: gx.agents.register(name="ok", scopes=[],
                                                                 description=f"x{RLO}"),
                               "agent description: U+202E"),
    "agent rename bidi": (lambda gx, w: gx.agents.update(w["agent_id"], name=f"{RLO}x"),
                          "agent name: U+202E RIGHT-TO-LEFT OVERRIDE at position 1"),
    "redirect uri surrogate": (lambda gx, w: gx.agents.register(
        name="ok", scopes=[], redirect_uris=["https://app.example/cb\udcff"]), "redirect URI: U+DCFF"),
    "developer name bidi": (lambda gx, w: developers.create_developer(gx.ledger, f"Acme{RLO}"),
                            "developer name: U+202E"),
    "api key name zero width": (lambda gx, w: developers.create_api_key(gx.ledger, gx.developer_id,
                                                                        "ci\u2060"),
                                "API key name: U+2060 WORD JOINER"),
    "policy name tab": (lambda gx, w: gx.policies.create(CreatePolicyParams(name="a\tb", effect="deny")),
                        "policy name: U+0009"),
    "policy principal surrogate": (lambda gx, w: gx.policies.create(CreatePolicyParams(
        name="p", effect="deny", principal_id="u\ud800")), "principalId: U+D800"),
    "principal surrogate": (lambda gx, w: gx.authorize(agent_id=w["agent_id"], user_id="al\ud800",
                                                       scopes=["calendar:read"]), "principal id: U+D800"),
    "principal bidi": (lambda gx, w: gx.authorize(agent_id=w["agent_id"], user_id=f"al{RLO}ice",
                                                  scopes=["calendar:read"]), "principal id: U+202E"),
    "state non-character": (lambda gx, w: gx.authorize(agent_id=w["agent_id"], user_id="alice",
                                                       scopes=["calendar:read"], state="s\uffff"),
                            "state: U+FFFF"),
    "audit action surrogate": (lambda gx, w: gx.audit.log(**w, action="pay\ud800"),
                               "action: U+D800 (a lone UTF-16 surrogate, not a character) at position 4"),
    "audit metadata value": (lambda gx, w: gx.audit.log(**w, action="pay",
                                                        metadata={"items": [1, {"note": "x\udfff"}]}),
                             "metadata.items[1].note: U+DFFF"),
    "audit metadata key": (lambda gx, w: gx.audit.log(**w, action="pay", metadata={"k\ufdd0": 1}),
                           'metadata key "k\\ufdd0": U+FDD0'),
    "audit batch, second item": (lambda gx, w: gx.audit.log_many(
        [{**w, "action": "ok"}, {**w, "action": "bad\ud800"}]), "entry 1: action: U+D800"),
    "audit grant lookup": (lambda gx, w: gx.audit.log(agent_id=w["agent_id"], grant_id="g\ud800",
                                                      action="pay"), "grantId: U+D800"),
    "agent lookup": (lambda gx, w: gx.agents.get("ag_\ud800"), "agent id: U+D800"),
    "audit filter": (lambda gx, w: gx.audit.list(principal_id="u\ud800"), "principal id: U+D800"),
    "audit page overflow": (lambda gx, w: gx.audit.list(page=2**63), "page must be a whole number"),
    "audit page times size": (lambda gx, w: gx.audit.list(page=paging.MAX_PAGE + 1, page_size=10_000),
                              "page must be a whole number from 1 to 1000000000"),
}


@pytest.mark.parametrize("case", list(LIBRARY_CASES))
def test_the_library_refuses_with_a_message_naming_the_character(
        gx: Grantex, world: dict[str, str], ledger_path: Path, case: str) -> None:
    call, expected = LIBRARY_CASES[case]
    before = dump(ledger_path)
    with pytest.raises(InvalidInput) as caught:
        call(gx, world)
    assert expected in caught.value.message
    assert dump(ledger_path) == before


def test_rows_stored_before_the_checks_keep_working(gx: Grantex, world: dict[str, str],
                                                    ledger_path: Path) -> None:
    """Only new text is checked: an agent whose stored name has a bidi override can still be updated."""
    conn = sqlite3.connect(ledger_path)
    try:
        conn.execute("UPDATE agents SET name = ? WHERE id = ?", (f"evil{RLO}gnp.exe", world["agent_id"]))
        conn.commit()
    finally:
        conn.close()
    updated = gx.agents.update(world["agent_id"], description="still usable")
    assert updated.name == f"evil{RLO}gnp.exe" and updated.description == "still usable"


def test_names_in_any_script_are_stored_as_given(gx: Grantex) -> None:
    agent = gx.agents.register(name="  Zo\u00eb\u2019s 日本 agent 😀 ", scopes=["calendar:read"],
                               description="Réserve")
    assert gx.agents.get(agent.id).name == "Zo\u00eb\u2019s 日本 agent 😀"


# ── refused over HTTP ────────────────────────────────────────────────────────


@dataclass
class Server:
    base: str
    path: Path
    key: str
    agent_id: str
    grant_id: str

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=10, headers={
            "Authorization": f"Bearer {self.key}", "Content-Type": "application/json"})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    path = tmp_path_factory.mktemp("hygiene-http") / "grantex.db"
    with Grantex(Ledger(path)) as gx:
        key = developers.create_api_key(gx.ledger, gx.developer_id).key
        token = grant_for(gx, ["calendar:read"])
        agent_id = gx.grants.get(token.grant_id).agent_id
    with running_server(path, rate_limit=10_000) as running:
        yield Server(running.base_url, path, key, agent_id, token.grant_id)


def _counts(path: Path) -> tuple[int, ...]:
    conn = sqlite3.connect(path)
    try:
        return tuple(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                     for t in ("agents", "developers", "auth_requests", "grants", "audit_entries"))
    finally:
        conn.close()


HTTP_CASES: dict[str, tuple[str, str, str]] = {
    # name: (path, raw JSON body with %(agent)s / %(grant)s, expected text in the message)
    "agent name surrogate": ("/v1/agents", '{"name":"x\\ud800","scopes":["calendar:read"]}',
                             "name: U+D800 (a lone UTF-16 surrogate, not a character) at position 2"),
    "agent name bidi": ("/v1/agents", '{"name":"good\\u202elave","scopes":["calendar:read"]}',
                        "agent name: U+202E RIGHT-TO-LEFT OVERRIDE at position 5 is not allowed"),
    "agent name zero width": ("/v1/agents", '{"name":"pay\\u200dpal","scopes":[]}',
                              "agent name: U+200D ZERO WIDTH JOINER at position 4"),
    "agent name newline": ("/v1/agents", '{"name":"a\\nb","scopes":[]}', "agent name: U+000A LINE FEED"),
    "audit action surrogate": ("/v1/audit/log",
                               '{"agentId":"%(agent)s","grantId":"%(grant)s","action":"pay\\ud800"}',
                               "action: U+D800 (a lone UTF-16 surrogate, not a character) at position 4"),
    "audit metadata nested": ("/v1/audit/log",
                              '{"agentId":"%(agent)s","grantId":"%(grant)s","action":"pay",'
                              '"metadata":{"a":["x",{"b":"\\udc80"}]}}', "metadata.a[1].b: U+DC80"),
    "principal surrogate": ("/v1/authorize",
                            '{"agentId":"%(agent)s","principalId":"al\\ud800","scopes":["calendar:read"]}',
                            "principalId: U+D800"),
    "principal bidi": ("/v1/authorize",
                       '{"agentId":"%(agent)s","principalId":"al\\u202eice","scopes":["calendar:read"]}',
                       "principal id: U+202E RIGHT-TO-LEFT OVERRIDE at position 3"),
    "code lookup": ("/v1/token", '{"code":"c\\ud800","agentId":"%(agent)s"}', "code: U+D800"),
    "refresh lookup": ("/v1/token/refresh", '{"refreshToken":"r\\udfff","agentId":"%(agent)s"}',
                       "refreshToken: U+DFFF"),
    "policy name": ("/v1/policies", '{"name":"deny\\u2066x","effect":"deny"}', "policy name: U+2066"),
}


@pytest.mark.parametrize("case", list(HTTP_CASES))
def test_the_server_answers_400_naming_the_character_and_writes_nothing(server: Server, case: str) -> None:
    path, body, expected = HTTP_CASES[case]
    before = _counts(server.path)
    with server.client() as client:
        response = client.post(path, content=(body % {"agent": server.agent_id, "grant": server.grant_id})
                               .encode())
    assert response.status_code == 400, response.text
    error = response.json()
    assert set(error) == {"message", "code", "requestId"} and expected in error["message"]
    assert _counts(server.path) == before


def test_raw_surrogate_bytes_in_the_body_are_refused_too(server: Server) -> None:
    """CESU-8 bytes for U+D800: Python's JSON reader turns them into the same lone surrogate."""
    before = _counts(server.path)
    with server.client() as client:
        response = client.post("/v1/agents", content=b'{"name":"x\xed\xa0\x80","scopes":[]}')
    assert response.status_code == 400 and "U+D800" in response.json()["message"]
    assert _counts(server.path) == before


@pytest.mark.parametrize("query", [f"page={HUGE}", "page=99999999999999999999999",
                                   f"page={paging.MAX_PAGE + 1}&pageSize=10000", f"pageSize={HUGE}"])
@pytest.mark.parametrize("route", ["/v1/audit/entries", "/v1/grants"])
def test_page_numbers_that_overflow_are_a_400(server: Server, route: str, query: str) -> None:
    with server.client() as client:
        response = client.get(f"{route}?{query}")
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"message", "code", "requestId"}


def test_the_last_page_allowed_is_an_empty_page_not_an_error(server: Server) -> None:
    with server.client() as client:
        for route in ("/v1/audit/entries", "/v1/grants"):
            response = client.get(f"{route}?page={paging.MAX_PAGE}&pageSize={paging.MAX_PAGE_SIZE}")
            assert response.status_code == 200, response.text


# ── refused by the CLI ───────────────────────────────────────────────────────


@pytest.fixture
def cli_ledger(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    path = tmp_path / "grantex.db"
    with Grantex(Ledger(path)) as gx:
        token = grant_for(gx, ["calendar:read"])
        return path, {"agent": gx.grants.get(token.grant_id).agent_id, "grant": token.grant_id}


@pytest.mark.parametrize(("args", "expected"), [
    (["agents", "register", f"good{RLO}lave"], "agent name: U+202E RIGHT-TO-LEFT OVERRIDE at position 5"),
    (["agents", "register", "a\nb"], "agent name: U+000A LINE FEED at position 2"),
    (["agents", "register", "ok", "--description", "zero\u200bwidth"], "agent description: U+200B"),
    (["developers", "create", "Acme\u2067"], "developer name: U+2067"),
    (["agents", "register", "x\udcff"], "command-line argument 5: U+DCFF"),  # undecodable byte 0xFF
    (["agents", "show", "\udcff"], "command-line argument 5: U+DCFF"),
    (["audit", "list", "--page", HUGE], "page must be a whole number from 1 to 1000000000"),
    (["audit", "list", "--page-size", "0"], "pageSize must be a whole number from 1 to 10000"),
])
def test_the_cli_refuses_with_exit_2_and_one_line(cli_ledger: tuple[Path, dict[str, str]], args: list[str],
                                                  expected: str) -> None:
    path, _ids = cli_ledger
    before = dump(path)
    result = fails(2, "--ledger", path, *args)
    assert expected in result.stderr and RLO not in result.stderr
    assert dump(path) == before


def test_the_cli_refuses_a_surrogate_escaped_in_json_metadata(
        cli_ledger: tuple[Path, dict[str, str]]) -> None:
    path, ids_ = cli_ledger
    before = dump(path)
    result = fails(2, "--ledger", path, "audit", "log", "--agent", ids_["agent"], "--grant", ids_["grant"],
                   "--action", "pay", "--metadata", '{"note": "x\\ud800"}')
    assert "metadata.note: U+D800" in result.stderr
    assert dump(path) == before


# ── ledgers that already hold an unrenderable row ────────────────────────────


@dataclass
class Stored:
    path: Path
    developer_id: str
    agent_id: str
    grant_id: str
    odd_seq: int
    odd_id: str
    total: int


def _head(conn: sqlite3.Connection, developer_id: str) -> tuple[int, str, str, str]:
    seq, text, digest = conn.execute(
        "SELECT seq, preimage, hash FROM audit_entries WHERE developer_id = ? ORDER BY seq DESC LIMIT 1",
        (developer_id,)).fetchone()
    fields = json.loads(text)
    return seq, digest, fields["id"], fields["timestamp"]


def insert_raw_entry(path: Path, developer_id: str, agent_id: str, grant_id: str, *, action: str,
                     metadata: dict[str, Any], raw: bytes | None = None,
                     valid_hash: bool = True) -> tuple[int, str]:
    """Append an entry with raw sqlite3, linked and hashed as the ledger would (``raw``: bytes to
    store instead of the UTF-8 text, hashed as they are). Returns (seq, entry id)."""
    conn = sqlite3.connect(path)
    try:
        seq, prev_hash, prev_id, stamp = _head(conn, developer_id)
        entry_id = "alog_" + str(ULID.from_int(int(ULID.from_str(prev_id[5:])) + 1))
        fields = {"id": entry_id, "agentId": agent_id, "agentDid": f"did:grantex:{agent_id}",
                  "grantId": grant_id, "principalId": "user_alice", "developerId": developer_id,
                  "action": action, "timestamp": stamp, "prevHash": prev_hash, "status": "success"}
        text = preimage_text(fields, metadata, canonical_json(metadata))
        stored: bytes | str = raw if raw is not None else text
        data = stored if isinstance(stored, bytes) else stored.encode()
        digest = hashlib.sha256(data).hexdigest() if valid_hash else "0" * 64
        value = "CAST(? AS TEXT)" if isinstance(stored, bytes) else "?"
        conn.execute(f"INSERT INTO audit_entries (seq, preimage, hash) VALUES (?, {value}, ?)",
                     (seq + 1, stored, digest))
        conn.commit()
        return seq + 1, entry_id
    finally:
        conn.close()


def build_stored(path: Path, *, raw_bytes: bool = False, valid_hash: bool = True) -> Stored:
    with Grantex(Ledger(path)) as gx:
        token = grant_for(gx, ["calendar:read"], agent_name="travel-booker")
        agent_id = gx.grants.get(token.grant_id).agent_id
        gx.audit.log(agent_id=agent_id, grant_id=token.grant_id, action="calendar.read")
        developer_id = gx.developer_id
    if raw_bytes:
        odd_seq, odd_id = _insert_non_utf8(path, developer_id, agent_id, token.grant_id)
    else:
        odd_seq, odd_id = insert_raw_entry(path, developer_id, agent_id, token.grant_id, action="pay\ud800",
                                           metadata={"note\udc80": "v\ud800", "fine": "café"},
                                           valid_hash=valid_hash)
    if valid_hash and not raw_bytes:  # the chain goes on through the library after the old row
        with Grantex(Ledger(path)) as gx:
            gx.audit.log(agent_id=agent_id, grant_id=token.grant_id, action="calendar.write")
    return Stored(path, developer_id, agent_id, token.grant_id, odd_seq, odd_id, _entry_count(path))


def _insert_non_utf8(path: Path, developer_id: str, agent_id: str, grant_id: str) -> tuple[int, str]:
    """A linked entry whose action's bytes are not UTF-8 (0xFF never appears in UTF-8)."""
    conn = sqlite3.connect(path)
    try:
        _seq, prev_hash, prev_id, stamp = _head(conn, developer_id)
    finally:
        conn.close()
    entry_id = "alog_" + str(ULID.from_int(int(ULID.from_str(prev_id[5:])) + 1))
    fields = {"id": entry_id, "agentId": agent_id, "agentDid": f"did:grantex:{agent_id}", "grantId": grant_id,
              "principalId": "user_alice", "developerId": developer_id, "action": "pXX", "timestamp": stamp,
              "prevHash": prev_hash, "status": "success"}
    raw = preimage_text(fields, {}).encode().replace(b'"pXX"', b'"p\xff\xfe"')
    return insert_raw_entry(path, developer_id, agent_id, grant_id, action="unused", metadata={}, raw=raw)


@pytest.fixture
def legacy(tmp_path: Path) -> Stored:
    """A lone surrogate stored by an older version: a valid, linked entry, then more after it."""
    return build_stored(tmp_path / "legacy.db")


@pytest.fixture
def not_utf8(tmp_path: Path) -> Stored:
    """A row whose stored bytes are not UTF-8, hashed as stored: only raw sqlite3 writes that."""
    return build_stored(tmp_path / "bytes.db", raw_bytes=True)


def test_the_library_lists_the_row_flagged_with_its_stored_value(legacy: Stored) -> None:
    with Grantex(Ledger(legacy.path)) as gx:
        entries = gx.audit.list()
        assert len(entries) == legacy.total
        odd = gx.audit.get(legacy.odd_id)
        assert odd.action == "pay\ud800" and odd.metadata == {"fine": "café", "note\udc80": "v\ud800"}
        assert "unrenderable" in odd.flags
        assert [e.entry_id for e in entries if "unrenderable" in e.flags] == [legacy.odd_id]
        assert gx.audit.verify().entries == legacy.total  # it was hashed and linked: the chain holds


def test_cli_audit_list_and_show_print_the_row_escaped(legacy: Stored) -> None:
    listed = ok("--ledger", legacy.path, "audit", "list").stdout
    assert "pay\\ud800" in listed and "unrenderable" in listed and "calendar.write" in listed
    assert len([line for line in listed.splitlines() if line.split()[:1] and line.split()[0].isdigit()]) \
        == legacy.total
    as_json = ok_json("--ledger", legacy.path, "audit", "list")
    assert [e["flags"] for e in as_json["entries"] if e["id"] == legacy.odd_id] == [["unrenderable"]]
    shown = ok("--ledger", legacy.path, "audit", "show", legacy.odd_id).stdout
    assert "pay\\ud800" in shown and "note\\udc80" in shown and "unrenderable =" in shown
    assert "intact" in ok("--ledger", legacy.path, "audit", "verify").stdout


def test_http_lists_the_row_escaped_and_flagged(legacy: Stored) -> None:
    with Ledger(legacy.path) as ledger:
        key = developers.create_api_key(ledger, legacy.developer_id).key
    with running_server(legacy.path) as running, httpx.Client(
            base_url=running.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=10) as client:
        response = client.get("/v1/audit/entries")
        assert response.status_code == 200, response.text
        assert '"pay\\ud800"' in response.text  # the JSON escape: valid UTF-8, the same value
        entries = response.json()["entries"]
        odd = [e for e in entries if e["id"] == legacy.odd_id]
        assert odd and odd[0]["action"] == "pay\ud800" and odd[0]["flags"] == ["unrenderable"]
        assert len(entries) == _entry_count(legacy.path)  # every entry, the ones the server added too
        one = client.get(f"/v1/audit/{legacy.odd_id}")
        assert one.status_code == 200 and one.json()["flags"] == ["unrenderable"]


def _entry_count(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM audit_entries").fetchone()[0])
    finally:
        conn.close()


def test_export_carries_the_row_and_verify_export_checks_it(legacy: Stored, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    ok("--ledger", legacy.path, "export", out)
    assert "valid" in ok("verify-export", out).stdout
    assert "pay\\ud800" in (out / "audit_entries.csv").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in (out / "audit_entries.jsonl").read_text(encoding="utf-8").split("\n")
            if line]
    assert [r["action"] for r in rows if r["entryId"] == legacy.odd_id] == ["pay\ud800"]
    dataset = analysis.load(out)
    assert dataset.integrity.valid and "pay\\ud800" in set(dataset.audit["action"])


def test_pandas_loads_the_ledger_with_the_row_escaped(legacy: Stored) -> None:
    dataset = analysis.load(legacy.path)
    assert dataset.integrity.valid and len(dataset.audit) == legacy.total
    assert "pay\\ud800" in set(dataset.audit["action"])
    assert str(dataset.audit["action"].dtype) == "str"


def test_a_raw_row_with_a_wrong_hash_breaks_verify_at_its_seq_but_still_lists(tmp_path: Path) -> None:
    stored = build_stored(tmp_path / "tampered.db", valid_hash=False)
    result = invoke("--ledger", stored.path, "audit", "verify")
    assert result.exit_code == 1 and f"seq {stored.odd_seq}" in result.output
    assert "content_changed" in result.output
    assert "pay\\ud800" in ok("--ledger", stored.path, "audit", "list").stdout
    problem = analysis.load(stored.path).integrity.errors[0]
    assert (problem["seq"], problem["reason"]) == (stored.odd_seq, "content_changed")
    refused = invoke("--ledger", stored.path, "export", tmp_path / "bundle")
    assert refused.exit_code == 1 and f"seq {stored.odd_seq} (content_changed)" in refused.output


def test_bytes_that_are_not_utf8_list_flagged_and_are_named_as_the_break(not_utf8: Stored,
                                                                         tmp_path: Path) -> None:
    with Grantex(Ledger(not_utf8.path)) as gx:
        odd = gx.audit.get(not_utf8.odd_id)
        assert odd.action == "p\udcff\udcfe" and "unrenderable" in odd.flags
        assert len(gx.audit.list()) == not_utf8.total
    listed = ok("--ledger", not_utf8.path, "audit", "list").stdout
    assert "p\\udcff\\udcfe" in listed and "unrenderable" in listed
    refused = invoke("--ledger", not_utf8.path, "export", tmp_path / "bundle")
    assert refused.exit_code == 1 and f"seq {not_utf8.odd_seq} (content_changed)" in refused.output
    assert "not UTF-8" in refused.output and "Traceback" not in refused.output
    verified = invoke("--ledger", not_utf8.path, "audit", "verify")
    assert verified.exit_code == 1 and f"seq {not_utf8.odd_seq}" in verified.output, verified.output
    assert "content_changed" in verified.output and "Traceback" not in verified.output
    dataset = analysis.load(not_utf8.path)
    assert len(dataset.audit) == not_utf8.total and "p\\udcff\\udcfe" in set(dataset.audit["action"])
    problem = dataset.integrity.errors[0]
    assert (problem["seq"], problem["reason"]) == (not_utf8.odd_seq, "content_changed")
    with Ledger(not_utf8.path) as ledger:
        key = developers.create_api_key(ledger, not_utf8.developer_id).key
    with running_server(not_utf8.path) as running, httpx.Client(
            base_url=running.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=10) as client:
        response = client.get("/v1/audit/entries")
        assert response.status_code == 200, response.text
        assert any(e["id"] == not_utf8.odd_id and "unrenderable" in e["flags"]
                   for e in response.json()["entries"])


# ── names with a bidi override already stored ────────────────────────────────


def _rename_raw(path: Path, agent_id: str, name: str) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute("UPDATE agents SET name = ? WHERE id = ?", (name, agent_id))
        conn.commit()
    finally:
        conn.close()


def test_cli_listings_show_a_stored_bidi_name_escaped(legacy: Stored) -> None:
    _rename_raw(legacy.path, legacy.agent_id, f"good{RLO}lave")
    for args in (["agents", "list"], ["agents", "show", legacy.agent_id], ["grants", "tree"]):
        text = ok("--ledger", legacy.path, *args).stdout
        assert "good\\u202elave" in text and RLO not in text, args
    assert ok_json("--ledger", legacy.path, "agents", "show", legacy.agent_id)["name"] == f"good{RLO}lave"



def test_the_consent_page_and_console_show_a_stored_bidi_name_escaped(tmp_path: Path) -> None:
    path = tmp_path / "bidi.db"
    with Grantex(path) as gx:
        partner = developers.create_developer(gx.ledger, "partner", sandbox=False)
        agent = Grantex(gx.ledger, developer_id=partner.id).agents.register(
            name="helper", scopes=["calendar:read"])
        key = developers.create_api_key(gx.ledger, partner.id).key
    _rename_raw(path, agent.id, f"good{RLO}lave")
    console: list[str] = []
    with running_server(path) as running, httpx.Client(
            base_url=running.base_url, headers={"Authorization": f"Bearer {key}"}) as api:
        running.app.state.grantex.console = console.append
        asked = api.post("/v1/authorize", json={"agentId": agent.id, "principalId": "user_alice",
                                                "scopes": ["calendar:read"]})
        assert asked.status_code == 201, asked.text
        page = api.get(f"/consent/{asked.json()['authRequestId']}", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "good\\u202elave" in page.text and RLO not in page.text
    assert any("good\\u202elave" in line for line in console) and not any(RLO in line for line in console)


# ── the TUI opens such a ledger ──────────────────────────────────────────────


async def _settle(pilot: Any) -> None:
    from textual.worker import WorkerState

    for _ in range(3):
        for _ in range(1000):
            if not any(w.state in (WorkerState.PENDING, WorkerState.RUNNING) for w in pilot.app.workers):
                break
            await asyncio.sleep(0.005)
        await pilot.pause()


def _tui_contents(path: Path) -> dict[str, Any]:
    """Open the TUI headless on ``path``: the tree's labels, the audit table's cells, the chain state."""
    pytest.importorskip("textual")
    from grantex_local.tui.app import GrantexApp
    from grantex_local.tui.data import TuiData

    seen: dict[str, Any] = {}

    async def run() -> None:
        app = GrantexApp(TuiData(Ledger(path, create=False)), poll_seconds=60)
        try:
            async with app.run_test(size=(140, 40)) as pilot:
                await _settle(pilot)
                seen["tree"] = [node.label.plain for node in _walk(app.main.tree.root)]
                await pilot.press("3")
                await _settle(pilot)
                for _ in range(200):
                    if app.chain_state is not None:
                        break
                    await pilot.pause(0.05)
                table = app.main.audit.table
                seen["rows"] = {row.entry.entry_id: [str(cell) for cell in table.get_row(row.entry.entry_id)]
                                for row in app.main.audit.rows}
                seen["flags"] = {row.entry.entry_id: row.entry.flags for row in app.main.audit.rows}
                seen["chain"] = app.chain_state
        finally:
            app.data.close()

    asyncio.run(run())
    return seen


def _walk(node: Any) -> Iterator[Any]:
    for child in node.children:
        yield child
        yield from _walk(child)


def test_the_tui_opens_with_the_row_and_the_name_escaped(legacy: Stored) -> None:
    _rename_raw(legacy.path, legacy.agent_id, f"good{RLO}lave")
    seen = _tui_contents(legacy.path)
    assert seen["chain"] is not None and seen["chain"].ok
    assert len(seen["rows"]) == legacy.total
    assert "pay\\ud800" in seen["rows"][legacy.odd_id] and "unrenderable" in seen["flags"][legacy.odd_id]
    assert any("good\\u202elave" in label for label in seen["tree"])
    assert not any(RLO in label for label in seen["tree"])
    assert not any(RLO in cell or "\ud800" in cell for cells in seen["rows"].values() for cell in cells)


def test_the_tui_names_a_row_that_is_not_utf8_as_the_break(not_utf8: Stored) -> None:
    seen = _tui_contents(not_utf8.path)
    assert len(seen["rows"]) == not_utf8.total
    state = seen["chain"]
    assert state is not None and not state.ok
    assert (state.broken_seq, state.reason) == (not_utf8.odd_seq, "content_changed")

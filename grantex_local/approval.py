"""Who may decide a consent request on the consent page, and how they prove it.

A ``consentUrl`` is no secret: the agent that asked holds it, and the developer API key that
let it ask; the page itself is public. So a decision posted there counts only with proof that
the person it names, or the local human who runs grantex-local, made it:

- a principal session (:mod:`.principals`) for the request's principal and developer, minted
  by someone holding the ledger file (``via: local``). A session minted over HTTP with the
  developer's API key proves no more than the API key, so it is refused here;
- or the request's approval code: ``HMAC-SHA256(key, request id)``, 50 bits written as ten
  Crockford base-32 characters in two groups (``7KQ2M-XW4RD``), short enough to type. The key
  is a random secret in the ledger file (table ``local_secrets``, never exported, never in
  ``settings``), so only someone holding the file can compute a code: ``serve`` prints it on
  its console, ``grantex-local consent show`` and the TUI's inbox show it. A code is good for
  its request only, and dies with it (a request is decided once). 50 bits against a request
  that lives minutes make guessing hopeless, and codes are compared in constant time.

The CLI and the TUI hold the file themselves and decide directly; they need none of this.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import errors
from .clock import iso
from .principals import verify_session

if TYPE_CHECKING:
    from .founding import Ledger

KEY_NAME = "approval_code_key"
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U to misread
CODE_CHARS = 10
LOCAL_HUMAN = "local human"
HOW_TO_GET_A_CODE = (
    "Deciding here needs this request's approval code: it is printed on the console where "
    "'grantex-local serve' runs, and shown by 'grantex-local consent show REQUEST_ID' and in the "
    "TUI's consent inbox (or open the page with a principal session made by the ledger's owner)")
_READ_AS = str.maketrans({"I": "1", "L": "1", "O": "0"})


@dataclass(frozen=True)
class DecisionProof:
    """Who a consent-page decision is recorded as made by, and how that was established."""

    decided_by: str
    channel: str  # "principal-session" or "approval-code"


def _key(ledger: Ledger) -> bytes:
    """The ledger's approval-code secret (made by a migration; made here if a file lacks it)."""
    row = ledger.query_one("SELECT secret FROM local_secrets WHERE name = ?", (KEY_NAME,))
    if row is None:
        with ledger.write() as conn:
            conn.execute("INSERT OR IGNORE INTO local_secrets (name, secret, created_at) VALUES (?, ?, ?)",
                         (KEY_NAME, secrets.token_bytes(32), iso(ledger.now())))
        row = ledger.query_one("SELECT secret FROM local_secrets WHERE name = ?", (KEY_NAME,))
    assert row is not None
    return bytes(row["secret"])


def _raw_code(key: bytes, request_id: str) -> str:
    digest = hmac.new(key, f"grantex-local approval|{request_id}".encode(), hashlib.sha256).digest()
    number = int.from_bytes(digest[:8], "big") >> (64 - 5 * CODE_CHARS)
    return "".join(ALPHABET[(number >> (5 * i)) & 31] for i in reversed(range(CODE_CHARS)))


def approval_code(ledger: Ledger, request_id: str) -> str:
    """The code a person types on the consent page to decide ``request_id`` (``XXXXX-XXXXX``)."""
    if not isinstance(request_id, str) or not request_id:
        raise errors.InvalidInput("authorization request id must be a non-empty string")
    raw = _raw_code(_key(ledger), request_id)
    return f"{raw[:5]}-{raw[5:]}"


def normalize_code(text: str) -> str:
    """What a person typed, as the code's ten characters: case, spaces and dashes do not
    matter, and the letters Crockford base 32 leaves out read as the digits they resemble."""
    return "".join(c for c in text.upper() if not c.isspace() and c != "-").translate(_READ_AS)


def check_approval_code(ledger: Ledger, request_id: str, code: object) -> None:
    """Return if ``code`` is ``request_id``'s approval code, else raise :class:`ApprovalRequired`."""
    if not isinstance(code, str) or not code.strip():
        raise errors.ApprovalRequired(HOW_TO_GET_A_CODE + ".")
    expected = _raw_code(_key(ledger), request_id)
    given = normalize_code(code[:64])
    if not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode()):
        raise errors.ApprovalRequired("That approval code is not this request's. " + HOW_TO_GET_A_CODE + ".")


def prove_decision(ledger: Ledger, *, request_id: str, principal_id: str, developer_id: str,
                   approval_code: str | None = None, session_token: str | None = None) -> DecisionProof:
    """Check the proof that came with a consent-page decision on the request (whose principal
    and developer the caller read from the ledger); raise :class:`ApprovalRequired` saying
    what is missing or wrong. A session, when sent, is checked first, and a bad one is not
    excused by a code: what was sent must hold."""
    if session_token:
        try:
            session = verify_session(ledger, session_token)
        except errors.SessionInvalid as exc:
            raise errors.ApprovalRequired(f"{exc.message}. {HOW_TO_GET_A_CODE}.") from None
        if session.via != "local":
            raise errors.ApprovalRequired(
                "This principal session was made with the developer's API key, which the agent "
                f"asking may hold, so it cannot decide consent. {HOW_TO_GET_A_CODE}.")
        if session.principal_id != principal_id or session.developer_id != developer_id:
            raise errors.ApprovalRequired(
                "This principal session belongs to someone else: only the person the request "
                f"names ({principal_id}) can decide it. {HOW_TO_GET_A_CODE}.")
        return DecisionProof(session.principal_id, "principal-session")
    check_approval_code(ledger, request_id, approval_code)
    return DecisionProof(LOCAL_HUMAN, "approval-code")

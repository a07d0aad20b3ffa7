"""Offline verification of grant tokens (PROTOCOL §6): JWKS only, no ledger.

Either returns a :class:`VerifiedGrant` or raises :class:`TokenInvalid`
(never returns False). The algorithm is fixed by the verifier, never taken
from the token: RS256 only, with the key the ``kid`` names, so ``none`` and
HS256-with-the-public-key fail before any signature math.

A :class:`Verifier` keeps the parsed keys and remembers tokens whose
signature it has already checked: a service that sees the same bearer token
on every call pays for RSA once, while expiry is still checked every time.
"""

from __future__ import annotations

import binascii
import functools
import json
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from jwt.algorithms import RSAAlgorithm
from jwt.api_jws import PyJWS

from .errors import TokenExpired, TokenInvalid
from .models import VerifiedGrant
from .scopes import covers, parse_scope

ALGORITHM = "RS256"
TOKEN_TYPE = "at+jwt"
GRANT_CLAIM = "urn:grantex:grant"
DID_PREFIX = "did:grantex:"
DEFAULT_LEEWAY = 5
MAX_TOKEN_LENGTH = 16_384
_REQUIRED = ["exp", "iat", "iss", "sub", "jti"]
_ALGORITHMS = [ALGORITHM]
# RS256 is RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3), as PyJWT's RSAAlgorithm verifies it;
# the two parameter objects are immutable, so one of each serves every call and thread.
_PKCS1V15 = PKCS1v15()
_SHA256 = hashes.SHA256()


def _invalid(message: str, reason: str) -> TokenInvalid:
    return TokenInvalid(f"grant token rejected: {message}", reason)


# A urlsafe segment, spelt in the standard alphabet for binascii's strict decoder: "+" and "/"
# are not urlsafe characters, so they become "*", which the strict decoder refuses like any
# other character outside the alphabet.
_URLSAFE_TO_STRICT = bytes.maketrans(b"-_+/", b"+/**")
_PADDING = (b"", b"", b"==", b"=")
# The last character of a segment whose length is 2 or 3 (mod 4) carries bits beyond the data;
# base64url is canonical only when they are zero: these are the characters where they are.
_CANONICAL_LAST = (b"", b"", b"AQgw", b"AEIMQUYcgkosw048")


class _JWS(PyJWS):
    """PyJWT's JWS with its segment decoder's alphabet check done in C.

    PyJWT (since the GHSA-hxm8-2xgr-2p9m fix) checks every character of every
    segment in a Python generator, then re-encodes the result to refuse
    non-canonical spellings, which together cost more than the RSA verification
    itself. This override applies exactly the same rules, with the same errors
    (a test compares it with PyJWT's own on arbitrary input): binascii's strict
    decoder refuses anything outside the alphabet, and the canonical check
    looks at the one character that can break it. Everything else, header
    checks, algorithm allow-list and signature, stays PyJWT's. Should PyJWT
    rename the hook, its own slower check simply takes over again.
    """

    @staticmethod
    def _decode_base64url_segment(segment: bytes, name: str) -> bytes:
        stripped = segment.rstrip(b"=")
        padding = len(segment) - len(stripped)
        if padding > 2 or (padding and len(segment) % 4 != 0):
            raise jwt.DecodeError(f"Invalid {name} padding")
        rest = len(stripped) % 4
        if rest == 1 or (rest and stripped[-1] not in _CANONICAL_LAST[rest]):
            raise jwt.DecodeError(f"Invalid {name} padding")
        try:
            return binascii.a2b_base64(stripped.translate(_URLSAFE_TO_STRICT) + _PADDING[rest],
                                       strict_mode=True)
        except binascii.Error as err:
            raise jwt.DecodeError(f"Invalid {name} padding") from err


_jws = _JWS()


_decoder = json.JSONDecoder()


def _json_object(payload: bytes) -> Any:
    """``json.loads(payload)``, the same result and the same failures, with less around it.

    ``json.loads`` on bytes first guesses the encoding from the first bytes; a
    payload opening with ``{`` and a second byte that is not NUL is UTF-8 to
    that guess (no BOM, no UTF-16/32 pattern), so it is decoded as json.loads
    would (``surrogatepass``), parsed by the same C scanner, and only JSON
    whitespace may follow the object. Anything else goes through json.loads.
    """
    if payload[:1] == b"{" and payload[1:2] != b"\x00":
        text = payload.decode("utf-8", "surrogatepass")
        value, end = _decoder.raw_decode(text)
        if end != len(text) and text[end:].strip(" \t\n\r"):
            raise ValueError("Extra data")
        return value
    return json.loads(payload)


def _unverified_header(segment: str) -> dict[str, Any]:
    """A token's header segment alone (to pick the key by kid): decoding the whole token
    twice would double the parsing cost; PyJWT parses and checks all of it once afterwards."""
    raw = segment.encode("ascii", "replace")
    header = json.loads(_JWS._decode_base64url_segment(raw, "header"))
    if not isinstance(header, dict):
        raise jwt.DecodeError("Invalid header string: must be a json object")
    return header


def load_jwks(jwks: Mapping[str, Any] | str) -> dict[str, Any]:
    """RSA signature keys of a JWKS (dict or JSON text), by kid."""
    if isinstance(jwks, str):
        try:
            jwks = json.loads(jwks)
        except ValueError:
            raise TokenInvalid("JWKS is not valid JSON", "jwks") from None
    if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list):
        raise TokenInvalid("JWKS must be an object with a 'keys' array", "jwks")
    keys: dict[str, Any] = {}
    for jwk in jwks["keys"]:
        if not isinstance(jwk, Mapping) or jwk.get("kty") != "RSA":
            continue
        if jwk.get("alg", ALGORITHM) != ALGORITHM or jwk.get("use", "sig") != "sig":
            continue
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid:
            continue
        if kid in keys:
            raise TokenInvalid(f"JWKS has two keys with kid {kid!r}", "jwks")
        try:
            keys[kid] = RSAAlgorithm.from_jwk(dict(jwk))
        except Exception:
            raise TokenInvalid(f"JWKS key {kid!r} is not a valid RSA key", "jwks") from None
    return keys


def _shown(value: Any, limit: int = 120) -> str:
    """A claim value quoted for a message: escaped, and cut short (a token may carry anything)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"


class Verifier:
    """Verifies tokens against one key set, issuer and (optional) audience.

    ``issuer`` is the issuer tokens must name, or a sequence of accepted ones, the current
    first: a ledger whose issuer changed accepts its past issuers until their tokens expire.
    """

    def __init__(
        self,
        jwks: Mapping[str, Any] | str,
        *,
        issuer: str | Sequence[str],
        audience: str | None = None,
        leeway: int = DEFAULT_LEEWAY,
        clock: Callable[[], float] = time.time,
        cache_size: int = 4096,
    ) -> None:
        issuers = (issuer,) if isinstance(issuer, str) else tuple(issuer) if isinstance(
            issuer, Sequence) else ()
        if not issuers or not all(isinstance(i, str) and i for i in issuers):
            raise TokenInvalid("an expected issuer is required", "issuer")
        self.keys = load_jwks(jwks)
        self.issuer: str = issuers[0]
        self.issuers: tuple[str, ...] = tuple(dict.fromkeys(issuers))
        self._accepted = frozenset(self.issuers)  # one hash probe per token, however many
        self.audience = audience
        self.leeway = leeway
        self.clock = clock
        self._cache: dict[str, VerifiedGrant] = {}
        self._cache_size = cache_size
        self._header_keys: dict[str, Any] = {}
        self._lock = threading.Lock()
        _instances.add(self)

    def verify(self, token: str, required_scopes: Iterable[str] | None = None) -> VerifiedGrant:
        grant = self._cache.get(token) if isinstance(token, str) else None
        if grant is None:
            grant = self._verify_fully(token)
            with self._lock:
                if len(self._cache) >= self._cache_size:
                    # The older half goes at once: popping the oldest entry one by one
                    # makes a dict scan its deleted slots on every insert, which on a
                    # stream of distinct tokens cost about a tenth of a verification.
                    kept = list(self._cache.items())[len(self._cache) - self._cache_size // 2:]
                    self._cache = dict(kept)
                self._cache[token] = grant
        elif self.clock() >= grant.expires_at + self.leeway:
            raise TokenExpired("grant token rejected: it has expired", "expired")
        if required_scopes:
            check_required_scopes(grant.scopes, required_scopes)
        return grant

    def clear_cache(self) -> None:
        """Forget every remembered signature check (the next call of each token pays RSA again)."""
        with self._lock:
            self._cache.clear()

    def _key_for_header(self, segment: str) -> Any:
        """The key a header names, after checking alg, typ and kid (the token is then
        checked whole by PyJWT; see :meth:`_signed_payload`)."""
        try:
            header = _unverified_header(segment)
        except (jwt.PyJWTError, ValueError, RecursionError):
            raise _invalid("malformed header", "malformed") from None
        alg = header.get("alg")
        if alg != ALGORITHM:
            raise _invalid(f"algorithm {alg!r} is not allowed (only RS256)", "algorithm")
        if header.get("typ") != TOKEN_TYPE:
            raise _invalid(f"typ must be {TOKEN_TYPE!r}", "type")
        kid = header.get("kid")
        if not isinstance(kid, str) or kid not in self.keys:
            raise _invalid("unknown signing key (kid)", "unknown_kid")
        return self.keys[kid]

    def _signed_payload(self, token: str) -> bytes:
        """The payload bytes of a token whose signature checks out.

        Every token signed by one key carries the same header segment. The first
        token with a given header goes through PyJWT whole (header, its ``kid``,
        ``crit`` and ``b64`` rules, the algorithm allow-list, the signature), and
        only once PyJWT has accepted it is the segment remembered with its key
        (a few, bounded; a forged header never gets in, as it needs a valid
        signature). Later tokens with that exact segment would pass every one of
        those header checks again with the same result, so for them only what
        depends on the rest of the token is done, in PyJWT's order and with its
        errors: the payload and signature segments are decoded by the same
        decoder PyJWT uses here, and the signature is checked by
        ``cryptography`` on the signing input, as PyJWT's RS256 does.
        """
        signing_input, _, crypto = token.rpartition(".")
        head, _, body = signing_input.partition(".")
        key = self._header_keys.get(head)
        if key is None:
            key = self._key_for_header(head)
            try:
                payload: bytes = _jws.decode_complete(token, key, algorithms=_ALGORITHMS)["payload"]
            except jwt.InvalidSignatureError:
                raise _invalid("bad signature", "signature") from None
            except jwt.PyJWTError as exc:
                raise _invalid(str(exc), "malformed") from None
            with self._lock:
                if len(self._header_keys) >= 64:
                    self._header_keys.clear()
                self._header_keys[head] = key
            return payload
        decode = _JWS._decode_base64url_segment
        try:
            payload = decode(body.encode(), "payload")
            signature = decode(crypto.encode(), "crypto")
        except jwt.PyJWTError as exc:
            raise _invalid(str(exc), "malformed") from None
        try:
            key.verify(signature, signing_input.encode(), _PKCS1V15, _SHA256)
        except InvalidSignature:
            raise _invalid("bad signature", "signature") from None
        return payload

    def _check_registered_claims(self, claims: dict[str, Any]) -> None:
        """Presence of the required claims, issuer, audience, and the types of sub and jti."""
        get = claims.get
        if get("exp") is None or get("iat") is None or get("iss") is None or get("sub") is None \
                or get("jti") is None:
            for name in _REQUIRED:  # the first missing one, in PyJWT's order, names the refusal
                if get(name) is None:
                    raise _invalid(f"missing claim {name!r}", "missing_claim")
        iss = claims["iss"]
        if not isinstance(iss, str) or iss not in self._accepted:
            raise _invalid(self._wrong_issuer(iss), "issuer")
        if self.audience is not None:
            aud = claims.get("aud")
            if not aud:
                raise _invalid("missing claim 'aud'", "missing_claim")
            audiences = [aud] if isinstance(aud, str) else aud
            if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
                raise _invalid("wrong audience", "audience")
            if self.audience not in audiences:
                raise _invalid("wrong audience", "audience")
        if not isinstance(claims["sub"], str):
            raise _invalid("Subject must be a string", "malformed")
        if not isinstance(claims["jti"], str):
            raise _invalid("JWT ID must be a string", "malformed")

    def _wrong_issuer(self, iss: Any) -> str:
        """Both sides of the mismatch: "issuer" alone leaves a user guessing which one is off."""
        text = f"wrong issuer: the token has {_shown(iss)}, expected {_shown(self.issuer)}"
        if len(self.issuers) > 1:
            text += f" (or a past issuer: {', '.join(_shown(i) for i in self.issuers[1:])})"
        return text

    def _verify_fully(self, token: str) -> VerifiedGrant:
        if not isinstance(token, str) or not token:
            raise _invalid("token must be a non-empty string", "malformed")
        # A compact JWS is ASCII (base64url and dots); anything else, a lone surrogate
        # included (which UTF-8 cannot even encode), is refused before any decoding.
        if len(token) > MAX_TOKEN_LENGTH or not token.isascii() or token.count(".") != 2:
            raise _invalid("not a compact JWS", "malformed")
        # The claims are checked below, as PyJWT's claim layer would with
        # require/iss/aud, in the same order and to the same errors, but without
        # its per-call option merging, and time against this verifier's clock
        # (the ledger's, which tests and the demo can move).
        payload = self._signed_payload(token)
        try:
            claims = _json_object(payload)
        except (ValueError, RecursionError):
            raise _invalid("payload is not JSON", "malformed") from None
        if not isinstance(claims, dict):
            raise _invalid("payload must be a JSON object", "malformed")
        self._check_registered_claims(claims)
        grant = grant_from_claims(claims)
        now = self.clock()
        if now >= grant.expires_at + self.leeway:
            raise TokenExpired("grant token rejected: it has expired", "expired")
        nbf = claims.get("nbf", grant.issued_at)
        late = now + self.leeway
        if not isinstance(nbf, (int, float)) or nbf > late or grant.issued_at > late:
            raise _invalid("not valid yet (nbf or iat in the future)", "not_yet_valid")
        return grant


def check_required_scopes(held: Iterable[str], required: Iterable[str]) -> None:
    held_parsed = [parse_scope(s, stored=True) for s in held]
    missing = []
    for scope in required:
        wanted = parse_scope(scope, stored=True)
        if not any(covers(h, wanted) for h in held_parsed):
            missing.append(scope)
    if missing:
        raise _invalid(f"missing required scopes: {', '.join(missing)}", "insufficient_scope")


def _string(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise _invalid(f"claim {name} must be a non-empty string", "missing_claim")
    return value


def _agree(standard: Any, legacy: Any, name: str) -> None:
    if legacy is None:
        raise _invalid(f"legacy alias of {name} is missing", "missing_claim")
    if standard != legacy or type(standard) is not type(legacy):
        raise _invalid(f"claim {name} disagrees with its legacy alias", "claims_disagree")


@functools.lru_cache(maxsize=4096)
def _check_scope(text: str) -> None:
    """parse_scope, remembered: the same few scopes appear in token after token.

    Read as stored: a token signed before the scope grammar was amended stays valid.
    """
    parse_scope(text, stored=True)


@functools.lru_cache(maxsize=4096)
def _check_scope_claim(scope: str) -> None:
    """Every scope of a scope claim: the same claim recurs token after token (one probe then)."""
    for text in scope.split(" "):
        _check_scope(text)


# Claim names in messages, spelt once rather than formatted on every token.
_AGENT_DID = f"{GRANT_CLAIM}.agent_did"
_DEVELOPER_ID = f"{GRANT_CLAIM}.developer_id"
_GRANT_ID = f"{GRANT_CLAIM}.grant_id"
_PARENT_GRANT_ID = f"{GRANT_CLAIM}.parent_grant_id"


def grant_from_claims(claims: Mapping[str, Any]) -> VerifiedGrant:
    """Check that both claim sets are present and agree, and read them.

    Runs on every token a verifier has not seen: each check is written first as
    the inline test that passes on a well-formed token (exact types, as JSON
    gives them), and only a value that fails it goes to :func:`_string` /
    :func:`_agree`, which decide (subclasses included) and word the refusal.
    """
    grant = claims.get(GRANT_CLAIM)
    if type(grant) is not dict and not isinstance(grant, Mapping):  # JSON gives dicts: no ABC check
        raise _invalid(f"claim {GRANT_CLAIM} is missing", "missing_claim")
    agent_did = grant.get("agent_did")
    if type(agent_did) is not str or not agent_did:
        agent_did = _string(agent_did, _AGENT_DID)
    developer_id = grant.get("developer_id")
    if type(developer_id) is not str or not developer_id:
        developer_id = _string(developer_id, _DEVELOPER_ID)
    grant_id = grant.get("grant_id")
    if type(grant_id) is not str or not grant_id:
        grant_id = _string(grant_id, _GRANT_ID)
    legacy = claims.get("agt")
    if legacy != agent_did or type(legacy) is not type(agent_did):
        _agree(agent_did, legacy, "agent_did/agt")
    legacy = claims.get("dev")
    if legacy != developer_id or type(legacy) is not type(developer_id):
        _agree(developer_id, legacy, "developer_id/dev")
    legacy = claims.get("grnt")
    if legacy != grant_id or type(legacy) is not type(grant_id):
        _agree(grant_id, legacy, "grant_id/grnt")

    scope = claims.get("scope")
    if type(scope) is not str or not scope:
        scope = _string(scope, "scope")
    scopes = scope.split(" ")
    scp = claims.get("scp")
    if not isinstance(scp, list):
        raise _invalid("claim scp must be an array", "missing_claim")
    _agree(scopes, scp, "scope/scp")
    try:
        _check_scope_claim(scope)
    except Exception:
        raise _invalid("claim scope holds a malformed scope", "malformed") from None

    client_id = claims.get("client_id")
    if type(client_id) is not str or not client_id:
        client_id = _string(client_id, "client_id")
    if agent_did != DID_PREFIX + client_id:
        raise _invalid("client_id does not match the agent DID", "claims_disagree")

    parent_grant_id = grant.get("parent_grant_id")
    depth = grant.get("delegation_depth")
    act = claims.get("act")
    delegated = (parent_grant_id is not None or depth is not None or act is not None
                 or claims.get("parentGrnt") is not None or claims.get("delegationDepth") is not None
                 or claims.get("parentAgt") is not None)
    parent_agent_did = None
    if delegated:
        parent_grant_id = _string(parent_grant_id, _PARENT_GRANT_ID)
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise _invalid("delegation_depth must be a positive integer", "missing_claim")
        if type(act) is not dict and not isinstance(act, Mapping):
            raise _invalid("claim act is missing on a delegated token", "missing_claim")
        parent_agent_did = _string(act.get("sub"), "act.sub")
        _agree(parent_grant_id, claims.get("parentGrnt"), "parent_grant_id/parentGrnt")
        _agree(depth, claims.get("delegationDepth"), "delegation_depth/delegationDepth")
        _agree(parent_agent_did, claims.get("parentAgt"), "act.sub/parentAgt")

    aud = claims.get("aud")
    if aud is not None and not isinstance(aud, str):
        raise _invalid("claim aud must be a string", "malformed")
    iat, exp = claims["iat"], claims["exp"]
    if (type(iat) is not int or type(exp) is not int) and (
            not isinstance(iat, int) or not isinstance(exp, int) or isinstance(iat, bool)
            or isinstance(exp, bool)):
        raise _invalid("iat and exp must be integers", "malformed")
    token_id = claims.get("jti")
    if type(token_id) is not str or not token_id:
        token_id = _string(token_id, "jti")
    principal_id = claims.get("sub")
    if type(principal_id) is not str or not principal_id:
        principal_id = _string(principal_id, "sub")
    fields = {
        "token_id": token_id,
        "grant_id": grant_id,
        "principal_id": principal_id,
        "agent_did": agent_did,
        "developer_id": developer_id,
        "scopes": tuple(scopes),
        "issued_at": iat,
        "expires_at": exp,
        "issuer": claims["iss"],
        "client_id": client_id,
        "parent_agent_did": parent_agent_did,
        "parent_grant_id": parent_grant_id if delegated else None,
        "delegation_depth": depth if delegated else None,
        "audience": aud,
    }
    return VerifiedGrant(**fields)


_verifiers: dict[tuple[Any, ...], Verifier] = {}
_verifiers_lock = threading.Lock()
_instances: weakref.WeakSet[Verifier] = weakref.WeakSet()
# id(dict) -> (that dict, its "keys" list, a copy of each key as it was, its canonical JSON): see
# _jwks_fingerprint. Holding the dict keeps its id from being reused by another object.
_jwks_seen: dict[int, tuple[Any, Any, list[dict[str, Any]], str]] = {}


def _jwks_fingerprint(jwks: Mapping[str, Any]) -> str:
    """The canonical JSON of a JWKS given as an object, which keys the verifier cache.

    Serialising the key set costs as much as a tenth of a verification, and a
    caller of :func:`verify_grant_token` in a loop passes the same dict every
    time. So a dict is remembered by identity, with its ``keys`` list and a
    shallow copy of each key as it was, and serialised again only when it is
    another dict or any of that changed: a key set edited in place (a key
    added, removed, replaced, a field rewritten) is never verified against
    with stale keys. A container nested inside a key (no RSA field is one) is
    compared to itself, so an edit inside it goes unseen.
    """
    plain = type(jwks) is dict
    if plain:
        keys = jwks.get("keys")
        seen = _jwks_seen.get(id(jwks))
        if seen is not None and seen[0] is jwks and seen[1] is keys and keys == seen[2]:
            return seen[3]
    try:
        fingerprint = json.dumps(jwks, sort_keys=True)
    except (TypeError, ValueError):
        raise TokenInvalid("JWKS must be JSON data", "jwks") from None
    if plain and type(keys) is list and all(type(jwk) is dict for jwk in keys):
        with _verifiers_lock:
            if len(_jwks_seen) >= 64:
                _jwks_seen.pop(next(iter(_jwks_seen)), None)
            _jwks_seen[id(jwks)] = (jwks, keys, [dict(jwk) for jwk in keys], fingerprint)
    return fingerprint


def _new_locks_in_child() -> None:
    """Another thread of the parent may have held one of these locks at the moment of a fork;
    in the child nobody would ever release it."""
    global _verifiers_lock
    _verifiers_lock = threading.Lock()
    for verifier in list(_instances):
        verifier._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_locks_in_child)


def verify_grant_token(
    token: str,
    *,
    jwks: Mapping[str, Any] | str,
    issuer: str,
    audience: str | None = None,
    required_scopes: Iterable[str] | None = None,
    leeway: int = DEFAULT_LEEWAY,
) -> VerifiedGrant:
    """Verify a grant token offline against a JWKS; raises :class:`TokenInvalid`.

    Verifiers are kept per (key set, issuer, audience, leeway), so calling
    this in a loop does not re-parse keys. ``issuer`` is exactly one URL, as the
    official SDK's check is; :class:`Verifier` takes several.
    """
    if not isinstance(issuer, str) or not issuer:
        raise TokenInvalid("an expected issuer (one URL) is required", "issuer")
    if isinstance(jwks, str):
        fingerprint: Any = jwks
    else:
        fingerprint = _jwks_fingerprint(jwks)
    cache_key = (fingerprint, issuer, audience, leeway)
    verifier = _verifiers.get(cache_key)
    if verifier is None:
        verifier = Verifier(jwks, issuer=issuer, audience=audience, leeway=leeway)
        with _verifiers_lock:
            if len(_verifiers) >= 64:
                _verifiers.pop(next(iter(_verifiers)), None)
            _verifiers[cache_key] = verifier
    return verifier.verify(token, required_scopes)

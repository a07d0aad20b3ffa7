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

import base64
import binascii
import functools
import json
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jwt
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


def _invalid(message: str, reason: str) -> TokenInvalid:
    return TokenInvalid(f"grant token rejected: {message}", reason)


_BASE64URL = re.compile(rb"[A-Za-z0-9_-]*")


class _JWS(PyJWS):
    """PyJWT's JWS with its segment decoder's alphabet check done by a compiled regex.

    PyJWT (since the GHSA-hxm8-2xgr-2p9m fix) checks every character of every
    segment in a Python generator, which costs more than the RSA verification
    itself. This override applies exactly the same rules, with the same errors
    (a test compares it with PyJWT's own on arbitrary input); everything else,
    header checks, algorithm allow-list and signature, stays PyJWT's. Should
    PyJWT rename the hook, its own slower check simply takes over again.
    """

    @staticmethod
    def _decode_base64url_segment(segment: bytes, name: str) -> bytes:
        stripped = segment.rstrip(b"=")
        padding = len(segment) - len(stripped)
        if padding > 2 or (padding and len(segment) % 4 != 0):
            raise jwt.DecodeError(f"Invalid {name} padding")
        if len(stripped) % 4 == 1 or not _BASE64URL.fullmatch(stripped):
            raise jwt.DecodeError(f"Invalid {name} padding")
        try:
            decoded = base64.urlsafe_b64decode(stripped + b"=" * (-len(stripped) % 4))
        except (TypeError, binascii.Error) as err:
            raise jwt.DecodeError(f"Invalid {name} padding") from err
        if base64.urlsafe_b64encode(decoded).rstrip(b"=") != stripped:
            raise jwt.DecodeError(f"Invalid {name} padding")
        return decoded


_jws = _JWS()


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
                    self._cache.pop(next(iter(self._cache)), None)
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
        """The key a header names, after checking alg, typ and kid.

        Every token signed by one key carries the same header segment, so
        accepted segments are remembered (a few, bounded) and the header is
        decoded once per key rather than once per token.
        """
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
        key = self.keys[kid]
        with self._lock:
            if len(self._header_keys) >= 64:
                self._header_keys.clear()
            self._header_keys[segment] = key
        return key

    def _check_registered_claims(self, claims: dict[str, Any]) -> None:
        """Presence of the required claims, issuer, audience, and the types of sub and jti."""
        for name in _REQUIRED:
            if claims.get(name) is None:
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
        if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
            raise _invalid("not a compact JWS", "malformed")
        segment = token.partition(".")[0]
        key = self._header_keys.get(segment)
        if key is None:
            key = self._key_for_header(segment)
        # PyJWT parses the compact JWS and checks the header, the algorithm
        # allow-list and the signature; the claims are checked below, as PyJWT's
        # claim layer would with require/iss/aud, in the same order and to the
        # same errors, but without its per-call option merging, and time against
        # this verifier's clock (the ledger's, which tests and the demo can move).
        try:
            payload = _jws.decode_complete(token, key, algorithms=_ALGORITHMS)["payload"]
        except jwt.InvalidSignatureError:
            raise _invalid("bad signature", "signature") from None
        except jwt.PyJWTError as exc:
            raise _invalid(str(exc), "malformed") from None
        try:
            claims = json.loads(payload)
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
        if not isinstance(nbf, int | float) or nbf > now + self.leeway or grant.issued_at > now + self.leeway:
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


def grant_from_claims(claims: Mapping[str, Any]) -> VerifiedGrant:
    """Check that both claim sets are present and agree, and read them."""
    grant = claims.get(GRANT_CLAIM)
    if not isinstance(grant, Mapping):
        raise _invalid(f"claim {GRANT_CLAIM} is missing", "missing_claim")
    agent_did = _string(grant.get("agent_did"), f"{GRANT_CLAIM}.agent_did")
    developer_id = _string(grant.get("developer_id"), f"{GRANT_CLAIM}.developer_id")
    grant_id = _string(grant.get("grant_id"), f"{GRANT_CLAIM}.grant_id")
    _agree(agent_did, claims.get("agt"), "agent_did/agt")
    _agree(developer_id, claims.get("dev"), "developer_id/dev")
    _agree(grant_id, claims.get("grnt"), "grant_id/grnt")

    scope = _string(claims.get("scope"), "scope")
    scopes = scope.split(" ")
    scp = claims.get("scp")
    if not isinstance(scp, list):
        raise _invalid("claim scp must be an array", "missing_claim")
    _agree(scopes, scp, "scope/scp")
    try:
        for s in scopes:
            _check_scope(s)
    except Exception:
        raise _invalid("claim scope holds a malformed scope", "malformed") from None

    client_id = _string(claims.get("client_id"), "client_id")
    if agent_did != DID_PREFIX + client_id:
        raise _invalid("client_id does not match the agent DID", "claims_disagree")

    parent_grant_id = grant.get("parent_grant_id")
    depth = grant.get("delegation_depth")
    act = claims.get("act")
    delegated = any(v is not None for v in (
        parent_grant_id, depth, act, claims.get("parentGrnt"), claims.get("delegationDepth"),
        claims.get("parentAgt"),
    ))
    parent_agent_did = None
    if delegated:
        parent_grant_id = _string(parent_grant_id, f"{GRANT_CLAIM}.parent_grant_id")
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise _invalid("delegation_depth must be a positive integer", "missing_claim")
        if not isinstance(act, Mapping):
            raise _invalid("claim act is missing on a delegated token", "missing_claim")
        parent_agent_did = _string(act.get("sub"), "act.sub")
        _agree(parent_grant_id, claims.get("parentGrnt"), "parent_grant_id/parentGrnt")
        _agree(depth, claims.get("delegationDepth"), "delegation_depth/delegationDepth")
        _agree(parent_agent_did, claims.get("parentAgt"), "act.sub/parentAgt")

    aud = claims.get("aud")
    if aud is not None and not isinstance(aud, str):
        raise _invalid("claim aud must be a string", "malformed")
    iat, exp = claims["iat"], claims["exp"]
    if not isinstance(iat, int) or not isinstance(exp, int) or isinstance(iat, bool) or isinstance(exp, bool):
        raise _invalid("iat and exp must be integers", "malformed")
    return VerifiedGrant(
        token_id=_string(claims.get("jti"), "jti"),
        grant_id=grant_id,
        principal_id=_string(claims.get("sub"), "sub"),
        agent_did=agent_did,
        developer_id=developer_id,
        scopes=tuple(scopes),
        issued_at=iat,
        expires_at=exp,
        issuer=claims["iss"],
        client_id=client_id,
        parent_agent_did=parent_agent_did,
        parent_grant_id=parent_grant_id if delegated else None,
        delegation_depth=depth if delegated else None,
        audience=aud,
    )


_verifiers: dict[tuple[Any, ...], Verifier] = {}
_verifiers_lock = threading.Lock()
_instances: weakref.WeakSet[Verifier] = weakref.WeakSet()


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
        try:
            fingerprint = json.dumps(jwks, sort_keys=True)
        except (TypeError, ValueError):
            raise TokenInvalid("JWKS must be JSON data", "jwks") from None
    cache_key = (fingerprint, issuer, audience, leeway)
    verifier = _verifiers.get(cache_key)
    if verifier is None:
        verifier = Verifier(jwks, issuer=issuer, audience=audience, leeway=leeway)
        with _verifiers_lock:
            if len(_verifiers) >= 64:
                _verifiers.pop(next(iter(_verifiers)), None)
            _verifiers[cache_key] = verifier
    return verifier.verify(token, required_scopes)

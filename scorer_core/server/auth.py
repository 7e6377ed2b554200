"""The credential gate of ``/model/*``: a Bearer passphrase or an OIDC token, or a 401.

Why it is built this way:
- A bcrypt or PBKDF2 check costs tens of milliseconds of CPU by design. Paid on every request it
  would cap the server at a few dozen requests a second, and on the event loop it would stall
  every other request. So a check runs in threads of its own, concurrent checks of the same
  credential share one run, and the outcome is remembered (keyed by an HMAC of the credential
  under a key made at start, so that memory holds no plain hash of it).
- A credential that has passed once is recognised first, in constant time, before any queue: a
  flood of wrong passphrases cannot make it wait. Credentials not seen before are the flood's
  own lane: a few may be checked or waiting at once, and the rest are refused at once (503,
  Retry-After) rather than queued. A long queue would not protect the right passphrase's first
  check, which looks like any other until it is hashed, and would hold every request in it (a
  red-team pass from 70 loopback addresses held them for a minute); a short one answers every
  request within a few checks' time.
- Tokens are verified with PyJWT: signature by a key of the JWKS, ``iss``, ``aud``, ``exp`` and
  ``nbf`` with a small leeway, and only asymmetric algorithms (``none`` and HMAC, which would let
  a public key sign, are refused). A token naming an unknown key id refreshes a JWKS fetched from
  a URL, at most once a minute, so that rotated keys are found and forged ids cost nothing.
- Nothing here logs or echoes a credential: the 401's detail says only what kind of failure it
  was.
- A check that passes returns what it verified (``Verified``: the kind of credential, and a
  token's verified claims), so that callers and tests can see which credential let a request in,
  not merely that something did.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from scorer_core.config.credentials import Credentials, OidcSettings
from scorer_core.errors import NotReady, Overloaded, ScorerError
from scorer_core.server.fetch import fetch

__all__ = [
    "JWT_ALGORITHMS",
    "LEEWAY_SECONDS",
    "Authenticator",
    "TokenClaims",
    "Unauthorized",
    "Verified",
    "bearer_credential",
]

log = logging.getLogger(__name__)

#: Signature algorithms a token may use: asymmetric only.
JWT_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
#: The JWK key type each algorithm family signs with.
_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
#: Seconds of clock difference allowed on ``exp`` and ``nbf``.
LEEWAY_SECONDS = 30
#: Threads running slow checks: at most two cores go to hashing however many clients try.
CHECK_THREADS = max(1, min(2, os.cpu_count() or 1))
#: Checks of new credentials running or waiting at once, beyond which a request with another new
#: credential gets 503 at once: no request waits longer than about this many checks shared out
#: over the threads, plus its own. And those one client address may have, beyond which it gets
#: 429: a single address cannot take the whole lane (many addresses can; see docs/security.md).
MAX_PENDING_CHECKS = 2 * CHECK_THREADS
MAX_PENDING_CHECKS_PER_CLIENT = 2
#: Remembered credentials that passed (each compared on every request, so few) and that failed.
_VERIFIED = 16
_REMEMBERED = 4096
#: Least seconds between two fetches of a JWKS URL for an unknown key id; and its lifetime.
_JWKS_REFRESH_SECONDS = 60.0
_JWKS_LIFETIME_SECONDS = 3600.0
#: The whole fetch of a JWKS URL: connection, TLS, headers and body (``fetch.py``).
_JWKS_FETCH_SECONDS = 5.0
_JWKS_MAX_BYTES = 1 << 20


class TooManyChecks(ScorerError):
    """429: this client has enough passphrase checks waiting already."""

    status_code = 429

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": "1"}


class Unauthorized(ScorerError):
    """401: no credential, or not the deployment's. ``WWW-Authenticate`` as RFC 6750 has it."""

    status_code = 401
    detail_prefix = "Unauthorized: "

    def __init__(self, message: str, *, invalid: bool = True) -> None:
        super().__init__(message)
        self.headers = {"WWW-Authenticate": 'Bearer error="invalid_token"' if invalid else "Bearer"}


@dataclass(frozen=True)
class TokenClaims:
    """The claims of an OIDC token that passed, every one of them checked by PyJWT first: the
    signature, ``iss`` (the configured issuer), ``aud`` (includes the configured audience), ``exp``
    and, when present, ``nbf``. ``claims`` holds them all, as the token carried them."""

    issuer: str
    #: ``aud`` as a tuple: a token may name one audience or several.
    audience: tuple[str, ...]
    #: ``exp``, in seconds since the epoch, read as PyJWT read it to check it.
    expires: int
    #: ``sub``, the identity the token was issued for; None when the token names none.
    subject: str | None
    claims: Mapping[str, Any]

    @classmethod
    def of(cls, claims: dict[str, Any]) -> TokenClaims:
        """The claims ``jwt.decode`` returned, which required ``iss``, ``aud`` and ``exp``."""
        audience = claims["aud"]
        subject = claims.get("sub")
        return cls(
            issuer=claims["iss"],
            audience=(audience,) if isinstance(audience, str) else tuple(audience),
            expires=int(claims["exp"]),
            # PyJWT 2.10 and later refuse a ``sub`` that is not a string; earlier ones pass it
            # unchecked, and such a value names no subject.
            subject=subject if isinstance(subject, str) else None,
            claims=MappingProxyType(dict(claims)),
        )


@dataclass(frozen=True)
class Verified:
    """What let a request in: the deployment's passphrase, or an OIDC token and its claims."""

    kind: Literal["passphrase", "token"]
    #: The token's verified claims; None for a passphrase.
    token: TokenClaims | None = None


_PASSPHRASE = Verified("passphrase")


def bearer_credential(values: list[bytes]) -> bytes:
    """The credential of a request's ``Authorization`` header values, or ``Unauthorized``."""
    if not values:
        raise Unauthorized(
            "this deployment needs a credential: send Authorization: Bearer <passphrase or token>",
            invalid=False,
        )
    if len(values) > 1:
        raise Unauthorized("more than one Authorization header")
    scheme, _, credential = values[0].strip().partition(b" ")
    credential = credential.strip()
    if scheme.lower() != b"bearer" or not credential:
        raise Unauthorized("the Authorization header is not of the form Bearer <passphrase or token>")
    return credential


class Authenticator:
    """Checks the credential of each ``/model/*`` request against the configured ``Credentials``."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self._key = secrets.token_bytes(32)
        self._verified: list[bytes] = []  # tags of credentials that passed, oldest first
        self._wrong: OrderedDict[bytes, None] = OrderedDict()
        self._pending: dict[bytes, asyncio.Future[bool]] = {}
        self._per_client: dict[str | None, int] = {}
        self._checker: ThreadPoolExecutor | None = None
        self._keys = _Keys(credentials.oidc) if credentials.oidc is not None else None

    async def check(self, authorization: list[bytes], client: str | None = None) -> Verified:
        """What the request's credential was verified as, if it may proceed; raise
        ``Unauthorized`` (or 429, 503) if not. ``client``: the peer's address, which bounds how
        many slow checks it may have waiting."""
        credential = bearer_credential(authorization)
        token_problem: ScorerError | None = None
        if self._keys is not None and credential.count(b".") == 2:
            try:
                claims = await self._keys.verify(credential.decode("ascii", "replace"))
                return Verified("token", TokenClaims.of(claims))
            except (Unauthorized, NotReady) as exc:
                # A passphrase may parse as a token too: keys that cannot be fetched (503) must not
                # keep it from being checked. Its refusal still reports the token's problem.
                if self.credentials.passphrase is None:
                    raise
                token_problem = exc
        if self.credentials.passphrase is not None:
            if await self._passphrase_matches(credential, client):
                return _PASSPHRASE
            raise token_problem or Unauthorized("the passphrase is wrong")
        raise token_problem or Unauthorized("the credential is not a JWT")

    async def _passphrase_matches(self, credential: bytes, client: str | None) -> bool:
        passphrase = self.credentials.passphrase
        assert passphrase is not None
        if not passphrase.slow:
            return passphrase.verify(credential)
        tag = hmac.new(self._key, credential, hashlib.sha256).digest()
        if self._verified_before(tag):
            return True
        if tag in self._wrong:
            return False
        pending = self._pending.get(tag)
        if pending is None:
            if self._per_client.get(client, 0) >= MAX_PENDING_CHECKS_PER_CLIENT:
                raise TooManyChecks(
                    f"more than {MAX_PENDING_CHECKS_PER_CLIENT} passphrase checks from this client are "
                    "in progress; retry shortly"
                )
            if len(self._pending) >= MAX_PENDING_CHECKS:
                raise Overloaded("too many passphrase checks in progress; retry shortly", retry_after=1)
            if self._checker is None:
                self._checker = ThreadPoolExecutor(CHECK_THREADS, thread_name_prefix="passphrase-check")
            pending = asyncio.ensure_future(
                asyncio.get_running_loop().run_in_executor(self._checker, passphrase.verify, credential)
            )
            self._pending[tag] = pending
            self._per_client[client] = self._per_client.get(client, 0) + 1
            pending.add_done_callback(lambda done: self._remember(tag, client, done))
        return await asyncio.shield(pending)

    def _verified_before(self, tag: bytes) -> bool:
        """Whether ``tag`` is one of a credential that passed: every remembered tag is compared in
        full, whichever matches, so the time taken says nothing about which or whether."""
        found = False
        for verified in self._verified:
            found |= hmac.compare_digest(verified, tag)
        return found

    def _remember(self, tag: bytes, client: str | None, done: asyncio.Future[bool]) -> None:
        self._pending.pop(tag, None)
        left = self._per_client.get(client, 1) - 1
        if left > 0:
            self._per_client[client] = left
        else:
            self._per_client.pop(client, None)
        if done.cancelled() or done.exception() is not None:
            return
        if done.result():
            self._verified.append(tag)
            del self._verified[:-_VERIFIED]
        else:
            self._wrong[tag] = None
            if len(self._wrong) > _REMEMBERED:
                self._wrong.popitem(last=False)

    def close(self) -> None:
        if self._checker is not None:
            self._checker.shutdown(wait=False, cancel_futures=True)


class _Keys:
    """The JWKS tokens are checked against: from a file read at start, or a URL fetched lazily.

    Keys are kept as the list the JWKS holds, not by key id: a JWKS may publish several keys
    without ``kid`` (or with the same one), and a map by id kept only the last of them, silently,
    so tokens signed by the others were refused. A token is checked against each key its ``kid``
    names, or against every key when it names none."""

    def __init__(self, oidc: OidcSettings) -> None:
        self.oidc = oidc
        self._lock = threading.Lock()
        self._fetched_at = -float("inf")
        self._keys: list[_SigningKey] = []
        if oidc.keys is not None:
            self._keys = _signing_keys(oidc.keys)

    async def verify(self, token: str) -> dict[str, Any]:
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("the token is not a well-formed JWT") from None
        algorithm = header.get("alg")
        if algorithm not in JWT_ALGORITHMS:
            raise Unauthorized(f"the token's algorithm {str(algorithm)[:16]!r} is not accepted")
        keys = [key for key in await self._keys_for(header.get("kid")) if _fits(key, algorithm)]
        if not keys:
            raise Unauthorized("the token's algorithm does not match its key")
        problem = Unauthorized("the token's signature is not valid")
        for key in keys:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key.jwk.key,
                    algorithms=[algorithm],
                    audience=self.oidc.audience,
                    issuer=self.oidc.issuer,
                    leeway=LEEWAY_SECONDS,
                    options={"require": ["exp", "iss", "aud"]},
                )
                return claims
            except jwt.InvalidSignatureError:
                continue  # another of the candidate keys may have signed it
            except jwt.ExpiredSignatureError:
                raise Unauthorized("the token has expired") from None
            except jwt.ImmatureSignatureError:
                raise Unauthorized("the token is not valid yet") from None
            except jwt.InvalidAudienceError:
                raise Unauthorized("the token is not for this audience") from None
            except jwt.InvalidIssuerError:
                raise Unauthorized("the token is not from the configured issuer") from None
            except jwt.MissingRequiredClaimError as exc:
                raise Unauthorized(f"the token has no {exc.claim!r} claim") from None
            except Exception:  # PyJWT raises TypeError and the like for keys that cannot verify it
                problem = Unauthorized("the token is not valid")
        raise problem

    async def _keys_for(self, kid: Any) -> list[_SigningKey]:
        keys = self._named(kid)
        if self.oidc.jwks_is_url:
            age = time.monotonic() - self._fetched_at
            # Keys older than their lifetime are fetched again even when the token's key is known:
            # a key the issuer removed (revoked, rotated out) must stop being trusted.
            if age > _JWKS_LIFETIME_SECONDS or (not keys and age > _JWKS_REFRESH_SECONDS):
                await asyncio.get_running_loop().run_in_executor(None, self._fetch)
                keys = self._named(kid)
        if not keys and self.oidc.jwks_is_url and not self._keys:
            raise NotReady("the OIDC signing keys could not be fetched yet; retry shortly")
        if not keys:
            raise Unauthorized("the token is signed by a key this deployment does not know")
        return keys

    def _named(self, kid: Any) -> list[_SigningKey]:
        """The keys a token's ``kid`` names: those with that id, or every key when it has none."""
        if kid is None:
            return list(self._keys)
        return [key for key in self._keys if isinstance(kid, str) and key.jwk.key_id == kid]

    def _fetch(self) -> None:
        with self._lock:
            if time.monotonic() - self._fetched_at < 1.0:
                return  # another request fetched it just now
            self._fetched_at = time.monotonic()
            try:
                document = json.loads(fetch(self.oidc.jwks, _JWKS_FETCH_SECONDS, _JWKS_MAX_BYTES))
                self._keys = _signing_keys(document)
            except Exception as exc:  # any failure to fetch or read keeps the keys known so far
                log.warning("Could not fetch the OIDC signing keys from SCORER_OIDC_JWKS: %s", exc)
                if not self._keys:
                    raise NotReady("the OIDC signing keys could not be fetched; retry shortly") from None


@dataclass(frozen=True)
class _SigningKey:
    """A key of the JWKS, and the JWK it was read from.

    The JWK is kept because PyJWT's ``PyJWK`` has no public accessor for the algorithm a JWK
    declares (``algorithm_name`` falls back to a default for the key type when it declares none),
    and reading its private ``_jwk_data`` would refuse every token the day PyJWT renamed it."""

    jwk: Any  # jwt.PyJWK: its key verifies tokens, its key_id picks it
    document: dict[str, Any]


def _signing_keys(document: Any) -> list[_SigningKey]:
    """The usable keys of a JWKS, as ``jwt.PyJWKSet`` reads them: members that are not JWK objects,
    and keys PyJWT cannot use (an unknown type or curve), are skipped; a set with no usable key
    is an error."""
    import jwt

    members = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(members, list) or not members:
        raise jwt.PyJWKSetError("The JWK Set did not contain any keys")
    keys = []
    for member in members:
        if not isinstance(member, dict):
            continue
        try:
            keys.append(_SigningKey(jwt.PyJWK(member), member))
        except jwt.PyJWTError:
            continue
    if not keys:
        raise jwt.PyJWKSetError("The JWK Set did not contain any usable keys (is cryptography installed?)")
    return keys


def _fits(key: _SigningKey, algorithm: str) -> bool:
    """Whether ``key`` may verify a token of ``algorithm``: its type is the algorithm family's, and
    the algorithm its JWK names, if any, is this one."""
    declared = key.document.get("alg")
    family = _KEY_TYPES[algorithm[:2]]
    return (declared is None or declared == algorithm) and key.document.get("kty") == family

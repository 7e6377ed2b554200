"""The deployment's credential, read from the settings and checked at start-up.

H2O MLOps protects a deployment with a passphrase its clients send as ``Authorization: Bearer
<passphrase>``, stored in plaintext, as a bcrypt hash, or as a PBKDF2 hash written
``pbkdf2:<hashFunc>:<iterations>$<salt>$<hash>`` (salt and hash in base64), or with OIDC tokens.
A mistake in any of these must stop start-up with one line, not open the deployment or refuse
every client at the first request; so everything here is parsed once, before the server listens.
Checking a request's credential (caching, threads, 401s) is the server's: ``server/auth.py``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from scorer_core.errors import ConfigurationError

__all__ = [
    "PBKDF2_HASH_FUNCTIONS",
    "BcryptPassphrase",
    "Credentials",
    "OidcSettings",
    "Passphrase",
    "Pbkdf2Passphrase",
    "PlainPassphrase",
    "parse_passphrase_hash",
]

#: The HMAC hash functions a PBKDF2 hash may name (hashlib's names).
PBKDF2_HASH_FUNCTIONS = ("sha1", "sha224", "sha256", "sha384", "sha512")
#: Lengths of those functions' digests written in hexadecimal (Werkzeug's format, not H2O's).
_HEX_DIGEST_LENGTHS = {2 * hashlib.new(name).digest_size for name in PBKDF2_HASH_FUNCTIONS}
_BCRYPT = re.compile(r"^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$")
#: Above this a single bcrypt check takes many seconds, which a client could make the server pay.
_BCRYPT_MAX_COST = 15
#: Below this, a PBKDF2 hash protects little; above the ceiling one check takes seconds here.
_PBKDF2_ITERATIONS = (1, 10_000_000)


class Passphrase:
    """A way to tell whether a presented passphrase is the deployment's."""

    #: Whether one check costs real CPU time (a hash), so that the server runs it off the event
    #: loop and remembers the answer.
    slow: bool = True

    def verify(self, candidate: bytes) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        """What kind of passphrase this is, for the start-up log line (never the secret)."""
        raise NotImplementedError


@dataclass(frozen=True, repr=False)
class PlainPassphrase(Passphrase):
    """``SCORER_PASSPHRASE``: its SHA-256 digest, taken once at start, compared in constant time
    with the candidate's. Digests, not the bytes themselves: ``compare_digest`` is constant-time
    in the values, not in their lengths, which its documentation says a client might learn."""

    secret: bytes
    slow = False
    _digest: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_digest", hashlib.sha256(self.secret).digest())

    def verify(self, candidate: bytes) -> bool:
        return hmac.compare_digest(hashlib.sha256(candidate).digest(), self._digest)

    def describe(self) -> str:
        return "a plaintext passphrase (SCORER_PASSPHRASE)"


@dataclass(frozen=True, repr=False)
class BcryptPassphrase(Passphrase):
    """A bcrypt hash (``$2a$``, ``$2b$``, ``$2y$``): bcrypt's own check, which is constant-time."""

    hashed: bytes

    def verify(self, candidate: bytes) -> bool:
        import bcrypt

        # bcrypt reads at most 72 bytes and refuses NUL; a longer or odd candidate is simply wrong.
        if b"\x00" in candidate:
            return False
        try:
            return bool(bcrypt.checkpw(candidate[:72], self.hashed))
        except ValueError:
            return False

    def describe(self) -> str:
        return f"a bcrypt passphrase hash, cost {int(self.hashed[4:6])} (SCORER_PASSPHRASE_HASH)"


@dataclass(frozen=True, repr=False)
class Pbkdf2Passphrase(Passphrase):
    """``pbkdf2:<hashFunc>:<iterations>$<salt>$<hash>``: the candidate derived with the named
    HMAC hash, the decoded salt and the iterations, to the decoded hash's length."""

    function: str
    iterations: int
    salt: bytes
    digest: bytes

    def verify(self, candidate: bytes) -> bool:
        derived = hashlib.pbkdf2_hmac(self.function, candidate, self.salt, self.iterations, len(self.digest))
        return hmac.compare_digest(derived, self.digest)

    def describe(self) -> str:
        return (
            f"a PBKDF2 passphrase hash ({self.function}, {self.iterations:,} iterations) "
            "(SCORER_PASSPHRASE_HASH)"
        )


def parse_passphrase_hash(text: str) -> Passphrase:
    """``SCORER_PASSPHRASE_HASH`` as a verifier; a ``ConfigurationError`` naming what is wrong."""
    text = text.strip()
    if text.startswith("$2"):
        if not _BCRYPT.match(text):
            raise ConfigurationError(
                "SCORER_PASSPHRASE_HASH looks like a bcrypt hash but is not one: expected "
                "$2a$, $2b$ or $2y$, a two-digit cost, $ and 53 characters of bcrypt's base64"
            )
        cost = int(text[4:6])
        if not 4 <= cost <= _BCRYPT_MAX_COST:
            raise ConfigurationError(
                f"SCORER_PASSPHRASE_HASH is a bcrypt hash of cost {cost}; accepted are 4 to "
                f"{_BCRYPT_MAX_COST} (each step doubles the time of a check: cost 15 takes seconds)"
            )
        return BcryptPassphrase(text.encode("ascii"))
    if text.startswith("pbkdf2:"):
        return _pbkdf2(text)
    raise ConfigurationError(
        "SCORER_PASSPHRASE_HASH is neither a bcrypt hash ($2a$, $2b$, $2y$) nor a PBKDF2 hash "
        "(pbkdf2:<hashFunc>:<iterations>$<salt>$<hash>); for a plaintext passphrase set "
        "SCORER_PASSPHRASE instead"
    )


def _pbkdf2(text: str) -> Pbkdf2Passphrase:
    form = "pbkdf2:<hashFunc>:<iterations>$<salt>$<hash>"
    head, _, rest = text.partition("$")
    parts = head.split(":")
    pieces = rest.split("$")
    if len(parts) != 3 or len(pieces) != 2:
        raise ConfigurationError(f"SCORER_PASSPHRASE_HASH is not of the form {form}")
    _, function, iterations_text = parts
    if function.lower() not in PBKDF2_HASH_FUNCTIONS:
        raise ConfigurationError(
            f"SCORER_PASSPHRASE_HASH names the hash function {function!r}; PBKDF2 here takes "
            f"{', '.join(PBKDF2_HASH_FUNCTIONS)}"
        )
    if (
        not iterations_text.isdigit()
        or not _PBKDF2_ITERATIONS[0] <= int(iterations_text) <= _PBKDF2_ITERATIONS[1]
    ):
        raise ConfigurationError(
            f"SCORER_PASSPHRASE_HASH has {iterations_text!r} iterations; expected a whole number "
            f"from {_PBKDF2_ITERATIONS[0]:,} to {_PBKDF2_ITERATIONS[1]:,}"
        )
    if re.fullmatch(r"[0-9a-f]+", pieces[1]) and len(pieces[1]) in _HEX_DIGEST_LENGTHS:
        raise ConfigurationError(
            "SCORER_PASSPHRASE_HASH's hash is hexadecimal, as Werkzeug's generate_password_hash "
            "writes it; H2O's format has the salt and the hash in base64"
        )
    salt, digest = (_base64(piece, what) for piece, what in zip(pieces, ("salt", "hash"), strict=True))
    if len(digest) < 16:
        raise ConfigurationError(
            f"SCORER_PASSPHRASE_HASH's hash is {len(digest)} bytes long; a PBKDF2 hash shorter "
            "than 16 bytes is not a credential"
        )
    return Pbkdf2Passphrase(function.lower(), int(iterations_text), salt, digest)


def _base64(piece: str, what: str) -> bytes:
    """Standard or URL-safe base64, padded or not."""
    text = piece.replace("-", "+").replace("_", "/")
    try:
        decoded = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        decoded = b""
    if not decoded:
        raise ConfigurationError(f"SCORER_PASSPHRASE_HASH's {what} {piece!r} is not base64")
    return decoded


@dataclass(frozen=True)
class OidcSettings:
    """Who may issue tokens (``iss``), for whom (``aud``), and where their keys are (a JWKS file
    or an https URL). A file is read here, so that a wrong one stops start-up."""

    issuer: str
    audience: str
    jwks: str
    keys: dict[str, Any] | None = None  # the JWKS document, when ``jwks`` is a file

    @property
    def jwks_is_url(self) -> bool:
        return self.jwks.startswith(("https://", "http://"))


@dataclass(frozen=True)
class Credentials:
    """What a ``/model/*`` request must carry: the passphrase, an OIDC token, or either."""

    passphrase: Passphrase | None = None
    oidc: OidcSettings | None = None

    @classmethod
    def from_settings(
        cls,
        passphrase: str | None,
        passphrase_hash: str | None,
        oidc_issuer: str | None,
        oidc_audience: str | None,
        oidc_jwks: str | None,
    ) -> Credentials | None:
        """The configured credentials, or None when the deployment is open."""
        if passphrase is not None and passphrase_hash is not None:
            raise ConfigurationError(
                "Both SCORER_PASSPHRASE and SCORER_PASSPHRASE_HASH are set; set one: the "
                "plaintext passphrase or its hash"
            )
        if passphrase is not None and not passphrase.strip():
            raise ConfigurationError("SCORER_PASSPHRASE is set but empty; unset it or give a passphrase")
        if passphrase_hash is not None and not passphrase_hash.strip():
            raise ConfigurationError("SCORER_PASSPHRASE_HASH is set but empty; unset it or give a hash")
        verifier: Passphrase | None = None
        if passphrase is not None:
            # A secret read from a file often ends in a newline, and a header value cannot carry
            # surrounding blanks: kept, no client could ever present it.
            verifier = PlainPassphrase(passphrase.strip().encode())
        elif passphrase_hash is not None:
            verifier = parse_passphrase_hash(passphrase_hash)
        oidc = _oidc(oidc_issuer, oidc_audience, oidc_jwks)
        if verifier is None and oidc is None:
            return None
        return cls(verifier, oidc)

    def describe(self) -> str:
        kinds = [self.passphrase.describe()] if self.passphrase else []
        if self.oidc is not None:
            kinds.append(f"OIDC tokens from {self.oidc.issuer} for {self.oidc.audience}")
        return " or ".join(kinds)


def _oidc(issuer: str | None, audience: str | None, jwks: str | None) -> OidcSettings | None:
    given = {"SCORER_OIDC_ISSUER": issuer, "SCORER_OIDC_AUDIENCE": audience, "SCORER_OIDC_JWKS": jwks}
    if not any(given.values()):
        return None
    missing = [name for name, value in given.items() if not value]
    if missing:
        raise ConfigurationError(
            "OIDC needs SCORER_OIDC_ISSUER, SCORER_OIDC_AUDIENCE and SCORER_OIDC_JWKS; "
            f"missing {', '.join(missing)}"
        )
    assert issuer and audience and jwks
    settings = OidcSettings(issuer, audience, jwks)
    if settings.jwks_is_url:
        host = urlsplit(jwks).hostname or ""
        if jwks.startswith("http://") and host not in ("127.0.0.1", "::1", "localhost"):
            raise ConfigurationError(
                "SCORER_OIDC_JWKS is a plain http URL: anyone on the way could replace the keys "
                "tokens are checked with; use https (plain http is accepted on loopback only)"
            )
        return settings
    return OidcSettings(issuer, audience, jwks, read_jwks_file(Path(jwks)))


def read_jwks_file(path: Path) -> dict[str, Any]:
    """A JWKS document (``{"keys": [...]}``) from a file; a ``ConfigurationError`` if it is not."""
    try:
        document = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigurationError(
            f"SCORER_OIDC_JWKS file {str(path)!r} cannot be read: {exc.strerror}"
        ) from None
    except ValueError as exc:
        raise ConfigurationError(f"SCORER_OIDC_JWKS file {str(path)!r} is not JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list) or not document["keys"]:
        raise ConfigurationError(
            f'SCORER_OIDC_JWKS file {str(path)!r} is not a JWKS document ({{"keys": [...]}})'
        )
    import jwt

    try:
        jwt.PyJWKSet.from_dict(document)
    except jwt.PyJWTError as exc:
        raise ConfigurationError(f"SCORER_OIDC_JWKS file {str(path)!r} holds no usable key: {exc}") from None
    return document

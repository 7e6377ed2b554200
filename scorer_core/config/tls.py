"""The certificate and key of ``SCORER_TLS_CERT`` and ``SCORER_TLS_KEY``, checked at start-up.

OpenSSL's own errors name no file and no fix ("[SSL] PEM lib (_ssl.c:3905)" for a DER or empty
certificate, "[Errno 22] Invalid argument" for an encrypted key, after prompting for its passphrase
on the terminal), so each file is first read and looked at here, and a mistake is reported as
what it is, with the setting, the file and the way out.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from scorer_core.errors import ConfigurationError

__all__ = ["check_tls"]

_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
_PRIVATE_KEY = (b"-----BEGIN ", b"PRIVATE KEY-----")
#: The first byte of a DER encoding: an ASN.1 SEQUENCE.
_DER_START = 0x30


class _Encrypted(Exception):
    """Raised by the passphrase callback, which OpenSSL calls only for an encrypted key."""


def check_tls(cert: Path, key: Path) -> tuple[str, str]:
    """(certificate, key) as paths for the HTTPS server, once both load together; else a
    ``ConfigurationError`` naming the setting, the file and what is wrong with it."""
    _check_certificate(cert, _read("SCORER_TLS_CERT", cert))
    _check_key(key, _read("SCORER_TLS_KEY", key))

    def no_passphrase() -> bytes:
        raise _Encrypted

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key, password=no_passphrase)
    except _Encrypted:
        raise ConfigurationError(
            f"SCORER_TLS_KEY '{key}' is encrypted, and the server cannot ask for its passphrase: give it "
            f"the key decrypted (openssl pkey -in {key} -out server.key), mounted as a secret"
        ) from None
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None)
        why = (
            "the key is not the certificate's (SCORER_TLS_KEY must hold the private key of the first "
            "certificate in SCORER_TLS_CERT)"
            if reason == "KEY_VALUES_MISMATCH"
            else reason or str(exc)
        )
        raise ConfigurationError(
            f"SCORER_TLS_CERT '{cert}' and SCORER_TLS_KEY '{key}' cannot be used: {why}"
        ) from None
    return str(cert), str(key)


def _read(setting: str, path: Path) -> bytes:
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise ConfigurationError(f"{setting} '{path}' does not exist") from None
    except IsADirectoryError:
        raise ConfigurationError(f"{setting} '{path}' is a directory, not a PEM file") from None
    except OSError as exc:
        raise ConfigurationError(f"{setting} '{path}' cannot be read: {exc.strerror or exc}") from None
    if not content.strip():
        raise ConfigurationError(f"{setting} '{path}' is empty")
    return content


def _check_certificate(path: Path, content: bytes) -> None:
    if _CERTIFICATE in content:
        return
    if all(marker in content for marker in _PRIVATE_KEY):
        raise ConfigurationError(
            f"SCORER_TLS_CERT '{path}' holds a private key, not a certificate; are SCORER_TLS_CERT and "
            "SCORER_TLS_KEY swapped?"
        )
    if content[0] == _DER_START:
        raise ConfigurationError(
            f"SCORER_TLS_CERT '{path}' is in DER form; the server reads PEM: convert it with "
            f"openssl x509 -inform DER -in {path} -out server.crt"
        )
    raise ConfigurationError(
        f"SCORER_TLS_CERT '{path}' holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    )


def _check_key(path: Path, content: bytes) -> None:
    if all(marker in content for marker in _PRIVATE_KEY):
        return
    if _CERTIFICATE in content:
        raise ConfigurationError(f"SCORER_TLS_KEY '{path}' holds a certificate, not a private key")
    if content[0] == _DER_START:
        raise ConfigurationError(
            f"SCORER_TLS_KEY '{path}' is in DER form; the server reads PEM: convert it with "
            f"openssl pkey -inform DER -in {path} -out server.key"
        )
    raise ConfigurationError(
        f"SCORER_TLS_KEY '{path}' holds no PEM private key (-----BEGIN PRIVATE KEY-----)"
    )

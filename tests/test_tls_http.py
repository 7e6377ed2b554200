"""HTTPS with SCORER_TLS_CERT and SCORER_TLS_KEY, with a certificate this test makes."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conformance.target import free_port
from tests.conftest import plugin_env
from tests.test_cli import scorer

pytestmark = pytest.mark.slow


def make_certificate(directory: Path, name: str = "server") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    import ipaddress

    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_the_api_is_served_over_https_with_the_configured_certificate(probe_file, tmp_path):
    cert, key = make_certificate(tmp_path)
    port = free_port()
    env = {**os.environ, **plugin_env(SCORER_TLS_CERT=str(cert), SCORER_TLS_KEY=str(key))}
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "scorer_core.cli", "serve", str(probe_file()), "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    trusted = ssl.create_default_context(cafile=str(cert))
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            probe = http.client.HTTPSConnection("127.0.0.1", port, context=trusted, timeout=5)
            try:
                probe.request("GET", "/readyz")
                if probe.getresponse().status == 200:
                    break
            except OSError:
                pass
            finally:
                probe.close()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=trusted, timeout=5)
        body = json.dumps({"fields": ["x"], "rows": [["2"]]})
        connection.request("POST", "/model/score", body, {"Content-Type": "application/json"})
        reply = connection.getresponse()
        assert reply.status == 200 and json.loads(reply.read())["score"] == [["4.0"]]
        assert f"Listening on https://127.0.0.1:{port}" in log.read_text()
        # Plain HTTP on the HTTPS port gets no answer, and an untrusting client refuses the server.
        plain = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        with pytest.raises((http.client.HTTPException, OSError)):
            plain.request("GET", "/readyz")
            plain.getresponse().read()
        with pytest.raises(ssl.SSLCertVerificationError):
            strict = http.client.HTTPSConnection(
                "127.0.0.1", port, context=ssl.create_default_context(), timeout=5
            )
            strict.request("GET", "/readyz")
    finally:
        process.terminate()
        process.wait(timeout=30)


def der(path: Path, name: str) -> Path:
    """The PEM file at ``path`` in DER form."""
    pem = path.read_bytes()
    if b"CERTIFICATE" in pem:
        content = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    else:
        key = serialization.load_pem_private_key(pem, None)
        content = key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    (path.parent / name).write_bytes(content)
    return path.parent / name


def encrypted(path: Path) -> Path:
    """The key at ``path``, encrypted with a passphrase."""
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    target = path.parent / "encrypted.key"
    target.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"a passphrase"),
        )
    )
    return target


CASES = {
    "cert-only": lambda d, cert, key: (
        {"SCORER_TLS_CERT": cert},
        "SCORER_TLS_CERT is set but SCORER_TLS_KEY is not; HTTPS needs both",
    ),
    "key-only": lambda d, cert, key: (
        {"SCORER_TLS_KEY": key},
        "SCORER_TLS_KEY is set but SCORER_TLS_CERT is not; HTTPS needs both",
    ),
    "missing-cert": lambda d, cert, key: (
        {"SCORER_TLS_CERT": d / "gone.crt", "SCORER_TLS_KEY": key},
        f"SCORER_TLS_CERT '{d / 'gone.crt'}' does not exist",
    ),
    "missing-key": lambda d, cert, key: (
        {"SCORER_TLS_CERT": cert, "SCORER_TLS_KEY": d / "gone.key"},
        f"SCORER_TLS_KEY '{d / 'gone.key'}' does not exist",
    ),
    "mismatched-key": lambda d, cert, key: (
        {"SCORER_TLS_CERT": cert, "SCORER_TLS_KEY": make_certificate(d, "other")[1]},
        f"SCORER_TLS_CERT '{cert}' and SCORER_TLS_KEY '{d / 'other.key'}' cannot be used: the key is not "
        "the certificate's",
    ),
    "not-pem": lambda d, cert, key: (
        {"SCORER_TLS_CERT": d / "junk.pem", "SCORER_TLS_KEY": key},
        f"SCORER_TLS_CERT '{d / 'junk.pem'}' holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
    ),
    "empty-cert": lambda d, cert, key: (
        {"SCORER_TLS_CERT": d / "empty.crt", "SCORER_TLS_KEY": key},
        f"SCORER_TLS_CERT '{d / 'empty.crt'}' is empty",
    ),
    "der-cert": lambda d, cert, key: (
        {"SCORER_TLS_CERT": der(cert, "der.crt"), "SCORER_TLS_KEY": key},
        f"SCORER_TLS_CERT '{d / 'der.crt'}' is in DER form; the server reads PEM: convert it with openssl "
        f"x509 -inform DER -in {d / 'der.crt'} -out server.crt",
    ),
    "der-key": lambda d, cert, key: (
        {"SCORER_TLS_CERT": cert, "SCORER_TLS_KEY": der(key, "der.key")},
        f"SCORER_TLS_KEY '{d / 'der.key'}' is in DER form; the server reads PEM",
    ),
    "encrypted-key": lambda d, cert, key: (
        {"SCORER_TLS_CERT": cert, "SCORER_TLS_KEY": encrypted(key)},
        f"SCORER_TLS_KEY '{d / 'encrypted.key'}' is encrypted, and the server cannot ask for its passphrase",
    ),
    "swapped": lambda d, cert, key: (
        {"SCORER_TLS_CERT": key, "SCORER_TLS_KEY": cert},
        f"SCORER_TLS_CERT '{key}' holds a private key, not a certificate; are SCORER_TLS_CERT and "
        "SCORER_TLS_KEY swapped?",
    ),
    "key-is-a-directory": lambda d, cert, key: (
        {"SCORER_TLS_CERT": cert, "SCORER_TLS_KEY": d},
        f"SCORER_TLS_KEY '{d}' is a directory, not a PEM file",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_tls_setting_stops_start_up_with_one_line_naming_the_file_and_the_mistake(
    probe_file, tmp_path, case
):
    cert, key = make_certificate(tmp_path)
    (tmp_path / "junk.pem").write_text("not a certificate")
    (tmp_path / "empty.crt").write_bytes(b"")
    settings, message = CASES[case](tmp_path, cert, key)
    env = plugin_env(**{name: str(value) for name, value in settings.items()})
    result = scorer("serve", str(probe_file()), "--port", str(free_port()), env=env)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("scorer: error: "), result.stderr
    assert message in lines[0], lines[0]
    assert "PEM lib" not in lines[0] and "Errno" not in lines[0] and "None" not in lines[0]
    assert "pass phrase" not in result.stdout + result.stderr, "OpenSSL prompted for a passphrase"

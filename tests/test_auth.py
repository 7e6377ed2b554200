"""The deployment's credential: parsing every setting (config/credentials.py) and the request
gate (server/auth.py): passphrases in plaintext, bcrypt and PBKDF2, and OIDC tokens."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import bcrypt
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from scorer_core.config.credentials import (
    BcryptPassphrase,
    Credentials,
    Pbkdf2Passphrase,
    PlainPassphrase,
    parse_passphrase_hash,
)
from scorer_core.config.settings import load_settings
from scorer_core.errors import ConfigurationError, NotReady, Overloaded
from scorer_core.server.auth import (
    MAX_PENDING_CHECKS,
    MAX_PENDING_CHECKS_PER_CLIENT,
    Authenticator,
    TooManyChecks,
    Unauthorized,
    Verified,
    bearer_credential,
)

ISSUER = "https://issuer.test/realms/mlops"
AUDIENCE = "scorer"
PASSPHRASE = Verified("passphrase")


def pbkdf2_hash(
    passphrase: bytes, *, function: str = "sha256", iterations: int = 1000, urlsafe: bool = False
) -> str:
    """The guide's format, written independently of the code under test."""
    salt = b"\xfb\x00salt-bytes\xff"
    digest = hashlib.pbkdf2_hmac(function, passphrase, salt, iterations, 32)
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    return f"pbkdf2:{function}:{iterations}${encode(salt).decode()}${encode(digest).decode()}"


def credentials(**settings: str | None) -> Credentials | None:
    fields = ("passphrase", "passphrase_hash", "oidc_issuer", "oidc_audience", "oidc_jwks")
    return Credentials.from_settings(*(settings.get(name) for name in fields))


# --- parsing ---------------------------------------------------------------------------------


def test_nothing_configured_is_an_open_deployment():
    assert credentials() is None
    assert load_settings().credentials() is None


@pytest.mark.parametrize("function", ["sha1", "sha256", "sha512"])
@pytest.mark.parametrize("urlsafe", [False, True])
def test_a_pbkdf2_hash_in_the_guides_format_verifies_its_passphrase(function, urlsafe):
    verifier = parse_passphrase_hash(pbkdf2_hash(b"open sesame", function=function, urlsafe=urlsafe))
    assert isinstance(verifier, Pbkdf2Passphrase)
    assert verifier.verify(b"open sesame")
    assert not verifier.verify(b"open sesame ")
    assert not verifier.verify(b"")


@pytest.mark.parametrize("prefix", [b"$2a$", b"$2b$", b"$2y$"])
def test_bcrypt_hashes_of_every_prefix_verify_their_passphrase(prefix):
    hashed = prefix + bcrypt.hashpw(b"open sesame", bcrypt.gensalt(4))[4:]
    verifier = parse_passphrase_hash(hashed.decode())
    assert isinstance(verifier, BcryptPassphrase)
    assert verifier.verify(b"open sesame")
    assert not verifier.verify(b"open sesamE")
    assert not verifier.verify(b"open\x00sesame")


def test_the_plaintext_passphrase_is_read_from_the_environment_and_never_shown(monkeypatch):
    monkeypatch.setenv("SCORER_PASSPHRASE", "s3cret-Phrase")
    settings = load_settings()
    assert "s3cret" not in repr(settings)
    found = settings.credentials()
    assert found is not None and isinstance(found.passphrase, PlainPassphrase)
    assert found.passphrase.verify(b"s3cret-Phrase") and not found.passphrase.verify(b"s3cret-phrase")
    assert "s3cret" not in found.describe() and "s3cret" not in repr(found)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"passphrase": "a", "passphrase_hash": pbkdf2_hash(b"a")},
            "Both SCORER_PASSPHRASE and SCORER_PASSPHRASE_HASH are set",
        ),
        ({"passphrase": ""}, "SCORER_PASSPHRASE is set but empty"),
        ({"passphrase_hash": " "}, "SCORER_PASSPHRASE_HASH is set but empty"),
        ({"passphrase_hash": "md5:abc"}, "SCORER_PASSPHRASE_HASH is neither a bcrypt hash"),
        ({"passphrase_hash": "$2b$12$short"}, "looks like a bcrypt hash but is not one"),
        ({"passphrase_hash": "$2b$03$" + "a" * 53}, "bcrypt hash of cost 3"),
        ({"passphrase_hash": pbkdf2_hash(b"a").replace("sha256", "md5")}, "names the hash function 'md5'"),
        ({"passphrase_hash": pbkdf2_hash(b"a").replace(":1000$", ":lots$")}, "has 'lots' iterations"),
        ({"passphrase_hash": pbkdf2_hash(b"a").replace(":1000$", ":0$")}, "has '0' iterations"),
        ({"passphrase_hash": "pbkdf2:sha256:1000$c2FsdA=="}, "is not of the form pbkdf2:<hashFunc>"),
        ({"passphrase_hash": "pbkdf2:sha256:1000$c2Fs*dA$" + "A" * 43}, "salt 'c2Fs*dA' is not base64"),
        ({"passphrase_hash": "pbkdf2:sha256:1000$c2FsdA$c2hvcnQ="}, "hash is 5 bytes long"),
        ({"oidc_issuer": ISSUER}, "missing SCORER_OIDC_AUDIENCE, SCORER_OIDC_JWKS"),
        (
            {"oidc_issuer": ISSUER, "oidc_audience": AUDIENCE, "oidc_jwks": "/nonexistent/jwks.json"},
            "cannot be read",
        ),
    ],
)
def test_a_bad_credential_setting_is_one_clear_configuration_error(settings, message):
    with pytest.raises(ConfigurationError, match=message.replace("$", r"\$").replace("*", r"\*")) as caught:
        credentials(**settings)
    assert "\n" not in str(caught.value)


def test_a_jwks_file_that_is_not_a_key_set_stops_start_up(tmp_path):
    for content, message in (("{", "is not JSON"), ('{"keys": []}', "is not a JWKS document"),
                             ('{"keys": [{"kty": "nope"}]}', "holds no usable key")):  # fmt: skip
        path = tmp_path / "jwks.json"
        path.write_text(content)
        with pytest.raises(ConfigurationError, match=message):
            credentials(oidc_issuer=ISSUER, oidc_audience=AUDIENCE, oidc_jwks=str(path))


# --- the Bearer header --------------------------------------------------------------------------


def test_a_missing_credential_is_a_401_that_asks_for_a_bearer_one():
    with pytest.raises(Unauthorized) as caught:
        bearer_credential([])
    assert caught.value.status_code == 401
    assert caught.value.headers == {"WWW-Authenticate": "Bearer"}
    assert "Authorization: Bearer" in caught.value.detail


@pytest.mark.parametrize(
    "values", [[b"Basic dXNlcjpwdw=="], [b"Bearer"], [b"Bearer   "], [b"Bearer a", b"Bearer b"]]
)
def test_malformed_authorization_headers_are_refused(values):
    with pytest.raises(Unauthorized) as caught:
        bearer_credential(values)
    assert caught.value.headers == {"WWW-Authenticate": 'Bearer error="invalid_token"'}


def test_the_scheme_is_case_insensitive():
    assert bearer_credential([b"bearer  the-passphrase "]) == b"the-passphrase"


# --- passphrase checks: cached, off the loop, and bounded ------------------------------------------


class CountingPassphrase(Pbkdf2Passphrase):
    calls = 0

    def verify(self, candidate: bytes) -> bool:
        type(self).calls += 1
        return super().verify(candidate)


def counting(iterations: int) -> CountingPassphrase:
    parsed = parse_passphrase_hash(pbkdf2_hash(b"right", iterations=iterations))
    assert isinstance(parsed, Pbkdf2Passphrase)
    CountingPassphrase.calls = 0
    return CountingPassphrase(parsed.function, parsed.iterations, parsed.salt, parsed.digest)


def test_a_slow_hash_is_paid_once_per_credential_not_per_request():
    async def main() -> None:
        auth = Authenticator(Credentials(counting(200_000)))
        shared = await asyncio.gather(*(auth.check([b"Bearer right"]) for _ in range(20)))
        assert shared == [PASSPHRASE] * 20
        for _ in range(20):
            assert await auth.check([b"Bearer right"]) == PASSPHRASE
        assert CountingPassphrase.calls == 1
        for _ in range(5):
            with pytest.raises(Unauthorized, match="the passphrase is wrong"):
                await auth.check([b"Bearer wrong"])
        assert CountingPassphrase.calls == 2
        auth.close()

    asyncio.run(main())


def test_a_slow_hash_does_not_block_the_event_loop():
    async def main() -> None:
        auth = Authenticator(Credentials(counting(2_000_000)))
        ticks = 0
        checking = asyncio.ensure_future(auth.check([b"Bearer right"]))
        started = time.monotonic()
        while not checking.done():
            await asyncio.sleep(0.01)
            ticks += 1
        took = time.monotonic() - started
        assert await checking == PASSPHRASE
        # The loop ran all along: it ticked about every 10 ms while the hash took its time.
        assert took > 0.2, "the check was too fast to tell; raise the iterations"
        assert ticks >= took / 0.05
        auth.close()

    asyncio.run(main())


def test_the_plaintext_passphrase_is_compared_without_a_thread():
    async def main() -> None:
        auth = Authenticator(Credentials(PlainPassphrase(b"right")))
        assert await auth.check([b"Bearer right"]) == PASSPHRASE
        with pytest.raises(Unauthorized):
            await auth.check([b"Bearer righ"])
        assert auth._checker is None

    asyncio.run(main())


# --- OIDC tokens ------------------------------------------------------------------------------------


def make_keys() -> dict:
    """The issuer's keys k1 and k2, and a stranger's."""
    return {
        kid: rsa.generate_private_key(public_exponent=65537, key_size=2048)
        for kid in ("k1", "k2", "stranger")
    }


@pytest.fixture(scope="module")
def keys():
    return make_keys()


def jwks(keys, *kids: str) -> dict:
    documents = []
    for kid in kids:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(keys[kid].public_key()))
        documents.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
    return {"keys": documents}


def token(keys, kid: str = "k1", *, algorithm: str = "RS256", header: dict | None = None, **claims) -> str:
    """A token signed by ``keys[kid]``; its header names that key unless ``header`` says otherwise."""
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300, **claims}
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(
        body, keys[kid], algorithm=algorithm, headers={"kid": kid} if header is None else header
    )


@pytest.fixture
def jwks_file(tmp_path, keys) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(keys, "k1")))
    return path


def oidc_auth(jwks_source: str) -> Authenticator:
    found = credentials(oidc_issuer=ISSUER, oidc_audience=AUDIENCE, oidc_jwks=jwks_source)
    assert found is not None
    return Authenticator(found)


def check(auth: Authenticator, credential: str) -> Verified:
    return asyncio.run(auth.check([f"Bearer {credential}".encode()]))


def assert_passed_as(verified: Verified, subject: str, *, expires: int | None = None) -> None:
    """``verified`` is a token's, with the claims ``token`` minted for ``subject``: the issuer and
    audience configured, and the expiry given (or one within the five minutes ``token`` gives)."""
    assert verified.kind == "token", verified
    claims = verified.token
    assert claims is not None
    assert claims.subject == subject and claims.claims["sub"] == subject
    assert claims.issuer == ISSUER
    assert claims.audience == (AUDIENCE,)
    if expires is None:
        assert time.time() < claims.expires <= time.time() + 300
    else:
        assert claims.expires == expires


def test_a_token_signed_by_the_issuers_key_passes_with_its_claims(jwks_file, keys):
    exp = int(time.time()) + 120
    verified = check(oidc_auth(str(jwks_file)), token(keys, sub="carol", exp=exp, scope="score"))
    assert_passed_as(verified, "carol", expires=exp)
    assert verified.token is not None and verified.token.claims["scope"] == "score"


def test_each_token_checked_at_once_gets_its_own_claims(jwks_file, keys):
    auth = oidc_auth(str(jwks_file))
    subjects = [f"client-{i}" for i in range(8)]

    async def main() -> list[Verified]:
        return await asyncio.gather(
            *(auth.check([f"Bearer {token(keys, sub=s)}".encode()]) for s in subjects)
        )

    for verified, subject in zip(asyncio.run(main()), subjects, strict=True):
        assert_passed_as(verified, subject)


def test_a_token_for_several_audiences_passes_naming_them_all(jwks_file, keys):
    verified = check(oidc_auth(str(jwks_file)), token(keys, aud=["billing", AUDIENCE]))
    assert verified.token is not None and verified.token.audience == ("billing", AUDIENCE)


def test_a_token_without_a_subject_passes_with_none(jwks_file, keys):
    verified = check(oidc_auth(str(jwks_file)), token(keys, sub=None))
    assert verified.kind == "token" and verified.token is not None
    assert verified.token.subject is None and "sub" not in verified.token.claims


def _tampered(keys) -> str:
    header, payload, signature = token(keys).split(".")
    flipped = "A" if signature[10] != "A" else "B"
    return ".".join((header, payload, signature[:10] + flipped + signature[11:]))


def _none_token() -> str:
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT","kid":"k1"}').rstrip(b"=").decode()
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "exp": now + 300}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{payload}."


def _hmac_with_public_key(keys) -> str:
    """The algorithm-confusion attack: HS256 keyed with the issuer's public key."""
    from cryptography.hazmat.primitives import serialization

    public = (
        keys["k1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT","kid":"k1"}').rstrip(b"=")
    claims = {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 300}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    import hmac

    signature = hmac.new(public, header + b"." + payload, hashlib.sha256).digest()
    return (header + b"." + payload + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda keys: token(keys, exp=int(time.time()) - 120), "the token has expired"),
        (lambda keys: token(keys, nbf=int(time.time()) + 600), "the token is not valid yet"),
        (lambda keys: token(keys, aud="someone-else"), "the token is not for this audience"),
        (lambda keys: token(keys, iss="https://evil.test"), "the token is not from the configured issuer"),
        (lambda keys: token(keys, exp=None), "the token has no 'exp' claim"),
        (lambda keys: token(keys, "stranger"), "signed by a key this deployment does not know"),
        (_tampered, "signature is not valid"),
        (lambda keys: _none_token(), "the token's algorithm 'none' is not accepted"),
        (_hmac_with_public_key, "the token's algorithm 'HS256' is not accepted"),
        (lambda keys: "not.a.jwt", "not a well-formed JWT"),
        (lambda keys: "a-passphrase", "the credential is not a JWT"),
    ],
)
def test_bad_tokens_are_refused_with_their_reason(jwks_file, keys, make, reason):
    credential = make(keys)
    with pytest.raises(Unauthorized, match=reason) as caught:
        check(oidc_auth(str(jwks_file)), credential)
    assert credential not in caught.value.detail


def test_a_token_within_the_clock_leeway_still_passes(jwks_file, keys):
    exp = int(time.time()) - 5
    assert_passed_as(check(oidc_auth(str(jwks_file)), token(keys, sub="late", exp=exp)), "late", expires=exp)


def test_either_the_passphrase_or_a_token_passes_when_both_are_configured(jwks_file, keys):
    found = credentials(
        passphrase="right", oidc_issuer=ISSUER, oidc_audience=AUDIENCE, oidc_jwks=str(jwks_file)
    )
    assert found is not None
    auth = Authenticator(found)
    assert check(auth, "right") == PASSPHRASE
    assert_passed_as(check(auth, token(keys, sub="dave")), "dave")
    with pytest.raises(Unauthorized, match="the token has expired"):
        check(auth, token(keys, exp=int(time.time()) - 120))
    with pytest.raises(Unauthorized, match="the passphrase is wrong"):
        check(auth, "wrong")


class JwksServer:
    """The issuer's JWKS URL, on loopback, counting fetches; ``document`` may be swapped (rotation).

    With ``dribble``, a hostile or broken one: the answer's ``"head"`` (status line on) or only its
    ``"body"`` comes one byte every ``pause`` seconds, so no single read ever waits long. With
    ``tls`` (a certificate and its key), the URL is https."""

    def __init__(
        self,
        document: dict,
        *,
        dribble: str | None = None,
        pause: float = 2.0,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.document = document
        self.fetches = 0
        self.stopped = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                body = json.dumps(outer.document).encode()
                head = (
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(body)
                )
                at_once, slowly = {None: (head + body, b""), "head": (b"", head + body)}.get(
                    dribble, (head, body)
                )
                self.wfile.write(at_once)
                for byte in slowly:
                    if outer.stopped.wait(pause):
                        return
                    self.wfile.write(bytes([byte]))

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}/jwks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.stopped.set()  # ends a dribble within one pause
        self.server.shutdown()
        self.server.server_close()


def test_a_jwks_url_is_fetched_once_and_refetched_for_a_rotated_key(keys):
    server = JwksServer(jwks(keys, "k1"))
    try:
        auth = oidc_auth(server.url)
        assert server.fetches == 0  # fetched when first needed, not at start-up

        async def main() -> None:
            for _ in range(5):
                assert_passed_as(await auth.check([f"Bearer {token(keys)}".encode()]), "alice")
            assert server.fetches == 1
            # The issuer rotates to k2: the first token naming k2 refetches (once a minute at most).
            server.document = jwks(keys, "k1", "k2")
            auth._keys._fetched_at = time.monotonic() - 61  # type: ignore[union-attr]
            rotated = await auth.check([f"Bearer {token(keys, 'k2', sub='after-rotation')}".encode()])
            assert_passed_as(rotated, "after-rotation")
            assert server.fetches == 2
            # Forged key ids do not make it fetch again within the minute.
            for _ in range(5):
                with pytest.raises(Unauthorized, match="does not know"):
                    await auth.check([f"Bearer {token(keys, 'stranger')}".encode()])
            assert server.fetches == 2

        asyncio.run(main())
    finally:
        server.close()


# --- found by a red-team pass ---------------------------------------------------------------------


def test_a_flood_of_wrong_passphrases_from_one_client_does_not_lock_out_another():
    async def main() -> None:
        auth = Authenticator(Credentials(counting(200_000)))
        flood = [auth.check([f"Bearer wrong-{i}".encode()], "10.0.0.66") for i in range(80)]
        outcomes = await asyncio.gather(
            *flood, auth.check([b"Bearer right"], "10.0.0.7"), return_exceptions=True
        )
        *flooded, right = outcomes
        assert right == PASSPHRASE, right
        assert {type(o).__name__ for o in flooded} == {"Unauthorized", "TooManyChecks"}
        assert sum(type(o).__name__ == "Unauthorized" for o in flooded) == MAX_PENDING_CHECKS_PER_CLIENT
        refused = next(o for o in flooded if isinstance(o, TooManyChecks))
        assert refused.status_code == 429 and refused.headers == {"Retry-After": "1"}
        auth.close()

    asyncio.run(main())


def test_the_plaintext_passphrase_loses_a_trailing_newline_from_a_secret_file(monkeypatch):
    monkeypatch.setenv("SCORER_PASSPHRASE", "secretpw\n")
    found = load_settings().credentials()
    assert found is not None
    assert asyncio.run(Authenticator(found).check([b"Bearer secretpw"])) == PASSPHRASE


@pytest.mark.parametrize(
    ("hashed", "message"),
    [
        (
            f"pbkdf2:sha256:600000$saltsalt${hashlib.pbkdf2_hmac('sha256', b'pw', b'saltsalt', 600000).hex()}",
            "hexadecimal, as Werkzeug's generate_password_hash writes it",
        ),
        ("$2b$16$" + "a" * 53, "bcrypt hash of cost 16; accepted are 4 to 15"),
    ],
)
def test_hashes_that_could_never_match_or_would_take_too_long_are_refused(hashed, message):
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        credentials(passphrase_hash=hashed)


def test_a_plain_http_jwks_url_is_refused_except_on_loopback():
    with pytest.raises(ConfigurationError, match="SCORER_OIDC_JWKS is a plain http URL"):
        credentials(oidc_issuer=ISSUER, oidc_audience=AUDIENCE, oidc_jwks="http://idp.example.com/jwks")
    assert credentials(oidc_issuer=ISSUER, oidc_audience=AUDIENCE, oidc_jwks="http://127.0.0.1:9/jwks")


def test_a_token_whose_algorithm_family_does_not_fit_its_key_is_a_401_not_a_500(tmp_path, keys):
    from cryptography.hazmat.primitives.asymmetric import ec

    document = jwks(keys, "k1")
    del document["keys"][0]["alg"]  # as some issuers (Azure AD) publish them
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(document))
    now = int(time.time())
    forged = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "exp": now + 300},
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
        headers={"kid": "k1"},
    )
    with pytest.raises(Unauthorized, match="does not match its key"):
        check(oidc_auth(str(path)), forged)
    rsa_pss = check(oidc_auth(str(path)), token(keys, algorithm="PS256", sub="pss"))  # an RSA key: fine
    assert_passed_as(rsa_pss, "pss")


def test_a_key_the_issuer_removed_stops_being_trusted_after_the_keys_lifetime(keys):
    server = JwksServer(jwks(keys, "k1", "k2"))
    try:
        auth = oidc_auth(server.url)

        async def main() -> None:
            assert_passed_as(await auth.check([f"Bearer {token(keys, 'k1')}".encode()]), "alice")
            server.document = jwks(keys, "k2")  # k1 revoked
            cached = await auth.check([f"Bearer {token(keys, 'k1', sub='cached')}".encode()])
            assert_passed_as(cached, "cached")  # within the hour, k1 is still known
            auth._keys._fetched_at -= 3601  # type: ignore[union-attr]
            with pytest.raises(Unauthorized, match="does not know"):
                await auth.check([f"Bearer {token(keys, 'k1')}".encode()])
            assert_passed_as(await auth.check([f"Bearer {token(keys, 'k2', sub='k2')}".encode()]), "k2")
            assert server.fetches == 2

        asyncio.run(main())
    finally:
        server.close()


# --- found by the second red-team pass (issue 23) -------------------------------------------------


@pytest.fixture
def trusted_certificate(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, trusted by this process's default TLS context."""
    from tests.test_tls_http import make_certificate

    certificate, key = make_certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate))
    return certificate, key


@pytest.mark.parametrize(("dribbled", "https"), [("head", False), ("body", False), ("body", True)])
def test_a_jwks_url_that_answers_a_byte_every_two_seconds_is_given_up_at_the_fetch_deadline(
    keys, dribbled, https, request, caplog
):
    """Each read got its byte within the old 5 s timeout, so the first token request waited as
    long as the URL liked (40 s and more); now the whole fetch ends within 5 s."""
    tls = request.getfixturevalue("trusted_certificate") if https else None
    server = JwksServer(jwks(keys, "k1"), dribble=dribbled, tls=tls)
    try:
        auth = oidc_auth(server.url)

        async def main() -> None:
            started = time.monotonic()
            try:
                with pytest.raises(NotReady, match="could not be fetched"):
                    await asyncio.wait_for(auth.check([f"Bearer {token(keys)}".encode()]), 20)
            finally:
                server.close()  # also ends the dribble a fetch with no deadline would still read
            assert time.monotonic() - started < 10  # the 5 s deadline, and room for a loaded machine

        asyncio.run(main())
        assert "no complete answer within 5 s" in caplog.text
        assert server.fetches == 1
    finally:
        server.close()


def without_kid(document: dict, kid: str | None = None) -> dict:
    """``document`` with every key's ``kid`` removed, or all of them set to ``kid``."""
    stripped = [{k: v for k, v in key.items() if k != "kid"} for key in document["keys"]]
    return {"keys": [{**key, "kid": kid} if kid else key for key in stripped]}


@pytest.mark.parametrize("source", ["file", "url", "https"])
@pytest.mark.parametrize("shared_kid", [None, "k1"])
def test_a_jwks_of_two_keys_without_distinct_kids_accepts_tokens_signed_by_either(
    tmp_path, keys, source, shared_kid, request
):
    """Keys were kept by kid, so the last of two keys without one (or with the same one)
    replaced the first, silently, and tokens signed by the first were refused."""
    document = without_kid(jwks(keys, "k1", "k2"), shared_kid)
    header = {"kid": shared_kid} if shared_kid else {}
    tls = request.getfixturevalue("trusted_certificate") if source == "https" else None
    server = JwksServer(document, tls=tls) if source != "file" else None
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(document))
    try:
        auth = oidc_auth(server.url if server else str(path))
        assert_passed_as(check(auth, token(keys, "k1", header=header, sub="by-k1")), "by-k1")
        assert_passed_as(check(auth, token(keys, "k2", header=header, sub="by-k2")), "by-k2")
        with pytest.raises(Unauthorized, match="signature is not valid"):
            check(auth, token(keys, "stranger", header=header))
        with pytest.raises(Unauthorized, match="the token has expired"):  # its claims are still checked
            check(auth, token(keys, "k1", header=header, exp=int(time.time()) - 120))
        if server:
            assert server.fetches == 1
    finally:
        if server:
            server.close()


def test_the_lane_for_new_passphrases_is_short_and_a_verified_one_never_enters_it():
    """Many addresses fill the lane of unchecked credentials: the next new one is refused at once
    (503), while the passphrase that passed before is still recognised at once."""

    async def main() -> None:
        auth = Authenticator(Credentials(counting(500_000)))
        assert await auth.check([b"Bearer right"], "10.0.0.7") == PASSPHRASE
        filling = [
            asyncio.ensure_future(auth.check([f"Bearer wrong-{i}".encode()], f"10.1.0.{i}"))
            for i in range(MAX_PENDING_CHECKS)
        ]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded) as refused:
            await auth.check([b"Bearer also-wrong"], "10.2.0.1")
        assert refused.value.status_code == 503 and refused.value.retry_after == 1
        assert await auth.check([b"Bearer right"], "10.0.0.8") == PASSPHRASE
        # Both were answered while the lane's hashes still ran: neither waited for them.
        assert not any(task.done() for task in filling)
        outcomes = await asyncio.gather(*filling, return_exceptions=True)
        assert all(isinstance(o, Unauthorized) for o in outcomes), outcomes
        assert CountingPassphrase.calls == 1 + MAX_PENDING_CHECKS
        auth.close()

    asyncio.run(main())


def test_a_jwks_url_whose_certificate_is_not_trusted_is_not_fetched(tmp_path, keys, caplog):
    """The deadline's own connection classes keep urllib's default: the certificate is verified."""
    from tests.test_tls_http import make_certificate

    server = JwksServer(jwks(keys, "k1"), tls=make_certificate(tmp_path))
    try:
        with pytest.raises(NotReady, match="could not be fetched"):
            check(oidc_auth(server.url), token(keys))
        assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
    finally:
        server.close()


class Redirector:
    """An HTTP server on loopback answering every GET with a 302 to ``location``."""

    def __init__(self, location: str) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("target", ["ftp", "file"])
def test_a_jwks_redirect_away_from_http_is_refused_without_being_followed(target, keys):
    """urllib's default opener followed a redirect to ftp:// (its FTP handler opens sockets the
    fetch's deadline never sees); only http and https redirects are followed now."""
    import socket
    import urllib.error

    from scorer_core.server.fetch import fetch

    listener = socket.create_server(("127.0.0.1", 0))  # where an FTP client would connect
    listener.settimeout(0.5)
    location = {
        "ftp": f"ftp://127.0.0.1:{listener.getsockname()[1]}/jwks.json",
        "file": "file:///etc/passwd",
    }[target]
    redirector = Redirector(location)
    try:
        started = time.monotonic()
        with pytest.raises(urllib.error.HTTPError) as refused:
            fetch(redirector.url, 5.0, 1 << 20)
        assert time.monotonic() - started < 5  # refused at once, not at a deadline
        assert refused.value.code == 302
        assert re.search(
            r"only http and https redirects are followed|Redirection to url .* is not allowed",
            str(refused.value),
        ), refused.value
        with pytest.raises(TimeoutError):
            listener.accept()  # nothing connected to the redirect's target
    finally:
        redirector.close()
        listener.close()


def test_a_jwks_redirect_to_http_is_still_followed(keys):
    server = JwksServer(jwks(keys, "k1"))
    redirector = Redirector(server.url)
    try:
        assert_passed_as(check(oidc_auth(redirector.url), token(keys, sub="redirected")), "redirected")
        assert server.fetches == 1
    finally:
        redirector.close()
        server.close()

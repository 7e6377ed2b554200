"""What the server relies on in its dependencies beyond their public API, checked for its shape.

docs/architecture.md ("What we rely on in our dependencies") lists each such use and the choice
made for it. Where the choice is to rely on it under an upper version bound, a test here fails
loudly, naming the member, when a release changes it, so that raising the bound is a decision
made with this list in hand rather than a silent loss of a guard. The behaviour itself is tested
over real sockets elsewhere (tests/test_connections_http.py, tests/test_shutdown_http.py).
"""

from __future__ import annotations

import asyncio
import http.client
import importlib.metadata
import inspect
import json
import re
import time
from pathlib import Path

import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from scorer_core.server.connections import guarded_protocol
from scorer_core.server.hosting import GracefulServer

SEE = "see 'What we rely on in our dependencies' in docs/architecture.md"
UVICORN = importlib.metadata.version("uvicorn")

#: HttpToolsProtocol's methods that server/connections.py overrides, and those it calls.
OVERRIDDEN = (
    "__init__",
    "connection_made",
    "connection_lost",
    "data_received",
    "send_400_response",
    "shutdown",
    "on_message_begin",
    "on_headers_complete",
    "on_message_complete",
    "on_response_complete",
    "timeout_keep_alive_handler",
)
CALLED = ("_unset_keepalive_if_required",)
#: HttpToolsProtocol's instance state that server/connections.py reads or writes.
PROTOCOL_STATE = (
    "app",
    "connections",
    "cycle",
    "flow",
    "headers",
    "loop",
    "pipeline",
    "timeout_keep_alive",
    "timeout_keep_alive_task",
    "transport",
)
#: RequestResponseCycle's state that server/connections.py reads or writes.
CYCLE_STATE = (
    "keep_alive",
    "more_body",
    "response_complete",
    "message_event",
    "response_started",
    "transport",
)


async def _app(scope: object, receive: object, send: object) -> None:
    pass


def test_uvicorns_http_protocol_has_every_member_the_guarded_protocol_relies_on():
    for name in OVERRIDDEN + CALLED:
        assert callable(getattr(HttpToolsProtocol, name, None)), (
            f"uvicorn {UVICORN} changed HttpToolsProtocol.{name}, which server/connections.py "
            f"overrides or calls; {SEE}"
        )
    config = uvicorn.Config(_app, log_config=None)
    config.load()
    loop = asyncio.new_event_loop()
    try:
        made = HttpToolsProtocol(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    finally:
        loop.close()
    for name in PROTOCOL_STATE:
        assert hasattr(made, name), (
            f"uvicorn {UVICORN} changed HttpToolsProtocol.{name}, which server/connections.py reads; {SEE}"
        )
    from uvicorn.protocols.http.flow_control import FlowControl  # made.flow is set once connected

    assert callable(getattr(FlowControl, "pause_reading", None)), (
        f"uvicorn {UVICORN} changed FlowControl.pause_reading, which server/connections.py calls; {SEE}"
    )
    cycle_init = inspect.getsource(RequestResponseCycle.__init__)
    for name in CYCLE_STATE:
        assert re.search(rf"self\.{name}\b[^=\n]*=", cycle_init), (
            f"uvicorn {UVICORN} changed RequestResponseCycle.{name}, which server/connections.py reads; {SEE}"
        )
    for name in ("receive", "send"):
        assert callable(getattr(RequestResponseCycle, name, None)), (
            f"uvicorn {UVICORN} changed RequestResponseCycle.{name}, which server/connections.py wraps; {SEE}"
        )


def test_the_guarded_protocol_overrides_only_members_uvicorn_has():
    """A method added to the guarded protocol that uvicorn never calls would be dead code; one
    that overrides a member must be listed above, so that its check runs."""
    from scorer_core.server.connections import ConnectionLimits

    guarded = guarded_protocol(ConnectionLimits(1024, 1.0, 1.0, 1.0, 10))
    own = {name for name in vars(guarded) if callable(vars(guarded)[name]) and not name.startswith("_")}
    overrides = {name for name in own if hasattr(HttpToolsProtocol, name)}
    assert overrides <= set(OVERRIDDEN), f"list {sorted(overrides - set(OVERRIDDEN))} in OVERRIDDEN"


def test_uvicorns_server_calls_the_signal_capture_the_graceful_server_owns():
    # GracefulServer replaces capture_signals so that a stop by signal exits 0; if serve() stopped
    # calling it, uvicorn's own would raise the signal again and every stop would exit 143.
    serve = inspect.getsource(uvicorn.Server.serve)
    assert "self.capture_signals()" in serve, (
        f"uvicorn {UVICORN} no longer calls Server.capture_signals from serve(), which "
        f"server/hosting.py's GracefulServer replaces; {SEE}"
    )
    for name in ("handle_exit", "startup", "should_exit", "started"):
        assert hasattr(GracefulServer(uvicorn.Config(_app), None, 1.0), name), (  # type: ignore[arg-type]
            f"uvicorn {UVICORN} changed Server.{name}, which server/hosting.py uses; {SEE}"
        )


def test_http_client_still_opens_its_socket_through_the_seam_fetch_replaces():
    # server/fetch.py's watchdog sees each socket through HTTPConnection._create_connection; were
    # it bypassed, a JWKS endpoint answering a byte at a time would hold its caller unbounded.
    connect = inspect.getsource(http.client.HTTPConnection.connect)
    assert "self._create_connection(" in connect, (
        f"http.client.HTTPConnection.connect no longer calls _create_connection, which "
        f"server/fetch.py replaces to bound a fetch's time; {SEE}"
    )


# --- PyJWT: public API only ------------------------------------------------------------------------

ISSUER = "https://issuer.example"
AUDIENCE = "scorer"


class RenamedPrivateState(jwt.PyJWK):
    """``PyJWK`` as a release that renamed its private ``_jwk_data`` would be: the public API
    (``key``, ``key_id``, ``key_type``, ``public_key_use``) unchanged."""

    def __init__(self, jwk_data: dict, algorithm: str | None = None) -> None:
        super().__init__(jwk_data, algorithm)
        self._renamed = vars(self).pop("_jwk_data")

    key_id = property(lambda self: self._renamed.get("kid"))  # type: ignore[assignment]
    key_type = property(lambda self: self._renamed.get("kty"))  # type: ignore[assignment]
    public_key_use = property(lambda self: self._renamed.get("use"))  # type: ignore[assignment]


def test_oidc_tokens_pass_whatever_pyjwt_calls_its_private_state(tmp_path: Path, monkeypatch):
    from scorer_core.config.credentials import Credentials
    from scorer_core.server.auth import Authenticator

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}))
    monkeypatch.setattr(jwt, "PyJWK", RenamedPrivateState)
    monkeypatch.setattr(jwt.api_jwk, "PyJWK", RenamedPrivateState)
    found = Credentials.from_settings(None, None, ISSUER, AUDIENCE, str(jwks))
    assert found is not None
    now = int(time.time())
    token = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "exp": now + 300}, key, algorithm="RS256", headers={"kid": "k1"}
    )
    asyncio.run(Authenticator(found).check([f"Bearer {token}".encode()]))  # raises if refused


"""The Gateway behind the real listener, for hostile-input tests: an in-process
:class:`~lhpipe.gateway.server.HttpListener` on a loopback port (a real socket, the real HTTP
server) in a thread of its own, serving routes built from `.lhp` text, with fakes standing in
for Kafka, LittleHorse and the token issuer; and a raw HTTP/1.1 client that sends headers
exactly as given (duplicates, any Latin-1 byte), so nothing between the test and the server
tidies the request.

Signatures and tokens are made here as the providers make them, independently of lhpipe's
code.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from joserfc.jwk import RSAKey

from lhpipe.core import metrics
from lhpipe.core.plans import Plan
from lhpipe.core.senders import Sender
from lhpipe.gateway.gateway import Gateway
from lhpipe.gateway.oauth import IssuerDirectory
from lhpipe.gateway.server import EngineApp, HttpListener
from lhpipe.kinds import compile_program, load_texts
from lhpipe.settings import Settings
from lhpipe.syntax import ast

GITHUB_SECRET = "it's-a-secret-to-everybody"
STRIPE_SECRET = "whsec_test_secret_for_stripe"
STANDARD_KEY = b"0123456789abcdef0123456789abcdef"
STANDARD_SECRET = "whsec_" + base64.b64encode(STANDARD_KEY).decode()
CUSTOM_SECRET = "partner-secret"
ISSUER = "https://idp.example.com/realms/lhpipe"
JWKS_URI = ISSUER + "/protocol/openid-connect/certs"
JSON = "application/json"

_PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SIGNING_KEY = RSAKey.import_key(_PRIVATE, {"kid": "rsa-1", "use": "sig", "alg": "RS256"})

#: One webhook per auth kind (topic mode, `body = json`), and a direct-mode GitHub webhook
#: whose pipeline dead-letters what LittleHorse refuses.
PROGRAM = f"""
webhook open {{ path = "/none"  auth = none  body = json  topic = "t-none" }}
webhook gh {{ path = "/github"  body = json  topic = "t-github"
  auth = hmac {{ preset = github  secret = env("GH") }} }}
webhook st {{ path = "/stripe"  body = json  topic = "t-stripe"
  auth = hmac {{ preset = stripe  secret = env("ST") }} }}
webhook sw {{ path = "/standard"  body = json  topic = "t-standard"
  auth = hmac {{ preset = standard_webhooks  secret = env("SW") }} }}
webhook partner {{ path = "/custom"  body = json  topic = "t-custom"
  auth = hmac {{ header = "X-Signature"  prefix = "sha512="  algorithm = sha512
                 encoding = base64  secret = env("CU") }} }}
webhook kyc {{ path = "/oauth"  body = json  topic = "t-oauth"
  auth = oauth {{ issuer = "{ISSUER}"  audience = "lhpipe"  scopes = ["kyc:write"] }} }}
webhook ghd {{ path = "/github-direct"  body = json
  auth = hmac {{ preset = github  secret = env("GH") }} }}
pipeline direct {{ from webhook ghd  run_wf "flow" {{}}  on_error {{ dead_letter = "dlq" }} }}
"""
ENV = {"GH": GITHUB_SECRET, "ST": STRIPE_SECRET, "SW": STANDARD_SECRET, "CU": CUSTOM_SECRET}
ROUTE_NAMES = {
    "/none": "open",
    "/github": "gh",
    "/stripe": "st",
    "/standard": "sw",
    "/custom": "partner",
    "/oauth": "kyc",
    "/github-direct": "ghd",
}


# -- fakes ---------------------------------------------------------------------------------------


@dataclass
class Produced:
    topic: str
    value: bytes | None
    key: bytes | None
    headers: dict[str, bytes | None]


class FakeProducer:
    """Acknowledges at once (or raises ``fail``); keeps what reached it."""

    def __init__(self) -> None:
        self.records: list[Produced] = []
        self.fail: Exception | None = None

    async def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes | None]] = (),
    ) -> None:
        if self.fail is not None:
            raise self.fail
        self.records.append(Produced(topic, value, key, dict(headers)))


class FakeSender:
    """LittleHorse: keeps the plans it was sent, or raises ``outcome``."""

    def __init__(self) -> None:
        self.plans: list[Plan] = []
        self.outcome: Exception | None = None

    async def send(self, plan: Plan) -> None:
        if self.outcome is not None:
            raise self.outcome
        self.plans.append(plan)

    async def close(self) -> None:
        pass

    def connected(self) -> bool:
        return True


@dataclass
class FakeClients:
    sender_: FakeSender = field(default_factory=FakeSender)
    shared_producer: FakeProducer = field(default_factory=FakeProducer)  # dead letters

    def kafka_producer(self) -> FakeProducer:
        return self.shared_producer

    def schema_registry(self) -> Any:
        raise AssertionError("no schema body here")

    def sender(self, kind: ast.TargetKind) -> Sender:
        return self.sender_


def issuer_documents(request: httpx.Request) -> httpx.Response:
    url = str(request.url)
    if url == ISSUER + "/.well-known/openid-configuration":
        return httpx.Response(200, json={"issuer": ISSUER, "jwks_uri": JWKS_URI})
    if url == JWKS_URI:
        return httpx.Response(200, json={"keys": [SIGNING_KEY.as_dict(private=False)]})
    return httpx.Response(404)


class LogRecords(logging.Handler):
    """Every log record of the process while installed (any thread)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def tracebacks(self) -> list[str]:
        """The records that carry a traceback (or print one in their text)."""
        return [
            f"{r.name}: {r.getMessage()[:200]}"
            for r in self.records
            if r.exc_info or r.exc_text or r.stack_info or "Traceback" in r.getMessage()
        ]


# -- the running listener ------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class LiveGateway:
    """The Gateway of :data:`PROGRAM` served by a real :class:`HttpListener` (use
    :func:`live_gateway`)."""

    def __init__(self) -> None:
        self.producer = FakeProducer()
        self.clients = FakeClients()
        self.logs = LogRecords()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._listener: HttpListener | None = None
        self._gateway: Gateway | None = None

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    async def _start(self) -> None:
        loaded = load_texts({"hostile.lhp": PROGRAM})
        program = loaded.program
        assert program is not None, [d.message for d in loaded.diagnostics]
        gateway = Gateway(
            compile_program(program, {}),
            program,
            Settings(environ=ENV),
            self.clients,
            producer=self.producer,
        )
        gateway.issuers = IssuerDirectory(
            httpx.AsyncClient(transport=httpx.MockTransport(issuer_documents))
        )
        gateway.build()
        assert not gateway.failed, gateway.failed
        app = EngineApp(lambda: [])
        gateway.install(app)
        listener = HttpListener(app, host="127.0.0.1", port=0)
        await listener.start()
        self._gateway, self._listener, self.port = gateway, listener, listener.port

    async def _stop(self) -> None:
        if self._listener is not None:
            await self._listener.stop()
        if self._gateway is not None:
            await self._gateway.issuers.client.aclose()

    def start(self) -> None:
        self._thread.start()
        self._run(self._start())

    def stop(self) -> None:
        try:
            self._run(self._stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    def request(
        self,
        path: str,
        headers: Sequence[tuple[str | bytes, str | bytes]] = (),
        body: bytes = b"",
        *,
        method: str = "POST",
    ) -> Answer:
        """One request on a new connection, its header lines exactly as given (a
        ``Content-Length`` of the body is added unless given)."""
        lines = [f"{method} {path} HTTP/1.1".encode(), b"host: 127.0.0.1", b"connection: close"]
        names = set()
        for name, value in headers:
            name_bytes = _encoded(name)
            value_bytes = _encoded(value)
            names.add(name_bytes.lower())
            lines.append(name_bytes + b": " + value_bytes)
        if b"content-length" not in names:
            lines.append(b"content-length: %d" % len(body))
        data = b"\r\n".join(lines) + b"\r\n\r\n" + body
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as conn:
            conn.sendall(data)
            received = bytearray()
            while chunk := conn.recv(65536):
                received += chunk
        head, _, content = bytes(received).partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        answer_headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            answer_headers[name.strip().lower()] = value.strip()
        return Answer(int(status_line.split()[1]), answer_headers, content)

    def route(self, path: str) -> Any:
        """The route object serving ``path``."""
        assert self._gateway is not None
        return self._gateway.routes[path]

    def count(self, path: str, status: int) -> float:
        """``lhpipe_http_requests_total`` of the webhook at ``path`` for ``status``."""
        value = metrics.HTTP_REQUESTS.labels(ROUTE_NAMES[path], str(status)).value
        return float(value)


def _encoded(text: str | bytes) -> bytes:
    """Latin-1 when the text is, else UTF-8 (what a client sending non-Latin text does)."""
    if isinstance(text, bytes):
        return text
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


@contextmanager
def live_gateway(level: int = logging.INFO) -> Iterator[LiveGateway]:
    """A started :class:`LiveGateway`, lhpipe logging at ``level`` into its :attr:`logs`."""
    live = LiveGateway()
    lhpipe_logger = logging.getLogger("lhpipe")
    previous = lhpipe_logger.level
    root = logging.getLogger()
    root.addHandler(live.logs)
    lhpipe_logger.setLevel(level)
    try:
        live.start()
        try:
            yield live
        finally:
            live.stop()
    finally:
        root.removeHandler(live.logs)
        lhpipe_logger.setLevel(previous)


# -- signing as the providers do -----------------------------------------------------------------


def github_headers(body: bytes, delivery: str = "72d3162e-cc78-11e3-81ab-4c9367dc0958") -> Any:
    digest = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return [
        ("content-type", JSON),
        ("x-hub-signature-256", f"sha256={digest}"),
        ("x-github-delivery", delivery),
    ]


def stripe_signature(body: bytes, timestamp: str | None = None) -> str:
    ts = str(int(time.time())) if timestamp is None else timestamp
    digest = hmac.new(STRIPE_SECRET.encode(), f"{ts}.".encode() + body, hashlib.sha256)
    return f"t={ts},v1={digest.hexdigest()}"


def standard_headers(body: bytes, message_id: str = "msg_1", timestamp: str | None = None) -> Any:
    ts = str(int(time.time())) if timestamp is None else timestamp
    signed = f"{message_id}.{ts}.".encode() + body
    signature = base64.b64encode(hmac.new(STANDARD_KEY, signed, hashlib.sha256).digest())
    return [
        ("content-type", JSON),
        ("webhook-id", message_id),
        ("webhook-timestamp", ts),
        ("webhook-signature", "v1," + signature.decode()),
    ]


def custom_signature(body: bytes) -> str:
    digest = hmac.new(CUSTOM_SECRET.encode(), body, hashlib.sha512).digest()
    return "sha512=" + base64.b64encode(digest).decode()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed_token(header: Mapping[str, Any] | bytes, claims: Mapping[str, Any] | bytes) -> str:
    """A JWS over any header and payload (JSON-encoded unless given as bytes), RS256-signed
    with the issuer's key whatever the header says: its signature is valid."""
    header_bytes = header if isinstance(header, bytes) else json.dumps(header).encode()
    claims_bytes = claims if isinstance(claims, bytes) else json.dumps(claims).encode()
    signing_input = f"{b64url(header_bytes)}.{b64url(claims_bytes)}"
    signature = _PRIVATE.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def good_claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": "lhpipe",
        "scope": "kyc:write",
        "iat": now,
        "exp": now + 300,
    }
    claims.update(changes)
    return claims


def good_token(**changes: Any) -> str:
    return signed_token({"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}, good_claims(**changes))

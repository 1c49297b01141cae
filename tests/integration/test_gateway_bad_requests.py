"""Bad requests against the webhooks of a real `lhpipe run`: each gets its status (and the
header that status needs), and nothing any of them sent reaches Kafka. Tokens come from the
stack's Keycloak (real ones, and forgeries of them) and from a local issuer whose key the test
holds (for tokens Keycloak will not issue: expired, not yet valid, from another issuer).

A body over ``max_body`` is refused before the server has read it: the 413 arrives while the
client is still sending, and the connection is closed.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from engine_run import LhpipeRun, read_all, unique, write_pipelines
from gateway_support import (
    CUSTOM_SECRET,
    GITHUB_SECRET,
    JSON,
    STANDARD_SECRET,
    STRIPE_SECRET,
    LocalIssuer,
    bearer,
    custom_headers,
    github_headers,
    header_map,
    hs256_with,
    keycloak_public_pem,
    keycloak_token,
    standard_headers,
    stripe_headers,
    tampered,
    unsigned,
)

from lhpipe.stack.addresses import StackAddresses

pytestmark = pytest.mark.integration

APPLICANT = b'{"applicant_id": "ann-1", "age": 30}'


@dataclass
class Gateway:
    url: str
    port: int
    topic: str
    stack: StackAddresses
    issuer: LocalIssuer
    run: LhpipeRun


@pytest.fixture(scope="module")
def gateway(stack: StackAddresses, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    topic = unique("g2-bad")
    issuer = LocalIssuer()
    folder = write_pipelines(
        tmp_path_factory.mktemp("bad-requests"),
        f"""
schema Applicant {{ applicant_id: string  age: int  note: string? }}

webhook kyc {{
  path = "/hooks/kyc"
  auth = oauth {{ issuer = "{stack.keycloak_issuer}"  audience = "lhpipe"  scopes = ["kyc:write"] }}
  body = Applicant
  topic = "{topic}"
}}
webhook kyc_other_audience {{
  path = "/hooks/kyc-other"
  auth = oauth {{ issuer = "{stack.keycloak_issuer}"  audience = "someone-else" }}
  topic = "{topic}"
}}
webhook local {{
  path = "/hooks/local"
  auth = oauth {{ issuer = "{issuer.url}"  audience = "lhpipe"  scopes = ["kyc:write"] }}
  topic = "{topic}"
}}
webhook gh {{
  path = "/hooks/github"
  auth = hmac {{ preset = github  secret = env("GH_SECRET") }}
  topic = "{topic}"
}}
webhook stripe {{
  path = "/hooks/stripe"
  auth = hmac {{ preset = stripe  secret = env("STRIPE_SECRET") }}
  topic = "{topic}"
}}
webhook sw {{
  path = "/hooks/sw"
  auth = hmac {{ preset = standard_webhooks  secret = env("SW_SECRET") }}
  body = Applicant
  max_body = 1KiB
  topic = "{topic}"
}}
webhook partner {{
  path = "/hooks/partner"
  auth = hmac {{ header = "X-Signature"  algorithm = sha512  encoding = base64
                 secret = env("CUSTOM_SECRET") }}
  body = bytes
  topic = "{topic}"
}}
""",
    )
    env = {
        "GH_SECRET": GITHUB_SECRET,
        "STRIPE_SECRET": STRIPE_SECRET,
        "SW_SECRET": STANDARD_SECRET,
        "CUSTOM_SECRET": CUSTOM_SECRET,
    }
    with issuer.serving(), LhpipeRun(folder, env=env) as run:
        run.wait_ready()
        url = f"http://127.0.0.1:{run.port}"
        yield Gateway(url, run.port, topic, stack, issuer, run)


@dataclass(frozen=True)
class Row:
    what: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    method: str = "POST"
    # A header the answer must carry (WWW-Authenticate on 401, Allow on 405...).
    must_have: str | None = None


def bad_requests(g: Gateway) -> list[Row]:
    stack, issuer = g.stack, g.issuer
    good = keycloak_token(stack, scope=stack.keycloak_scope)
    no_scope = keycloak_token(stack)
    now = int(time.time())
    sig = "www-authenticate"
    kyc, local = "/hooks/kyc", "/hooks/local"
    gh, stripe, sw, partner = "/hooks/github", "/hooks/stripe", "/hooks/sw", "/hooks/partner"
    gh_ok = github_headers(b"{}", "d-1")
    return [
        # -- bearer tokens from Keycloak, and forgeries of them
        Row("no Authorization", kyc, {"content-type": JSON}, APPLICANT, 401, must_have=sig),
        Row(
            "Basic credentials",
            kyc,
            {"authorization": "Basic dTpw", "content-type": JSON},
            APPLICANT,
            401,
            must_have=sig,
        ),
        Row(
            "a bearer token that is not a JWT",
            kyc,
            bearer("not-a-token"),
            APPLICANT,
            401,
            must_have=sig,
        ),
        Row(
            "a Keycloak token without kyc:write",
            kyc,
            bearer(no_scope),
            APPLICANT,
            403,
            must_have=sig,
        ),
        Row("alg=none", kyc, bearer(unsigned(good)), APPLICANT, 401, must_have=sig),
        Row(
            "HS256 signed with Keycloak's public key",
            kyc,
            bearer(hs256_with(good, keycloak_public_pem(stack))),
            APPLICANT,
            401,
            must_have=sig,
        ),
        Row(
            "a kid Keycloak does not have",
            kyc,
            bearer(issuer.token(iss=stack.keycloak_issuer)),
            APPLICANT,
            401,
            must_have=sig,
        ),
        Row(
            "a tampered payload (scope added)",
            kyc,
            bearer(tampered(no_scope, scope="kyc:write")),
            APPLICANT,
            401,
            must_have=sig,
        ),
        Row(
            "a tampered payload (subject changed)",
            kyc,
            bearer(tampered(good, sub="admin")),
            APPLICANT,
            401,
            must_have=sig,
        ),
        Row(
            "a token for another audience",
            "/hooks/kyc-other",
            bearer(good),
            b"{}",
            401,
            must_have=sig,
        ),
        # -- tokens of the local issuer
        Row(
            "expired",
            local,
            bearer(issuer.token(exp=now - 3600, iat=now - 4000)),
            b"{}",
            401,
            must_have=sig,
        ),
        Row(
            "not yet valid", local, bearer(issuer.token(nbf=now + 3600)), b"{}", 401, must_have=sig
        ),
        Row(
            "wrong issuer",
            local,
            bearer(issuer.token(iss="http://127.0.0.1:1/evil")),
            b"{}",
            401,
            must_have=sig,
        ),
        Row(
            "wrong audience",
            local,
            bearer(issuer.token(aud="someone-else")),
            b"{}",
            401,
            must_have=sig,
        ),
        Row(
            "missing scope",
            local,
            bearer(issuer.token(scope="kyc:read")),
            b"{}",
            403,
            must_have=sig,
        ),
        Row("no exp", local, bearer(issuer.token(exp=None)), b"{}", 401, must_have=sig),
        Row(
            "signed by another key with the same kid",
            local,
            bearer(issuer.token(key=issuer.other_key)),
            b"{}",
            401,
            must_have=sig,
        ),
        # -- bodies behind a valid Keycloak token
        Row(
            "schema violation: age is text",
            kyc,
            bearer(good),
            b'{"applicant_id": "a", "age": "x"}',
            400,
        ),
        Row("schema violation: missing field", kyc, bearer(good), b'{"age": 3}', 400),
        Row(
            "schema violation: unknown field",
            kyc,
            bearer(good),
            b'{"applicant_id": "a", "age": 3, "nte": "x"}',
            400,
        ),
        Row("schema violation: an array", kyc, bearer(good), b"[1, 2]", 400),
        Row("malformed JSON", kyc, bearer(good), b'{"applicant_id": ', 400),
        Row("empty body", kyc, bearer(good), b"", 400),
        Row("text/plain", kyc, {**bearer(good), "content-type": "text/plain"}, APPLICANT, 415),
        Row("no Content-Type", kyc, {"authorization": f"Bearer {good}"}, APPLICANT, 415),
        Row(
            "JSON in Latin-1",
            kyc,
            {**bearer(good), "content-type": f"{JSON}; charset=latin-1"},
            APPLICANT,
            415,
        ),
        Row("GET", kyc, bearer(good), b"", 405, method="GET", must_have="allow"),
        Row("PUT", kyc, bearer(good), APPLICANT, 405, method="PUT", must_have="allow"),
        # -- github
        Row("github: no signature", gh, {"content-type": JSON}, b"{}", 401, must_have=sig),
        Row(
            "github: wrong secret",
            gh,
            github_headers(b"{}", "d-2", secret="guess"),
            b"{}",
            401,
            must_have=sig,
        ),
        Row(
            "github: signature of another body",
            gh,
            github_headers(b"{ }", "d-3"),
            b"{}",
            401,
            must_have=sig,
        ),
        Row(
            "github: sha1 header only",
            gh,
            {"content-type": JSON, "x-hub-signature": gh_ok["x-hub-signature-256"]},
            b"{}",
            401,
            must_have=sig,
        ),
        Row(
            "github: sha1= prefix",
            gh,
            {
                **gh_ok,
                "x-hub-signature-256": gh_ok["x-hub-signature-256"].replace("sha256=", "sha1="),
            },
            b"{}",
            401,
            must_have=sig,
        ),
        Row(
            "github: valid, but an Idempotency-Key of 300 characters",
            gh,
            {**github_headers(b"{}", ""), "idempotency-key": "x" * 300},
            b"{}",
            400,
        ),
        # -- stripe
        Row("stripe: no signature", stripe, {"content-type": JSON}, b"{}", 401, must_have=sig),
        Row(
            "stripe: signed 10 minutes ago",
            stripe,
            stripe_headers(b"{}", now - 600),
            b"{}",
            401,
            must_have=sig,
        ),
        Row(
            "stripe: signed 10 minutes ahead",
            stripe,
            stripe_headers(b"{}", now + 600),
            b"{}",
            401,
            must_have=sig,
        ),
        Row(
            "stripe: wrong secret",
            stripe,
            stripe_headers(b"{}", secret="whsec_guess"),
            b"{}",
            401,
            must_have=sig,
        ),
        Row(
            "stripe: v0 only",
            stripe,
            {
                "content-type": JSON,
                "stripe-signature": stripe_headers(b"{}")["stripe-signature"].replace("v1=", "v0="),
            },
            b"{}",
            401,
            must_have=sig,
        ),
        # -- standard webhooks
        Row(
            "standard webhooks: no signature",
            sw,
            {"content-type": JSON, "webhook-id": "msg_1", "webhook-timestamp": str(now)},
            APPLICANT,
            401,
            must_have=sig,
        ),
        Row(
            "standard webhooks: signed 10 minutes ago",
            sw,
            standard_headers(APPLICANT, "msg_2", now - 600),
            APPLICANT,
            401,
            must_have=sig,
        ),
        Row(
            "standard webhooks: wrong key",
            sw,
            standard_headers(APPLICANT, "msg_3", key=b"x" * 32),
            APPLICANT,
            401,
            must_have=sig,
        ),
        Row(
            "standard webhooks: id changed after signing",
            sw,
            {**standard_headers(APPLICANT, "msg_4"), "webhook-id": "msg_5"},
            APPLICANT,
            401,
            must_have=sig,
        ),
        Row(
            "standard webhooks: schema violation",
            sw,
            standard_headers(b'{"applicant_id": 7, "age": 1}', "msg_6"),
            b'{"applicant_id": 7, "age": 1}',
            400,
        ),
        Row(
            "standard webhooks: Content-Length over max_body",
            sw,
            standard_headers(b"{}", "msg_7"),
            b"{" + b" " * 2000 + b"}",
            413,
        ),
        # -- custom hmac
        Row(
            "custom: no signature",
            partner,
            {"content-type": "text/plain"},
            b"data",
            401,
            must_have=sig,
        ),
        Row(
            "custom: wrong secret",
            partner,
            custom_headers(b"data", secret="guess"),
            b"data",
            401,
            must_have=sig,
        ),
        Row(
            "custom: hex instead of base64",
            partner,
            {"x-signature": custom_headers(b"data")["x-signature"].encode().hex()},
            b"data",
            401,
            must_have=sig,
        ),
        # -- paths
        Row("unknown path", "/hooks/nope", gh_ok, b"{}", 404),
        Row("unknown path, GET", "/hooks", {}, b"", 404, method="GET"),
        Row("a path that differs in case", "/hooks/GitHub", gh_ok, b"{}", 404),
    ]


def answer_of(client: httpx.Client, g: Gateway, row: Row) -> httpx.Response:
    return client.request(row.method, g.url + row.path, headers=row.headers, content=row.body)


def test_every_bad_request_gets_its_status_and_nothing_reaches_kafka(gateway: Gateway) -> None:
    rows = bad_requests(gateway)
    assert len(rows) >= 40
    wrong = []
    with httpx.Client(timeout=30) as client:
        for row in rows:
            response = answer_of(client, gateway, row)
            problem = response.headers.get("content-type", "")
            if (
                response.status_code != row.status
                or problem != "application/problem+json"
                or (row.must_have is not None and row.must_have not in response.headers)
            ):
                wrong.append(
                    f"{row.what}: {response.status_code} {dict(response.headers)} "
                    f"{response.text[:200]}"
                )
        # Controls: one good request per webhook, after the bad ones, each with an id to
        # look for. The topic must hold exactly these.
        controls = good_requests(gateway)
        for what, path, headers, body, webhook_id in controls:
            response = client.post(gateway.url + path, headers=headers, content=body)
            if response.status_code != 202 or response.json() != {"id": webhook_id}:
                wrong.append(f"control {what}: {response.status_code} {response.text[:200]}")
    assert not wrong, "\n".join(wrong)
    messages = read_all(gateway.stack, gateway.topic, expected=len(controls))
    found = sorted(header_map(m)["lhpipe.webhook.id"].decode() for m in messages)
    assert found == sorted(c[4] for c in controls)


def good_requests(g: Gateway) -> list[tuple[str, str, dict[str, str], bytes, str]]:
    """(what, path, headers, body, the webhook id the answer and the record carry)."""
    token = keycloak_token(g.stack, scope=g.stack.keycloak_scope)
    key = unique("control")

    def keyed(headers: dict[str, str], suffix: str) -> dict[str, str]:
        return {**headers, "idempotency-key": f"{key}-{suffix}"}

    delivery = str(uuid.uuid4())
    event = json.dumps({"id": f"evt_{key}"}).encode()
    message = f"msg_{key}"
    return [
        ("kyc", "/hooks/kyc", keyed(bearer(token), "kyc"), APPLICANT, f"{key}-kyc"),
        ("local", "/hooks/local", keyed(bearer(g.issuer.token()), "local"), b"{}", f"{key}-local"),
        ("github", "/hooks/github", github_headers(b"{}", delivery), b"{}", delivery),
        ("stripe", "/hooks/stripe", stripe_headers(event), event, f"evt_{key}"),
        ("sw", "/hooks/sw", standard_headers(APPLICANT, message), APPLICANT, message),
        ("partner", "/hooks/partner", keyed(custom_headers(b"data"), "p"), b"data", f"{key}-p"),
    ]


# -- a body over max_body is not read --------------------------------------------------------


def request_head(g: Gateway, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{g.port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def send_until_answered(
    sock: socket.socket, next_chunk: Callable[[], bytes], limit: int
) -> tuple[int, bytes]:
    """Send chunks until the server answers (or ``limit`` bytes went out); returns the bytes
    sent and the answer read so far."""
    sock.setblocking(False)
    sent = 0
    answer = b""
    while sent < limit:
        try:
            answer += sock.recv(65536)
            break
        except BlockingIOError:
            pass
        try:
            sent += sock.send(next_chunk())
        except BlockingIOError:
            time.sleep(0.01)  # the server is not reading: its buffers are full
        except (BrokenPipeError, ConnectionResetError):
            break
        time.sleep(0.002)
    sock.setblocking(True)
    sock.settimeout(10)
    try:
        while b"\r\n\r\n" not in answer:
            more = sock.recv(65536)
            if not more:
                break
            answer += more
    except (ConnectionResetError, TimeoutError):
        pass
    return sent, answer


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(10)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@dataclass
class Chunk:
    size: int

    def __call__(self) -> bytes:
        return b" " * self.size


def test_a_declared_50_mb_body_is_refused_before_the_client_sends_it(gateway: Gateway) -> None:
    declared = 50 * 1024 * 1024
    headers = {
        **standard_headers(b"{}", "msg-big"),
        "content-length": str(declared),
    }
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(request_head(gateway, "/hooks/sw", headers))
        sent, answer = send_until_answered(sock, Chunk(16 * 1024), declared)

        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
        assert b"connection: close" in answer.lower()
        assert sent < declared // 10, f"the client sent {sent} bytes before the answer"
        assert closed_by_server(sock)
    assert_not_produced(gateway, "msg-big")


def test_a_chunked_body_growing_past_max_body_is_refused_before_it_ends(
    gateway: Gateway,
) -> None:
    """No Content-Length: the server counts while reading and stops at the limit."""
    headers = {**standard_headers(b"{}", "msg-chunked"), "transfer-encoding": "chunked"}
    piece = b" " * 256
    frame = b"%x\r\n" % len(piece) + piece + b"\r\n"
    total = 50 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(request_head(gateway, "/hooks/sw", headers) + b"1\r\n{\r\n")
        sent, answer = send_until_answered(sock, lambda: frame, total)

        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
        assert sent < total // 10, f"the client sent {sent} bytes before the answer"
        assert closed_by_server(sock)
    assert_not_produced(gateway, "msg-chunked")


def assert_not_produced(gateway: Gateway, webhook_id: str) -> None:
    """``webhook_id`` is not in the topic, read up to a control request sent after it (a
    route answers 202 once Kafka has the record)."""
    control = unique("msg-control")
    answer = httpx.post(
        gateway.url + "/hooks/sw",
        headers=standard_headers(APPLICANT, control),
        content=APPLICANT,
        timeout=30,
    )
    assert answer.status_code == 202, answer.text
    messages: list[Any] = read_all(gateway.stack, gateway.topic, expected=1)
    ids = {header_map(m)["lhpipe.webhook.id"] for m in messages}
    assert control.encode() in ids
    assert webhook_id.encode() not in ids

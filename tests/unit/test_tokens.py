"""lhpipe's client-credentials tokens (lhpipe/clients/tokens.py): renewed at 80 % of their
lifespan, one fetch at a time, the current token kept while a renewal fails, refusals told
from outages, and never the secret in an error or a repr. The token endpoint is httpx's
MockTransport; the clock is the test's."""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc
import httpx
import pytest

from lhpipe.clients.littlehorse import LittleHorsePausedError, LittleHorseTransientError, classify
from lhpipe.clients.tokens import (
    ClientCredentials,
    GrpcTokenPlugin,
    TokenRefused,
    TokenUnavailable,
)

URL = "http://idp.test/token"
SECRET = "s3cret-value-123"


class Endpoint:
    """A token endpoint that counts its calls; ``answer`` decides each reply."""

    def __init__(self, lifespan: float = 60.0) -> None:
        self.calls = 0
        self.lifespan = lifespan
        self.answer: Any = None
        self.forms: list[bytes] = []
        self.delay = 0.0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        self.forms.append(request.content)
        if self.delay:
            time.sleep(self.delay)
        if self.answer is not None:
            answer = self.answer
            if isinstance(answer, Exception):
                raise answer
            return answer
        return httpx.Response(
            200, json={"access_token": f"token-{self.calls}", "expires_in": self.lifespan}
        )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def credentials(endpoint: Endpoint, clock: Clock) -> ClientCredentials:
    return ClientCredentials(
        URL, "lhpipe", SECRET, clock=clock, transport=httpx.MockTransport(endpoint)
    )


def test_a_token_is_kept_until_80_percent_of_its_life_then_renewed() -> None:
    endpoint, clock = Endpoint(lifespan=60), Clock()
    tokens = credentials(endpoint, clock)

    first = tokens.token()
    clock.now += 47.9
    still = tokens.token()
    clock.now += 0.2  # 48.1 s: past 80 % of 60 s
    renewed = tokens.token()

    assert (first, still, renewed) == ("token-1", "token-1", "token-2")
    assert endpoint.calls == 2
    assert b"grant_type=client_credentials" in endpoint.forms[0]


def test_concurrent_callers_share_one_fetch() -> None:
    endpoint, clock = Endpoint(), Clock()
    endpoint.delay = 0.2
    tokens = credentials(endpoint, clock)
    got: list[str] = []
    threads = [threading.Thread(target=lambda: got.append(tokens.token())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert got == ["token-1"] * 8
    assert endpoint.calls == 1


def test_a_failed_renewal_keeps_the_valid_token_then_fails_once_it_expired() -> None:
    endpoint, clock = Endpoint(lifespan=60), Clock()
    tokens = credentials(endpoint, clock)
    tokens.token()
    endpoint.answer = httpx.ConnectError("connection refused")

    clock.now += 50  # renewal due, the endpoint down: the token is valid 10 s more
    kept = tokens.token()
    clock.now += 9
    kept_again = tokens.token()
    clock.now += 2  # expired
    with pytest.raises(TokenUnavailable):
        tokens.token()

    assert kept == kept_again == "token-1"
    assert endpoint.calls == 4


@pytest.mark.parametrize("status", [400, 401, 403])
def test_a_refusal_is_told_from_an_outage_and_names_no_secret(status: int) -> None:
    endpoint, clock = Endpoint(), Clock()
    endpoint.answer = httpx.Response(
        status, json={"error": "unauthorized_client", "error_description": f"bad {SECRET}"}
    )
    tokens = credentials(endpoint, clock)

    with pytest.raises(TokenRefused) as refused:
        tokens.token()

    message = str(refused.value)
    assert f"HTTP {status}: unauthorized_client" in message
    assert "'lhpipe'" in message
    assert SECRET not in message and SECRET not in repr(tokens)


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(500, text="oops"),
        httpx.Response(200, text="not json"),
        httpx.Response(200, json={"token_type": "bearer"}),
        httpx.Response(200, json={"access_token": ""}),
        httpx.ReadTimeout("slow"),
    ],
)
def test_an_endpoint_that_gives_no_token_is_unavailable(answer: Any) -> None:
    endpoint, clock = Endpoint(), Clock()
    endpoint.answer = answer
    with pytest.raises(TokenUnavailable):
        credentials(endpoint, clock).token()


def test_the_grpc_plugin_sends_a_bearer_token_or_fails_the_call() -> None:
    endpoint, clock = Endpoint(), Clock()
    plugin = GrpcTokenPlugin(credentials(endpoint, clock))
    calls: list[tuple[Any, Any]] = []

    plugin(None, lambda metadata, error: calls.append((metadata, error)))  # type: ignore[arg-type]
    endpoint.answer = httpx.Response(401, json={"error": "unauthorized_client"})
    clock.now += 100
    plugin(None, lambda metadata, error: calls.append((metadata, error)))  # type: ignore[arg-type]

    assert calls[0] == ((("authorization", "Bearer token-1"),), None)
    assert calls[1][0] is None and isinstance(calls[1][1], TokenRefused)


def test_a_call_that_got_no_token_is_paused_when_refused_and_transient_when_unreachable() -> None:
    prefix = "Getting metadata from plugin failed with error: "
    refused = TokenRefused(
        "OAuth token for lhpipe from http://idp/token: the endpoint refused client 'x' (HTTP 401)"
    )
    unreachable = TokenUnavailable("OAuth token for lhpipe from http://idp/token: ConnectError")

    paused = classify(grpc.StatusCode.UNAVAILABLE, prefix + str(refused), "RunWf 'a'")
    transient = classify(grpc.StatusCode.UNAVAILABLE, prefix + str(unreachable), "RunWf 'a'")
    tls = classify(
        grpc.StatusCode.UNAVAILABLE,
        "failed to connect: Ssl handshake failed: CERTIFICATE_VERIFY_FAILED",
        "RunWf 'a'",
    )

    assert isinstance(paused, LittleHorsePausedError)
    assert str(paused).startswith("RunWf 'a': no OAuth token: OAuth token for lhpipe from")
    assert isinstance(transient, LittleHorseTransientError)
    assert isinstance(tls, LittleHorsePausedError) and "TLS to LittleHorse failed" in str(tls)


def test_a_client_certificate_out_of_its_validity_is_named_with_its_dates(tmp_path: Any) -> None:
    import datetime

    from lhpipe.clients.littlehorse import client_certificate_problem
    from lhpipe.stack.certs import ensure_certs

    certs = ensure_certs(tmp_path)
    now = datetime.datetime.now(datetime.UTC)
    later = now + datetime.timedelta(days=20 * 365)
    earlier = now - datetime.timedelta(days=1)

    assert client_certificate_problem(certs.client_cert, now) is None
    expired = client_certificate_problem(certs.client_cert, later)
    early = client_certificate_problem(certs.client_cert, earlier)
    assert expired is not None and "expired at" in expired and str(certs.client_cert) in expired
    assert early is not None and "is not valid before" in early
    assert client_certificate_problem(tmp_path / "missing.pem", now) is None
    assert client_certificate_problem(certs.client_key, now) is None  # not a certificate

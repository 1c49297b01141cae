"""The issuer's keys: when they are fetched and fetched again (to the second, on an injected
clock), what a broken issuer makes of a request (503, and the reason logged), and what the
logs say. The fake issuer and the keys are those of test_webhook_oauth."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from joserfc import jwt
from test_webhook_oauth import (
    ENC,
    ISSUER,
    JWKS_URI,
    NOW,
    ROTATED,
    RSA,
    Clock,
    FakeIssuer,
    Gateway,
    claims,
    make_gateway,
    refusal,
    token,
)

from lhpipe.gateway.oauth import BearerVerifier, IssuerDirectory, IssuerKeys
from lhpipe.gateway.outcome import Authenticated, AuthOutcome, Refused

DISCOVERY = ISSUER + "/.well-known/openid-configuration"
UNAVAILABLE = "the token issuer's keys cannot be fetched now"
LOGGER = "lhpipe.gateway.oauth"


_SERIAL = itertools.count()


def fresh(key: Any = RSA) -> str:
    """A token valid for two hours that no earlier request sent (so it is not remembered)."""
    return token(key, exp=NOW + 7200, jti=f"j-{next(_SERIAL)}")


def logged(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    """What the key handling logged at ``level``."""
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


def reason(outcome: AuthOutcome) -> str:
    assert isinstance(outcome, Refused), outcome
    return outcome.reason


def verifier_for(handler: Callable[[httpx.Request], httpx.Response], **keys: Any) -> Gateway:
    """A verifier whose issuer answers with ``handler``."""
    clock = Clock()
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    issuer_keys = IssuerKeys(ISSUER, client, clock=clock, **keys)
    verifier = BearerVerifier(issuer_keys, audience="lhpipe", clock=clock)
    return Gateway(FakeIssuer(), clock, verifier)


def serving(discovery: Any, jwks: Any = None) -> Callable[[httpx.Request], httpx.Response]:
    """An issuer serving these two documents (a Response is sent as it is)."""

    def handle(request: httpx.Request) -> httpx.Response:
        document = discovery if str(request.url) == DISCOVERY else jwks
        if isinstance(document, httpx.Response):
            return document
        return httpx.Response(200, json=document)

    return handle


GOOD_DISCOVERY = {"issuer": ISSUER, "jwks_uri": JWKS_URI}


# --- fetching again -------------------------------------------------------------------------


def test_an_unknown_kid_refetches_30_seconds_after_the_last_fetch_to_the_second() -> None:
    gateway = make_gateway()
    assert isinstance(gateway.bearer(fresh()), Authenticated)
    gateway.issuer.keys = [ROTATED, RSA]

    gateway.clock.now = NOW + 29.5
    assert reason(gateway.bearer(fresh(ROTATED))) == f"no signing key 'rsa-2' at {ISSUER}"
    assert gateway.issuer.jwks_fetches == 1

    gateway.clock.now = NOW + 30
    assert isinstance(gateway.bearer(fresh(ROTATED)), Authenticated)
    assert gateway.issuer.requests == [DISCOVERY, JWKS_URI, JWKS_URI]  # discovered once
    assert gateway.verifier.keys.fetches == 2


def test_a_single_key_issuer_rotating_its_key_is_picked_up_on_the_new_kid() -> None:
    gateway = make_gateway(FakeIssuer(keys=[RSA]))
    assert isinstance(gateway.bearer(fresh()), Authenticated)
    gateway.issuer.keys = [ROTATED]
    gateway.clock.now = NOW + 31

    assert isinstance(gateway.bearer(fresh(ROTATED)), Authenticated)
    assert gateway.issuer.jwks_fetches == 2


def test_a_single_key_is_not_used_for_a_token_naming_another_kid() -> None:
    gateway = make_gateway(FakeIssuer(keys=[RSA]))
    # Signed by the issuer's key, but naming a key the issuer does not have.
    misnamed = jwt.encode({"alg": "RS256", "kid": "rsa-9"}, claims(), RSA)

    assert reason(gateway.bearer(misnamed)) == f"no signing key 'rsa-9' at {ISSUER}"


def test_a_token_without_kid_never_triggers_a_refetch() -> None:
    gateway = make_gateway()
    assert isinstance(gateway.bearer(fresh()), Authenticated)
    gateway.clock.now = NOW + 600

    unnamed = jwt.encode({"alg": "RS256"}, claims(jti="unnamed"), RSA)
    assert reason(gateway.bearer(unnamed)) == f"no signing key None at {ISSUER}"
    assert gateway.issuer.jwks_fetches == 1


def test_stale_keys_are_kept_while_the_issuer_is_down_and_it_is_retried_every_5_seconds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gateway = make_gateway()
    assert isinstance(gateway.bearer(fresh()), Authenticated)
    gateway.issuer.down = True

    gateway.clock.now = NOW + 3601
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert isinstance(gateway.bearer(fresh()), Authenticated)
    assert logged(caplog, logging.WARNING) == [
        f"keeping the old keys of {ISSUER}: GET {JWKS_URI}: HTTP 503"
    ]
    assert gateway.issuer.jwks_fetches == 2

    gateway.clock.now = NOW + 3605.5
    assert isinstance(gateway.bearer(fresh()), Authenticated)
    assert gateway.issuer.jwks_fetches == 2

    gateway.clock.now = NOW + 3606
    assert isinstance(gateway.bearer(fresh()), Authenticated)
    assert gateway.issuer.jwks_fetches == 3


def test_while_no_keys_are_known_the_issuer_is_retried_5_seconds_after_the_last_try() -> None:
    gateway = make_gateway(FakeIssuer(down=True))
    first = gateway.bearer(fresh())
    assert reason(first) == f"GET {DISCOVERY}: HTTP 503"

    gateway.clock.now = NOW + 4.5
    waiting = gateway.bearer(fresh())
    assert reason(waiting) == reason(first)  # the last error, without asking again
    assert gateway.issuer.requests == [DISCOVERY]

    gateway.issuer.down = False
    gateway.clock.now = NOW + 5
    assert isinstance(gateway.bearer(fresh()), Authenticated)


def test_each_fetch_logs_how_many_signing_keys_it_found(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert isinstance(make_gateway().bearer(fresh()), Authenticated)  # RSA, EC, PSS, PLAIN
        assert isinstance(make_gateway(FakeIssuer(keys=[RSA, ENC])).bearer(fresh()), Authenticated)

    assert logged(caplog, logging.INFO) == [
        f"fetched 4 signing key(s) of {ISSUER}",
        f"fetched 1 signing key(s) of {ISSUER}",
    ]


# --- an issuer that cannot be used ----------------------------------------------------------


def not_json(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b"<html>moved</html>")


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


BROKEN = [
    ("unreachable", refused, f"GET {DISCOVERY}: ConnectError: connection refused"),
    ("discovery missing", serving(httpx.Response(404)), f"GET {DISCOVERY}: HTTP 404"),
    ("discovery not JSON", not_json, f"GET {DISCOVERY}: not JSON"),
    ("discovery a list", serving([GOOD_DISCOVERY]), f"GET {DISCOVERY}: not a JSON object"),
    ("no jwks_uri", serving({"issuer": ISSUER}), f"{DISCOVERY} has no jwks_uri"),
    (
        "encryption keys only",
        serving(GOOD_DISCOVERY, {"keys": [ENC.as_dict(private=False)]}),
        f"{JWKS_URI} has no signing key",
    ),
]


@pytest.mark.parametrize(("handler", "logged"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_an_unusable_issuer_gives_503_and_logs_why(
    handler: Callable[[httpx.Request], httpx.Response], logged: str
) -> None:
    outcome = verifier_for(handler).bearer(token())

    assert isinstance(outcome, Refused)
    assert (outcome.problem.status, dict(outcome.problem.headers)) == (503, {b"retry-after": b"5"})
    assert outcome.problem.detail == UNAVAILABLE
    assert outcome.reason == logged


def test_a_key_set_that_is_not_a_jwk_set_gives_503() -> None:
    gateway = verifier_for(serving(GOOD_DISCOVERY, {"keys": [{"kty": "none-such"}]}))

    outcome = gateway.bearer(token())

    assert refusal(outcome)[0] == 503
    assert reason(outcome).startswith(f"{JWKS_URI} is not a usable JWK set: ")


def test_retry_after_is_the_retry_interval_in_whole_seconds_at_least_one() -> None:
    down = serving(httpx.Response(503))

    for interval, retry_after in ((0.2, b"1"), (12.4, b"12")):
        outcome = verifier_for(down, retry_interval_s=interval).bearer(token())
        assert isinstance(outcome, Refused)
        assert dict(outcome.problem.headers) == {b"retry-after": retry_after}


def test_the_issuer_has_10_seconds_to_answer() -> None:
    timeouts: list[Any] = []
    documents = serving(GOOD_DISCOVERY, {"keys": [RSA.as_dict(private=False)]})

    def handle(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"])
        return documents(request)

    assert isinstance(verifier_for(handle).bearer(token()), Authenticated)
    assert timeouts == [dict.fromkeys(("connect", "read", "write", "pool"), 10.0)] * 2


def test_an_issuer_written_with_a_trailing_slash_is_discovered_without_a_double_slash() -> None:
    issuer = FakeIssuer(discovery_issuer=ISSUER + "/")
    client = httpx.AsyncClient(transport=httpx.MockTransport(issuer.handle))
    keys = IssuerKeys(ISSUER + "/", client, clock=lambda: NOW)
    verifier = BearerVerifier(keys, audience="lhpipe", clock=lambda: NOW)

    outcome = asyncio.run(verifier.verify(f"Bearer {token(iss=ISSUER + '/')}"))

    assert isinstance(outcome, Authenticated)
    assert issuer.requests == [DISCOVERY, JWKS_URI]


# --- the directory of issuers ---------------------------------------------------------------


def test_a_directory_fetches_with_the_client_it_is_given_and_leaves_it_open() -> None:
    issuer = FakeIssuer()
    client = httpx.AsyncClient(transport=httpx.MockTransport(issuer.handle))
    directory = IssuerDirectory(client)
    verifier = BearerVerifier(directory.keys(ISSUER), audience="lhpipe", clock=lambda: NOW)

    async def use_then_close() -> AuthOutcome:
        outcome = await verifier.verify(f"Bearer {token()}")
        await directory.aclose()
        return outcome

    assert isinstance(asyncio.run(use_then_close()), Authenticated)
    assert issuer.requests == [DISCOVERY, JWKS_URI]
    assert not client.is_closed


def test_a_directory_without_a_client_makes_one_that_follows_redirects_and_closes_it() -> None:
    directory = IssuerDirectory()
    assert directory.client.follow_redirects

    asyncio.run(directory.aclose())

    assert directory.client.is_closed

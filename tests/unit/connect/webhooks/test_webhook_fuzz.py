"""Property (issue 12): whatever the headers, tokens, signatures and body, a webhook of any auth
kind answers without a 500 (nor any 5xx: the fakes behind it are always up), leaves no
traceback in the log and at most one line, and a refused request reaches nothing (no record,
no LittleHorse call, no dead letter); an accepted one reaches exactly one.

Requests go to the real listener over a socket (:mod:`live_gateway`), as bytes, so duplicated
headers and any Latin-1 byte arrive as sent. Each kind starts from requests signed as its
provider signs them, with random parts, and mutates them (headers dropped, doubled, replaced,
extended; the body changed after signing), beside wholly random requests.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from live_gateway import (
    JSON,
    LiveGateway,
    custom_signature,
    github_headers,
    good_claims,
    live_gateway,
    signed_token,
    standard_headers,
    stripe_signature,
)

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

Header = tuple[str, str]
Request = tuple[str, list[Header], bytes]


@pytest.fixture(scope="module")
def live() -> Iterator[LiveGateway]:
    with live_gateway() as gateway:
        yield gateway


# -- strategies ----------------------------------------------------------------------------------

# Header values the HTTP parser lets through (and a few it does not: tabs, DEL, C1 bytes).
LATIN1 = st.characters(min_codepoint=0x09, max_codepoint=0xFF, exclude_characters="\n\r\x0b\x0c")
DIGITS = st.text(st.sampled_from("0123456789"), min_size=1, max_size=5000)
ODD = st.sampled_from(
    [
        "",
        " ",
        "=",
        ",",
        "sha256=",
        "sha512=",
        "t=",
        "v1=",
        "v1,",
        "v1a,AAAA",
        "Bearer",
        "Bearer ",
        "bearer a.b.c",
        "Basic dXNlcjpwdw==",
        "null",
        "-1",
        "1e400",
        "0x10",
        "\u00b2\u00b3",
        "\u0660",
        "9" * 400,
        "a" * 300,
        "é" * 40,
    ]
)
VALUES = st.one_of(st.text(LATIN1, max_size=80), DIGITS, ODD)
NAMES = st.sampled_from(
    [
        "authorization",
        "Authorization",
        "idempotency-key",
        "content-type",
        "x-hub-signature-256",
        "x-hub-signature",
        "x-github-delivery",
        "stripe-signature",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "x-signature",
        "X-SIGNATURE",
        "wfrunid",
        "cookie",
        "x-anything",
    ]
)
CONTENT_TYPES = st.sampled_from(
    [JSON, "application/cloudevents+json", "application/json; charset=latin-1", "text/plain"]
)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
BODIES = st.one_of(
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),
    st.sampled_from([b"", b"[", b"[" * 3000 + b"]" * 3000, b'{"id": "' + b"x" * 400 + b'"}']),
    st.dictionaries(st.sampled_from(["id", "type", "n"]), JSON_VALUES, max_size=3).map(
        lambda v: json.dumps(v).encode()
    ),
)


@st.composite
def mutated(draw: st.DrawFn, request: Request) -> Request:
    """``request`` with up to three edits: the kind of hostile copy a sender makes of a
    captured request."""
    path, headers, body = request
    headers = list(headers)
    for _ in range(draw(st.integers(0, 3))):
        edit = draw(st.sampled_from(["drop", "double", "replace", "extend", "add", "body", "case"]))
        if edit in ("drop", "double", "replace", "extend", "case") and not headers:
            continue
        at = draw(st.integers(0, max(0, len(headers) - 1)))
        if edit == "drop":
            del headers[at]
        elif edit == "double":
            name = headers[at][0]
            copy = (
                draw(st.sampled_from([name, name.upper()])),
                draw(VALUES | st.just(headers[at][1])),
            )
            headers.insert(draw(st.integers(0, len(headers))), copy)
        elif edit == "replace":
            headers[at] = (headers[at][0], draw(VALUES))
        elif edit == "extend":
            headers[at] = (headers[at][0], headers[at][1] + draw(VALUES))
        elif edit == "case":
            headers[at] = (headers[at][0].upper(), headers[at][1])
        elif edit == "add":
            headers.insert(draw(st.integers(0, len(headers))), (draw(NAMES), draw(VALUES)))
        else:
            body = draw(BODIES)
    return path, headers, body


@st.composite
def random_request(draw: st.DrawFn, path: str) -> Request:
    headers = draw(st.lists(st.tuples(NAMES, VALUES), max_size=6))
    return path, headers, draw(BODIES)


def _from_now(seconds: int) -> str:
    return str(int(time.time()) + seconds)


def timestamps() -> st.SearchStrategy[str]:
    # Offsets from the clock, not bounds taken from it: the strategy stays the same between
    # the runs of an example (Hypothesis replays it while shrinking).
    return st.one_of(
        st.just(0).map(_from_now),
        st.integers(-(10**6), 10**6).map(_from_now),
        DIGITS,
        st.integers(11, 5000).map(lambda n: "9" * n),  # past a float's range, past int()'s
        VALUES,
    )


@st.composite
def github_request(draw: st.DrawFn) -> Request:
    body = draw(BODIES)
    delivery = draw(st.one_of(st.uuids().map(str), st.text(LATIN1, min_size=1, max_size=300)))
    path = draw(st.sampled_from(["/github", "/github-direct"]))
    return draw(mutated((path, github_headers(body, delivery.strip() or "d"), body)))


@st.composite
def stripe_request(draw: st.DrawFn) -> Request:
    body = draw(BODIES)
    entries = [stripe_signature(body, draw(timestamps()))]
    entries += draw(st.lists(st.sampled_from(["v0=00", "v1=zz", "t=1", "x"]) | VALUES, max_size=3))
    value = ",".join(draw(st.permutations(entries)))
    headers = [("content-type", draw(CONTENT_TYPES)), ("stripe-signature", value)]
    return draw(mutated(("/stripe", headers, body)))


@st.composite
def standard_request(draw: st.DrawFn) -> Request:
    body = draw(BODIES)
    message_id = draw(st.text(LATIN1, min_size=1, max_size=300)).strip() or "m"
    headers = standard_headers(body, message_id, draw(timestamps()))
    if draw(st.booleans()):
        extra = draw(st.lists(st.sampled_from(["v1a,AAAA", "v1,!!", "v2,x"]) | VALUES, max_size=3))
        name, value = headers[3]
        headers[3] = (name, " ".join([value, *extra]))
    return draw(mutated(("/standard", headers, body)))


@st.composite
def custom_request(draw: st.DrawFn) -> Request:
    body = draw(BODIES)
    headers = [("content-type", JSON), ("x-signature", custom_signature(body))]
    return draw(mutated(("/custom", headers, body)))


def b64url_text(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@st.composite
def token(draw: st.DrawFn) -> str:
    algorithms = st.sampled_from(["RS256", "ES256", "PS256", "HS256", "none", "RS384"])
    header: dict[str, Any] = {
        # Mostly an allowed alg and the issuer's kid, so that the checks past them run too.
        "alg": draw(st.just("RS256") | algorithms | JSON_VALUES),
        "kid": draw(st.just("rsa-1") | st.just("other") | JSON_VALUES),
    }
    header_names = st.sampled_from(["crit", "crit", "b64", "typ", "jku", "x5c", "zip"])
    for name in draw(st.lists(header_names, max_size=3)):
        header[name] = draw(JSON_VALUES | st.just(["b64"]) | st.just(["exp"]))
    claims: dict[str, Any] = good_claims()
    claim_names = st.sampled_from(["iss", "aud", "exp", "nbf", "scope", "scp"])
    for name in draw(st.lists(claim_names, max_size=3)):
        claims[name] = draw(JSON_VALUES)
    shape = draw(st.sampled_from(["signed", "signed", "bad signature", "raw header", "text"]))
    if shape == "text":
        return draw(st.text(LATIN1, max_size=200))
    header_bytes = json.dumps(header).encode()
    if shape == "raw header":
        header_bytes = draw(
            st.binary(max_size=60) | st.sampled_from([b"[1]", b'"x"', b"{", b"null"])
        )
    signed = signed_token(header_bytes, claims)
    if shape != "signed":
        signed = signed.rsplit(".", 1)[0] + "." + b64url_text(draw(st.binary(max_size=300)))
    return signed


@st.composite
def oauth_request(draw: st.DrawFn) -> Request:
    body = draw(BODIES)
    scheme = draw(st.sampled_from(["Bearer ", "bearer ", "BEARER  ", "Basic ", "", "Bearer a "]))
    headers = [("content-type", JSON), ("authorization", scheme + draw(token()))]
    return draw(mutated(("/oauth", headers, body)))


@st.composite
def open_request(draw: st.DrawFn) -> Request:
    headers = [("content-type", draw(CONTENT_TYPES))]
    if draw(st.booleans()):
        headers.append(("idempotency-key", draw(VALUES)))
    return draw(mutated(("/none", headers, draw(BODIES))))


# -- the property --------------------------------------------------------------------------------


def reached(live: LiveGateway) -> int:
    """How many things reached Kafka or LittleHorse so far."""
    return (
        len(live.producer.records)
        + len(live.clients.sender_.plans)
        + len(live.clients.shared_producer.records)
    )


def check(live: LiveGateway, request: Request) -> None:
    path, headers, body = request
    live.logs.records.clear()
    before = reached(live)

    answer = live.request(path, headers, body)

    event(f"{path} {answer.status}")
    assert answer.status < 500, (answer.status, answer.body[:300])
    assert live.logs.tracebacks() == []
    lines = [r for r in live.logs.records if r.name.startswith(("uvicorn", "lhpipe.gateway.route"))]
    assert len(lines) <= 1, [r.getMessage()[:200] for r in lines]
    if answer.status == 202:
        assert reached(live) == before + 1
    else:
        assert reached(live) == before, (answer.status, answer.body[:300])


@FUZZ
@given(st.one_of(random_request("/none"), open_request()))
def test_auth_none_never_fails_on_hostile_requests(live: LiveGateway, request: Request) -> None:
    check(live, request)


@FUZZ
@given(st.one_of(random_request("/github"), github_request()))
def test_the_github_preset_never_fails_on_hostile_requests(
    live: LiveGateway, request: Request
) -> None:
    check(live, request)


@FUZZ
@given(st.one_of(random_request("/stripe"), stripe_request()))
def test_the_stripe_preset_never_fails_on_hostile_requests(
    live: LiveGateway, request: Request
) -> None:
    check(live, request)


@FUZZ
@given(st.one_of(random_request("/standard"), standard_request()))
def test_the_standard_webhooks_preset_never_fails_on_hostile_requests(
    live: LiveGateway, request: Request
) -> None:
    check(live, request)


@FUZZ
@given(st.one_of(random_request("/custom"), custom_request()))
def test_a_custom_hmac_never_fails_on_hostile_requests(live: LiveGateway, request: Request) -> None:
    check(live, request)


@FUZZ
@given(st.one_of(random_request("/oauth"), oauth_request()))
def test_oauth_bearer_tokens_never_fail_on_hostile_requests(
    live: LiveGateway, request: Request
) -> None:
    check(live, request)

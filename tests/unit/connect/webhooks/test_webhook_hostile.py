"""Hostile requests against the real listener (issue 12, items 1, 4 and 6): what each gets
back, that it is counted, that it leaves no traceback in the log and produces nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from live_gateway import (
    JSON,
    LiveGateway,
    custom_signature,
    github_headers,
    good_token,
    live_gateway,
    signed_token,
    standard_headers,
    stripe_signature,
)

from lhpipe.core.errors import PermanentError

BODY = b'{"id": "evt_1", "n": 1}'


@pytest.fixture(scope="module")
def live() -> Iterator[LiveGateway]:
    with live_gateway() as gateway:
        yield gateway


@pytest.fixture(autouse=True)
def fresh(live: LiveGateway) -> None:
    live.producer.records.clear()
    live.producer.fail = None
    live.clients.shared_producer.records.clear()
    live.clients.sender_.plans.clear()
    live.clients.sender_.outcome = None
    live.logs.records.clear()


def assert_problem(answer: object, status: int) -> dict[str, object]:
    assert getattr(answer, "status", None) == status, answer
    assert answer.headers["content-type"] == "application/problem+json"  # type: ignore[attr-defined]
    document = answer.json()  # type: ignore[attr-defined]
    assert document["status"] == status
    return document  # type: ignore[no-any-return]


def refusal_lines(live: LiveGateway) -> list[str]:
    return [r.getMessage() for r in live.logs.records if r.name.startswith("lhpipe")]


# -- item 1: oversized timestamps and crit -------------------------------------------------------


@pytest.mark.parametrize("digits", [310, 400, 5000])
def test_a_stripe_timestamp_of_hundreds_of_digits_is_a_counted_401_without_traceback(
    live: LiveGateway, digits: int
) -> None:
    before = live.count("/stripe", 401)
    headers = [("content-type", JSON), ("stripe-signature", stripe_signature(BODY, "9" * digits))]

    answer = live.request("/stripe", headers, BODY)

    assert_problem(answer, 401)
    assert answer.headers["www-authenticate"] == 'HMAC realm="lhpipe"'
    assert live.count("/stripe", 401) == before + 1
    assert live.logs.tracebacks() == []
    assert len(refusal_lines(live)) == 1
    assert all(len(line) < 1000 for line in refusal_lines(live))
    assert live.producer.records == []


@pytest.mark.parametrize("digits", [310, 5000])
def test_a_standard_webhooks_timestamp_of_hundreds_of_digits_is_a_counted_401(
    live: LiveGateway, digits: int
) -> None:
    before = live.count("/standard", 401)

    answer = live.request("/standard", standard_headers(BODY, timestamp="1" * digits), BODY)

    assert_problem(answer, 401)
    assert live.count("/standard", 401) == before + 1
    assert live.logs.tracebacks() == []
    assert live.producer.records == []


@pytest.mark.parametrize("crit", [5, [1], "b64", {"a": 1}, [["x"]], None])
@pytest.mark.parametrize("signed", [False, True])
def test_a_token_whose_crit_is_not_a_list_of_names_is_a_counted_401(
    live: LiveGateway, crit: object, signed: bool
) -> None:
    before = live.count("/oauth", 401)
    header = {"alg": "RS256", "kid": "rsa-1", "typ": "JWT", "crit": crit}
    token = signed_token(header, b'{"iss": "x"}')
    if not signed:
        token = token.rsplit(".", 1)[0] + ".AAAA"

    answer = live.request(
        "/oauth", [("content-type", JSON), ("authorization", f"Bearer {token}")], BODY
    )

    assert_problem(answer, 401)
    assert answer.headers["www-authenticate"].startswith('Bearer realm="lhpipe", error=')
    assert live.count("/oauth", 401) == before + 1
    assert live.logs.tracebacks() == []
    assert live.producer.records == []


def test_the_good_requests_of_each_kind_still_pass(live: LiveGateway) -> None:
    stripe = [("content-type", JSON), ("stripe-signature", stripe_signature(BODY))]
    custom = [("content-type", JSON), ("x-signature", custom_signature(BODY))]
    bearer = [("content-type", JSON), ("authorization", f"Bearer {good_token()}")]

    answers = [
        live.request("/none", [("content-type", JSON)], BODY).status,
        live.request("/github", github_headers(BODY), BODY).status,
        live.request("/stripe", stripe, BODY).status,
        live.request("/standard", standard_headers(BODY), BODY).status,
        live.request("/custom", custom, BODY).status,
        live.request("/oauth", bearer, BODY).status,
    ]

    assert answers == [202] * 6
    assert len(live.producer.records) == 6


# -- item 4: duplicated credential headers -------------------------------------------------------


def test_two_authorization_headers_first_bad_second_valid_are_400_and_nothing_is_produced(
    live: LiveGateway,
) -> None:
    headers = [
        ("content-type", JSON),
        ("authorization", "Bearer not-a-token"),
        ("authorization", f"Bearer {good_token()}"),
    ]

    answer = live.request("/oauth", headers, BODY)

    document = assert_problem(answer, 400)
    assert document["detail"] == "the request has more than one authorization header"
    assert answer.headers["connection"] == "close"
    assert live.producer.records == []


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/github", "x-hub-signature-256"),
        ("/github", "x-github-delivery"),
        ("/stripe", "stripe-signature"),
        ("/standard", "webhook-signature"),
        ("/standard", "webhook-id"),
        ("/standard", "webhook-timestamp"),
        ("/custom", "x-signature"),
        ("/none", "idempotency-key"),
        ("/github", "authorization"),
    ],
)
def test_a_duplicated_signature_or_id_header_is_400_even_when_the_last_one_is_valid(
    live: LiveGateway, path: str, name: str
) -> None:
    valid: list[tuple[str, str]] = {
        "/github": github_headers(BODY),
        "/stripe": [("content-type", JSON), ("stripe-signature", stripe_signature(BODY))],
        "/standard": standard_headers(BODY),
        "/custom": [("content-type", JSON), ("x-signature", custom_signature(BODY))],
        "/none": [("content-type", JSON), ("idempotency-key", "k-1")],
    }[path]
    first = (name.upper(), "sha256=00" if "signature" in name else "forged")
    # The forged copy first, as a proxy that checks the first header would see it.
    headers = [first, *valid] if any(n == name for n, _ in valid) else [first, (name, "x"), *valid]

    answer = live.request(path, headers, BODY)

    document = assert_problem(answer, 400)
    assert document["detail"] == f"the request has more than one {name} header"
    assert live.producer.records == []
    assert live.request(path, valid, BODY).status == 202


def test_other_repeated_headers_are_let_through(live: LiveGateway) -> None:
    headers = [*github_headers(BODY), ("x-trace", "a"), ("x-trace", "b"), ("accept", "*/*")]
    assert live.request("/github", headers, BODY).status == 202


# -- item 6: the delivery id ---------------------------------------------------------------------


@pytest.mark.parametrize("delivery", ["d" * 256, "d" * 4096, "é-1", "ümlaut"])
def test_a_github_delivery_id_that_is_not_1_to_255_visible_ascii_is_400(
    live: LiveGateway, delivery: str
) -> None:
    answer = live.request("/github", github_headers(BODY, delivery), BODY)

    document = assert_problem(answer, 400)
    assert "delivery id must be 1 to 255 visible ASCII characters" in str(document["detail"])
    assert live.producer.records == []


def test_a_github_delivery_id_of_255_characters_is_the_records_id(live: LiveGateway) -> None:
    delivery = "d" * 255

    answer = live.request("/github", github_headers(BODY, delivery), BODY)

    assert answer.status == 202
    assert answer.json() == {"id": delivery}
    [record] = live.producer.records
    assert record.headers["lhpipe.webhook.id"] == delivery.encode()


def test_a_stripe_event_id_over_255_characters_is_400(live: LiveGateway) -> None:
    body = json.dumps({"id": "evt_" + "x" * 300}).encode()
    headers = [("content-type", JSON), ("stripe-signature", stripe_signature(body))]

    assert_problem(live.request("/stripe", headers, body), 400)
    assert live.producer.records == []


def test_a_replayed_github_body_with_new_delivery_ids_is_accepted_each_time(
    live: LiveGateway,
) -> None:
    # What the docs state: GitHub signs neither a timestamp nor the delivery id, so a captured
    # request is accepted again under a new id; only the id rules of the pipelines (or a key
    # taken from the body) make the copies harmless.
    ids = ["a-1", "a-2", "a-3"]
    answers = [live.request("/github", github_headers(BODY, d), BODY).status for d in ids]

    assert answers == [202, 202, 202]
    assert [r.headers["lhpipe.webhook.id"] for r in live.producer.records] == [
        d.encode() for d in ids
    ]


def test_a_direct_mode_dead_letter_keeps_the_body_but_not_the_signature(
    live: LiveGateway,
) -> None:
    live.clients.sender_.outcome = PermanentError("no such WfSpec", code="NOT_FOUND")

    answer = live.request("/github-direct", github_headers(BODY, "dl-1"), BODY)

    assert answer.status == 202
    [dead] = live.clients.shared_producer.records
    assert dead.topic == "dlq"
    assert dead.value == BODY
    assert dead.headers["x-github-delivery"] == b"dl-1"
    assert "x-hub-signature-256" not in dead.headers
    assert "authorization" not in dead.headers


# -- a check that raises ---------------------------------------------------------------------


class Raising:
    """A check with a defect: it raises on every request."""

    header = "x-signature"
    reads = ("x-signature",)

    def verify(self, headers: object, body: bytes, now: float | None = None) -> object:
        raise TypeError("sequence item 0: expected str instance, int found")

    async def authenticate(self, headers: object, body: bytes) -> object:
        raise TypeError("sequence item 0: expected str instance, int found")


def test_an_hmac_check_that_raises_is_a_401_with_its_challenge(live: LiveGateway) -> None:
    authenticator = live.route("/custom").authenticator
    verifier = authenticator.verifier
    authenticator.verifier = Raising()
    try:
        answer = live.request("/custom", [("content-type", JSON), ("x-signature", "x")], BODY)
    finally:
        authenticator.verifier = verifier

    assert_problem(answer, 401)
    assert answer.headers["www-authenticate"] == 'HMAC realm="lhpipe"'
    assert live.logs.tracebacks() == []
    assert live.producer.records == []


def test_any_auth_form_that_raises_is_a_401_never_a_500(live: LiveGateway) -> None:
    route = live.route("/oauth")
    authenticator = route.authenticator
    route.authenticator = Raising()
    try:
        answer = live.request("/oauth", [("content-type", JSON), ("authorization", "x")], BODY)
    finally:
        route.authenticator = authenticator

    document = assert_problem(answer, 401)
    assert document["detail"] == "the request could not be authenticated"
    assert answer.headers["www-authenticate"] == 'Bearer realm="lhpipe"'
    [line] = [r.getMessage() for r in live.logs.records if r.name.endswith("route")]
    assert "authentication failed: TypeError" in line
    assert live.logs.tracebacks() == []
    assert live.producer.records == []


# -- the route's last resort ---------------------------------------------------------------------


def test_an_unexpected_failure_after_auth_is_a_counted_500_problem_with_one_line_no_traceback(
    live: LiveGateway,
) -> None:
    live.producer.fail = RuntimeError("a defect\nover two lines")
    before = live.count("/github", 500)

    answers = [live.request("/github", github_headers(BODY, f"f-{i}"), BODY) for i in range(3)]

    for answer in answers:
        document = assert_problem(answer, 500)
        assert "a defect" not in str(document["detail"])
    assert live.count("/github", 500) == before + 3
    assert live.logs.tracebacks() == []
    errors = [r for r in live.logs.records if r.levelname == "ERROR"]
    assert len(errors) == 1  # rate-limited: one line for the three
    assert "\n" not in errors[0].getMessage()
    assert "RuntimeError" in errors[0].getMessage()

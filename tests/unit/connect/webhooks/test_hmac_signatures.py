"""Signature checks refusal by refusal: the exact reason each preset logs for each way a request
is wrong, the signed timestamp read as the docs say (digits only, 5 minutes either way), the
header forms providers send, and the start-up errors of a bad configuration. Requests are
signed here from the providers' documentation, not with the code under test."""

from __future__ import annotations

import asyncio
import base64
import hmac
import json

import pytest

from lhpipe.check.program import HmacAuth
from lhpipe.gateway.config import WebhookConfigError
from lhpipe.gateway.hmac import (
    SignatureAuthenticator,
    SignatureVerifier,
    Verdict,
    signature_verifier,
)
from lhpipe.gateway.outcome import Headers, Refused
from lhpipe.settings import Settings

NOW = 1_700_000_000
BODY = b'{"id":"evt_1","type":"customer.created"}'
SETTINGS = Settings(environ={})
GH_SECRET = "gh-secret"
STRIPE_SECRET = "whsec_stripe"
SW_KEY = bytes(range(32))
SW_SECRET = "whsec_" + base64.b64encode(SW_KEY).decode()
ARABIC_DIGITS = "\u0661\u0667" + "\u0660" * 8  # 1700000000 in Arabic-Indic digits


def verifier(**auth: str) -> SignatureVerifier:
    return signature_verifier(HmacAuth(**auth), SETTINGS, "webhook w")  # type: ignore[arg-type]


GITHUB = verifier(secret=GH_SECRET, preset="github")
STRIPE = verifier(secret=STRIPE_SECRET, preset="stripe")
STANDARD = verifier(secret=SW_SECRET, preset="standard_webhooks")
CUSTOM = verifier(
    secret="partner", header="X-Signature", prefix="sha512=", algorithm="sha512", encoding="hex"
)


def mac(key: bytes, *parts: bytes, digest: str = "sha256") -> bytes:
    return hmac.new(key, b"".join(parts), digest).digest()


def github_value(secret: str = GH_SECRET, scheme: str = "sha256") -> str:
    return f"{scheme}={mac(secret.encode(), BODY).hex()}"


def stripe_value(ts: object = NOW, secret: str = STRIPE_SECRET, body: bytes = BODY) -> str:
    return f"t={ts},v1={mac(secret.encode(), f'{ts}.'.encode(), body).hex()}"


def standard_headers(ts: object = NOW, webhook_id: str = "msg_1", key: bytes = SW_KEY) -> Headers:
    signature = mac(key, f"{webhook_id}.{ts}.".encode(), BODY)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": "v1," + base64.b64encode(signature).decode(),
    }


def without(headers: Headers, name: str) -> Headers:
    return {k: v for k, v in headers.items() if k != name}


def reason(check: SignatureVerifier, headers: Headers, body: bytes = BODY) -> str:
    verdict = check.verify(headers, body, now=NOW)
    assert not verdict.ok
    return verdict.reason


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, "no X-Hub-Signature-256 header"),
        # the right digest, but not under the sha256 scheme
        (
            {"x-hub-signature-256": github_value(scheme="sha1")},
            "X-Hub-Signature-256 is not sha256=<hex>",
        ),
        ({"x-hub-signature-256": "sha256=not-hex"}, "X-Hub-Signature-256 is not sha256=<hex>"),
        (
            {"x-hub-signature-256": github_value("other")},
            "X-Hub-Signature-256 does not match the body",
        ),
    ],
    ids=["missing", "other-scheme", "not-hex", "other-secret"],
)
def test_github_refusal_reasons(headers: Headers, expected: str) -> None:
    assert reason(GITHUB, headers) == expected


NO_ENTRY = "Stripe-Signature has no t= or no v1= entry"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "no Stripe-Signature header"),
        (f"t={NOW}", NO_ENTRY),
        (stripe_value().split(",")[1], NO_ENTRY),
        (stripe_value().replace("v1=", "v0="), NO_ENTRY),
        (stripe_value(NOW - 301), "Stripe-Signature timestamp is 301 s old (tolerance 300 s)"),
        (
            stripe_value(NOW + 301),
            "Stripe-Signature timestamp is 301 s in the future (tolerance 300 s)",
        ),
        (
            stripe_value(secret="whsec_other"),
            "no v1 signature of Stripe-Signature matches the body",
        ),
    ],
    ids=["missing", "no-v1", "no-t", "only-v0", "old", "future", "other-secret"],
)
def test_stripe_refusal_reasons(value: str | None, expected: str) -> None:
    headers = {} if value is None else {"stripe-signature": value}

    assert reason(STRIPE, headers) == expected


MISSING = "webhook-id, webhook-timestamp or webhook-signature is missing"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (without(standard_headers(), "webhook-id"), MISSING),
        (without(standard_headers(), "webhook-timestamp"), MISSING),
        (without(standard_headers(), "webhook-signature"), MISSING),
        ({**standard_headers(), "webhook-id": ""}, MISSING),
        (standard_headers(NOW - 301), "webhook-timestamp timestamp is 301 s old (tolerance 300 s)"),
        (standard_headers(webhook_id="msg_\u20ac"), "webhook-id is not Latin-1 text"),
        (
            standard_headers(key=b"another key"),
            "no v1 entry of webhook-signature matches the body",
        ),
    ],
    ids=["no-id", "no-timestamp", "no-signature", "empty-id", "old", "not-latin-1", "other-key"],
)
def test_standard_webhooks_refusal_reasons(headers: Headers, expected: str) -> None:
    assert reason(STANDARD, headers) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, "no X-Signature header"),
        (
            {"x-signature": mac(b"partner", BODY, digest="sha512").hex()},
            "X-Signature does not start with 'sha512='",
        ),
        ({"x-signature": "sha512=zz"}, "X-Signature is not hex text"),
        (
            {"x-signature": "sha512=" + mac(b"other", BODY, digest="sha512").hex()},
            "X-Signature does not match the body",
        ),
    ],
    ids=["missing", "no-prefix", "not-hex", "other-secret"],
)
def test_custom_form_refusal_reasons_name_the_header_as_written(
    headers: Headers, expected: str
) -> None:
    assert reason(CUSTOM, headers) == expected


def test_custom_form_names_its_encoding_when_the_value_is_not_in_it() -> None:
    check = verifier(secret="s", header="X-Shopify-Hmac-Sha256", encoding="base64")

    assert reason(check, {"x-shopify-hmac-sha256": "not base64!"}) == (
        "X-Shopify-Hmac-Sha256 is not base64 text"
    )


@pytest.mark.parametrize(
    ("timestamp", "problem"),
    [
        ("2023-11-14T22:13:20Z", "timestamp '2023-11-14T22:13:20Z' is not unix seconds"),
        ("+1700000000", "timestamp '+1700000000' is not unix seconds"),
        ("1700000000=1", "timestamp '1700000000=1' is not unix seconds"),
        # digits, but not ASCII ones (int() would read them)
        (ARABIC_DIGITS, f"timestamp {ARABIC_DIGITS!r} is not unix seconds"),
        # a hostile value is quoted to 20 characters only
        ("x" * 50, f"timestamp {'x' * 20!r} is not unix seconds"),
        # 12 digits are still read as a number; 13 are not
        ("9" * 12, f"timestamp is {int('9' * 12) - NOW} s in the future (tolerance 300 s)"),
        ("1" + "0" * 12, "timestamp of 13 digits is not unix seconds"),
    ],
    ids=["iso-8601", "plus-sign", "equals-sign", "arabic-digits", "long", "12-digits", "13-digits"],
)
def test_a_signed_timestamp_must_be_ascii_digits(timestamp: str, problem: str) -> None:
    stripe = {"stripe-signature": f"t={timestamp},v1={'00' * 32}"}
    standard = {**standard_headers(), "webhook-timestamp": timestamp}

    assert reason(STRIPE, stripe) == f"Stripe-Signature {problem}"
    assert reason(STANDARD, standard) == f"webhook-timestamp {problem}"


@pytest.mark.parametrize(
    "value",
    [
        f"v1={stripe_value().split(',v1=')[1]},t={NOW}",
        stripe_value().replace(",", " , "),
        stripe_value().upper().replace("T=", "t=").replace("V1=", "v1="),
    ],
    ids=["v1-first", "spaces", "upper-case-hex"],
)
def test_stripe_reads_its_entries_in_any_order_and_spacing(value: str) -> None:
    verdict = STRIPE.verify({"stripe-signature": value}, BODY, now=NOW)

    assert verdict == Verdict(True, webhook_id="evt_1")


@pytest.mark.parametrize(
    ("body", "webhook_id"),
    [
        (b'{"id":"evt_9","object":"event"}', "evt_9"),
        (b'{"object":"event"}', None),
        (b'{"id":""}', None),
        (b'{"id":7}', None),
        (b'[{"id":"evt_9"}]', None),
        (b'"evt_9"', None),
        (b"id=evt_9", None),
    ],
    ids=["event", "no-id", "empty-id", "number-id", "array", "string", "not-json"],
)
def test_a_signed_stripe_body_passes_with_its_event_id_or_none(
    body: bytes, webhook_id: str | None
) -> None:
    verdict = STRIPE.verify({"stripe-signature": stripe_value(body=body)}, body, now=NOW)

    assert verdict == Verdict(True, webhook_id=webhook_id)


@pytest.mark.parametrize("size", [31, 32, 33], ids=lambda n: f"{n}-byte-key")
@pytest.mark.parametrize("whsec", ["whsec_", ""], ids=["whsec", "bare"])
def test_a_standard_webhooks_secret_may_leave_out_its_prefix_and_padding(
    size: int, whsec: str
) -> None:
    key = bytes(range(100, 100 + size))
    check = verifier(
        secret=whsec + base64.b64encode(key).decode().rstrip("="), preset="standard_webhooks"
    )

    assert check.verify(standard_headers(key=key), BODY, now=NOW) == Verdict(True, "msg_1")


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        (
            HmacAuth(secret="whsec_%%%", preset="standard_webhooks"),
            "webhook w: a standard_webhooks secret is whsec_ followed by base64 (the signing key)",
        ),
        (HmacAuth(secret="s", preset="gitlab"), "webhook w: unknown hmac preset 'gitlab'"),
        (HmacAuth(secret="s"), "webhook w: a custom hmac needs a `header`"),
    ],
    ids=["standard-webhooks-secret", "unknown-preset", "custom-without-header"],
)
def test_a_bad_configuration_is_a_start_up_error_naming_the_webhook(
    auth: HmacAuth, message: str
) -> None:
    with pytest.raises(WebhookConfigError) as raised:
        signature_verifier(auth, SETTINGS, "webhook w")

    assert str(raised.value) == message


class BrokenCheck:
    """A signature check that fails on the request it is given."""

    header = "x-sig"
    reads = ("x-sig",)

    def verify(self, headers: Headers, body: bytes, now: float | None = None) -> Verdict:
        raise ValueError("cannot read x-sig")


def test_a_check_that_raises_refuses_the_request_with_401_and_logs_why() -> None:
    outcome = SignatureAuthenticator(BrokenCheck()).check({"x-sig": "1"}, BODY)

    assert isinstance(outcome, Refused)
    assert outcome.problem.status == 401
    assert dict(outcome.problem.headers) == {b"www-authenticate": b'HMAC realm="lhpipe"'}
    assert json.loads(outcome.problem.body())["detail"] == (
        "the request's signature is missing or does not match"
    )
    assert outcome.reason == "the signature check failed: ValueError: 'cannot read x-sig'"
    assert asyncio.run(SignatureAuthenticator(BrokenCheck()).authenticate({}, BODY)) == outcome

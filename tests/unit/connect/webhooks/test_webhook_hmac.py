"""HMAC signatures: every preset and the custom form, against requests signed as each provider
signs them (the signing here follows the providers' documentation, independently of the code
under test), plus the providers' own published test vectors."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import pytest

from lhpipe.check.program import EnvRef, HmacAuth
from lhpipe.gateway.config import Secret, WebhookConfigError
from lhpipe.gateway.hmac import (
    TOLERANCE_SECONDS,
    SignatureAuthenticator,
    Verdict,
    signature_verifier,
)
from lhpipe.gateway.outcome import Authenticated, Refused
from lhpipe.settings import Settings

NOW = 1_700_000_000
BODY = b'{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","type":"customer.created","n":1}'
SW_KEY = b"0123456789abcdef0123456789abcdef"
SW_SECRET = "whsec_" + base64.b64encode(SW_KEY).decode()
OTHER_SW_SECRET = "whsec_" + base64.b64encode(b"another key of thirty-two bytes!").decode()

Headers = dict[str, str]
#: (secret, body, signed timestamp) -> the request's headers, signed as the provider does
Signer = Callable[[str, bytes, int], Headers]


def hex_hmac(key: bytes, message: bytes, digest: str = "sha256") -> str:
    return hmac.new(key, message, digest).hexdigest()


def sign_github(secret: str, body: bytes, ts: int) -> Headers:
    return {
        "x-hub-signature-256": "sha256=" + hex_hmac(secret.encode(), body),
        "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    }


def sign_stripe(secret: str, body: bytes, ts: int) -> Headers:
    signature = hex_hmac(secret.encode(), f"{ts}.".encode() + body)
    return {"stripe-signature": f"t={ts},v1={signature}"}


def standard_webhooks_signature(secret: str, webhook_id: str, ts: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{webhook_id}.{ts}.".encode() + body, "sha256").digest()
    return "v1," + base64.b64encode(digest).decode()


def sign_standard_webhooks(secret: str, body: bytes, ts: int) -> Headers:
    webhook_id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": standard_webhooks_signature(secret, webhook_id, ts, body),
    }


def sign_custom(secret: str, body: bytes, ts: int) -> Headers:
    digest = hmac.new(secret.encode(), body, "sha512").digest()
    return {"x-signature": "hmac=" + base64.b64encode(digest).decode()}


CUSTOM = HmacAuth(
    secret="custom-secret",
    header="X-Signature",
    algorithm="sha512",
    encoding="base64",
    prefix="hmac=",
)


@dataclass(frozen=True)
class Preset:
    name: str
    auth: HmacAuth
    sign: Signer
    header: str  # the signature header
    webhook_id: str | None
    wrong_secret: str
    timestamped: bool = False


PRESETS = [
    Preset(
        "github",
        HmacAuth(secret="gh-secret", preset="github"),
        sign_github,
        "x-hub-signature-256",
        "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "not-the-gh-secret",
    ),
    Preset(
        "stripe",
        HmacAuth(secret="whsec_stripe_secret", preset="stripe"),
        sign_stripe,
        "stripe-signature",
        "evt_1NG8Du2eZvKYlo2CUI79vXWy",
        "whsec_other",
        timestamped=True,
    ),
    Preset(
        "standard_webhooks",
        HmacAuth(secret=SW_SECRET, preset="standard_webhooks"),
        sign_standard_webhooks,
        "webhook-signature",
        "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
        OTHER_SW_SECRET,
        timestamped=True,
    ),
    Preset("custom", CUSTOM, sign_custom, "x-signature", None, "other-custom-secret"),
]
TIMESTAMPED = [p for p in PRESETS if p.timestamped]
SETTINGS = Settings(environ={})


def secret_of(preset: Preset) -> str:
    assert isinstance(preset.auth.secret, str)
    return preset.auth.secret


def verify(preset: Preset, headers: Headers, body: bytes = BODY, now: float = NOW) -> Verdict:
    return signature_verifier(preset.auth, SETTINGS, "webhook w").verify(headers, body, now)


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_a_correctly_signed_request_passes_with_the_providers_webhook_id(preset: Preset) -> None:
    verdict = verify(preset, preset.sign(secret_of(preset), BODY, NOW))

    assert verdict == Verdict(True, webhook_id=preset.webhook_id)


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_a_tampered_body_fails(preset: Preset) -> None:
    headers = preset.sign(secret_of(preset), BODY, NOW)

    verdict = verify(preset, headers, BODY.replace(b'"n":1', b'"n":2'))

    assert not verdict.ok


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_a_body_with_one_more_byte_fails(preset: Preset) -> None:
    headers = preset.sign(secret_of(preset), BODY, NOW)

    assert not verify(preset, headers, BODY + b" ").ok


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_a_request_signed_with_another_secret_fails(preset: Preset) -> None:
    headers = preset.sign(preset.wrong_secret, BODY, NOW)

    assert not verify(preset, headers).ok


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_a_request_without_the_signature_header_fails(preset: Preset) -> None:
    headers = preset.sign(secret_of(preset), BODY, NOW)
    del headers[preset.header]

    verdict = verify(preset, headers)

    assert not verdict.ok
    assert "missing" in verdict.reason or "no " in verdict.reason


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
@pytest.mark.parametrize(
    "garble",
    [
        lambda v: v[:-2] + ("00" if not v.endswith("00") else "11"),  # one byte flipped
        lambda v: v[:-8],  # truncated
        lambda v: v + "zz",  # not hex / base64 any more
        lambda v: "",  # empty
    ],
    ids=["flipped", "truncated", "garbage", "empty"],
)
def test_a_bad_signature_fails(preset: Preset, garble: Callable[[str], str]) -> None:
    headers = preset.sign(secret_of(preset), BODY, NOW)
    headers[preset.header] = garble(headers[preset.header])

    assert not verify(preset, headers).ok


@pytest.mark.parametrize("preset", TIMESTAMPED, ids=lambda p: p.name)
@pytest.mark.parametrize(
    ("offset", "ok"),
    [
        (-TOLERANCE_SECONDS - 1, False),  # older than 5 minutes
        (-TOLERANCE_SECONDS, True),
        (TOLERANCE_SECONDS, True),
        (TOLERANCE_SECONDS + 1, False),  # more than 5 minutes in the future
    ],
)
def test_signed_timestamps_more_than_five_minutes_off_fail(
    preset: Preset, offset: int, ok: bool
) -> None:
    headers = preset.sign(secret_of(preset), BODY, NOW + offset)

    verdict = verify(preset, headers)

    assert verdict.ok is ok
    if not ok:
        assert "timestamp" in verdict.reason


@pytest.mark.parametrize("preset", TIMESTAMPED, ids=lambda p: p.name)
def test_a_timestamp_that_is_not_unix_seconds_fails(preset: Preset) -> None:
    headers = preset.sign(secret_of(preset), BODY, NOW)
    for name in list(headers):
        headers[name] = headers[name].replace(f"{NOW}", "2023-11-14T22:13:20Z")

    assert not verify(preset, headers).ok


def test_stripe_accepts_any_of_several_v1_signatures() -> None:
    old = hex_hmac(b"whsec_previous_secret", f"{NOW}.".encode() + BODY)
    current = sign_stripe("whsec_stripe_secret", BODY, NOW)["stripe-signature"]
    rotated = {"stripe-signature": current.replace(f"t={NOW},", f"t={NOW},v1={old},")}

    assert verify(PRESETS[1], rotated) == Verdict(True, webhook_id="evt_1NG8Du2eZvKYlo2CUI79vXWy")


def test_stripe_fails_when_only_a_v0_signature_matches() -> None:
    signature = hex_hmac(b"whsec_stripe_secret", f"{NOW}.".encode() + BODY)
    headers = {"stripe-signature": f"t={NOW},v0={signature}"}

    assert not verify(PRESETS[1], headers).ok


def test_stripe_without_an_event_id_passes_with_no_webhook_id() -> None:
    body = b'{"type":"ping"}'

    verdict = verify(PRESETS[1], sign_stripe("whsec_stripe_secret", body, NOW), body)

    assert verdict.ok and verdict.webhook_id is None


def test_standard_webhooks_accepts_any_of_several_space_separated_signatures() -> None:
    headers = sign_standard_webhooks(SW_SECRET, BODY, NOW)
    webhook_id = headers["webhook-id"]
    old = standard_webhooks_signature(OTHER_SW_SECRET, webhook_id, NOW, BODY)
    asymmetric = "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZ=="
    headers["webhook-signature"] = f"{old} {asymmetric} {headers['webhook-signature']}"

    assert verify(PRESETS[2], headers).ok


def test_standard_webhooks_signs_the_id_so_another_id_fails() -> None:
    headers = sign_standard_webhooks(SW_SECRET, BODY, NOW)
    headers["webhook-id"] = "msg_someone_else"

    assert not verify(PRESETS[2], headers).ok


def test_standard_webhooks_reference_vector() -> None:
    # The signing example of the Standard Webhooks reference library (its own test suite).
    auth = HmacAuth(secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", preset="standard_webhooks")
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    verifier = signature_verifier(auth, SETTINGS, "w")

    assert verifier.verify(headers, b'{"test": 2432232314}', now=1614265330).ok
    assert not verifier.verify(headers, b'{"test": 2432232315}', now=1614265330).ok


def test_github_documentation_vector() -> None:
    # GitHub's "Validating webhook deliveries" test values.
    auth = HmacAuth(secret="It's a Secret to Everybody", preset="github")
    signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

    verdict = signature_verifier(auth, SETTINGS, "w").verify(
        {"x-hub-signature-256": signature}, b"Hello, World!"
    )

    assert verdict.ok and verdict.webhook_id is None


def test_github_accepts_upper_case_hex() -> None:
    headers = sign_github("gh-secret", BODY, NOW)
    headers["x-hub-signature-256"] = "sha256=" + headers["x-hub-signature-256"][7:].upper()

    assert verify(PRESETS[0], headers).ok


def test_github_refuses_the_sha1_header_alone() -> None:
    headers = {"x-hub-signature": "sha1=" + hmac.new(b"gh-secret", BODY, "sha1").hexdigest()}

    assert not verify(PRESETS[0], headers).ok


@pytest.mark.parametrize(
    ("algorithm", "encoding", "prefix"),
    [
        ("sha256", "hex", ""),
        ("sha256", "base64", ""),
        ("sha512", "hex", "sha512="),
        ("sha512", "base64", "hmac="),
    ],
)
def test_custom_form_every_algorithm_and_encoding(
    algorithm: str, encoding: str, prefix: str
) -> None:
    auth = HmacAuth(
        secret="s3cr3t",
        header="X-Shop-Hmac",
        algorithm=algorithm,  # type: ignore[arg-type]
        encoding=encoding,  # type: ignore[arg-type]
        prefix=prefix,
    )
    digest = hmac.new(b"s3cr3t", BODY, algorithm).digest()
    text = digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()
    verifier = signature_verifier(auth, SETTINGS, "w")

    assert verifier.verify({"x-shop-hmac": prefix + text}, BODY).ok
    other = hashlib.sha256 if algorithm == "sha512" else hashlib.sha512
    wrong = hmac.new(b"s3cr3t", BODY, other).digest()
    wrong_text = wrong.hex() if encoding == "hex" else base64.b64encode(wrong).decode()
    assert not verifier.verify({"x-shop-hmac": prefix + wrong_text}, BODY).ok


def test_custom_form_refuses_a_value_without_its_prefix() -> None:
    headers = sign_custom("custom-secret", BODY, NOW)
    headers["x-signature"] = headers["x-signature"].removeprefix("hmac=")

    assert not verify(PRESETS[3], headers).ok


def test_the_secret_comes_from_the_environment_when_the_route_is_built() -> None:
    auth = HmacAuth(secret=EnvRef("GH_SECRET"), preset="github")
    verifier = signature_verifier(auth, Settings(environ={"GH_SECRET": "gh-secret"}), "w")

    assert verifier.verify(sign_github("gh-secret", BODY, NOW), BODY).ok


def test_an_env_default_is_used_when_the_variable_is_unset() -> None:
    auth = HmacAuth(secret=EnvRef("GH_SECRET", "fallback"), preset="github")
    verifier = signature_verifier(auth, SETTINGS, "w")

    assert verifier.verify(sign_github("fallback", BODY, NOW), BODY).ok


def test_an_unset_secret_variable_is_a_start_up_error_naming_it() -> None:
    auth = HmacAuth(secret=EnvRef("GH_SECRET"), preset="github")

    with pytest.raises(WebhookConfigError, match=r"webhook gh_in: hmac secret: env\('GH_SECRET'\)"):
        signature_verifier(auth, SETTINGS, "webhook gh_in")


@pytest.mark.parametrize("secret", ["whsec_***not base64***", "whsec_"])
def test_a_standard_webhooks_secret_that_is_not_base64_is_a_start_up_error(secret: str) -> None:
    auth = HmacAuth(secret=secret, preset="standard_webhooks")

    with pytest.raises(WebhookConfigError, match="whsec_ followed by base64"):
        signature_verifier(auth, SETTINGS, "webhook sw")


def test_an_empty_secret_is_a_start_up_error() -> None:
    with pytest.raises(WebhookConfigError, match="empty"):
        signature_verifier(HmacAuth(secret="", preset="github"), SETTINGS, "webhook gh")


def test_secrets_never_show_in_reprs() -> None:
    secret = Secret("hunter2")
    verifier = signature_verifier(HmacAuth(secret="hunter2", preset="github"), SETTINGS, "w")

    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret)
    assert secret.reveal() == "hunter2"
    assert "hunter2" not in repr(verifier) and "hunter2" not in repr(vars(verifier))


def test_the_authenticator_passes_the_webhook_id_on() -> None:
    authenticator = SignatureAuthenticator(signature_verifier(PRESETS[0].auth, SETTINGS, "w"))

    outcome = asyncio.run(authenticator.authenticate(sign_github("gh-secret", BODY, NOW), BODY))

    assert outcome == Authenticated(webhook_id="72d3162e-cc78-11e3-81ab-4c9367dc0958")


@pytest.mark.parametrize("signed", [True, False], ids=["tampered", "unsigned"])
def test_the_authenticator_answers_401_with_a_challenge_and_a_generic_detail(signed: bool) -> None:
    authenticator = SignatureAuthenticator(signature_verifier(PRESETS[0].auth, SETTINGS, "w"))
    headers = sign_github("gh-secret", BODY, NOW) if signed else {}

    outcome = asyncio.run(authenticator.authenticate(headers, BODY + b"!"))

    assert isinstance(outcome, Refused)
    assert outcome.problem.status == 401
    assert dict(outcome.problem.headers) == {b"www-authenticate": b'HMAC realm="lhpipe"'}
    # The caller is not told which part failed; the logs are.
    assert json.loads(outcome.problem.body())["detail"] == (
        "the request's signature is missing or does not match"
    )
    assert outcome.reason  # for the logs


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
@pytest.mark.parametrize("secret", ["k", "x" * 64, "y" * 65, "z" * 129, "grüße"])
def test_the_custom_form_computes_the_standard_hmac_for_any_key_length(
    algorithm: Literal["sha256", "sha512"], secret: str
) -> None:
    # Keys shorter than, as long as and longer than the hash's block (64 bytes for SHA-256, 128
    # for SHA-512) all give RFC 2104's HMAC.
    auth = HmacAuth(secret=secret, header="X-Sig", algorithm=algorithm)
    verifier = signature_verifier(auth, Settings(environ={}), "w")
    body = b'{"event": "ping"}'
    good = hmac.new(secret.encode(), body, algorithm).hexdigest()

    assert verifier.verify({"x-sig": good}, body).ok
    assert not verifier.verify({"x-sig": good}, body + b" ").ok

"""Bearer tokens, claim by claim: the reason each refusal logs, the exact edges of `exp`, `nbf`
and the leeway, the header forms RFC 6750 allows, the size limit, and the cache of accepted
tokens. The issuer and the keys are those of test_webhook_oauth."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from joserfc import jws
from test_webhook_oauth import (
    EC,
    INVALID,
    ISSUER,
    NOW,
    RSA,
    STRANGER,
    Gateway,
    b64url,
    claims,
    make_gateway,
    refusal,
    token,
)

from lhpipe.gateway import oauth
from lhpipe.gateway.oauth import BearerVerifier
from lhpipe.gateway.outcome import Authenticated, AuthOutcome, Refused

EXPIRED = "the access token expired"
NOT_YET = "the access token is not valid yet"
IS_INVALID = "the access token is invalid"


@pytest.fixture
def gateway() -> Gateway:
    return make_gateway()


def unsigned(header: dict[str, Any], payload: bytes) -> str:
    """A token with any header and payload, and a signature that cannot verify."""
    return f"{b64url(json.dumps(header).encode())}.{b64url(payload)}.c2ln"


def signed(payload: dict[str, Any] | list[Any], typ: str = "JWT") -> str:
    """A token with any JSON payload, signed by the issuer's RSA key."""
    header = {"alg": "RS256", "kid": "rsa-1", "typ": typ}
    return jws.serialize_compact(header, json.dumps(payload), RSA)


def renamed(value: str, kid: str) -> str:
    """``value`` with a header naming key ``kid`` instead."""
    header = b64url(json.dumps({"alg": "RS256", "kid": kid}).encode())
    return f"{header}.{value.split('.', 1)[1]}"


def reason(outcome: AuthOutcome) -> str:
    assert isinstance(outcome, Refused), outcome
    return outcome.reason


def with_claims(**changes: Any) -> Callable[[], str]:
    return lambda: token(**changes)


# (what is wrong, the token, the reason logged, what the caller is told)
REFUSALS = [
    (
        "another issuer",
        with_claims(iss="https://idp.example.com/realms/other"),
        f"iss 'https://idp.example.com/realms/other' is not '{ISSUER}'",
        IS_INVALID,
    ),
    (
        "an audience that only starts like ours",
        with_claims(aud="lhpipe-admin"),
        "aud 'lhpipe-admin' does not contain 'lhpipe'",
        IS_INVALID,
    ),
    ("no exp", with_claims(exp=None), "exp is missing or not a number", IS_INVALID),
    ("exp true", with_claims(exp=True), "exp is missing or not a number", IS_INVALID),
    ("expired", with_claims(exp=NOW - 45), "expired 45 s ago", EXPIRED),
    ("nbf text", with_claims(nbf="now"), "nbf is not a number", IS_INVALID),
    ("nbf false", with_claims(nbf=False), "nbf is not a number", IS_INVALID),
    ("not valid yet", with_claims(nbf=NOW + 45), "not valid for another 45 s", NOT_YET),
    ("signed by another key", lambda: token(STRANGER), "bad signature", IS_INVALID),
    (
        "an RS256 token naming the EC key",
        lambda: renamed(token(), "ec-1"),
        "key 'ec-1' does not fit: InvalidKeyTypeError",
        IS_INVALID,
    ),
    (
        "a payload that is a list",
        lambda: signed([1, 2]),
        "the payload is not a JSON object",
        IS_INVALID,
    ),
    (
        "an empty payload",
        lambda: jws.serialize_compact({"alg": "RS256", "kid": "rsa-1"}, b"", RSA),
        "the payload is not a JSON object",
        IS_INVALID,
    ),
    (
        "parts that are not base64",
        lambda: "!!!.???.###",
        "malformed token: DecodeError",
        IS_INVALID,
    ),
    (
        "three parts but 20 000 characters",
        lambda: "a." + "b" * 20_000 + ".c",
        "not a JWS compact serialization",
        IS_INVALID,
    ),
    (
        "an unknown kid",
        lambda: unsigned({"alg": "RS256", "kid": "made-up"}, b"{}"),
        f"no signing key 'made-up' at {ISSUER}",
        IS_INVALID,
    ),
]


@pytest.mark.parametrize(
    ("make", "logged", "told"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_each_refusal_logs_its_precise_reason_and_tells_the_caller_little(
    gateway: Gateway, make: Callable[[], str], logged: str, told: str
) -> None:
    outcome = gateway.bearer(make())

    status, challenge, detail = refusal(outcome)
    assert (status, detail) == (401, told)
    assert challenge == (
        f'Bearer realm="lhpipe", error="invalid_token", error_description="{told}"'
    )
    assert reason(outcome) == logged


def test_a_crit_that_is_not_a_list_is_a_malformed_header(gateway: Gateway) -> None:
    header = b64url(json.dumps({"alg": "RS256", "kid": "rsa-1", "crit": 5}).encode())

    outcome = gateway.bearer(f"{header}.{token().split('.', 1)[1]}")

    assert refusal(outcome)[:2] == (401, INVALID)
    assert reason(outcome).startswith("malformed token header: TypeError: ")


def test_a_kid_that_is_not_a_string_is_refused_before_any_key_is_fetched(
    gateway: Gateway,
) -> None:
    outcome = gateway.bearer(unsigned({"alg": "RS256", "kid": 5}, b"{}"))

    assert refusal(outcome)[:2] == (401, INVALID)
    assert reason(outcome) == "kid is not a string"
    assert gateway.issuer.requests == []


def test_a_failure_inside_the_check_refuses_the_token_instead_of_raising(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> bool:
        raise IndexError("boom")

    monkeypatch.setattr(oauth, "validate_compact", broken)

    outcome = gateway.bearer(token())

    assert refusal(outcome) == (401, INVALID, IS_INVALID)
    assert reason(outcome) == "the token check failed: IndexError: 'boom'"


def test_the_default_leeway_is_30_seconds_and_its_edges_are_accepted(gateway: Gateway) -> None:
    default = BearerVerifier(gateway.verifier.keys, audience="lhpipe", clock=gateway.clock)

    def verify(value: str) -> AuthOutcome:
        return asyncio.run(default.verify(f"Bearer {value}"))

    assert isinstance(verify(token(exp=NOW - 30)), Authenticated)
    assert isinstance(verify(token(nbf=NOW + 30)), Authenticated)
    assert refusal(verify(token(exp=NOW - 30.5)))[2] == EXPIRED
    assert refusal(verify(token(nbf=NOW + 30.5)))[2] == NOT_YET


def test_a_missing_or_foreign_authorization_header_is_told_apart_in_the_logs(
    gateway: Gateway,
) -> None:
    assert reason(gateway.verify(None)) == "no Authorization header"
    assert reason(gateway.verify("Basic bGhwaXBlOnNlY3JldA==")) == "not a Bearer token"


@pytest.mark.parametrize("form", ["Bearer  {}", "  Bearer {}  ", "BEARER {}"])
def test_the_bearer_scheme_may_be_followed_by_several_spaces(gateway: Gateway, form: str) -> None:
    # RFC 6750 2.1: credentials = "Bearer" 1*SP b64token
    assert isinstance(gateway.verify(form.format(token())), Authenticated)


def test_authenticate_reads_the_authorization_header_a_request_may_send_once(
    gateway: Gateway,
) -> None:
    verifier = gateway.verifier
    outcome = asyncio.run(verifier.authenticate({"authorization": f"Bearer {token()}"}, b"{}"))

    assert isinstance(outcome, Authenticated)
    assert verifier.credential_headers == verifier.secret_headers == {"authorization"}


def test_a_token_of_16_kib_is_looked_at_and_one_character_more_is_not(gateway: Gateway) -> None:
    def of_length(length: int) -> str:
        # base64 skips one length in four: the header's `typ` moves the payload's length.
        for typ in ("JWT", "JOSE"):
            short = len(signed(claims(pad=""), typ))
            first = (length - short) * 3 // 4 - 3
            for pad in range(first, first + 6):
                padded = signed(claims(pad="p" * pad), typ)
                if len(padded) == length:
                    return padded
        raise AssertionError(f"no token of {length} characters")

    assert isinstance(gateway.bearer(of_length(16 * 1024)), Authenticated)
    outcome = gateway.bearer(of_length(16 * 1024 + 1))
    assert reason(outcome) == "not a JWS compact serialization"


def test_missing_scopes_are_all_named_in_the_challenge_and_the_log() -> None:
    gateway = make_gateway(scopes=("kyc:write", "kyc:read"))

    outcome = gateway.bearer(token(scope="profile"))

    assert refusal(outcome) == (
        403,
        'Bearer realm="lhpipe", error="insufficient_scope", '
        'error_description="the access token lacks a required scope", '
        'scope="kyc:write kyc:read"',
        "the access token lacks a required scope (kyc:write kyc:read)",
    )
    assert reason(outcome) == "token lacks scope(s) kyc:write kyc:read"


def test_scp_is_not_read_when_scope_is_there(gateway: Gateway) -> None:
    assert refusal(gateway.bearer(token(scope="profile", scp=["kyc:write"])))[0] == 403


def test_entries_of_scp_that_are_not_names_are_ignored(gateway: Gateway) -> None:
    listed = token(scope=None, scp=[{"kyc": "write"}, 7, "kyc:write"])

    assert isinstance(gateway.bearer(listed), Authenticated)
    assert refusal(gateway.bearer(token(scope=None, scp=7)))[0] == 403


# --- the cache of accepted tokens ------------------------------------------------------------


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every signature check made, still made for real."""
    made: list[object] = []
    real = oauth.validate_compact

    def counting(*args: Any, **kwargs: Any) -> bool:
        made.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(oauth, "validate_compact", counting)
    return made


def test_a_remembered_token_is_accepted_with_its_claims_up_to_exp_plus_leeway(
    gateway: Gateway, checks: list[object]
) -> None:
    value = token(exp=NOW + 60)
    assert isinstance(gateway.bearer(value), Authenticated)

    gateway.clock.now = NOW + 90  # exp + 30 s of leeway, to the second
    outcome = gateway.bearer(value)

    assert outcome == Authenticated(claims=claims(exp=NOW + 60))
    assert len(checks) == 1
    gateway.clock.now = NOW + 90.5
    assert refusal(gateway.bearer(value))[2] == EXPIRED


def test_the_cache_forgets_the_least_recently_used_token(
    gateway: Gateway, checks: list[object]
) -> None:
    small = BearerVerifier(
        gateway.verifier.keys, audience="lhpipe", cache_size=2, clock=lambda: NOW
    )

    def verify(value: str) -> None:
        assert isinstance(asyncio.run(small.verify(f"Bearer {value}")), Authenticated)

    first, second, third = (token(jti=str(i)) for i in range(3))
    verify(first)
    verify(second)
    verify(first)  # both fit: no new check
    assert len(checks) == 2

    verify(third)  # evicts `second`, used less lately than `first`
    verify(first)
    assert len(checks) == 3
    verify(second)
    assert len(checks) == 4


def test_the_cache_holds_4096_tokens_by_default(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Signatures are counted, not checked: 4097 real ones would make this test slow.
    made: list[object] = []
    monkeypatch.setattr(oauth, "validate_compact", lambda *a, **k: made.append(a) or True)
    verifier = BearerVerifier(gateway.verifier.keys, audience="lhpipe", clock=gateway.clock)
    tokens = [
        unsigned({"alg": "ES256", "kid": EC.kid}, json.dumps(claims(jti=str(i))).encode())
        for i in range(4097)
    ]

    async def verify_all(values: list[str]) -> list[AuthOutcome]:
        return [await verifier.verify(f"Bearer {value}") for value in values]

    outcomes = asyncio.run(verify_all([*tokens, tokens[1], tokens[0]]))

    assert all(isinstance(o, Authenticated) for o in outcomes)
    assert len(made) == 4097 + 1  # tokens[1] was still remembered, tokens[0] no longer

"""Bearer tokens: locally generated RSA and EC keys, the issuer's discovery document and JWKS
served in-process by httpx.MockTransport, and tokens forged every way a caller could."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from joserfc import jwt
from joserfc.jwk import ECKey, Key, OctKey, RSAKey
from joserfc.jws import JWSRegistry

from lhpipe.check.program import EnvRef, OAuthAuth
from lhpipe.gateway import oauth
from lhpipe.gateway.auth import build_authenticator
from lhpipe.gateway.config import WebhookConfigError
from lhpipe.gateway.oauth import BearerVerifier, IssuerDirectory, IssuerKeys
from lhpipe.gateway.outcome import Authenticated, AuthOutcome, Refused
from lhpipe.settings import Settings

ISSUER = "https://idp.example.com/realms/lhpipe"
JWKS_URI = "https://idp.example.com/realms/lhpipe/protocol/openid-connect/certs"
NOW = 1_700_000_000.0

RSA = RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "use": "sig", "alg": "RS256"})
EC = ECKey.generate_key("P-256", parameters={"kid": "ec-1", "use": "sig", "alg": "ES256"})
PSS = RSAKey.generate_key(2048, parameters={"kid": "pss-1", "use": "sig", "alg": "PS256"})
ENC = RSAKey.generate_key(2048, parameters={"kid": "enc-1", "use": "enc", "alg": "RSA-OAEP"})
ROTATED = RSAKey.generate_key(2048, parameters={"kid": "rsa-2", "use": "sig", "alg": "RS256"})
#: Published without "alg", as some issuers do: only the allowed list stops RS384 then.
PLAIN = RSAKey.generate_key(2048, parameters={"kid": "plain-1", "use": "sig"})
STRANGER = RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "use": "sig", "alg": "RS256"})


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": ["account", "lhpipe"],
        "sub": "service-account-lhpipe-client",
        "azp": "lhpipe-client",
        "scope": "profile kyc:write email",
        "iat": NOW - 10,
        "exp": NOW + 300,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def token(key: Key = RSA, alg: str = "RS256", **changes: Any) -> str:
    header = {"alg": alg, "kid": key.kid, "typ": "JWT"}
    return jwt.encode(header, claims(**changes), key, algorithms=[alg])


@dataclass
class FakeIssuer:
    """The issuer's two documents, and what was asked of it."""

    keys: list[Key] = field(default_factory=lambda: [RSA, EC, PSS, ENC, PLAIN])
    discovery_issuer: str = ISSUER
    down: bool = False
    requests: list[str] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        self.requests.append(url)
        if self.down:
            return httpx.Response(503)
        if url == ISSUER + "/.well-known/openid-configuration":
            return httpx.Response(200, json={"issuer": self.discovery_issuer, "jwks_uri": JWKS_URI})
        if url == JWKS_URI:
            return httpx.Response(200, json={"keys": [k.as_dict(private=False) for k in self.keys]})
        return httpx.Response(404)

    @property
    def jwks_fetches(self) -> int:
        return self.requests.count(JWKS_URI)


class Clock:
    """Both clocks the verifier reads: wall time for claims, monotonic for refetch limits."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@dataclass
class Gateway:
    issuer: FakeIssuer
    clock: Clock
    verifier: BearerVerifier

    def verify(self, authorization: str | None) -> AuthOutcome:
        return asyncio.run(self.verifier.verify(authorization))

    def bearer(self, value: str) -> AuthOutcome:
        return self.verify(f"Bearer {value}")


def make_gateway(
    issuer: FakeIssuer | None = None, scopes: tuple[str, ...] = ("kyc:write",), leeway_s: float = 30
) -> Gateway:
    fake = issuer or FakeIssuer()
    clock = Clock()
    client = httpx.AsyncClient(transport=httpx.MockTransport(fake.handle))
    keys = IssuerKeys(ISSUER, client, clock=clock)
    verifier = BearerVerifier(
        keys, audience="lhpipe", scopes=scopes, leeway_s=leeway_s, clock=clock
    )
    return Gateway(fake, clock, verifier)


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    yield make_gateway()


def refusal(outcome: AuthOutcome) -> tuple[int, str, str]:
    """(status, WWW-Authenticate, detail) of a refusal."""
    assert isinstance(outcome, Refused), outcome
    headers = dict(outcome.problem.headers)
    body = json.loads(outcome.problem.body())
    assert body["status"] == outcome.problem.status
    challenge = headers.get(b"www-authenticate", b"").decode()
    return outcome.problem.status, challenge, body["detail"]


INVALID = (
    'Bearer realm="lhpipe", error="invalid_token", error_description="the access token is invalid"'
)


@pytest.mark.parametrize(("key", "alg"), [(RSA, "RS256"), (EC, "ES256"), (PSS, "PS256")])
def test_a_valid_token_is_accepted_with_its_claims(gateway: Gateway, key: Key, alg: str) -> None:
    outcome = gateway.bearer(token(key, alg))

    assert isinstance(outcome, Authenticated)
    assert outcome.claims == claims()
    assert outcome.webhook_id is None


def test_the_issuer_is_discovered_once_and_its_keys_fetched_once(gateway: Gateway) -> None:
    for _ in range(3):
        assert isinstance(gateway.bearer(token()), Authenticated)
    assert isinstance(gateway.bearer(token(EC, "ES256")), Authenticated)

    assert gateway.issuer.requests == [ISSUER + "/.well-known/openid-configuration", JWKS_URI]


def test_the_scheme_is_case_insensitive(gateway: Gateway) -> None:
    assert isinstance(gateway.verify(f"bearer {token()}"), Authenticated)


def test_without_authorization_the_answer_is_401_with_a_bare_challenge(gateway: Gateway) -> None:
    assert refusal(gateway.verify(None)) == (
        401,
        'Bearer realm="lhpipe"',
        "a bearer token is required",
    )
    assert gateway.issuer.requests == []  # nothing fetched for nothing


@pytest.mark.parametrize("value", ["Basic bGhwaXBlOnNlY3JldA==", "Bearer", "Bearer a b", "Token x"])
def test_other_schemes_or_shapes_get_the_bare_challenge(gateway: Gateway, value: str) -> None:
    status, challenge, _ = refusal(gateway.verify(value))

    assert (status, challenge) == (401, 'Bearer realm="lhpipe"')


def test_an_expired_token_is_refused_as_expired(gateway: Gateway) -> None:
    status, challenge, detail = refusal(gateway.bearer(token(exp=NOW - 31)))

    assert status == 401
    assert challenge == (
        'Bearer realm="lhpipe", error="invalid_token", error_description="the access token expired"'
    )
    assert detail == "the access token expired"


def test_expiry_and_not_before_allow_the_leeway(gateway: Gateway) -> None:
    assert isinstance(gateway.bearer(token(exp=NOW - 29)), Authenticated)
    assert isinstance(gateway.bearer(token(nbf=NOW + 29)), Authenticated)


def test_a_token_not_valid_yet_is_refused(gateway: Gateway) -> None:
    status, _, detail = refusal(gateway.bearer(token(nbf=NOW + 31)))

    assert (status, detail) == (401, "the access token is not valid yet")


def test_a_zero_leeway_is_exact() -> None:
    strict = make_gateway(leeway_s=0)

    assert refusal(strict.bearer(token(exp=NOW - 1)))[0] == 401
    assert isinstance(strict.bearer(token(exp=NOW + 1)), Authenticated)


@pytest.mark.parametrize(
    "changes",
    [
        {"iss": "https://idp.example.com/realms/other"},
        {"iss": ISSUER + "/"},  # exact match only
        {"iss": None},
        {"aud": "account"},
        {"aud": ["account", "lhpipe-admin"]},
        {"aud": None},
        {"exp": None},  # a bearer token that never expires
        {"exp": "tomorrow"},
        {"nbf": "now"},
    ],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()),
)
def test_wrong_claims_are_refused_as_invalid_tokens(gateway: Gateway, changes: Any) -> None:
    status, challenge, detail = refusal(gateway.bearer(token(**changes)))

    assert (status, challenge, detail) == (401, INVALID, "the access token is invalid")


def test_an_audience_given_as_a_string_is_accepted(gateway: Gateway) -> None:
    assert isinstance(gateway.bearer(token(aud="lhpipe")), Authenticated)


def test_a_valid_token_without_the_scope_is_403_insufficient_scope(gateway: Gateway) -> None:
    status, challenge, detail = refusal(gateway.bearer(token(scope="profile email")))

    assert status == 403
    assert challenge == (
        'Bearer realm="lhpipe", error="insufficient_scope", '
        'error_description="the access token lacks a required scope", scope="kyc:write"'
    )
    assert detail == "the access token lacks a required scope (kyc:write)"


def test_a_scope_that_only_starts_like_the_required_one_does_not_count(gateway: Gateway) -> None:
    assert refusal(gateway.bearer(token(scope="kyc:write-all kyc")))[0] == 403


def test_every_required_scope_must_be_there() -> None:
    both = make_gateway(scopes=("kyc:write", "kyc:read"))

    assert refusal(both.bearer(token()))[0] == 403
    assert isinstance(both.bearer(token(scope="kyc:read kyc:write")), Authenticated)


@pytest.mark.parametrize("scp", [["kyc:write", "profile"], "profile kyc:write"])
def test_scopes_may_come_as_scp(gateway: Gateway, scp: Any) -> None:
    assert isinstance(gateway.bearer(token(scope=None, scp=scp)), Authenticated)


def test_no_scopes_required_accepts_a_token_without_any() -> None:
    assert isinstance(make_gateway(scopes=()).bearer(token(scope=None)), Authenticated)


def test_alg_none_is_refused(gateway: Gateway) -> None:
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims()).encode())

    for unsigned in (f"{header}.{payload}.", f"{header}.{payload}.c2ln"):
        outcome = gateway.bearer(unsigned)
        assert refusal(outcome)[:2] == (401, INVALID)
        assert isinstance(outcome, Refused) and outcome.reason == "alg 'none' is not allowed"


def test_hs256_signed_with_the_public_key_as_secret_is_refused(gateway: Gateway) -> None:
    # The classic key-confusion forgery: anyone can read the public key from the JWKS.
    public_pem = RSA.as_pem(private=False)
    header = b64url(json.dumps({"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims()).encode())
    signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()

    forged = f"{header}.{payload}.{b64url(signature)}"

    outcome = gateway.bearer(forged)
    assert refusal(outcome)[:2] == (401, INVALID)
    # Refused by the allow-list, before any key is looked up: not only by the key-type check
    # that would follow (defence in depth).
    assert isinstance(outcome, Refused) and outcome.reason == "alg 'HS256' is not allowed"
    assert gateway.issuer.requests == []


def test_an_allowed_algorithm_outside_the_list_is_refused(gateway: Gateway) -> None:
    rs384 = token(PLAIN, "RS384")
    hs512 = token(OctKey.generate_key(512, parameters={"kid": "plain-1"}), "HS512")

    assert isinstance(gateway.bearer(token(PLAIN, "RS256")), Authenticated)
    for refused, alg in ((rs384, "RS384"), (hs512, "HS512")):
        outcome = gateway.bearer(refused)
        assert refusal(outcome)[:2] == (401, INVALID)
        assert isinstance(outcome, Refused) and outcome.reason == f"alg '{alg}' is not allowed"


def test_a_token_naming_a_key_of_another_type_is_refused(gateway: Gateway) -> None:
    # Signed by the RSA key, but its header points at the EC key.
    header = b64url(json.dumps({"alg": "RS256", "kid": "ec-1"}).encode())
    body = token().split(".", 1)[1]

    assert refusal(gateway.bearer(f"{header}.{body}"))[:2] == (401, INVALID)


def test_an_encryption_key_does_not_verify_signatures(gateway: Gateway) -> None:
    # Signed with the private half of the issuer's encryption key, which is published with
    # "use": "enc": it must not count as a signing key.
    same_key_for_signing = RSAKey.import_key(
        {**ENC.as_dict(private=True), "use": "sig", "alg": "RS256"}
    )

    signed = jwt.encode({"alg": "RS256", "kid": "enc-1"}, claims(), same_key_for_signing)

    assert refusal(gateway.bearer(signed))[:2] == (401, INVALID)


def test_a_token_signed_by_another_key_with_the_same_kid_is_refused(gateway: Gateway) -> None:
    assert refusal(gateway.bearer(token(STRANGER)))[:2] == (401, INVALID)


def test_a_tampered_payload_is_refused(gateway: Gateway) -> None:
    header, _, signature = token().split(".")
    payload = b64url(json.dumps(claims(scope="kyc:write admin")).encode())

    assert refusal(gateway.bearer(f"{header}.{payload}.{signature}"))[:2] == (401, INVALID)


@pytest.mark.parametrize(
    "malformed",
    [
        "not-a-jwt",
        "a.b",
        "a.b.c.d.e",  # the shape of a JWE
        "!!!.???.###",
        b64url(b"[1,2]") + "." + b64url(b"{}") + ".c2ln",
        b64url(b'{"alg":"RS256","kid":"rsa-1"}') + "." + b64url(b"[1]") + ".c2ln",
        "x" * 20_000,
    ],
)
def test_malformed_tokens_are_refused_as_invalid(gateway: Gateway, malformed: str) -> None:
    assert refusal(gateway.bearer(malformed))[:2] == (401, INVALID)


def test_a_payload_that_is_not_an_object_is_refused_even_when_signed(gateway: Gateway) -> None:
    from joserfc import jws

    signed = jws.serialize_compact({"alg": "RS256", "kid": "rsa-1"}, b"[1, 2]", RSA)

    assert refusal(gateway.bearer(signed))[:2] == (401, INVALID)


def test_an_unknown_kid_refetches_the_keys_once_then_is_refused(gateway: Gateway) -> None:
    assert isinstance(gateway.bearer(token()), Authenticated)
    gateway.clock.now += 31

    outcome = gateway.bearer(token(ROTATED, exp=NOW + 600))

    assert refusal(outcome)[:2] == (401, INVALID)
    assert gateway.issuer.jwks_fetches == 2


def test_a_rotated_key_is_picked_up_on_its_first_token(gateway: Gateway) -> None:
    assert isinstance(gateway.bearer(token()), Authenticated)
    gateway.issuer.keys = [ROTATED, RSA]
    gateway.clock.now += 31

    assert isinstance(gateway.bearer(token(ROTATED, exp=NOW + 600)), Authenticated)
    assert isinstance(gateway.bearer(token(RSA, exp=NOW + 600)), Authenticated)
    assert gateway.issuer.jwks_fetches == 2


def test_refetches_for_unknown_kids_happen_at_most_every_30_seconds(gateway: Gateway) -> None:
    assert isinstance(gateway.bearer(token()), Authenticated)
    gateway.issuer.keys = [ROTATED, RSA]

    # Within 30 s of the last fetch an unknown kid is just unknown: no call to the issuer.
    for kid in ("made-up-1", "made-up-2", "rsa-2"):
        gateway.clock.now += 5
        forged = jwt.encode({"alg": "RS256", "kid": kid}, claims(exp=NOW + 600), ROTATED)
        assert refusal(gateway.bearer(forged))[0] == 401
    assert gateway.issuer.jwks_fetches == 1

    gateway.clock.now += 16  # 31 s after the first fetch
    assert isinstance(gateway.bearer(token(ROTATED, exp=NOW + 600)), Authenticated)
    assert gateway.issuer.jwks_fetches == 2


def test_keys_older_than_an_hour_are_fetched_again_so_a_withdrawn_key_stops_working(
    gateway: Gateway,
) -> None:
    assert isinstance(gateway.bearer(token(EC, "ES256")), Authenticated)
    gateway.issuer.keys = [RSA]
    gateway.clock.now += 3601

    outcome = gateway.bearer(token(EC, "ES256", exp=NOW + 7200))

    assert refusal(outcome)[:2] == (401, INVALID)
    assert gateway.issuer.jwks_fetches == 2


def test_stale_keys_are_kept_when_the_issuer_is_down(gateway: Gateway) -> None:
    assert isinstance(gateway.bearer(token()), Authenticated)
    gateway.issuer.down = True
    gateway.clock.now += 3601

    assert isinstance(gateway.bearer(token(exp=NOW + 7200)), Authenticated)


def test_an_unreachable_issuer_gives_503_with_retry_after_then_recovers() -> None:
    gateway = make_gateway(FakeIssuer(down=True))

    outcome = gateway.bearer(token())

    assert isinstance(outcome, Refused)
    assert outcome.problem.status == 503
    assert dict(outcome.problem.headers) == {b"retry-after": b"5"}
    assert "HTTP 503" in outcome.reason
    # Within the retry interval nobody calls the issuer again.
    gateway.clock.now += 2
    assert refusal(gateway.bearer(token()))[0] == 503
    assert len(gateway.issuer.requests) == 1

    gateway.issuer.down = False
    gateway.clock.now += 4
    assert isinstance(gateway.bearer(token()), Authenticated)


def test_a_connection_error_to_the_issuer_gives_503() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(refuse))
    verifier = BearerVerifier(IssuerKeys(ISSUER, client), audience="lhpipe", clock=lambda: NOW)

    assert refusal(asyncio.run(verifier.verify(f"Bearer {token()}")))[0] == 503


def test_a_discovery_document_naming_another_issuer_is_not_trusted() -> None:
    gateway = make_gateway(FakeIssuer(discovery_issuer="https://evil.example.com"))

    outcome = gateway.bearer(token())

    assert isinstance(outcome, Refused) and outcome.problem.status == 503
    assert "evil.example.com" in outcome.reason
    assert gateway.issuer.jwks_fetches == 0


def test_concurrent_first_requests_share_one_discovery() -> None:
    gateway = make_gateway()

    async def many() -> list[AuthOutcome]:
        return await asyncio.gather(
            *(gateway.verifier.verify(f"Bearer {token()}") for _ in range(20))
        )

    outcomes = asyncio.run(many())

    assert all(isinstance(o, Authenticated) for o in outcomes)
    assert gateway.issuer.requests == [ISSUER + "/.well-known/openid-configuration", JWKS_URI]


def test_an_accepted_token_is_verified_once_and_still_expires(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []
    real = oauth.validate_compact

    def counting(*args: Any, **kwargs: Any) -> bool:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(oauth, "validate_compact", counting)
    value = token(exp=NOW + 60)

    for _ in range(5):
        assert isinstance(gateway.bearer(value), Authenticated)
    assert len(calls) == 1

    gateway.clock.now += 91  # past exp and the leeway: the cached entry no longer counts
    assert refusal(gateway.bearer(value))[2] == "the access token expired"


def test_a_refused_token_is_not_remembered_as_accepted(gateway: Gateway) -> None:
    without_scope = token(scope="profile")

    assert refusal(gateway.bearer(without_scope))[0] == 403
    assert refusal(gateway.bearer(without_scope))[0] == 403


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    small = make_gateway()
    small.verifier = BearerVerifier(
        small.verifier.keys, audience="lhpipe", cache_size=2, clock=small.clock
    )
    calls: list[object] = []
    real = oauth.validate_compact
    monkeypatch.setattr(oauth, "validate_compact", lambda *a, **k: calls.append(a) or real(*a, **k))
    tokens = [token(jti=str(i)) for i in range(3)]
    for value in tokens:
        assert isinstance(small.bearer(value), Authenticated)

    assert isinstance(small.bearer(tokens[2]), Authenticated)  # still cached
    assert len(calls) == 3
    assert isinstance(small.bearer(tokens[0]), Authenticated)  # evicted: verified again
    assert len(calls) == 4


def test_build_authenticator_reads_issuer_and_audience_from_the_environment() -> None:
    fake = FakeIssuer()
    issuers = IssuerDirectory(httpx.AsyncClient(transport=httpx.MockTransport(fake.handle)))
    auth = OAuthAuth(issuer=EnvRef("OIDC_ISSUER"), audience="lhpipe", scopes=("kyc:write",))
    settings = Settings(environ={"OIDC_ISSUER": ISSUER})

    first = build_authenticator("kyc_intake", auth, settings, issuers)
    second = build_authenticator("kyc_again", auth, settings, issuers)

    assert isinstance(first, BearerVerifier) and isinstance(second, BearerVerifier)
    assert first.keys is second.keys  # one discovery per issuer
    assert first.leeway_s == 30.0
    assert first.scopes == ("kyc:write",)


def test_build_authenticator_with_an_unset_issuer_is_a_start_up_error() -> None:
    auth = OAuthAuth(issuer=EnvRef("OIDC_ISSUER"), audience="lhpipe")

    with pytest.raises(WebhookConfigError, match=r"webhook kyc_intake: oauth issuer"):
        build_authenticator("kyc_intake", auth, Settings(environ={}), IssuerDirectory())


def test_a_token_without_kid_uses_the_issuers_only_key() -> None:
    single = make_gateway(FakeIssuer(keys=[RSA, ENC]))
    unnamed = jwt.encode({"alg": "RS256"}, claims(), RSA, algorithms=["RS256"])

    assert isinstance(single.bearer(unnamed), Authenticated)


def test_a_token_without_kid_is_refused_when_the_issuer_has_several_keys(gateway: Gateway) -> None:
    unnamed = jwt.encode({"alg": "RS256"}, claims(), RSA, algorithms=["RS256"])

    assert refusal(gateway.bearer(unnamed))[:2] == (401, INVALID)
    assert gateway.issuer.jwks_fetches == 1  # no kid: nothing to refetch for


def test_extra_header_parameters_are_accepted_but_crit_ones_are_not(gateway: Gateway) -> None:
    lenient = JWSRegistry(algorithms=["RS256"], strict_check_header=False)
    extra = jwt.encode(
        {"alg": "RS256", "kid": "rsa-1", "x-build": "42"}, claims(), RSA, registry=lenient
    )
    critical_header = {"alg": "RS256", "kid": "rsa-1", "crit": ["exp-policy"], "exp-policy": 1}
    header = b64url(json.dumps(critical_header).encode())
    payload = b64url(json.dumps(claims()).encode())
    signature = RSA.get_op_key("sign").sign(
        f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    critical = f"{header}.{payload}.{b64url(signature)}"

    assert isinstance(gateway.bearer(extra), Authenticated)
    assert refusal(gateway.bearer(critical))[:2] == (401, INVALID)

"""The Gateway's bearer-token check against the real Keycloak of the local stack: real
discovery, the realm's real JWKS, real client_credentials tokens (docs/stack.md, realm
`lhpipe`)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from lhpipe.check.program import EnvRef, OAuthAuth
from lhpipe.gateway.auth import build_authenticator
from lhpipe.gateway.oauth import BearerVerifier, IssuerDirectory
from lhpipe.gateway.outcome import Authenticated, AuthOutcome, Refused
from lhpipe.settings import Settings
from lhpipe.stack.addresses import StackAddresses

pytestmark = pytest.mark.integration

KYC_INTAKE = OAuthAuth(issuer=EnvRef("OIDC_ISSUER"), audience="lhpipe", scopes=("kyc:write",))


def client_credentials(stack: StackAddresses, **extra: str) -> str:
    form = {
        "grant_type": "client_credentials",
        "client_id": stack.keycloak_client_id,
        "client_secret": stack.keycloak_client_secret,
        **extra,
    }
    response = httpx.post(stack.keycloak_token_url, data=form, timeout=10)
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def with_authenticator(
    stack: StackAddresses,
    auth: OAuthAuth,
    check: Callable[[BearerVerifier, IssuerDirectory], Awaitable[Any]],
) -> Any:
    """Run ``check`` with the authenticator `lhpipe run` would build for ``auth``."""

    async def go() -> Any:
        issuers = IssuerDirectory()
        try:
            settings = Settings(environ={"OIDC_ISSUER": stack.keycloak_issuer})
            authenticator = build_authenticator("kyc_intake", auth, settings, issuers)
            assert isinstance(authenticator, BearerVerifier)
            return await check(authenticator, issuers)
        finally:
            await issuers.aclose()

    return asyncio.run(go())


def verify(stack: StackAddresses, token: str | None, auth: OAuthAuth = KYC_INTAKE) -> AuthOutcome:
    headers = {} if token is None else {"authorization": f"Bearer {token}"}

    async def check(authenticator: BearerVerifier, issuers: IssuerDirectory) -> AuthOutcome:
        return await authenticator.authenticate(headers, b"{}")

    outcome: AuthOutcome = with_authenticator(stack, auth, check)
    return outcome


def test_a_token_with_the_scope_is_accepted_with_keycloaks_claims(stack: StackAddresses) -> None:
    outcome = verify(stack, client_credentials(stack, scope=stack.keycloak_scope))

    assert isinstance(outcome, Authenticated)
    assert outcome.claims is not None
    assert outcome.claims["iss"] == stack.keycloak_issuer
    assert outcome.claims["azp"] == stack.keycloak_client_id
    assert "kyc:write" in outcome.claims["scope"].split()


def test_a_token_without_the_scope_is_403_insufficient_scope(stack: StackAddresses) -> None:
    outcome = verify(stack, client_credentials(stack))

    assert isinstance(outcome, Refused)
    assert outcome.problem.status == 403
    challenge = dict(outcome.problem.headers)[b"www-authenticate"].decode()
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="kyc:write"' in challenge


def test_the_same_token_is_accepted_where_no_scope_is_required(stack: StackAddresses) -> None:
    no_scope = OAuthAuth(issuer=stack.keycloak_issuer, audience="lhpipe")

    assert isinstance(verify(stack, client_credentials(stack), no_scope), Authenticated)


def test_a_token_for_another_audience_is_401(stack: StackAddresses) -> None:
    other = OAuthAuth(issuer=stack.keycloak_issuer, audience="billing")

    outcome = verify(stack, client_credentials(stack, scope=stack.keycloak_scope), other)

    assert isinstance(outcome, Refused)
    assert outcome.problem.status == 401
    assert "aud" in outcome.reason


def test_a_forged_keycloak_token_is_401(stack: StackAddresses) -> None:
    header, payload, signature = client_credentials(stack, scope=stack.keycloak_scope).split(".")
    claims = json.loads(_b64decode(payload))
    claims["azp"] = "someone-else"
    forged = f"{header}.{_b64encode(json.dumps(claims).encode())}.{signature}"

    outcome = verify(stack, forged)

    assert isinstance(outcome, Refused)
    assert outcome.problem.status == 401
    assert outcome.reason == "bad signature"


def test_no_token_is_401_with_a_bearer_challenge(stack: StackAddresses) -> None:
    outcome = verify(stack, None)

    assert isinstance(outcome, Refused)
    assert outcome.problem.status == 401
    assert dict(outcome.problem.headers)[b"www-authenticate"] == b'Bearer realm="lhpipe"'


def test_many_tokens_share_one_discovery_and_one_key_fetch(stack: StackAddresses) -> None:
    tokens = [client_credentials(stack, scope=stack.keycloak_scope) for _ in range(3)]

    async def check(authenticator: BearerVerifier, issuers: IssuerDirectory) -> list[AuthOutcome]:
        outcomes = [
            await authenticator.authenticate({"authorization": f"Bearer {t}"}, b"") for t in tokens
        ]
        assert authenticator.keys.fetches == 1
        return outcomes

    outcomes = with_authenticator(stack, KYC_INTAKE, check)

    assert all(isinstance(o, Authenticated) for o in outcomes)


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

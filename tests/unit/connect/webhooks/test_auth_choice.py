"""Which authenticator a webhook's `auth` form builds, with its settings read from the
environment when the route is built, and the start-up errors that name the webhook."""

from __future__ import annotations

import asyncio
import hmac

import pytest

from lhpipe.check.program import EnvRef, HmacAuth, NoAuth, OAuthAuth
from lhpipe.gateway.auth import OpenAccess, build_authenticator
from lhpipe.gateway.config import WebhookConfigError
from lhpipe.gateway.hmac import SignatureAuthenticator
from lhpipe.gateway.oauth import BearerVerifier, IssuerDirectory
from lhpipe.gateway.outcome import Authenticated, Refused
from lhpipe.settings import Settings

ISSUER = "https://idp.example.com/realms/lhpipe"
BODY = b'{"action":"opened"}'


def test_oauth_takes_issuer_audience_scopes_and_leeway_from_its_block() -> None:
    auth = OAuthAuth(
        issuer=EnvRef("OIDC_ISSUER"),
        audience=EnvRef("OIDC_AUDIENCE"),
        scopes=("kyc:write",),
        leeway_ms=2_500,
    )
    settings = Settings(environ={"OIDC_ISSUER": ISSUER, "OIDC_AUDIENCE": "lhpipe"})

    verifier = build_authenticator("kyc_intake", auth, settings, IssuerDirectory())

    assert isinstance(verifier, BearerVerifier)
    assert (verifier.issuer, verifier.audience) == (ISSUER, "lhpipe")
    assert verifier.scopes == ("kyc:write",)
    assert verifier.leeway_s == 2.5


def test_an_unset_audience_is_a_start_up_error_naming_the_webhook() -> None:
    auth = OAuthAuth(issuer=ISSUER, audience=EnvRef("OIDC_AUDIENCE"))

    with pytest.raises(WebhookConfigError) as raised:
        build_authenticator("kyc_intake", auth, Settings(environ={}), IssuerDirectory())

    assert str(raised.value) == (
        "webhook kyc_intake: oauth audience: env('OIDC_AUDIENCE') is not set"
    )


def test_hmac_builds_a_signature_check_keyed_with_the_secret_from_the_environment() -> None:
    auth = HmacAuth(secret=EnvRef("GH_SECRET"), preset="github")
    settings = Settings(environ={"GH_SECRET": "gh-secret"})
    signature = "sha256=" + hmac.new(b"gh-secret", BODY, "sha256").hexdigest()

    check = build_authenticator("gh_in", auth, settings, IssuerDirectory())

    assert isinstance(check, SignatureAuthenticator)
    assert check.check({"x-hub-signature-256": signature}, BODY) == Authenticated()
    assert isinstance(check.check({"x-hub-signature-256": signature}, BODY + b" "), Refused)


def test_an_unset_hmac_secret_is_a_start_up_error_naming_the_webhook() -> None:
    auth = HmacAuth(secret=EnvRef("GH_SECRET"), preset="github")

    with pytest.raises(WebhookConfigError) as raised:
        build_authenticator("gh_in", auth, Settings(environ={}), IssuerDirectory())

    assert str(raised.value) == "webhook gh_in: hmac secret: env('GH_SECRET') is not set"


def test_auth_none_lets_every_request_in_without_an_id() -> None:
    check = build_authenticator("open", NoAuth(), Settings(environ={}), IssuerDirectory())

    assert isinstance(check, OpenAccess)
    assert check.check({}, b"") == Authenticated()
    assert asyncio.run(check.authenticate({"authorization": "Bearer x"}, BODY)) == Authenticated()

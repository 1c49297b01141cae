"""Keycloak on the local stack: realm `lhpipe` issues client_credentials tokens that verify
against the keys its discovery document points to."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet

from lhpipe.stack.addresses import StackAddresses

pytestmark = pytest.mark.integration


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def post_form(url: str, form: dict[str, str]) -> Any:
    body = urllib.parse.urlencode(form).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=10) as response:
        return json.load(response)


def client_credentials(stack: StackAddresses, token_url: str, **extra: str) -> str:
    form = {
        "grant_type": "client_credentials",
        "client_id": stack.keycloak_client_id,
        "client_secret": stack.keycloak_client_secret,
        **extra,
    }
    token: str = post_form(token_url, form)["access_token"]
    return token


def test_a_client_credentials_token_verifies_against_the_realms_jwks(
    stack: StackAddresses,
) -> None:
    discovery = get_json(stack.keycloak_discovery_url)
    assert discovery["issuer"] == stack.keycloak_issuer
    keys = KeySet.import_key_set(get_json(discovery["jwks_uri"]))

    access_token = client_credentials(
        stack, discovery["token_endpoint"], scope=stack.keycloak_scope
    )

    token = jwt.decode(access_token, keys, algorithms=["RS256"])
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": stack.keycloak_issuer},
        aud={"essential": True, "value": stack.keycloak_audience},
        exp={"essential": True},
        azp={"essential": True, "value": stack.keycloak_client_id},
    ).validate(token.claims)
    assert stack.keycloak_scope in token.claims["scope"].split()


def test_the_kyc_write_scope_is_granted_only_when_asked_for(stack: StackAddresses) -> None:
    discovery = get_json(stack.keycloak_discovery_url)
    keys = KeySet.import_key_set(get_json(discovery["jwks_uri"]))

    token = jwt.decode(client_credentials(stack, discovery["token_endpoint"]), keys)

    assert stack.keycloak_scope not in token.claims.get("scope", "").split()


def test_a_token_with_a_forged_signature_is_rejected(stack: StackAddresses) -> None:
    discovery = get_json(stack.keycloak_discovery_url)
    keys = KeySet.import_key_set(get_json(discovery["jwks_uri"]))
    header, payload, signature = client_credentials(stack, discovery["token_endpoint"]).split(".")
    forged = f"{header}.{payload}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}"

    with pytest.raises(BadSignatureError):
        jwt.decode(forged, keys)


def test_a_wrong_client_secret_gets_no_token(stack: StackAddresses) -> None:
    form = {
        "grant_type": "client_credentials",
        "client_id": stack.keycloak_client_id,
        "client_secret": "not-the-secret",
    }
    with pytest.raises(urllib.error.HTTPError) as refused:
        post_form(StackAddresses().keycloak_token_url, form)
    assert refused.value.code == 401

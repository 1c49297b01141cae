"""Webhook requests to the running demo, authenticated as each example webhook wants.

Signing by hand in a shell is painful (Standard Webhooks signs ``id.timestamp.body`` with a
base64 key, Stripe ``t.body``, the partner a base64 SHA-512), so ``lhpipe demo send`` builds the
request here, signed with the secret the demo uses (:mod:`lhpipe.demo.secrets`), and either sends
it or prints it as a ``curl`` command. The signing follows the providers' documentation as
docs/webhooks.md states it.
"""

from __future__ import annotations

import base64
import hmac
import json
import shlex
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from lhpipe.stack.addresses import StackAddresses

JSON = "application/json"
REQUEST_TIMEOUT_SECONDS = 15.0
#: The webhook kinds ``lhpipe demo send`` knows, by the name the demo uses for them.
KINDS = ("kyc", "verdict", "github", "referral")


@dataclass(frozen=True)
class WebhookRequest:
    """One HTTP request, exactly as it is to be sent (the body is the signed bytes)."""

    url: str
    headers: dict[str, str]
    body: bytes

    def curl(self) -> str:
        """The same request as a copy-pasteable ``curl`` command."""
        words = ["curl", "-i", "-X", "POST", self.url]
        for name, value in self.headers.items():
            words += ["-H", f"{name}: {value}"]
        words += ["--data-binary", self.body.decode()]
        return " ".join(shlex.quote(word) for word in words)

    def send(self) -> httpx.Response:
        return httpx.post(
            self.url, headers=self.headers, content=self.body, timeout=REQUEST_TIMEOUT_SECONDS
        )


def encode(body: Any) -> bytes:
    """The JSON bytes sent (and signed) for ``body``."""
    return json.dumps(body, separators=(", ", ": ")).encode()


# -- sample bodies ------------------------------------------------------------------------------


def new_applicant_id() -> str:
    """A fresh applicant id, also the WfRun id (letters, digits and hyphens)."""
    return f"ann-{uuid.uuid4().hex[:6]}"


def applicant(applicant_id: str) -> dict[str, Any]:
    """An adult applicant, so ``start_kyc`` starts a WfRun for it."""
    return {
        "applicant_id": applicant_id,
        "email": "Ann@Example.com",
        "name": "Ann",
        "country": "DE",
        "age": 30,
        "tags": ["demo"],
    }


def verdict(applicant_id: str, approved: bool = True) -> dict[str, Any]:
    return {"applicant_id": applicant_id, "approved": approved, "score": 0.93}


def release() -> dict[str, Any]:
    """A GitHub ``release`` event, as ``deploy_release`` expects it."""
    return {
        "action": "published",
        "release": {"id": int(time.time()), "tag_name": "v1.2.0"},
        "repository": {"full_name": "example/shop"},
    }


def referral() -> dict[str, Any]:
    """A partner referral whose top-level fields are ``partner-referral`` 2's variables.

    The ``referrals`` pipeline keys records on the partner's id and its WfRun ids come from
    the key, so each sample comes from a partner of its own: a new WfRun every time."""
    return {
        "referral_id": f"ref-{uuid.uuid4().hex[:6]}",
        "partner": f"acme-{uuid.uuid4().hex[:4]}",
        "email": "bo@example.com",
    }


# -- requests -----------------------------------------------------------------------------------


def kyc_request(base_url: str, body: bytes, token: str) -> WebhookRequest:
    """``/hooks/kyc``: a bearer token with scope ``kyc:write``."""
    headers = {"authorization": f"Bearer {token}", "content-type": JSON}
    return WebhookRequest(f"{base_url}/hooks/kyc", headers, body)


def verdict_request(
    base_url: str, body: bytes, secret: str, *, now: int | None = None
) -> WebhookRequest:
    """``/hooks/verdict``: Standard Webhooks, HMAC-SHA256 of ``id.timestamp.body`` keyed with
    the base64 secret after ``whsec_``."""
    message_id = f"msg_{uuid.uuid4().hex}"
    timestamp = str(int(time.time()) if now is None else now)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    signature = base64.b64encode(hmac.digest(key, signed, "sha256")).decode()
    headers = {
        "content-type": JSON,
        "webhook-id": message_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": f"v1,{signature}",
    }
    return WebhookRequest(f"{base_url}/hooks/verdict", headers, body)


def github_request(base_url: str, body: bytes, secret: str) -> WebhookRequest:
    """``/hooks/github``: ``X-Hub-Signature-256``, hex HMAC-SHA256 of the body."""
    headers = {
        "content-type": JSON,
        "x-github-event": "release",
        "x-github-delivery": str(uuid.uuid4()),
        "x-hub-signature-256": "sha256=" + hmac.new(secret.encode(), body, "sha256").hexdigest(),
    }
    return WebhookRequest(f"{base_url}/hooks/github", headers, body)


def referral_request(base_url: str, body: bytes, secret: str, partner: str) -> WebhookRequest:
    """``/hooks/partner/referrals``: ``X-Partner-Signature: sha512=<base64>``, keyed on the
    partner's id in ``X-Partner-Id``."""
    digest = base64.b64encode(hmac.digest(secret.encode(), body, "sha512")).decode()
    headers = {
        "content-type": JSON,
        "x-partner-id": partner,
        "x-partner-signature": f"sha512={digest}",
    }
    return WebhookRequest(f"{base_url}/hooks/partner/referrals", headers, body)


# -- Keycloak -----------------------------------------------------------------------------------


def token_curl(stack: StackAddresses) -> str:
    """A shell line setting ``TOKEN`` to a client_credentials token with ``kyc:write``."""
    request = " ".join(
        [
            "curl -s",
            stack.keycloak_token_url,
            "-d grant_type=client_credentials",
            f"-d client_id={stack.keycloak_client_id}",
            f"-d client_secret={stack.keycloak_client_secret}",
            f"-d scope={stack.keycloak_scope}",
        ]
    )
    extract = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])'"
    return f"TOKEN=$({request} | {extract})"


def keycloak_token(stack: StackAddresses) -> str:
    """The same token, fetched here."""
    response = httpx.post(
        stack.keycloak_token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": stack.keycloak_client_id,
            "client_secret": stack.keycloak_client_secret,
            "scope": stack.keycloak_scope,
        },
        timeout=REQUEST_TIMEOUT_SECONDS,
    )
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token

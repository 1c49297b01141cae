"""Helpers for the Gateway's end-to-end tests: requests signed as each provider signs them,
Keycloak tokens and forged ones, a local OpenID issuer whose key the tests hold (for tokens
Keycloak will not issue: expired, not yet valid, another issuer), and reading a topic.

Signing here follows the providers' documentation, independently of lhpipe's own code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import RSAKey

from lhpipe.stack.addresses import StackAddresses

JSON = "application/json"
GITHUB_SECRET = "it's-a-secret-to-everybody"
STRIPE_SECRET = "whsec_test_secret_for_stripe"
STANDARD_KEY = b"0123456789abcdef0123456789abcdef"
STANDARD_SECRET = "whsec_" + base64.b64encode(STANDARD_KEY).decode()
CUSTOM_SECRET = "partner-secret"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def unb64url_json(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


# -- provider signatures ---------------------------------------------------------------------


def github_headers(body: bytes, delivery: str, secret: str = GITHUB_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "content-type": JSON,
        "x-hub-signature-256": f"sha256={digest}",
        "x-github-delivery": delivery,
    }


def stripe_headers(
    body: bytes, timestamp: int | None = None, secret: str = STRIPE_SECRET
) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return {"content-type": JSON, "stripe-signature": f"t={ts},v1={digest}"}


def standard_headers(
    body: bytes, message_id: str, timestamp: int | None = None, key: bytes = STANDARD_KEY
) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    signed = f"{message_id}.{ts}.".encode() + body
    signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {
        "content-type": JSON,
        "webhook-id": message_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": f"v1,{signature}",
    }


def custom_headers(body: bytes, secret: str = CUSTOM_SECRET) -> dict[str, str]:
    """``hmac { header = "X-Signature"  algorithm = sha512  encoding = base64 }``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha512).digest()
    return {"content-type": JSON, "x-signature": base64.b64encode(digest).decode()}


# -- tokens ----------------------------------------------------------------------------------


def keycloak_token(stack: StackAddresses, scope: str | None = None) -> str:
    """A client_credentials access token of the realm's confidential client."""
    form = {
        "grant_type": "client_credentials",
        "client_id": stack.keycloak_client_id,
        "client_secret": stack.keycloak_client_secret,
    }
    if scope is not None:
        form["scope"] = scope
    response = httpx.post(stack.keycloak_token_url, data=form, timeout=10)
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def keycloak_public_pem(stack: StackAddresses) -> bytes:
    """The realm's RS256 signing key, as the PEM text an HS256 forger would use as secret."""
    discovery = httpx.get(stack.keycloak_discovery_url, timeout=10).json()
    keys = httpx.get(discovery["jwks_uri"], timeout=10).json()["keys"]
    jwk = next(k for k in keys if k.get("alg") == "RS256" and k.get("use", "sig") == "sig")
    pem: bytes = RSAKey.import_key(jwk).as_pem(private=False)
    return pem


def unsigned(token: str) -> str:
    """The same claims with ``alg: none`` and no signature."""
    header, payload, _ = token.split(".")
    forged = {**unb64url_json(header), "alg": "none"}
    return f"{b64url_json(forged)}.{payload}."


def hs256_with(token: str, secret: bytes) -> str:
    """The same claims signed HS256 with ``secret`` (the issuer's public key, by an attacker
    hoping the verifier uses it as an HMAC key)."""
    header, payload, _ = token.split(".")
    forged = b64url_json({**unb64url_json(header), "alg": "HS256"})
    signature = hmac.new(secret, f"{forged}.{payload}".encode(), hashlib.sha256).digest()
    return f"{forged}.{payload}.{b64url(signature)}"


def tampered(token: str, **changes: Any) -> str:
    """The same header and signature over changed claims."""
    header, payload, signature = token.split(".")
    claims = {**unb64url_json(payload), **changes}
    return f"{header}.{b64url_json(claims)}.{signature}"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", "content-type": JSON}


class LocalIssuer:
    """An OpenID issuer on 127.0.0.1 whose signing key the test holds: discovery and JWKS."""

    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "local-1", "use": "sig"})
        self.other_key = RSAKey.generate_key(2048, parameters={"kid": "local-1"})
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    document: Mapping[str, Any] = {
                        "issuer": issuer.url,
                        "jwks_uri": f"{issuer.url}/jwks",
                    }
                elif self.path == "/jwks":
                    document = {"keys": [issuer.key.as_dict(private=False)]}
                else:
                    self.send_error(404)
                    return
                body = json.dumps(document).encode()
                self.send_response(200)
                self.send_header("content-type", JSON)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def token(self, *, key: RSAKey | None = None, **claims: Any) -> str:
        """A token signed by this issuer's key (or ``key``): a valid one unless ``claims``
        change that (``None`` removes a claim)."""
        now = int(time.time())
        payload = {
            "iss": self.url,
            "aud": "lhpipe",
            "sub": "tester",
            "scope": "kyc:write",
            "iat": now,
            "exp": now + 300,
            **claims,
        }
        payload = {k: v for k, v in payload.items() if v is not None}
        signer = key or self.key
        header = {"alg": "RS256", "kid": signer.kid}
        return jwt.encode(header, payload, signer)

    @contextmanager
    def serving(self) -> Iterator[LocalIssuer]:
        self._thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()


def schema_id_of(value: bytes) -> int:
    """The schema id of a value in the registry wire format."""
    assert value[0] == 0, f"not the wire format: {value[:8]!r}"
    return int.from_bytes(value[1:5], "big")


def header_map(message: Any) -> dict[str, bytes]:
    return {name: value for name, value in message.headers() or ()}

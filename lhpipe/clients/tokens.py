"""OAuth client-credentials tokens for lhpipe's own calls (LittleHorse's gRPC API).

:class:`ClientCredentials` fetches a token from the identity provider's token endpoint and
renews it once :data:`REFRESH_AT` of its lifespan has passed, well before it expires (LittleHorse's
own Python client renews only after expiry, so a call made in a token's last moment fails).
One fetch runs at a time however many calls wait; when a renewal fails while the current token
is still valid, the current token is used and the renewal tried again on the next call. Each
fetch is bounded by :data:`FETCH_TIMEOUT_SECONDS`.

gRPC runs call-credential plugins on threads of its own, never on the event loop, so the
blocking fetch does not stall the loop (:class:`GrpcTokenPlugin`).

Errors say which side failed and never carry the secret: :class:`TokenRefused` when the
endpoint refused the client's credentials (a wrong secret, a disabled client: waiting will not
help) and :class:`TokenUnavailable` when it could not be reached or answered nonsense.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import httpx

#: A token is renewed once this fraction of its lifespan has passed.
REFRESH_AT = 0.8
FETCH_TIMEOUT_SECONDS = 10.0
#: Marks the messages of both errors: the gRPC failure of a call whose token could not be had
#: carries it in its details (:func:`lhpipe.clients.littlehorse.classify`).
MARK = "OAuth token for lhpipe"


class TokenError(Exception):
    """No token could be had."""


class TokenRefused(TokenError):
    """The token endpoint refused the client's credentials (HTTP 400, 401 or 403)."""


class TokenUnavailable(TokenError):
    """The token endpoint could not be reached, or its answer was not a token."""


class ClientCredentials:
    """A client-credentials token from ``token_url``, kept fresh (the module docstring)."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
        verify: Any = True,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self._secret = client_secret
        self._scope = scope
        self._clock = clock
        self._http = httpx.Client(timeout=FETCH_TIMEOUT_SECONDS, verify=verify, transport=transport)
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0
        self._expires_at = 0.0
        #: How many tokens were fetched (tests and the status page read it).
        self.fetched = 0

    def __repr__(self) -> str:  # never the secret, never the token
        return f"ClientCredentials({self.token_url!r}, client_id={self.client_id!r})"

    def token(self) -> str:
        """A valid token; raises :class:`TokenRefused` or :class:`TokenUnavailable`."""
        with self._lock:
            now = self._clock()
            if self._token is not None and now < self._renew_at:
                return self._token
            try:
                token, lifespan = self._fetch()
            except TokenError:
                if self._token is not None and now < self._expires_at:
                    return self._token  # still valid: renew on a later call
                raise
            self._token = token
            self._renew_at = now + REFRESH_AT * lifespan
            self._expires_at = now + lifespan
            self.fetched += 1
            return token

    def _fetch(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials"}
        if self._scope:
            form["scope"] = self._scope
        where = f"{MARK} from {self.token_url}"
        try:
            answer = self._http.post(self.token_url, data=form, auth=(self.client_id, self._secret))
        except httpx.HTTPError as exc:
            raise TokenUnavailable(f"{where}: {type(exc).__name__}: {exc}") from None
        if answer.status_code in (400, 401, 403):
            raise TokenRefused(
                f"{where}: the endpoint refused client {self.client_id!r} "
                f"(HTTP {answer.status_code}{_oauth_error(answer)})"
            )
        if answer.status_code != 200:
            raise TokenUnavailable(f"{where}: HTTP {answer.status_code}")
        try:
            body = answer.json()
            token = body["access_token"]
            lifespan = float(body.get("expires_in", 60))
        except (ValueError, KeyError, TypeError):
            raise TokenUnavailable(f"{where}: the answer holds no access_token") from None
        if not isinstance(token, str) or not token:
            raise TokenUnavailable(f"{where}: the answer holds no access_token")
        return token, max(lifespan, 1.0)

    def close(self) -> None:
        self._http.close()


def _oauth_error(answer: httpx.Response) -> str:
    """The RFC 6749 ``error`` code of a refusal (never its whole body)."""
    try:
        code = answer.json().get("error")
    except (ValueError, AttributeError):
        return ""
    return f": {code}" if isinstance(code, str) and code.isprintable() and len(code) < 80 else ""


class GrpcTokenPlugin(grpc.AuthMetadataPlugin):  # type: ignore[misc]
    """Call credentials: each call carries ``authorization: Bearer <token>``. A failure to get
    a token fails the call (gRPC reports it as ``UNAVAILABLE`` with the error's message)."""

    def __init__(self, credentials: ClientCredentials) -> None:
        self.credentials = credentials

    def __call__(
        self, context: grpc.AuthMetadataContext, callback: grpc.AuthMetadataPluginCallback
    ) -> None:
        try:
            token = self.credentials.token()
        except TokenError as exc:
            callback(None, exc)
            return
        callback((("authorization", f"Bearer {token}"),), None)

"""What an authenticator decides about one request, and the interface every auth form has.

An :class:`Authenticator` looks at a request's headers and raw body and answers either
:class:`Authenticated` (with the provider's webhook id when the form has one, and the verified
token's claims for ``oauth``) or :class:`Refused`, which carries the :class:`Problem` to answer
(401, 403 or 503, with its ``WWW-Authenticate`` or ``Retry-After`` header) and, separately, the
precise reason for the logs. The caller never sees the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable

from lhpipe.connect.webhooks.problems import Problem

#: Request headers with lower-case names (as ASGI gives them), decoded as Latin-1.
Headers = Mapping[str, str]


class Authenticated(NamedTuple):
    """The request may proceed. ``webhook_id`` is the provider's delivery id (``webhook-id``,
    ``X-GitHub-Delivery``, Stripe's event id) when the auth form has one; ``claims`` are the
    verified token's claims for ``oauth`` (shared between requests with the same token: read
    them, never change them). A named tuple, as it is made on every request."""

    webhook_id: str | None = None
    claims: Mapping[str, Any] | None = None


class Refused(NamedTuple):
    """The request is refused: answer ``problem``; log ``reason`` (never sent)."""

    problem: Problem
    reason: str


AuthOutcome = Authenticated | Refused


class Authenticator(Protocol):
    """One webhook's auth form, ready to check requests."""

    async def authenticate(self, headers: Headers, body: bytes) -> AuthOutcome:
        """Check one request: ``headers`` with lower-case names, ``body`` the raw bytes."""
        ...


@runtime_checkable
class ImmediateAuthenticator(Authenticator, Protocol):
    """An auth form that never waits (HMAC, none): :meth:`check` answers at once, sparing the
    route a coroutine per request."""

    def check(self, headers: Headers, body: bytes) -> AuthOutcome:
        """:meth:`authenticate`'s answer, without awaiting anything."""
        ...

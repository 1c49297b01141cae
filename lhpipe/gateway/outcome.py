"""What an authenticator decides about one request, and the interface every auth form has.

An :class:`Authenticator` looks at a request's headers and raw body and answers either
:class:`Authenticated` (with the provider's webhook id when the form has one, and the verified
token's claims for ``oauth``) or :class:`Refused`, which carries the :class:`Problem` to answer
(401, 403 or 503, with its ``WWW-Authenticate`` or ``Retry-After`` header) and, separately, the
precise reason for the logs. The caller never sees the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NamedTuple, Protocol, runtime_checkable

from lhpipe.gateway.problems import Problem

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


#: The longest reason written to a log line; a refusal's reason may quote what the caller sent.
MAX_REASON: Final = 300


def describe_error(exc: BaseException) -> str:
    """An exception as one short log line: its type and its message, quoted (control
    characters escaped) and cut to a few hundred characters."""
    text = str(exc)
    if len(text) > 200:
        text = text[:200] + "..."
    return f"{type(exc).__name__}: {text!r}"


def log_reason(reason: str) -> str:
    """A refusal's reason as it goes into a log line: one line, at most :data:`MAX_REASON`
    characters (control characters escaped)."""
    if len(reason) > MAX_REASON:
        reason = reason[:MAX_REASON] + "..."
    if reason.isprintable():
        return reason
    return repr(reason)[1:-1]

"""Settings of a webhook resolved when its route is built, and the type that keeps secrets.

``secret = env("GITHUB_SECRET")``, ``issuer = env("OIDC_ISSUER")``: the checker keeps such
settings as :class:`~lhpipe.check.program.EnvRef` values, and they are read here, once, when the
route is built. A variable that is not set (and has no default) is a :class:`WebhookConfigError`
then, at start-up or reload, never a surprise on the first request.
"""

from __future__ import annotations

from lhpipe.check.program import Text
from lhpipe.settings import Settings
from lhpipe.settings import resolve_text as read_setting


class WebhookConfigError(Exception):
    """A webhook that cannot be served as configured (a missing variable, a secret that is
    not what its preset needs); the message names the webhook's setting."""


class Secret:
    """A secret string whose ``repr`` and ``str`` never show it; :meth:`reveal` does."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that needs it (keying an HMAC)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__


def resolve_text(value: Text, settings: Settings, what: str) -> str:
    """A literal as it is, or ``env("NAME", "default")`` read from the settings now."""
    return read_setting(value, settings, what, WebhookConfigError)


def resolve_secret(value: Text, settings: Settings, what: str) -> Secret:
    """:func:`resolve_text` for a secret; an empty secret is refused (it would sign nothing)."""
    secret = resolve_text(value, settings, what)
    if not secret:
        raise WebhookConfigError(f"{what}: the secret is empty")
    return Secret(secret)

"""The authenticator of a webhook, built from its ``auth`` form when its route is built.

::

    issuers = IssuerDirectory()                   # one per process: shares keys per issuer
    authenticator = build_authenticator(webhook.name, webhook.auth, settings, issuers)
    outcome = await authenticator.authenticate(headers, body)

Everything that can be wrong with the configuration (a secret or issuer in an unset variable,
a Standard Webhooks secret that is not base64) raises
:class:`~lhpipe.gateway.config.WebhookConfigError` here, not on a request.
"""

from __future__ import annotations

from lhpipe.check.program import Auth, HmacAuth, OAuthAuth
from lhpipe.gateway.config import resolve_text
from lhpipe.gateway.hmac import SignatureAuthenticator, signature_verifier
from lhpipe.gateway.oauth import BearerVerifier, IssuerDirectory
from lhpipe.gateway.outcome import Authenticated, Authenticator, AuthOutcome, Headers
from lhpipe.settings import Settings


class OpenAccess:
    """``auth = none``: every request is let in (the checker warns about it)."""

    _ANYONE = Authenticated()

    async def authenticate(self, headers: Headers, body: bytes) -> AuthOutcome:
        return self._ANYONE

    def check(self, headers: Headers, body: bytes) -> AuthOutcome:
        return self._ANYONE


def build_authenticator(
    webhook: str, auth: Auth, settings: Settings, issuers: IssuerDirectory
) -> Authenticator:
    """The authenticator for ``auth`` of the webhook named ``webhook``."""
    if isinstance(auth, OAuthAuth):
        issuer = resolve_text(auth.issuer, settings, f"webhook {webhook}: oauth issuer")
        audience = resolve_text(auth.audience, settings, f"webhook {webhook}: oauth audience")
        return BearerVerifier(
            issuers.keys(issuer),
            audience=audience,
            scopes=auth.scopes,
            leeway_s=auth.leeway_ms / 1000,
        )
    if isinstance(auth, HmacAuth):
        return SignatureAuthenticator(signature_verifier(auth, settings, f"webhook {webhook}"))
    return OpenAccess()

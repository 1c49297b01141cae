"""Demo-only values for the secrets the example pipelines read with ``env()``.

The examples take their webhook secrets and credentials from the environment, as a real
deployment would. So that ``make demo`` runs without any set-up, :func:`apply_demo_secrets` fills
in the ones the user has not set (neither in the environment nor in ``lhpipe.toml``) with the
fixed values below. They are published here, so they protect nothing: they are for the loopback
demo only, and the demo prints which ones it used.

``lhpipe demo send`` signs with the same values (or the user's, when set), so a request it signs
in another shell passes the running demo's checks.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping, MutableMapping

from lhpipe.settings import Settings

#: The Standard Webhooks key of the identity verifier: 32 bytes, shown as ``whsec_<base64>``.
VERIFIER_KEY = b"lhpipe-demo-identity-verifier-k1"

DEMO_SECRETS: Mapping[str, str] = {
    "VERIFIER_SECRET": "whsec_" + base64.b64encode(VERIFIER_KEY).decode(),
    "GITHUB_WEBHOOK_SECRET": "lhpipe-demo-github-secret",
    "STRIPE_WEBHOOK_SECRET": "whsec_lhpipe_demo_stripe_secret",
    "PARTNER_SECRET": "lhpipe-demo-partner-secret",
    "CRM_AUTHORIZATION": "Bearer lhpipe-demo-crm-token",
    "PARTNER_API_TOKEN": "Bearer lhpipe-demo-partner-token",
}


def apply_demo_secrets(
    settings: Settings, environ: MutableMapping[str, str] | None = None
) -> dict[str, str]:
    """Set each demo secret the settings do not have into ``environ`` (``os.environ`` by
    default, so the engine started next reads it); returns the ones set."""
    target = os.environ if environ is None else environ
    applied = {}
    for name, value in DEMO_SECRETS.items():
        if settings.get(name) is None:
            target[name] = value
            applied[name] = value
    return applied


def secret(name: str, settings: Settings) -> str:
    """The value the running demo uses for ``name``: the user's if set, else the demo's."""
    return settings.get(name) or DEMO_SECRETS[name]

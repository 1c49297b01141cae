"""`lhpipe stack env [--secure]`: the settings that point lhpipe at the local stack.

Printed as shell ``export`` lines (or, with ``--toml``, as an ``lhpipe.toml``), so that
``lhpipe run`` against the stack needs no hand-made configuration. The names are each
ecosystem's own (docs/security.md): ``KAFKA_BOOTSTRAP_SERVERS`` and librdkafka properties as
``LHPIPE_KAFKA_*``, LittleHorse's ``LHC_*``, and the registry's ``LHPIPE_REGISTRY_*``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from lhpipe.stack import addresses as at
from lhpipe.stack.addresses import StackAddresses
from lhpipe.stack.certs import StackCerts

KAFKA_AUTHS = ("scram", "oauth")
LITTLEHORSE_AUTHS = ("oauth", "mtls")
REGISTRY_AUTHS = ("oauth", "basic")


def open_settings() -> dict[str, str]:
    stack = StackAddresses()
    return {
        "KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
        "LHPIPE_REGISTRY_URL": stack.ccompat_url,
        "LHC_API_HOST": stack.littlehorse_host,
        "LHC_API_PORT": str(stack.littlehorse_port),
        "LHC_API_PROTOCOL": "PLAINTEXT",
        "LHC_TENANT_ID": stack.littlehorse_tenant,
    }


def kafka_secure_settings(certs: StackCerts, auth: str = "scram") -> dict[str, str]:
    """Kafka over the secure listener: TLS with the stack's CA, and SCRAM or OAuth (OIDC client
    credentials, librdkafka fetching and refreshing the token itself)."""
    settings = {
        "KAFKA_BOOTSTRAP_SERVERS": f"{at.HOST}:{at.KAFKA_SECURE_PORT}",
        "LHPIPE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "LHPIPE_KAFKA_SSL_CA_LOCATION": str(certs.ca),
    }
    if auth == "scram":
        settings |= {
            "LHPIPE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "LHPIPE_KAFKA_SASL_USERNAME": at.KAFKA_SCRAM_USER,
            "LHPIPE_KAFKA_SASL_PASSWORD": at.KAFKA_SCRAM_PASSWORD,
        }
    elif auth == "oauth":
        settings |= {
            "LHPIPE_KAFKA_SASL_MECHANISM": "OAUTHBEARER",
            "LHPIPE_KAFKA_SASL_OAUTHBEARER_METHOD": "oidc",
            "LHPIPE_KAFKA_SASL_OAUTHBEARER_CLIENT_ID": at.SECURE_CLIENT_ID,
            "LHPIPE_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET": at.SECURE_CLIENT_SECRET,
            "LHPIPE_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL": StackAddresses().keycloak_token_url,
        }
    else:
        raise ValueError(f"unknown Kafka auth {auth!r}; expected one of {KAFKA_AUTHS}")
    return settings


def littlehorse_secure_settings(certs: StackCerts, auth: str = "oauth") -> dict[str, str]:
    """LittleHorse over TLS with OAuth (client credentials from the realm, port 2025) or with
    a client certificate (mTLS, port 2026), in LittleHorse's own ``LHC_*`` names."""
    settings = {
        "LHC_API_HOST": at.HOST,
        "LHC_API_PROTOCOL": "TLS",
        "LHC_CA_CERT": str(certs.ca),
        "LHC_TENANT_ID": at.LITTLEHORSE_TENANT,
    }
    if auth == "oauth":
        settings |= {
            "LHC_API_PORT": str(at.LITTLEHORSE_OAUTH_PORT),
            "LHC_OAUTH_CLIENT_ID": at.SECURE_CLIENT_ID,
            "LHC_OAUTH_CLIENT_SECRET": at.SECURE_CLIENT_SECRET,
            "LHC_OAUTH_ACCESS_TOKEN_URL": StackAddresses().keycloak_token_url,
        }
    elif auth == "mtls":
        settings |= {
            "LHC_API_PORT": str(at.LITTLEHORSE_MTLS_PORT),
            "LHC_CLIENT_CERT": str(certs.client_cert),
            "LHC_CLIENT_KEY": str(certs.client_key),
        }
    else:
        raise ValueError(f"unknown LittleHorse auth {auth!r}; expected one of {LITTLEHORSE_AUTHS}")
    return settings


def registry_secure_settings(certs: StackCerts, auth: str = "oauth") -> dict[str, str]:
    """The secure Apicurio over HTTPS, with OAuth client credentials (the registry client
    fetches and renews the token) or HTTP basic auth with the client's id and secret (which
    Apicurio exchanges for a token itself)."""
    stack = StackAddresses()
    settings = {
        "LHPIPE_REGISTRY_URL": f"{stack.secure_registry_url}/apis/ccompat/v7",
        "LHPIPE_REGISTRY_SSL_CA_LOCATION": str(certs.ca),
    }
    if auth == "oauth":
        settings |= {
            "LHPIPE_REGISTRY_BEARER_AUTH_CREDENTIALS_SOURCE": "OAUTHBEARER",
            "LHPIPE_REGISTRY_BEARER_AUTH_CLIENT_ID": at.SECURE_CLIENT_ID,
            "LHPIPE_REGISTRY_BEARER_AUTH_CLIENT_SECRET": at.SECURE_CLIENT_SECRET,
            "LHPIPE_REGISTRY_BEARER_AUTH_ISSUER_ENDPOINT_URL": stack.keycloak_token_url,
        }
    elif auth == "basic":
        settings["LHPIPE_REGISTRY_BASIC_AUTH_USER_INFO"] = (
            f"{at.SECURE_CLIENT_ID}:{at.SECURE_CLIENT_SECRET}"
        )
    else:
        raise ValueError(f"unknown registry auth {auth!r}; expected one of {REGISTRY_AUTHS}")
    return settings


def secure_settings(
    certs: StackCerts,
    kafka_auth: str = "scram",
    littlehorse_auth: str = "oauth",
    registry_auth: str = "oauth",
) -> dict[str, str]:
    """Every setting for the secure stack."""
    return {
        **open_settings(),
        **kafka_secure_settings(certs, kafka_auth),
        **littlehorse_secure_settings(certs, littlehorse_auth),
        **registry_secure_settings(certs, registry_auth),
    }


def as_exports(settings: Mapping[str, str]) -> str:
    return "".join(f"export {name}={_shell_quote(value)}\n" for name, value in settings.items())


def as_toml(settings: Mapping[str, str]) -> str:
    # json.dumps writes a valid TOML basic string for any text.
    return "".join(f"{name} = {json.dumps(value)}\n" for name, value in settings.items())


def _shell_quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"

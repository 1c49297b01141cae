"""Where the local stack listens, and the credentials of its Keycloak realm.

Everything binds 127.0.0.1 at fixed ports, so tests, the demo and a developer's shell all agree
without passing anything around. The Keycloak client secret is a development value for loopback
only; it is written in the imported realm (`data/realm-lhpipe.json`).
"""

from __future__ import annotations

from dataclasses import dataclass

HOST = "127.0.0.1"

KAFKA_PORT = 9092
KAFKA_CONTROLLER_PORT = 9093
LITTLEHORSE_PORT = 2023
LITTLEHORSE_INTERNAL_PORT = 2011
LITTLEHORSE_HEALTH_PORT = 1822
APICURIO_PORT = 8081
APICURIO_MANAGEMENT_PORT = 9081
KEYCLOAK_PORT = 8180
KEYCLOAK_MANAGEMENT_PORT = 9180
CONNECT_PORT = 8083
# The secure stack (`lhpipe stack up --secure`, docs/security.md): listeners beside the open ones.
KAFKA_SECURE_PORT = 9094
KAFKA_SCRAM_USER = "lhpipe"
KAFKA_SCRAM_PASSWORD = "lhpipe-scram-secret"
KAFKA_AUDIENCE = "kafka"
# (2024 is taken on the project's machines.)
APICURIO_SECURE_PORT = 8082
APICURIO_SECURE_MANAGEMENT_PORT = 9082
#: A realm client whose service account may only read the secure registry (sr-readonly).
READONLY_CLIENT_ID = "lhpipe-readonly"
READONLY_CLIENT_SECRET = "lhpipe-readonly-secret"
LITTLEHORSE_OAUTH_PORT = 2025
LITTLEHORSE_MTLS_PORT = 2026
#: The confidential client LittleHorse introspects tokens with (tokens must name it in `aud`).
LITTLEHORSE_INTROSPECTION_CLIENT_ID = "littlehorse-server"
LITTLEHORSE_INTROSPECTION_CLIENT_SECRET = "littlehorse-server-secret"
#: The realm's client for the secure stack's services: tokens live 60 s, so tests see them
#: refreshed.
SECURE_CLIENT_ID = "lhpipe-secure"
SECURE_CLIENT_SECRET = "lhpipe-secure-secret"
SECURE_TOKEN_LIFESPAN_SECONDS = 60

LITTLEHORSE_CLUSTER_ID = "lhpipe"
LITTLEHORSE_TENANT = "default"
KEYCLOAK_REALM = "lhpipe"
KEYCLOAK_CLIENT_ID = "lhpipe-client"
KEYCLOAK_CLIENT_SECRET = "lhpipe-dev-secret"
KEYCLOAK_SCOPE = "kyc:write"
KEYCLOAK_AUDIENCE = "lhpipe"
KEYCLOAK_ADMIN = ("admin", "admin")


@dataclass(frozen=True)
class StackAddresses:
    """How to reach each service of a running stack."""

    kafka_bootstrap: str = f"{HOST}:{KAFKA_PORT}"
    littlehorse_host: str = HOST
    littlehorse_port: int = LITTLEHORSE_PORT
    littlehorse_health_url: str = f"http://{HOST}:{LITTLEHORSE_HEALTH_PORT}"
    littlehorse_cluster_id: str = LITTLEHORSE_CLUSTER_ID
    littlehorse_tenant: str = LITTLEHORSE_TENANT
    registry_url: str = f"http://{HOST}:{APICURIO_PORT}"
    keycloak_url: str = f"http://{HOST}:{KEYCLOAK_PORT}"
    keycloak_realm: str = KEYCLOAK_REALM
    keycloak_client_id: str = KEYCLOAK_CLIENT_ID
    keycloak_client_secret: str = KEYCLOAK_CLIENT_SECRET
    keycloak_scope: str = KEYCLOAK_SCOPE
    keycloak_audience: str = KEYCLOAK_AUDIENCE
    connect_url: str = f"http://{HOST}:{CONNECT_PORT}"

    @property
    def secure_registry_url(self) -> str:
        """The secure stack's Apicurio (HTTPS, tokens required)."""
        return f"https://{HOST}:{APICURIO_SECURE_PORT}"

    @property
    def ccompat_url(self) -> str:
        """Apicurio's Confluent-compatible API, for confluent-kafka's SchemaRegistryClient."""
        return f"{self.registry_url}/apis/ccompat/v7"

    @property
    def keycloak_issuer(self) -> str:
        """The realm's issuer; tokens carry it as `iss`."""
        return f"{self.keycloak_url}/realms/{self.keycloak_realm}"

    @property
    def keycloak_discovery_url(self) -> str:
        return f"{self.keycloak_issuer}/.well-known/openid-configuration"

    @property
    def keycloak_token_url(self) -> str:
        return f"{self.keycloak_issuer}/protocol/openid-connect/token"

    @property
    def execution_output_topic(self) -> str:
        """LittleHorse's output topic of entity events for the tenant."""
        return f"{self.littlehorse_cluster_id}_{self.littlehorse_tenant}_execution"

    @property
    def metadata_output_topic(self) -> str:
        return f"{self.littlehorse_cluster_id}_{self.littlehorse_tenant}_metadata"

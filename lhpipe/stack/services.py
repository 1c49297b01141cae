"""How each service is configured, launched and judged ready.

A `Service` writes its configuration into its fresh work directory, returns the command that runs
it, and answers `is_ready` with the check the spec names (a metadata request for Kafka,
`/readiness` for LittleHorse, the system info for Apicurio, discovery plus a token for Keycloak).
Heaps are bounded so the whole stack fits in a few GiB next to the tests.
"""

from __future__ import annotations

import abc
import base64
import logging
import shutil
import socket
import ssl
import subprocess
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from lhpipe.stack import addresses as at
from lhpipe.stack.addresses import StackAddresses
from lhpipe.stack.certs import StackCerts
from lhpipe.stack.errors import StackError
from lhpipe.stack.java import Jdk

PROBE_TIMEOUT_SECONDS = 3.0

# librdkafka logs every refused connection while Kafka is still starting; probes stay silent.
_QUIET = logging.getLogger("lhpipe.stack.probe")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


@dataclass(frozen=True)
class Launch:
    """A command to run in the background, with its environment and working directory."""

    argv: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)


def port_open(port: int, host: str = at.HOST) -> bool:
    """Something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def http_ok(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> bool:
    """The URL answers 2xx."""
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_SECONDS) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, TimeoutError, OSError, ValueError):
        return False


def _write_properties(path: Path, values: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))


def _classpath(home: Path) -> str:
    return str(home / "lib" / "*")


def _jvm_base(workdir: Path, heap: str) -> list[str]:
    tmp = workdir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return [f"-Xmx{heap}", "-Xms128m", f"-Djava.io.tmpdir={tmp}", "-Djava.awt.headless=true"]


_KAFKA_LOG4J = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
"""


class Service(abc.ABC):
    """One service of the stack. Subclasses fill in the specifics."""

    name: str = ""
    ports: tuple[int, ...] = ()
    #: The entry of versions.toml the service runs (its own name unless it is a second
    #: instance of another's distribution).
    pin_of: str = ""
    ready_timeout_seconds: float = 120.0
    stop_grace_seconds: float = 30.0

    @property
    def pin(self) -> str:
        return self.pin_of or self.name

    @abc.abstractmethod
    def launch(
        self, home: Path, jdk: Jdk, workdir: Path, secure: StackCerts | None = None
    ) -> Launch:
        """Write configuration into `workdir` (fresh) and return the command that runs it;
        with ``secure`` (the stack's certificates), add the service's secured listeners too
        (docs/security.md)."""

    @abc.abstractmethod
    def is_ready(self, stack: StackAddresses) -> bool:
        """One quick readiness check; called repeatedly until it passes or time runs out."""

    def after_ready(self, stack: StackAddresses) -> None:  # noqa: B027 (most need nothing)
        """One-off set-up once the service is ready (LittleHorse's output topic)."""


class Kafka(Service):
    """One KRaft node, broker and controller, with single-replica internal topics."""

    name = "kafka"
    ports = (at.KAFKA_PORT, at.KAFKA_CONTROLLER_PORT, at.KAFKA_SECURE_PORT)
    ready_timeout_seconds = 90.0

    def launch(
        self, home: Path, jdk: Jdk, workdir: Path, secure: StackCerts | None = None
    ) -> Launch:
        config = workdir / "server.properties"
        _write_properties(
            config,
            {
                "process.roles": "broker,controller",
                "node.id": "1",
                "controller.quorum.voters": f"1@{at.HOST}:{at.KAFKA_CONTROLLER_PORT}",
                "listeners": (
                    f"PLAINTEXT://{at.HOST}:{at.KAFKA_PORT},"
                    f"CONTROLLER://{at.HOST}:{at.KAFKA_CONTROLLER_PORT}"
                ),
                "advertised.listeners": f"PLAINTEXT://{at.HOST}:{at.KAFKA_PORT}",
                "controller.listener.names": "CONTROLLER",
                "inter.broker.listener.name": "PLAINTEXT",
                "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                **(_kafka_secure_listener(secure) if secure is not None else {}),
                "log.dirs": str(workdir / "data"),
                "num.partitions": "1",
                # One broker: internal topics must not ask for more replicas than exist.
                # LittleHorse's transactions hang without the transaction-state settings.
                "offsets.topic.replication.factor": "1",
                "offsets.topic.num.partitions": "10",
                "transaction.state.log.replication.factor": "1",
                "transaction.state.log.min.isr": "1",
                "transaction.state.log.num.partitions": "10",
                "share.coordinator.state.topic.replication.factor": "1",
                "share.coordinator.state.topic.min.isr": "1",
                "group.initial.rebalance.delay.ms": "0",
                "auto.create.topics.enable": "true",
            },
        )
        (workdir / "log4j2.properties").write_text(_KAFKA_LOG4J)
        java = [
            str(jdk.java),
            # The heap and G1 goals of Kafka's own start scripts: with 512 MiB and the JVM's
            # default 200 ms goal, a young collection every few seconds stalled every
            # acknowledgement for 30-50 ms, the webhook latency's worst tail.
            *_jvm_base(workdir, "1g"),
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            f"-Dlog4j2.configurationFile={workdir / 'log4j2.properties'}",
            "-cp",
            _classpath(home),
        ]
        if secure is not None:
            # The broker's JWKS validator may fetch only from the URLs this property allows.
            java.insert(-2, f"-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls={_jwks_url()}")
        cluster_id = _cluster_id()
        scram = (
            [
                "--add-scram",
                f"SCRAM-SHA-512=[name={at.KAFKA_SCRAM_USER},password={at.KAFKA_SCRAM_PASSWORD}]",
            ]
            if secure is not None
            else []
        )
        formatted = subprocess.run(
            [
                *java,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(config),
                *scram,
            ],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if formatted.returncode != 0:
            raise StackError(
                f"formatting Kafka's storage failed:\n{formatted.stdout}{formatted.stderr}"
            )
        return Launch([*java, "kafka.Kafka", str(config)], cwd=workdir)

    def is_ready(self, stack: StackAddresses) -> bool:
        if not port_open(at.KAFKA_PORT):
            return False
        from confluent_kafka.admin import AdminClient

        config: dict[str, Any] = {"bootstrap.servers": stack.kafka_bootstrap, "logger": _QUIET}
        admin = AdminClient(config)
        try:
            metadata = admin.list_topics(timeout=PROBE_TIMEOUT_SECONDS)
        except Exception:
            return False
        return bool(metadata.brokers)


def _jwks_url() -> str:
    return f"{StackAddresses().keycloak_issuer}/protocol/openid-connect/certs"


def _kafka_secure_listener(certs: StackCerts) -> dict[str, str]:
    """The secured listener beside the open one: ``SASL_SSL`` on :data:`at.KAFKA_SECURE_PORT`
    with ``SCRAM-SHA-512`` users (made when the storage is formatted) and ``OAUTHBEARER``
    tokens from the Keycloak realm, checked by the broker's own JWKS validator."""
    prefix = "listener.name.secure."
    return {
        "listeners": (
            f"PLAINTEXT://{at.HOST}:{at.KAFKA_PORT},"
            f"CONTROLLER://{at.HOST}:{at.KAFKA_CONTROLLER_PORT},"
            f"SECURE://{at.HOST}:{at.KAFKA_SECURE_PORT}"
        ),
        "advertised.listeners": (
            f"PLAINTEXT://{at.HOST}:{at.KAFKA_PORT},SECURE://{at.HOST}:{at.KAFKA_SECURE_PORT}"
        ),
        "listener.security.protocol.map": (
            "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SECURE:SASL_SSL"
        ),
        f"{prefix}ssl.keystore.type": "PEM",
        f"{prefix}ssl.keystore.location": str(certs.server_keystore),
        f"{prefix}ssl.client.auth": "none",
        f"{prefix}sasl.enabled.mechanisms": "SCRAM-SHA-512,OAUTHBEARER",
        f"{prefix}scram-sha-512.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        ),
        f"{prefix}oauthbearer.sasl.jaas.config": (
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;"
        ),
        f"{prefix}oauthbearer.sasl.server.callback.handler.class": (
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"
        ),
        "sasl.oauthbearer.jwks.endpoint.url": _jwks_url(),
        "sasl.oauthbearer.expected.issuer": StackAddresses().keycloak_issuer,
        "sasl.oauthbearer.expected.audience": at.KAFKA_AUDIENCE,
    }


class LittleHorse(Service):
    """The LittleHorse server, a Kafka Streams application, with its output topic enabled."""

    name = "littlehorse"
    ports = (
        at.LITTLEHORSE_PORT,
        at.LITTLEHORSE_INTERNAL_PORT,
        at.LITTLEHORSE_HEALTH_PORT,
        at.LITTLEHORSE_OAUTH_PORT,
        at.LITTLEHORSE_MTLS_PORT,
    )
    ready_timeout_seconds = 180.0
    stop_grace_seconds = 45.0

    def launch(
        self, home: Path, jdk: Jdk, workdir: Path, secure: StackCerts | None = None
    ) -> Launch:
        config = workdir / "server.properties"
        _write_properties(
            config,
            {
                "LHS_KAFKA_BOOTSTRAP_SERVERS": f"{at.HOST}:{at.KAFKA_PORT}",
                "LHS_CLUSTER_ID": at.LITTLEHORSE_CLUSTER_ID,
                "LHS_INSTANCE_ID": "1",
                "LHS_STATE_DIR": str(workdir / "state"),
                "LHS_REPLICATION_FACTOR": "1",
                # Few partitions: fewer Kafka Streams tasks, so a cold start takes seconds.
                "LHS_CLUSTER_PARTITIONS": "3",
                "LHS_OUTPUT_TOPIC_PARTITIONS": "3",
                "LHS_SHOULD_CREATE_TOPICS": "true",
                "LHS_LISTENERS": f"PLAIN:{at.LITTLEHORSE_PORT}",
                "LHS_ADVERTISED_LISTENERS": f"PLAIN://{at.HOST}:{at.LITTLEHORSE_PORT}",
                "LHS_INTERNAL_BIND_PORT": str(at.LITTLEHORSE_INTERNAL_PORT),
                "LHS_INTERNAL_ADVERTISED_HOST": at.HOST,
                "LHS_INTERNAL_ADVERTISED_PORT": str(at.LITTLEHORSE_INTERNAL_PORT),
                "LHS_HEALTH_SERVICE_PORT": str(at.LITTLEHORSE_HEALTH_PORT),
                "LHS_CORE_STREAM_THREADS": "1",
                "LHS_TIMER_STREAM_THREADS": "1",
                **(_littlehorse_secure_listeners(secure) if secure is not None else {}),
            },
        )
        return Launch(
            [
                str(jdk.java),
                *_jvm_base(workdir, "1g"),
                "-cp",
                _classpath(home),
                "io.littlehorse.App",
                str(config),
            ],
            cwd=workdir,
        )

    def is_ready(self, stack: StackAddresses) -> bool:
        return http_ok(f"{stack.littlehorse_health_url}/readiness")

    def after_ready(self, stack: StackAddresses) -> None:
        from lhpipe.stack.littlehorse import enable_output_topic

        enable_output_topic(stack)


def _littlehorse_secure_listeners(certs: StackCerts) -> dict[str, str]:
    """Two secured listeners beside the open one: ``OAUTH`` (TLS, tokens of the Keycloak realm
    that the server introspects) on :data:`at.LITTLEHORSE_OAUTH_PORT` and ``MTLS`` (a client
    certificate signed by the stack's CA; the principal is its CN) on
    :data:`at.LITTLEHORSE_MTLS_PORT`. Keycloak answers introspection only for tokens whose
    audience holds the introspecting client (``littlehorse-server``), and LittleHorse refuses a
    token without a scope: the realm's ``lhpipe-secure`` client gives both."""
    stack = StackAddresses()
    plain, oauth, mtls = at.LITTLEHORSE_PORT, at.LITTLEHORSE_OAUTH_PORT, at.LITTLEHORSE_MTLS_PORT
    return {
        "LHS_LISTENERS": f"PLAIN:{plain},OAUTH:{oauth},MTLS:{mtls}",
        "LHS_LISTENERS_PROTOCOL_MAP": "PLAIN:PLAIN,OAUTH:TLS,MTLS:MTLS",
        "LHS_LISTENERS_AUTHENTICATION_MAP": "PLAIN:NONE,OAUTH:OAUTH,MTLS:MTLS",
        "LHS_ADVERTISED_LISTENERS": (
            f"PLAIN://{at.HOST}:{plain},OAUTH://{at.HOST}:{oauth},MTLS://{at.HOST}:{mtls}"
        ),
        "LHS_LISTENER_OAUTH_CERT": str(certs.server_cert),
        "LHS_LISTENER_OAUTH_KEY": str(certs.server_key),
        "LHS_LISTENER_MTLS_CERT": str(certs.server_cert),
        "LHS_LISTENER_MTLS_KEY": str(certs.server_key),
        "LHS_CA_CERT": str(certs.ca),
        "LHS_OAUTH_CLIENT_ID": at.LITTLEHORSE_INTROSPECTION_CLIENT_ID,
        "LHS_OAUTH_CLIENT_SECRET": at.LITTLEHORSE_INTROSPECTION_CLIENT_SECRET,
        "LHS_OAUTH_INTROSPECT_URL": f"{stack.keycloak_token_url}/introspect",
    }


class Apicurio(Service):
    """Apicurio Registry with in-memory storage; the management interface moved off 9000."""

    name = "apicurio"
    ports = (at.APICURIO_PORT, at.APICURIO_MANAGEMENT_PORT)
    ready_timeout_seconds = 150.0

    def launch(
        self, home: Path, jdk: Jdk, workdir: Path, secure: StackCerts | None = None
    ) -> Launch:
        return Launch(
            [
                str(jdk.java),
                *_jvm_base(workdir, "512m"),
                f"-Dquarkus.http.host={at.HOST}",
                f"-Dquarkus.http.port={at.APICURIO_PORT}",
                f"-Dquarkus.management.host={at.HOST}",
                f"-Dquarkus.management.port={at.APICURIO_MANAGEMENT_PORT}",
                "-Dapicurio.storage.kind=sql",
                "-Dapicurio.storage.sql.kind=h2",
                f"-Dapicurio.storage.snapshot.location={workdir / 'tmp'}",
                "-jar",
                str(home / "dist" / "quarkus-run.jar"),
            ],
            cwd=workdir,
        )

    def is_ready(self, stack: StackAddresses) -> bool:
        return http_ok(f"{stack.registry_url}/apis/registry/v3/system/info")


class SecureApicurio(Service):
    """A second Apicurio Registry for the secure stack: HTTPS only (the stack's certificate) on
    :data:`at.APICURIO_SECURE_PORT`, every call needing a token of the Keycloak realm (OIDC;
    HTTP basic auth with a client's id and secret is exchanged for one), roles from the
    token's realm roles (``sr-developer`` may register schemas, ``sr-readonly`` only read)."""

    name = "apicurio-secure"
    pin_of = "apicurio"
    ports = (at.APICURIO_SECURE_PORT, at.APICURIO_SECURE_MANAGEMENT_PORT)
    ready_timeout_seconds = 150.0

    def launch(
        self, home: Path, jdk: Jdk, workdir: Path, secure: StackCerts | None = None
    ) -> Launch:
        if secure is None:
            raise StackError("apicurio-secure runs only in the secure stack (`up --secure`)")
        stack = StackAddresses()
        return Launch(
            [
                str(jdk.java),
                *_jvm_base(workdir, "512m"),
                f"-Dquarkus.http.host={at.HOST}",
                f"-Dquarkus.http.ssl-port={at.APICURIO_SECURE_PORT}",
                "-Dquarkus.http.insecure-requests=disabled",
                f"-Dquarkus.http.ssl.certificate.files={secure.server_cert}",
                f"-Dquarkus.http.ssl.certificate.key-files={secure.server_key}",
                f"-Dquarkus.management.host={at.HOST}",
                f"-Dquarkus.management.port={at.APICURIO_SECURE_MANAGEMENT_PORT}",
                "-Dapicurio.storage.kind=sql",
                "-Dapicurio.storage.sql.kind=h2",
                f"-Dapicurio.storage.snapshot.location={workdir / 'tmp'}",
                "-Dquarkus.oidc.tenant-enabled=true",
                f"-Dquarkus.oidc.auth-server-url={stack.keycloak_issuer}",
                "-Dquarkus.oidc.client-id=registry-api",
                "-Dapicurio.authn.basic-client-credentials.enabled=true",
                "-Dapicurio.authn.basic-client-credentials.cache-expiration=1",
                "-Dapicurio.auth.role-based-authorization=true",
                "-Dapicurio.auth.anonymous-read-access.enabled=false",
                "-jar",
                str(home / "dist" / "quarkus-run.jar"),
            ],
            cwd=workdir,
        )

    def is_ready(self, stack: StackAddresses) -> bool:
        # The system information needs no token; the stack's CA vouches for the certificate.
        from lhpipe.stack.certs import stack_certs

        certs = stack_certs()
        if certs is None:
            return False
        context = ssl.create_default_context(cafile=str(certs.ca))
        url = f"{stack.secure_registry_url}/apis/registry/v3/system/info"
        try:
            with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_SECONDS, context=context) as r:
                return 200 <= int(r.status) < 300
        except (urllib.error.URLError, TimeoutError, OSError, ValueError):
            return False


class Keycloak(Service):
    """Keycloak in development mode, in-memory database, realm `lhpipe` imported at start."""

    name = "keycloak"
    ports = (at.KEYCLOAK_PORT, at.KEYCLOAK_MANAGEMENT_PORT)
    ready_timeout_seconds = 240.0

    def launch(
        self, home: Path, jdk: Jdk, workdir: Path, secure: StackCerts | None = None
    ) -> Launch:
        dist = home / "dist"
        # Keycloak keeps data under its own home: empty it so every `up` starts fresh.
        data = dist / "data"
        shutil.rmtree(data, ignore_errors=True)
        (data / "import").mkdir(parents=True)
        realm = resources.files("lhpipe.stack").joinpath("data", "realm-lhpipe.json")
        (data / "import" / "realm-lhpipe.json").write_text(realm.read_text(encoding="utf-8"))
        user, password = at.KEYCLOAK_ADMIN
        tmp = workdir / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        env = {
            "JAVA_HOME": str(jdk.home),
            "JAVA_OPTS_KC_HEAP": "-Xms128m -Xmx512m",
            "JAVA_OPTS_APPEND": f"-Djava.io.tmpdir={tmp}",
            "KC_BOOTSTRAP_ADMIN_USERNAME": user,
            "KC_BOOTSTRAP_ADMIN_PASSWORD": password,
        }
        return Launch(
            [
                str(dist / "bin" / "kc.sh"),
                "start-dev",
                f"--http-host={at.HOST}",
                f"--http-port={at.KEYCLOAK_PORT}",
                f"--http-management-port={at.KEYCLOAK_MANAGEMENT_PORT}",
                "--db=dev-mem",
                "--import-realm",
            ],
            cwd=workdir,
            env=env,
        )

    def is_ready(self, stack: StackAddresses) -> bool:
        if not http_ok(stack.keycloak_discovery_url):
            return False
        form = urllib.parse.urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": stack.keycloak_client_id,
                "client_secret": stack.keycloak_client_secret,
            }
        ).encode()
        return http_ok(
            stack.keycloak_token_url,
            data=form,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )


class Connect(Service):
    """Kafka Connect in distributed mode (one worker), for `connector` sources."""

    name = "connect"
    ports = (at.CONNECT_PORT,)
    ready_timeout_seconds = 120.0

    def launch(
        self, home: Path, jdk: Jdk, workdir: Path, secure: StackCerts | None = None
    ) -> Launch:
        config = workdir / "connect.properties"
        converter = "org.apache.kafka.connect.json.JsonConverter"
        _write_properties(
            config,
            {
                "bootstrap.servers": f"{at.HOST}:{at.KAFKA_PORT}",
                "group.id": "lhpipe-connect",
                "key.converter": converter,
                "value.converter": converter,
                "key.converter.schemas.enable": "false",
                "value.converter.schemas.enable": "false",
                "offset.storage.topic": "lhpipe-connect-offsets",
                "offset.storage.replication.factor": "1",
                "offset.storage.partitions": "1",
                "config.storage.topic": "lhpipe-connect-configs",
                "config.storage.replication.factor": "1",
                "status.storage.topic": "lhpipe-connect-status",
                "status.storage.replication.factor": "1",
                "status.storage.partitions": "1",
                # Sink tasks commit (and a FileStreamSink flushes its file) every second, not
                # every minute: an export shows up while one watches.
                "offset.flush.interval.ms": "1000",
                "listeners": f"http://{at.HOST}:{at.CONNECT_PORT}",
                "rest.advertised.host.name": at.HOST,
            },
        )
        (workdir / "log4j2.properties").write_text(_KAFKA_LOG4J)
        return Launch(
            [
                str(jdk.java),
                *_jvm_base(workdir, "512m"),
                f"-Dlog4j2.configurationFile={workdir / 'log4j2.properties'}",
                "-cp",
                _classpath(home),
                "org.apache.kafka.connect.cli.ConnectDistributed",
                str(config),
            ],
            cwd=workdir,
        )

    def is_ready(self, stack: StackAddresses) -> bool:
        return http_ok(f"{stack.connect_url}/")


SERVICES: dict[str, Service] = {
    s.name: s for s in (Kafka(), LittleHorse(), Apicurio(), Keycloak(), SecureApicurio(), Connect())
}


def describe_ready(stack: StackAddresses, name: str) -> str:
    """A one-line summary of where a ready service listens."""
    return {
        "kafka": f"bootstrap {stack.kafka_bootstrap}",
        "littlehorse": (
            f"grpc {stack.littlehorse_host}:{stack.littlehorse_port}, "
            f"output topic {stack.execution_output_topic}"
        ),
        "apicurio": f"{stack.registry_url} (Confluent API {stack.ccompat_url})",
        "keycloak": f"issuer {stack.keycloak_issuer}",
        "apicurio-secure": f"{stack.secure_registry_url} (tokens of the realm required)",
        "connect": stack.connect_url,
    }[name]


def _cluster_id() -> str:
    """A random KRaft cluster id (a UUID in URL-safe base64), never starting with ``-``: the
    storage tool would read such an id as an option and refuse to format (one id in 32)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id

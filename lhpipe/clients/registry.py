"""The schema registry (Apicurio's Confluent-compatible API, or Confluent's own) and the
registry wire format.

:class:`SchemaRegistry` wraps confluent-kafka's ``AsyncSchemaRegistryClient`` (the library's
asyncio client: no thread hop per call) at ``LHPIPE_REGISTRY_URL`` and keeps the parsed fastavro
schemas, so a schema id costs one HTTP request per process whatever the number of records:
concurrent first lookups of one id share that request. Registrations are cached per subject
and schema text.

Failures map to the engine's error tree: an unknown schema id or subject is permanent
(``SCHEMA_NOT_FOUND`` / ``SUBJECT_NOT_FOUND``: a record naming it can never be read), a schema
the registry refuses is permanent (``HTTP_<status>``), and an unreachable or failing registry
(connection errors, timeouts, 429, 5xx) is transient (``REGISTRY_UNAVAILABLE`` /
``HTTP_<status>``). The client makes one attempt per call; the engine retries. A registry that
refuses lhpipe's credentials (401, 403) or a token endpoint that refuses its client is *paused*
(``HTTP_401``, ``HTTP_403``, ``REGISTRY_TOKEN_REFUSED``), as is a certificate it does not
trust (``TLS``): the settings must change, and no
record is dead-lettered for it; a token endpoint that cannot be reached is transient
(``REGISTRY_TOKEN_UNAVAILABLE``).

Authentication and TLS settings are the registry client's own properties, given as
``LHPIPE_REGISTRY_<PROPERTY>`` (upper case, dots as underscores): ``basic.auth.user.info`` for
HTTP basic auth; ``bearer.auth.credentials.source=OAUTHBEARER`` with ``bearer.auth.client.id``,
``bearer.auth.client.secret`` and ``bearer.auth.issuer.endpoint.url`` (the token endpoint) for
OAuth client credentials (the client renews the token at 80 % of its lifespan;
``bearer.auth.scope`` and ``bearer.auth.logical.cluster`` default to empty, which Apicurio
ignores); ``ssl.ca.location`` and the client certificate's ``ssl.certificate.location`` /
``ssl.key.location`` for TLS (docs/security.md).

:func:`encode` writes a value in the wire format (magic byte 0, 4-byte big-endian schema id,
schemaless Avro body) that :func:`lhpipe.core.avro.wire.schema_id_of` reads.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from confluent_kafka.schema_registry import AsyncSchemaRegistryClient, Schema, SchemaRegistryError
from confluent_kafka.schema_registry.error import OAuthTokenError

from lhpipe.core.avro.wire import parse_avro_schema
from lhpipe.core.errors import PausedError, PermanentError, TransientError
from lhpipe.settings import Settings, SettingsError

DEFAULT_TIMEOUT_SECONDS = 10.0
SETTINGS_PREFIX = "LHPIPE_REGISTRY_"
#: The registry client's properties lhpipe passes on from ``LHPIPE_REGISTRY_*`` (text-valued:
#: authentication and TLS; lhpipe sets the timeouts and retries itself).
PASSED_ON = frozenset(
    {
        "basic.auth.user.info",
        "bearer.auth.credentials.source",
        "bearer.auth.token",
        "bearer.auth.client.id",
        "bearer.auth.client.secret",
        "bearer.auth.scope",
        "bearer.auth.issuer.endpoint.url",
        "bearer.auth.logical.cluster",
        "bearer.auth.identity.pool.id",
        "ssl.ca.location",
        "ssl.certificate.location",
        "ssl.key.location",
        "ssl.key.password",
    }
)
_OWN_SETTINGS = frozenset({"LHPIPE_REGISTRY_URL"})

T = TypeVar("T")


class RegistryTransientError(TransientError):
    """The registry did not answer, or answered that it may succeed later."""


class RegistryPermanentError(PermanentError):
    """The registry has no such schema or subject, or refuses the schema."""


class RegistryPausedError(PausedError):
    """The registry, or the token endpoint in front of it, refuses lhpipe's credentials."""


def registry_config(settings: Settings) -> dict[str, str]:
    """The registry client's properties from the ``LHPIPE_REGISTRY_*`` settings (the module
    docstring); raises :class:`SettingsError` for one lhpipe does not pass on."""
    config: dict[str, str] = {}
    for name in settings.names(SETTINGS_PREFIX):
        if name in _OWN_SETTINGS:
            continue
        prop = name[len(SETTINGS_PREFIX) :].lower().replace("_", ".")
        if prop not in PASSED_ON:
            raise SettingsError(
                f"{name} is not a schema registry setting lhpipe knows; the registry's are "
                + ", ".join(
                    SETTINGS_PREFIX + p.upper().replace(".", "_") for p in sorted(PASSED_ON)
                )
            )
        value = settings.get(name)
        if value is not None:
            config[prop] = value
    if config.get("bearer.auth.credentials.source", "").upper() == "OAUTHBEARER":
        # Confluent Cloud's routing headers: required by the client, unused by Apicurio.
        config.setdefault("bearer.auth.scope", "")
        config.setdefault("bearer.auth.logical.cluster", "")
    return config


@dataclass(frozen=True, slots=True)
class RegisteredSchema:
    """A subject's version: its schema id, version number and parsed Avro schema."""

    subject: str
    version: int
    schema_id: int
    schema: Any
    avro: Any


def _error(exc: Exception, what: str) -> TransientError | PausedError | PermanentError:
    if isinstance(exc, OAuthTokenError):
        cause = exc.__context__
        text = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
        detail = f"{what}: no OAuth token for the schema registry: {text}"
        if isinstance(cause, httpx.TransportError) or (
            isinstance(cause, httpx.HTTPStatusError) and cause.response.status_code >= 500
        ):
            return RegistryTransientError(detail, code="REGISTRY_TOKEN_UNAVAILABLE")
        # The endpoint answered with an OAuth error (invalid_client...) or no token at all.
        return RegistryPausedError(detail, code="REGISTRY_TOKEN_REFUSED")
    if isinstance(exc, SchemaRegistryError):
        status = exc.http_status_code
        detail = f"{what}: {exc.error_message} (HTTP {status}, error {exc.error_code})"
        if status in (401, 403):
            refused = "refused lhpipe's credentials" if status == 401 else "denied lhpipe access"
            return RegistryPausedError(
                f"{what}: the schema registry {refused} (HTTP {status}): {exc.error_message}",
                code=f"HTTP_{status}",
            )
        if exc.error_code == 40403:
            return RegistryPermanentError(detail, code="SCHEMA_NOT_FOUND")
        if exc.error_code == 40401:
            return RegistryPermanentError(detail, code="SUBJECT_NOT_FOUND")
        if status == 429 or status >= 500 or status < 0:
            return RegistryTransientError(detail, code=f"HTTP_{status}")
        return RegistryPermanentError(detail, code=f"HTTP_{status}")
    if "CERTIFICATE_VERIFY_FAILED" in str(exc) or "certificate verify failed" in str(exc):
        # The registry's certificate is not trusted: waiting will not help.
        return RegistryPausedError(
            f"{what}: TLS to the schema registry failed: {type(exc).__name__}: {exc}", code="TLS"
        )
    return RegistryTransientError(
        f"{what}: the schema registry cannot be reached: {type(exc).__name__}: {exc}",
        code="REGISTRY_UNAVAILABLE",
    )


class SchemaRegistry:
    """Cached, asyncio-friendly access to the schema registry (one per process)."""

    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        config: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url
        try:
            self._client = AsyncSchemaRegistryClient(
                {
                    **(config or {}),
                    "url": url,
                    # One attempt per call: the engine's delivery policy owns retries and
                    # backoff. "Latest" must follow new versions: the client would keep it
                    # forever by default.
                    "timeout": timeout_seconds,
                    "max.retries": 0,
                    "cache.latest.ttl.sec": 1,
                }
            )
        except (ValueError, TypeError) as exc:  # the client's words name keys, never values
            raise SettingsError(f"the schema registry's settings: {exc}") from None
        self._by_id: dict[int, asyncio.Future[Any]] = {}
        self._registered: dict[tuple[str, str], asyncio.Future[int]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> SchemaRegistry:
        """The registry at ``LHPIPE_REGISTRY_URL``, with the ``LHPIPE_REGISTRY_*`` client
        settings; raises :class:`SettingsError`."""
        return cls(settings.registry_url, config=registry_config(settings))

    async def schema_by_id(self, schema_id: int) -> Any:
        """The parsed fastavro schema registered under ``schema_id``."""
        return await self._once(self._by_id, schema_id, lambda: self._fetch(schema_id))

    async def register(self, subject: str, avro: Mapping[str, Any] | str) -> int:
        """Register an Avro schema (JSON text or its dict) under ``subject``; its schema id.
        Registering the same schema again returns the same id without a request."""
        text = avro if isinstance(avro, str) else json.dumps(avro, sort_keys=True)
        return await self._once(
            self._registered, (subject, text), lambda: self._register(subject, text)
        )

    async def latest(self, subject: str) -> RegisteredSchema:
        """The latest version of ``subject`` (not cached: it changes when a version is
        added); its schema joins the by-id cache."""
        what = f"subject {subject}"
        try:
            registered = await self._client.get_latest_version(subject)
        except (SchemaRegistryError, OAuthTokenError, httpx.HTTPError) as exc:
            raise _error(exc, what) from exc
        schema_id = registered.schema_id
        text = registered.schema.schema_str if registered.schema is not None else None
        if schema_id is None or text is None or registered.version is None:
            raise RegistryTransientError(f"{what}: an incomplete answer", code="HTTP_200")
        avro = json.loads(text)
        schema = await self._once(self._by_id, schema_id, lambda: _parsed(avro, what))
        return RegisteredSchema(subject, registered.version, schema_id, schema, avro)

    async def subjects(self) -> list[str]:
        """Every subject the registry has (for "did you mean" hints)."""
        try:
            names: list[str] = await self._client.get_subjects()
        except (SchemaRegistryError, OAuthTokenError, httpx.HTTPError) as exc:
            raise _error(exc, "subjects") from exc
        return names

    async def close(self) -> None:
        """Close the HTTP connections."""
        # The client closes its HTTP session on leaving its `async with` (untyped there).
        await self._client.__aexit__(None, None, None)  # type: ignore[no-untyped-call]

    async def _fetch(self, schema_id: int) -> Any:
        what = f"schema id {schema_id}"
        try:
            registered = await self._client.get_schema(schema_id)
        except (SchemaRegistryError, OAuthTokenError, httpx.HTTPError) as exc:
            raise _error(exc, what) from exc
        if registered.schema_type not in (None, "AVRO"):
            raise RegistryPermanentError(
                f"{what} is a {registered.schema_type} schema, not Avro", code="NOT_AVRO"
            )
        return await _parsed(json.loads(registered.schema_str or "null"), what)

    async def _register(self, subject: str, text: str) -> int:
        try:
            schema_id: int = await self._client.register_schema(subject, Schema(text, "AVRO"))
        except (SchemaRegistryError, OAuthTokenError, httpx.HTTPError) as exc:
            raise _error(exc, f"registering a schema under {subject}") from exc
        return schema_id

    @staticmethod
    async def _once(
        cache: dict[Any, asyncio.Future[Any]], key: Any, load: Callable[[], Awaitable[T]]
    ) -> T:
        """``load()`` once per key; concurrent callers share it, a failure is not kept."""
        future = cache.get(key)
        if future is None:
            future = asyncio.ensure_future(load())
            cache[key] = future
        try:
            result: T = await asyncio.shield(future)
        except BaseException:
            if future.done() and cache.get(key) is future:
                del cache[key]
            raise
        return result


async def _parsed(avro: Any, what: str) -> Any:
    try:
        return parse_avro_schema(avro)
    except Exception as exc:  # fastavro raises several kinds for a schema it cannot parse
        raise RegistryPermanentError(
            f"{what} is not a valid Avro schema: {exc}", code="BAD_SCHEMA"
        ) from exc

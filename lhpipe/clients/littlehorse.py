"""The LittleHorse sender: ``run_wf``, ``post_event`` and ``correlate`` plans as gRPC calls.

One :class:`LittleHorseClient` per process holds one ``grpc.aio`` channel and one
``LittleHorseStub`` over it, shared by every pipeline; calls run concurrently on it. Each call
carries a deadline (default 10 s, ``LHPIPE_LITTLEHORSE_DEADLINE_MS``) and the tenant header.

Connection settings keep LittleHorse's own names (``LHC_API_HOST``, ``LHC_API_PORT``,
``LHC_API_PROTOCOL``, ``LHC_TENANT_ID``, ``LHC_CA_CERT``, ``LHC_CLIENT_CERT``,
``LHC_CLIENT_KEY``, ``LHC_OAUTH_CLIENT_ID``, ``LHC_OAUTH_CLIENT_SECRET``,
``LHC_OAUTH_ACCESS_TOKEN_URL``, ``LHC_GRPC_KEEPALIVE_TIME_MS``,
``LHC_GRPC_KEEPALIVE_TIMEOUT_MS``) and mean what they mean to LittleHorse's clients: OAuth is a
client-credentials token sent as call credentials over TLS, renewed at 80 % of its lifespan
(:mod:`lhpipe.clients.tokens`). They are read from
:class:`~lhpipe.settings.Settings` (environment, ``lhpipe.toml``, defaults), not by
``LHConfig``, which reads ``os.environ`` by itself. The channel is built here, without the
client's interceptors: the tenant goes in each call's metadata, and ``RESOURCE_EXHAUSTED`` is a
transient error for the engine's backoff rather than a sleep inside the call.

Outcomes (delivery.md): ``ALREADY_EXISTS`` is success for all three calls; other gRPC codes
become :class:`LittleHorseTransientError`, :class:`LittleHorsePausedError` or
:class:`LittleHorsePermanentError` with ``code`` the status name (:func:`classify`).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.empty_pb2 import Empty
from littlehorse.model import (
    ExternalEventDef,
    ExternalEventDefId,
    GetLatestWfSpecRequest,
    LittleHorseStub,
    PutCorrelatedEventRequest,
    PutExternalEventRequest,
    RunWfRequest,
    SearchExternalEventDefRequest,
    SearchWfSpecRequest,
    StructDef,
    StructDefId,
    WfSpec,
    WfSpecId,
)

from lhpipe.clients.lh_values import (
    MetadataCache,
    UndeclaredVariableError,
    event_content,
    run_wf_variables,
    wf_run_id,
)
from lhpipe.clients.tokens import MARK as TOKEN_MARK
from lhpipe.clients.tokens import ClientCredentials, GrpcTokenPlugin
from lhpipe.core.errors import DeliveryError, PausedError, PermanentError, TransientError
from lhpipe.core.plans import CorrelatePlan, Plan, PostEventPlan, RunWfPlan
from lhpipe.core.senders import ALREADY_EXISTS
from lhpipe.settings import Settings, SettingsError

DEFAULT_DEADLINE_SECONDS = 10.0
PING_DEADLINE_SECONDS = 2.0
DEADLINE_SETTING = "LHPIPE_LITTLEHORSE_DEADLINE_MS"
TENANT_HEADER = "tenantid"

_S = grpc.StatusCode
TRANSIENT_CODES = frozenset(
    {
        _S.UNAVAILABLE,
        _S.DEADLINE_EXCEEDED,
        _S.RESOURCE_EXHAUSTED,
        _S.ABORTED,
        _S.INTERNAL,
        _S.CANCELLED,
        # Not in delivery.md's table: an unknown failure (a proxy, a reset stream) may pass.
        _S.UNKNOWN,
    }
)
PAUSED_CODES = frozenset(
    {
        _S.UNAUTHENTICATED,
        _S.PERMISSION_DENIED,
        _S.FAILED_PRECONDITION,
        # Not in the table: the server lost data; an operator must look, nothing is dropped.
        _S.DATA_LOSS,
    }
)
# Everything else (INVALID_ARGUMENT, NOT_FOUND, OUT_OF_RANGE, UNIMPLEMENTED) is permanent.

# What LittleHorse 1.2.1 answers (INVALID_ARGUMENT) when a request does not fit the WfSpec or
# ExternalEventDef it names; after such an answer the cached metadata may be out of date.
_METADATA_MISMATCH = (
    "is not compatible with expected type",
    "provided but not needed",
    "Struct incompatible with StructDef",
    "Invalid type of content",
    "Must provide required input variable",
)


# What gRPC says when the TLS handshake failed: an untrusted server certificate, a client
# certificate the server refused.
_TLS_REFUSALS = ("CERTIFICATE_VERIFY_FAILED", "Ssl handshake failed", "certificate required")


class LittleHorseTransientError(TransientError):
    """LittleHorse did not answer, or answered that it may succeed later."""


class LittleHorsePausedError(PausedError):
    """LittleHorse refused until something changes: credentials, ACLs, a missing parent."""


class LittleHorsePermanentError(PermanentError):
    """LittleHorse refused this request for good (bad argument, unknown WfSpec...).

    ``type_mismatch`` is set when the answer says a value does not fit the type the WfSpec or
    ExternalEventDef declares: the metadata lhpipe typed it with may be out of date.
    """

    def __init__(self, message: str, *, code: str, type_mismatch: bool = False) -> None:
        super().__init__(message, code=code)
        self.type_mismatch = type_mismatch


def classify(code: grpc.StatusCode, details: str, what: str = "LittleHorse") -> DeliveryError:
    """The run-time error for a gRPC failure of ``what``; its ``code`` is the status name."""
    name = code.name
    message = f"{what}: {name}: {details or name}"
    if TOKEN_MARK in details and code == _S.UNAVAILABLE:
        # No token for the call: the identity provider refused lhpipe's client (a wrong secret,
        # a disabled client: paused until the settings change) or could not be reached.
        cause = details[details.index(TOKEN_MARK) :]
        message = f"{what}: no OAuth token: {cause}"
        if "the endpoint refused client" in details:
            return LittleHorsePausedError(message, code="UNAUTHENTICATED")
        return LittleHorseTransientError(message, code=name)
    if code == _S.UNAVAILABLE and any(word in details for word in _TLS_REFUSALS):
        # The server's certificate is not trusted (or ours not accepted): waiting will not help.
        return LittleHorsePausedError(f"{what}: TLS to LittleHorse failed: {details}", code=name)
    if code in TRANSIENT_CODES:
        return LittleHorseTransientError(message, code=name)
    if code in PAUSED_CODES:
        return LittleHorsePausedError(message, code=name)
    mismatch = code == _S.INVALID_ARGUMENT and any(s in details for s in _METADATA_MISMATCH)
    return LittleHorsePermanentError(message, code=name, type_mismatch=mismatch)


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LittleHorseConnection:
    """Where and how to reach LittleHorse, from the ``LHC_*`` settings."""

    host: str
    port: int
    tls: bool = False
    tenant: str | None = None
    ca_cert: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    oauth_client_id: str | None = None
    oauth_client_secret: str | None = field(default=None, repr=False)
    oauth_token_url: str | None = None
    keepalive_time_ms: int = 45_000
    keepalive_timeout_ms: int = 5_000
    deadline_seconds: float = DEFAULT_DEADLINE_SECONDS

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def oauth(self) -> bool:
        return self.oauth_client_id is not None

    @classmethod
    def from_settings(cls, settings: Settings) -> LittleHorseConnection:
        """Read the ``LHC_*`` settings; raises :class:`SettingsError` for a bad one."""
        lhc = settings.littlehorse()
        protocol = lhc.get("LHC_API_PROTOCOL", "PLAINTEXT").upper()
        if protocol not in ("PLAINTEXT", "TLS"):
            raise SettingsError(f"LHC_API_PROTOCOL must be PLAINTEXT or TLS, not {protocol!r}")
        oauth = {
            name: lhc.get(name) or None
            for name in (
                "LHC_OAUTH_CLIENT_ID",
                "LHC_OAUTH_CLIENT_SECRET",
                "LHC_OAUTH_ACCESS_TOKEN_URL",
            )
        }
        given = [name for name, value in oauth.items() if value]
        if given and len(given) < len(oauth):
            missing = ", ".join(name for name in oauth if name not in given)
            raise SettingsError(f"OAuth for LittleHorse needs {missing} as well")
        if given and protocol != "TLS":
            raise SettingsError(
                "LHC_OAUTH_* needs LHC_API_PROTOCOL=TLS: LittleHorse takes OAuth tokens over "
                "TLS only"
            )
        deadline_ms = _number(settings.get(DEADLINE_SETTING), DEADLINE_SETTING, 10_000)
        return cls(
            host=lhc.get("LHC_API_HOST", "localhost"),
            port=_number(lhc.get("LHC_API_PORT"), "LHC_API_PORT", 2023),
            tls=protocol == "TLS",
            tenant=lhc.get("LHC_TENANT_ID") or None,
            ca_cert=_path(lhc.get("LHC_CA_CERT")),
            client_cert=_path(lhc.get("LHC_CLIENT_CERT")),
            client_key=_path(lhc.get("LHC_CLIENT_KEY")),
            oauth_client_id=oauth["LHC_OAUTH_CLIENT_ID"],
            oauth_client_secret=oauth["LHC_OAUTH_CLIENT_SECRET"],
            oauth_token_url=oauth["LHC_OAUTH_ACCESS_TOKEN_URL"],
            keepalive_time_ms=_number(
                lhc.get("LHC_GRPC_KEEPALIVE_TIME_MS"), "LHC_GRPC_KEEPALIVE_TIME_MS", 45_000
            ),
            keepalive_timeout_ms=_number(
                lhc.get("LHC_GRPC_KEEPALIVE_TIMEOUT_MS"), "LHC_GRPC_KEEPALIVE_TIMEOUT_MS", 5_000
            ),
            deadline_seconds=deadline_ms / 1000,
        )

    def open_channel(self) -> grpc.aio.Channel:
        """A new ``grpc.aio`` channel (call from inside the event loop that will use it)."""
        options = [
            ("grpc.keepalive_time_ms", self.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", self.keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
        ]
        if not self.tls:
            return grpc.aio.insecure_channel(self.target, options=options)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca_cert),
            private_key=_read(self.client_key),
            certificate_chain=_read(self.client_cert),
        )
        if self.oauth:
            # The plugin fetches a client-credentials token, and a new one at 80 % of its
            # lifespan, on gRPC's own threads: a slow token endpoint never blocks the loop.
            assert self.oauth_token_url and self.oauth_client_id and self.oauth_client_secret
            token = ClientCredentials(
                self.oauth_token_url, self.oauth_client_id, self.oauth_client_secret
            )
            credentials = grpc.composite_channel_credentials(
                credentials, grpc.metadata_call_credentials(GrpcTokenPlugin(token))
            )
        return grpc.aio.secure_channel(self.target, credentials, options=options)


def client_certificate_problem(path: Path, now: datetime.datetime | None = None) -> str | None:
    """Why the client certificate at ``path`` cannot be accepted (expired, not valid yet), or
    ``None``; a file that cannot be read or parsed is left to the TLS library to report."""
    from cryptography import x509

    try:
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None
    moment = now or datetime.datetime.now(datetime.UTC)
    ends, starts = certificate.not_valid_after_utc, certificate.not_valid_before_utc
    if moment > ends:
        return f"the client certificate LHC_CLIENT_CERT ({path}) expired at {ends.isoformat()}"
    if moment < starts:
        return (
            f"the client certificate LHC_CLIENT_CERT ({path}) is not valid before "
            f"{starts.isoformat()}"
        )
    return None


def _number(text: str | None, name: str, default: int) -> int:
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {text!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive, not {value}")
    return value


def _path(text: str | None) -> Path | None:
    return Path(text) if text else None


def _read(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SettingsError(f"cannot read {path}: {exc.strerror}") from exc


# ---------------------------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------------------------


class LittleHorseClient:
    """The process's connection to LittleHorse, and the sender of the three LittleHorse
    targets (the :class:`~lhpipe.core.senders.Sender` protocol).

    The channel opens on first use, inside the running event loop. :attr:`metadata` caches
    WfSpecs, ExternalEventDefs and StructDefs for typing values; ``lint --online`` reads them
    through it as well.
    """

    #: Answer times say how loaded the server is: pipelines adapt their concurrency to them
    #: (:mod:`lhpipe.runtime.limit`).
    adaptive = True

    def __init__(self, connection: LittleHorseConnection) -> None:
        self.connection = connection
        self.metadata = MetadataCache(self)
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None
        self._call_metadata: tuple[tuple[str, str], ...] = (
            ((TENANT_HEADER, connection.tenant),) if connection.tenant else ()
        )
        # None until a call or ping says; False after a failure that reached no server.
        self._reachable: bool | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> LittleHorseClient:
        """A client for the ``LHC_*`` settings; raises :class:`SettingsError`."""
        return cls(LittleHorseConnection.from_settings(settings))

    # -- Sender ------------------------------------------------------------------------------

    async def send(self, plan: Plan) -> str | None:
        """Perform a :class:`RunWfPlan`, :class:`PostEventPlan` or :class:`CorrelatePlan`.

        ``ALREADY_EXISTS`` counts as success, and is returned as
        :data:`~lhpipe.core.senders.ALREADY_EXISTS` (for the metrics). When LittleHorse
        answers that a value does not fit the declared type, the cached metadata is fetched
        again and the call is made once more with values typed afresh (the WfSpec may have a
        new revision).
        """
        try:
            existed = await self._send_once(plan)
        except LittleHorsePermanentError as exc:
            # A deleted WfSpec or ExternalEventDef must not stay cached; a type mismatch may
            # mean a new revision: type the values afresh and try once more.
            if isinstance(plan, RunWfPlan):
                self.metadata.forget_wf_spec(plan.wf_spec, plan.major_version, plan.revision)
            elif isinstance(plan, PostEventPlan | CorrelatePlan):
                self.metadata.forget_event_def(plan.external_event_def)
            if not exc.type_mismatch:
                raise
            existed = await self._send_once(plan)
        return ALREADY_EXISTS if existed else None

    async def _send_once(self, plan: Plan) -> bool:
        """One call for the plan; True when LittleHorse had it already."""
        if isinstance(plan, RunWfPlan):
            return await self._run_wf_once(plan)
        if isinstance(plan, PostEventPlan):
            return await self._post_event_once(plan)
        if isinstance(plan, CorrelatePlan):
            return await self._correlate_once(plan)
        raise TypeError(f"LittleHorseClient cannot send a {type(plan).__name__}")

    def connected(self) -> bool:
        """Whether LittleHorse answered the last call (or ping), and the channel is not
        failing now."""
        if self._channel is None or self._reachable is False:
            return False
        state = self._channel.get_state(try_to_connect=False)
        return state not in (
            grpc.ChannelConnectivity.TRANSIENT_FAILURE,
            grpc.ChannelConnectivity.SHUTDOWN,
        ) and bool(self._reachable)

    async def ping(self) -> bool:
        """Ask the server its version (a cheap call every server version has); never
        raises."""
        deadline = min(PING_DEADLINE_SECONDS, self.connection.deadline_seconds)
        try:
            await self._call("GetServerVersion", Empty(), "GetServerVersion", deadline=deadline)
        except DeliveryError:
            return False
        return True

    async def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        if self._channel is not None:
            channel, self._channel, self._stub = self._channel, None, None
            await channel.close()

    # -- the three calls ---------------------------------------------------------------------

    # Each call is written out rather than wrapped in closures: this is the hot path, one call
    # per record. What a call is about (for an error's message) is formatted only when it
    # fails.

    async def _run_wf_once(self, plan: RunWfPlan) -> bool:
        metadata = self.metadata
        version = (plan.wf_spec, plan.major_version, plan.revision)
        shape = metadata.cached_wf_spec(*version) or await metadata.wf_spec(*version)
        try:
            variables = run_wf_variables(shape, plan.variables)
        except UndeclaredVariableError:
            if not metadata.is_stale(*version):
                raise
            metadata.forget_wf_spec(*version)
            variables = run_wf_variables(await metadata.wf_spec(*version), plan.variables)
        request = RunWfRequest(
            wf_spec_name=plan.wf_spec,
            major_version=plan.major_version,
            revision=plan.revision,
            variables=variables,
            id=plan.wf_run_id,
            parent_wf_run_id=(wf_run_id(plan.parent_wf_run_id) if plan.parent_wf_run_id else None),
        )
        # None: ALREADY_EXISTS
        return await self._call("RunWf", request, _run_wf_what, plan) is None

    async def _post_event_once(self, plan: PostEventPlan) -> bool:
        metadata = self.metadata
        name = plan.external_event_def
        shape = metadata.cached_event_def(name) or await metadata.event_def(name)
        request = PutExternalEventRequest(
            wf_run_id=wf_run_id(plan.wf_run_id),
            external_event_def_id=ExternalEventDefId(name=name),
            guid=plan.guid,
            content=event_content(shape, plan.content),
            thread_run_number=plan.thread_run_number,
            node_run_position=plan.node_run_position,
        )
        # None: ALREADY_EXISTS
        return await self._call("PutExternalEvent", request, _post_event_what, plan) is None

    async def _correlate_once(self, plan: CorrelatePlan) -> bool:
        metadata = self.metadata
        name = plan.external_event_def
        shape = metadata.cached_event_def(name) or await metadata.event_def(name)
        request = PutCorrelatedEventRequest(
            key=plan.key,
            external_event_def_id=ExternalEventDefId(name=name),
            content=event_content(shape, plan.content),
        )
        # None: ALREADY_EXISTS
        return await self._call("PutCorrelatedEvent", request, _correlate_what, plan) is None

    # -- metadata (MetadataSource) -----------------------------------------------------------

    async def fetch_wf_spec(
        self, name: str, major_version: int | None, revision: int | None
    ) -> WfSpec:
        """The WfSpec ``name``: that version, or the latest (of ``major_version``)."""
        what = f"WfSpec {name}"
        if major_version is not None and revision is not None:
            spec_id = WfSpecId(name=name, major_version=major_version, revision=revision)
            spec: WfSpec = await self._call("GetWfSpec", spec_id, what)
        else:
            request = GetLatestWfSpecRequest(name=name, major_version=major_version)
            spec = await self._call("GetLatestWfSpec", request, what)
        return spec

    async def fetch_external_event_def(self, name: str) -> ExternalEventDef:
        """The ExternalEventDef ``name``."""
        event_def: ExternalEventDef = await self._call(
            "GetExternalEventDef", ExternalEventDefId(name=name), f"ExternalEventDef {name}"
        )
        return event_def

    async def fetch_struct_def(self, name: str, version: int) -> StructDef:
        """The StructDef ``name`` at ``version`` (``-1``: the latest)."""
        struct_def: StructDef = await self._call(
            "GetStructDef", StructDefId(name=name, version=version), f"StructDef {name}"
        )
        return struct_def

    async def wf_spec_names(self, limit: int) -> list[str]:
        """Names of WfSpecs (one page of at most ``limit`` versions), for hints."""
        found = await self._call("SearchWfSpec", SearchWfSpecRequest(limit=limit), "WfSpecs")
        return sorted({spec_id.name for spec_id in found.results})

    async def external_event_def_names(self, limit: int) -> list[str]:
        """Names of ExternalEventDefs (one page of at most ``limit``), for hints."""
        request = SearchExternalEventDefRequest(limit=limit)
        found = await self._call("SearchExternalEventDef", request, "ExternalEventDefs")
        return sorted({def_id.name for def_id in found.results})

    # -- one call ----------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        request: Any,
        what: str | Callable[[Any], str],
        about: Any = None,
        deadline: float | None = None,
    ) -> Any:
        """One unary call with the deadline and tenant; ``ALREADY_EXISTS`` returns ``None``.
        ``what`` names the call in an error's message: a text, or a function of ``about``
        (called only when the call fails)."""
        stub = self._stub or self._ensure_stub()
        try:
            response = await getattr(stub, method)(
                request,
                timeout=deadline or self.connection.deadline_seconds,
                metadata=self._call_metadata,
            )
        except grpc.RpcError as exc:
            code = exc.code()
            self._reachable = code not in (_S.UNAVAILABLE, _S.DEADLINE_EXCEEDED)
            if code == _S.ALREADY_EXISTS:
                return None
            described = what if isinstance(what, str) else what(about)
            details = exc.details() or ""
            if code == _S.UNAVAILABLE and self.connection.client_cert is not None:
                # TLS 1.3: the server's refusal of our certificate comes after the handshake,
                # and gRPC says only "Secure read failed"; the certificate itself says why.
                problem = client_certificate_problem(self.connection.client_cert)
                if problem is not None:
                    raise LittleHorsePausedError(
                        f"{described}: TLS to LittleHorse failed: {problem}", code=code.name
                    ) from exc
            raise classify(code, details, described) from exc
        self._reachable = True
        return response

    def _ensure_stub(self) -> Any:
        if self._stub is None:
            self._channel = self.connection.open_channel()
            self._stub = LittleHorseStub(self._channel)
        return self._stub


def _run_wf_what(plan: RunWfPlan) -> str:
    return f"RunWf {plan.wf_spec} id {plan.wf_run_id}"


def _post_event_what(plan: PostEventPlan) -> str:
    return f"PutExternalEvent {plan.external_event_def} to {plan.wf_run_id}"


def _correlate_what(plan: CorrelatePlan) -> str:
    return f"PutCorrelatedEvent {plan.external_event_def} key {plan.key}"

"""One webhook route: the raw ASGI handler that turns an accepted request into a Kafka record
(or, in direct mode, runs its pipeline), answering ``202`` only once that is safe.

A :class:`WebhookRoute` is built once per webhook, when the Gateway builds its route table
(:mod:`lhpipe.gateway.gateway`), and then serves every request to the webhook's ``path``. A
request goes through these steps, and the first one that fails answers (docs/webhooks.md has
the caller's view):

1. **Method**: not one of ``methods`` → ``405`` with ``Allow``. **Headers**: a credential,
   signature or id header sent twice (``Authorization``, ``Idempotency-Key``, the headers the
   auth reads) → ``400``, so that a proxy checking the first copy and this route agree.
2. **Size**: a ``Content-Length`` over ``max_body`` → ``413`` before a byte of the body is
   read; otherwise the body is read chunk by chunk and the request is refused with ``413`` as
   soon as it grows past ``max_body``. A refusal sent before the whole body was read closes the
   connection (``Connection: close``), so the server never reads the rest of it.
3. **Authentication** (:mod:`.auth`) over the headers and the raw bytes → ``401``, ``403`` (or
   ``503`` while an issuer's keys cannot be fetched).
4. **Webhook id**: the provider's delivery id from the auth verdict, else the
   ``Idempotency-Key`` header (either 1 to 255 visible ASCII characters, else ``400``), else a
   new UUID.
5. **Body** (:mod:`.validate`) → ``415`` or ``400`` naming the fields.
6. **Key**: the webhook's ``key`` expression over ``body``, ``headers``, ``query``, ``claims``
   and ``request.id`` (an expression error → ``400``), by default the webhook id (a pipeline's
   ``run_wf`` makes it a valid LittleHorse id: :func:`lhpipe.targets.planners.webhook_id_as_id`).
7. **Topic mode**: the record is produced to ``topic``, and the answer waits for the broker's
   acknowledgement (``acks=all``, idempotent producer) for at most :data:`ACK_DEADLINE_SECONDS`
   (the producer's record timeout):
   ``202 {"id": "<webhook id>"}``, or ``503`` with ``Retry-After`` when Kafka (or, on first use,
   the schema registry) is unavailable. **Direct mode** (no ``topic``): the one pipeline
   ``from webhook`` runs inside the request (:class:`DirectPipeline`).

The record: key as computed (UTF-8), value in the registry wire format for a schema body
(magic byte, schema id, Avro), the body's bytes as received for ``json`` and ``bytes``, and
the headers ``lhpipe.webhook`` (the webhook's name), ``lhpipe.webhook.id`` and
``content-type`` (the record value's media type: :data:`AVRO_CONTENT_TYPE` for a schema body,
the request's ``Content-Type`` otherwise, ``application/octet-stream`` when it sent none).

A schema body's schema is registered on first use under ``<topic>-value`` (the
TopicNameStrategy Kafka's serializers use by default), through the registry's Confluent API; a
schema declared ``from registry "subject"`` is already registered, so the latest version of
that subject is used as it is, both to check bodies and to write records.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import Any, Final, Protocol
from urllib.parse import parse_qsl

import orjson

from lhpipe.check.program import PipelineInfo, Program, SchemaInfo, WebhookInfo
from lhpipe.core import metrics
from lhpipe.core.avro.wire import topic_subject
from lhpipe.core.errors import DeliveryError, PausedError, PermanentError, TransientError
from lhpipe.core.evaluate import Evaluator, compile_expr
from lhpipe.core.record import WEBHOOK_ID_HEADER, Record, WebhookOrigin
from lhpipe.core.senders import RecordProducer
from lhpipe.core.steps import Steps, initial_env
from lhpipe.gateway import problems
from lhpipe.gateway.outcome import (
    Authenticated,
    Authenticator,
    ImmediateAuthenticator,
    Refused,
    describe_error,
    log_reason,
)
from lhpipe.gateway.problems import PROBLEM_CONTENT_TYPE, Problem
from lhpipe.gateway.validate import BodyDecoder, BodyRejected, SchemaBody, body_decoder
from lhpipe.runtime.delivery import (
    DeadLetterWriter,
    RecordFailed,
    TargetStage,
    run_record,
)

log = logging.getLogger(__name__)

#: How long a topic-mode request waits for Kafka's acknowledgement before answering 503: the
#: Gateway's producer times its records out after this long (``message.timeout.ms``), so a
#: record refused with 503 is not delivered later by a producer still retrying it.
ACK_DEADLINE_SECONDS: Final = 5.0
#: The record's ``content-type`` for a body sent without one (RFC 9110: unknown bytes).
OCTET_STREAM: Final = b"application/octet-stream"
#: How long a direct-mode request waits for its pipeline's targets (LittleHorse calls have a
#: 10 s deadline each; webhook providers commonly give up after 10 to 30 s).
DIRECT_DEADLINE_SECONDS: Final = 10.0
#: ``Retry-After`` of a 503: Kafka, the registry or a target is unavailable.
RETRY_AFTER_SECONDS: Final = 5
#: The media type of a record value in the registry wire format.
AVRO_CONTENT_TYPE: Final = b"application/vnd.apache.avro+binary"
MAX_IDEMPOTENCY_KEY: Final = 255

# Headers that carry credentials: they never reach a record (direct mode) or a dead letter
# (nor does the signature header of an `hmac` webhook: the authenticator's `secret_headers`).
_CREDENTIALS: Final = frozenset({"authorization", "proxy-authorization", "cookie"})
# Headers a request may send once only, whatever the auth (the authenticator adds its own):
# with two, a proxy that checked the first and this route, reading the last, would disagree.
_SINGLE: Final = frozenset({"authorization", "idempotency-key"})
# A Content-Length longer than this is over any max_body (and never converted: int() refuses
# more than 4,300 digits).
_MAX_LENGTH_DIGITS: Final = 18
#: A route logs at most one line about its own failures this often (the rest are counted).
FAULT_LOG_INTERVAL_SECONDS: Final = 60.0
_FAULT: Final = Problem(500, "the request failed in lhpipe; see its log")
# The LittleHorse sinks' header names, in the spelling the pipelines' id rules look for; HTTP
# delivers header names in lower case.
_SINK_HEADERS: Final = {"wfrunid": "wfRunId", "correlationid": "correlationId"}
_IDEMPOTENCY_KEY: Final = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")
_JSON: Final = b"application/json"
_CLOSE: Final = (b"connection", b"close")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


#: What a topic-mode route writes with: resolves once the broker acknowledged, raises the
#: engine's errors, and gives up on a record after the route's deadline
#: (``message.timeout.ms``) with a :class:`~lhpipe.core.errors.TransientError`.
Producer = RecordProducer


class Schemas(Protocol):
    """What a route needs of the schema registry (:class:`~lhpipe.clients.registry.
    SchemaRegistry`)."""

    async def register(self, subject: str, avro: Mapping[str, Any] | str) -> int: ...

    async def latest(self, subject: str) -> Any: ...


class _Disconnected(Exception):
    """The client closed the connection before its body arrived."""


class Unavailable(Exception):
    """Something the request needs is unavailable now: answer 503 with ``Retry-After``."""


class Misconfigured(Exception):
    """The webhook cannot be served as configured (the registry refuses its schema): 500."""


def new_webhook_id() -> str:
    """A random (version 4) UUID in its usual text form."""
    return str(uuid.uuid4())


class BodySchema:
    """A webhook's body decoder and, for a schema body, the schema id its records carry; both
    made ready on first use (:meth:`ready`) and kept."""

    def __init__(self, webhook: WebhookInfo, schema: SchemaInfo | None, registry: Schemas | None):
        self._webhook = webhook
        self._schema = schema
        self._registry = registry
        self.decoder: BodyDecoder | None = None
        self.schema_id: int | None = None
        self._lock = asyncio.Lock()
        if schema is None:
            self.decoder = body_decoder(webhook.body)
        elif schema.avro is not None:
            self.decoder = body_decoder(webhook.body, schema.avro)

    @property
    def is_schema(self) -> bool:
        """The body is a schema (its records are in the registry wire format)."""
        return self._schema is not None

    async def ready(self, needs_id: bool) -> BodyDecoder:
        """The decoder, after the registry gave what is missing (``needs_id``: the schema id
        too, for a record); raises :class:`Unavailable` or :class:`Misconfigured`."""
        decoder = self.decoder
        if decoder is not None and (self.schema_id is not None or not needs_id):
            return decoder
        async with self._lock:
            await self._resolve(needs_id)
        assert self.decoder is not None
        return self.decoder

    async def _resolve(self, needs_id: bool) -> None:
        schema = self._schema
        if schema is None or self.schema_id is not None:
            return
        if self.decoder is not None and not needs_id:
            return
        registry = self._registry
        assert registry is not None, "a schema body needs the schema registry"
        try:
            if schema.avro is None:
                assert schema.subject is not None
                latest = await registry.latest(schema.subject)
                self.decoder = body_decoder(self._webhook.body, latest.avro)
                self.schema_id = latest.schema_id
            elif needs_id:
                assert self._webhook.topic is not None
                self.schema_id = await registry.register(
                    topic_subject(self._webhook.topic), schema.avro
                )
        except TransientError as exc:
            raise Unavailable(f"the schema registry is unavailable: {exc}") from exc
        except PausedError as exc:  # lhpipe's credentials refused: fixed in the settings
            raise Unavailable(f"the schema registry refused lhpipe: {exc}") from exc
        except PermanentError as exc:
            raise Misconfigured(f"the schema registry refused schema {schema.name}: {exc}") from exc


class DirectPipeline:
    """The pipeline ``from webhook`` of a direct-mode webhook, run inside the request.

    The request is a record whose origin is the webhook id (generated ids are
    ``<pipeline>-<webhook id>``), key the webhook's key, value the checked body, headers the
    request's (credentials and an ``hmac`` webhook's signature header left out, so that a dead
    letter cannot be sent again as a signed request; ``wfrunid`` and ``correlationid`` spelt
    ``wfRunId`` and ``correlationId``, as the id rules read them) plus ``lhpipe.webhook`` and
    ``lhpipe.webhook.id``. Steps, planners and the delivery policy are the engine's own; a
    permanent failure goes to the pipeline's ``dead_letter`` topic when it has one (the request
    is then accepted: the record is safe there), otherwise the caller gets ``422`` with the
    error (``permanent = stop`` and ``skip`` have no stream to stop or skip here).
    """

    def __init__(
        self,
        info: PipelineInfo,
        steps: Steps,
        targets: Sequence[TargetStage],
        dead_letters: DeadLetterWriter | None,
    ) -> None:
        self.name = info.name
        self.info = info
        self.steps = steps
        self.targets = tuple(targets)
        self.dead_letters = dead_letters
        self._records_in = metrics.RECORDS_IN.labels(info.name)
        self._dropped = metrics.RECORDS_DROPPED.labels(info.name)
        self._dead_lettered = metrics.RECORDS_DEAD_LETTERED.labels(info.name)

    async def run(self, record: Record, key: str | None, value: Any) -> DeliveryError | None:
        """Run the request through the pipeline; ``None`` when it is done (every target
        accepted it, a ``where`` dropped it, or it was dead-lettered), else the permanent
        error to report. Transient errors are retried until the caller's deadline cancels."""
        self._records_in.inc()
        try:
            await self._deliver(record, key, value)
        except RecordFailed as exc:
            failure = exc.failure
            if self.dead_letters is None:
                log.warning(
                    "pipeline %s: webhook request %s failed: %s",
                    self.name,
                    record.origin.coordinates(),
                    failure.describe(),
                )
                return failure.error
            await self.dead_letters.write(record, failure)
            self._dead_lettered.inc()
            log.warning(
                "pipeline %s: webhook request %s dead-lettered to %r: %s",
                self.name,
                record.origin.coordinates(),
                self.dead_letters.topic,
                failure.describe(),
            )
        return None

    async def _deliver(self, record: Record, key: str | None, value: Any) -> None:
        await run_record(record, key, value, initial_env, self.steps, self.targets, self._dropped)


class WebhookRoute:
    """The ASGI handler of one webhook (see the module docstring)."""

    def __init__(
        self,
        webhook: WebhookInfo,
        program: Program,
        authenticator: Authenticator,
        body: BodySchema,
        *,
        producer: Producer | None = None,
        direct: DirectPipeline | None = None,
        direct_deadline: float = DIRECT_DEADLINE_SECONDS,
    ) -> None:
        if (webhook.topic is None) != (producer is None) or (webhook.topic is None) == (
            direct is None
        ):
            raise ValueError("a topic-mode route needs a producer, a direct-mode one a pipeline")
        self.name = webhook.name
        self.webhook = webhook
        self.topic = webhook.topic
        self.methods = webhook.methods
        self.max_body = webhook.max_body
        self.authenticator = authenticator
        self.body = body
        self.producer = producer
        self.direct = direct
        self.direct_deadline = direct_deadline
        self._key: Evaluator | None = (
            compile_expr(webhook.key, program) if webhook.key is not None else None
        )
        # A schema body's records carry the registry's schema id (json and bytes have none).
        self._needs_schema_id = webhook.topic is not None and body.is_schema
        self._check_now = (
            authenticator.check if isinstance(authenticator, ImmediateAuthenticator) else None
        )
        self._name_header = webhook.name.encode("utf-8")
        self._method_not_allowed: dict[str, Problem] = {}
        self._too_large = problems.payload_too_large(webhook.max_body)
        self._answers: dict[int, Any] = {}
        self._accepted_count = self._counter(202)
        # Topic mode with no key expression: the body is needed only as the record's value.
        self._body_only = webhook.topic is not None and self._key is None
        # Headers a request may send once only, and those no direct-mode record keeps.
        self._single_headers = _SINGLE | getattr(authenticator, "credential_headers", frozenset())
        self._withheld = _CREDENTIALS | getattr(authenticator, "secret_headers", frozenset())
        self._auth_failed = problems.unauthorized(
            getattr(authenticator, "challenge", 'Bearer realm="lhpipe"'),
            "the request could not be authenticated",
        )
        self._faults = 0
        self._fault_logged_at = float("-inf")

    # -- the request ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            method: str = scope["method"]
            if method not in self.methods:
                await self._refuse(send, self._not_allowed(method), body_read=False)
                return
            sent_headers = scope["headers"]
            headers = {
                name.decode("latin-1"): value.decode("latin-1") for name, value in sent_headers
            }
            if len(headers) != len(sent_headers):
                twice = self._duplicated(sent_headers)
                if twice is not None:
                    await self._refuse(
                        send,
                        problems.bad_request(f"the request has more than one {twice} header"),
                        body_read=False,
                    )
                    return
            length = headers.get("content-length")
            if length is not None:
                if not (length.isascii() and length.isdigit()):
                    not_a_number = problems.bad_request("Content-Length is not a number")
                    await self._refuse(send, not_a_number, body_read=False)
                    return
                if len(length) > _MAX_LENGTH_DIGITS or int(length) > self.max_body:
                    await self._refuse(send, self._too_large, body_read=False)
                    return
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away; nothing was done
            raw: bytes | None = message.get("body", b"")
            if message.get("more_body", False):
                try:
                    raw = await self._read_rest(receive, raw or b"")
                except _Disconnected:
                    return
            if raw is None or len(raw) > self.max_body:
                await self._refuse(send, self._too_large, body_read=False)
                return
            check = self._check_now
            try:
                if check is not None:
                    outcome = check(headers, raw)
                else:
                    outcome = await self.authenticator.authenticate(headers, raw)
            except Exception as exc:  # an auth defect on hostile input: refused, never let in
                reason = f"authentication failed: {describe_error(exc)}"
                outcome = Refused(self._auth_failed, reason)
            if isinstance(outcome, Refused):
                log.info(
                    "webhook %s: refused (%d): %s",
                    self.name,
                    outcome.problem.status,
                    log_reason(outcome.reason),
                )
                await self._refuse(send, outcome.problem)
                return
            await self._accept(scope, send, headers, raw, outcome)
        except Exception as exc:
            await self._fault(send, exc)

    def _duplicated(self, sent_headers: Sequence[tuple[bytes, bytes]]) -> str | None:
        """The name of a credential, signature or id header the request sent more than once:
        a proxy that checked the first and this route, reading the last, would disagree."""
        seen: set[str] = set()
        for raw_name, _ in sent_headers:
            name = raw_name.decode("latin-1").lower()
            if name in self._single_headers:
                if name in seen:
                    return name
                seen.add(name)
        return None

    async def _fault(self, send: Send, exc: Exception) -> None:
        """A defect of the route (not of the request): one log line, at most one every
        :data:`FAULT_LOG_INTERVAL_SECONDS` (the traceback at DEBUG), and a 500 problem."""
        self._faults += 1
        now = time.monotonic()
        if now - self._fault_logged_at >= FAULT_LOG_INTERVAL_SECONDS:
            log.error(
                "webhook %s: a request failed (%d since the last such line): %s",
                self.name,
                self._faults,
                describe_error(exc),
            )
            log.debug("webhook %s: the failure", self.name, exc_info=exc)
            self._faults = 0
            self._fault_logged_at = now
        # When the answer had already started, sending another fails: the server then closes
        # the connection.
        with contextlib.suppress(Exception):
            await self._refuse(send, _FAULT, body_read=False)

    async def _accept_when_ready(
        self,
        scope: Scope,
        send: Send,
        headers: dict[str, str],
        raw: bytes,
        verdict: Authenticated,
    ) -> None:
        """:meth:`_accept` after the body's decoder (and schema id) is made ready."""
        try:
            await self.body.ready(needs_id=self.topic is not None)
        except Unavailable as exc:
            log.warning("webhook %s: %s", self.name, exc)
            await self._refuse(send, _unavailable(str(exc)))
            return
        except Misconfigured as exc:
            log.error("webhook %s: %s", self.name, exc)
            await self._refuse(send, Problem(500, "the webhook cannot accept requests now"))
            return
        await self._accept(scope, send, headers, raw, verdict)

    def _accept(
        self,
        scope: Scope,
        send: Send,
        headers: dict[str, str],
        raw: bytes,
        verdict: Authenticated,
    ) -> Awaitable[None]:
        """What answers an authenticated request. Not a coroutine itself: it returns the
        coroutine that answers, one frame less to run and to resume per request."""
        body = self.body
        decoder = body.decoder
        if decoder is None or (self._needs_schema_id and body.schema_id is None):
            return self._accept_when_ready(scope, send, headers, raw, verdict)
        webhook_id = verdict.webhook_id
        if webhook_id:  # the provider's delivery id: unsigned by GitHub, so checked as sent
            if len(webhook_id) > MAX_IDEMPOTENCY_KEY or not _IDEMPOTENCY_KEY.fullmatch(webhook_id):
                return self._refuse(
                    send,
                    problems.bad_request(
                        f"the delivery id must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII "
                        "characters"
                    ),
                )
        else:  # none, or an empty provider header
            webhook_id = headers.get("idempotency-key")
            if webhook_id is None:
                webhook_id = new_webhook_id()
            elif len(webhook_id) > MAX_IDEMPOTENCY_KEY or not _IDEMPOTENCY_KEY.fullmatch(
                webhook_id
            ):
                return self._refuse(
                    send,
                    problems.bad_request(
                        f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII "
                        "characters"
                    ),
                )
        payload: bytes | None = None
        try:
            if self._body_only and isinstance(decoder, SchemaBody):
                # Nothing needs the body as a value: check it while writing it, in one pass.
                assert body.schema_id is not None
                value = None
                payload = decoder.record(headers.get("content-type"), raw, body.schema_id)
                key: str | None = webhook_id
            else:
                value = decoder.decode(headers.get("content-type"), raw)
                key = self._record_key(scope, headers, value, verdict, webhook_id)
        except BodyRejected as rejected:
            return self._refuse(send, rejected.problem)
        except PermanentError as exc:  # fastavro could not write a checked body
            return self._refuse(send, problems.bad_request(str(exc)))
        if self.direct is not None:
            return self._run_direct(send, headers, raw, webhook_id, key, value)
        return self._produce(send, headers, raw, webhook_id, key, value, payload)

    def _record_key(
        self,
        scope: Scope,
        headers: Mapping[str, str],
        body: Any,
        verdict: Authenticated,
        webhook_id: str,
    ) -> str | None:
        evaluate = self._key
        if evaluate is None:
            return webhook_id
        env = {
            "body": body,
            "headers": headers,
            "query": dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"))),
            "claims": verdict.claims,
            "request": {"id": webhook_id},
        }
        try:
            key = evaluate(env)
        except DeliveryError as exc:
            raise BodyRejected(problems.bad_request(f"the webhook's key: {exc}")) from None
        if key is None:
            return None
        if isinstance(key, bytes):
            return key.decode("utf-8", errors="replace")
        return str(key)

    async def _produce(
        self,
        send: Send,
        headers: Mapping[str, str],
        raw: bytes,
        webhook_id: str,
        key: str | None,
        value: Any,
        payload: bytes | None,
    ) -> None:
        producer = self.producer
        topic = self.topic
        assert producer is not None and topic is not None
        if self.body.is_schema:
            if payload is None:
                decoder = self.body.decoder
                schema_id = self.body.schema_id
                assert isinstance(decoder, SchemaBody) and schema_id is not None
                try:
                    payload = decoder.encode(schema_id, value)
                except PermanentError as exc:
                    await self._refuse(send, problems.bad_request(str(exc)))
                    return
            record_headers = [
                ("lhpipe.webhook", self._name_header),
                (WEBHOOK_ID_HEADER, webhook_id.encode("utf-8")),
                ("content-type", AVRO_CONTENT_TYPE),
            ]
        else:
            payload = raw
            record_headers = [
                ("lhpipe.webhook", self._name_header),
                (WEBHOOK_ID_HEADER, webhook_id.encode("utf-8")),
            ]
            sent_type = headers.get("content-type")
            record_headers.append(
                (
                    "content-type",
                    # A request without one (only a `bytes` body accepts that) is octet-stream.
                    OCTET_STREAM if sent_type is None else sent_type.encode("latin-1"),
                )
            )
        try:
            # No timer of its own: the producer's records time out after the deadline
            # (librdkafka reports every record, delivered or not), and a timer per request
            # costs a fifth of the route's time.
            await producer.produce(
                topic, payload, None if key is None else key.encode("utf-8"), record_headers
            )
        except TransientError as exc:
            log.warning("webhook %s: Kafka did not acknowledge %s: %s", self.name, webhook_id, exc)
            await self._refuse(send, _unavailable("Kafka did not acknowledge the request"))
            return
        except PermanentError as exc:
            log.error("webhook %s: Kafka refused %s: %s", self.name, webhook_id, exc)
            if exc.code == "KAFKA_MSG_SIZE_TOO_LARGE":
                problem = Problem(413, "the body is larger than the topic accepts")
            else:
                problem = Problem(500, f"Kafka refused the request ({exc.code})")
            await self._refuse(send, problem)
            return
        # _accepted's answer, sent here: one coroutine less to make and run per request.
        start, body = _accepted_messages(webhook_id)
        await send(start)
        await send(body)
        self._accepted_count.value += 1

    async def _run_direct(
        self,
        send: Send,
        headers: Mapping[str, str],
        raw: bytes,
        webhook_id: str,
        key: str | None,
        value: Any,
    ) -> None:
        direct = self.direct
        assert direct is not None
        record_headers: list[tuple[str, bytes | None]] = [
            (_SINK_HEADERS.get(name, name), text.encode("latin-1"))
            for name, text in headers.items()
            if name not in self._withheld
        ]
        record_headers.append(("lhpipe.webhook", self._name_header))
        record_headers.append((WEBHOOK_ID_HEADER, webhook_id.encode("utf-8")))
        record = Record(
            origin=WebhookOrigin(self.name, webhook_id),
            key=None if key is None else key.encode("utf-8"),
            value=raw,
            headers=tuple(record_headers),
        )
        try:
            error = await asyncio.wait_for(direct.run(record, key, value), self.direct_deadline)
        except TimeoutError:
            log.warning(
                "webhook %s: request %s not done within %.0f s",
                self.name,
                webhook_id,
                self.direct_deadline,
            )
            await self._refuse(send, _unavailable("the webhook's targets did not accept it"))
            return
        except RecordFailed as exc:
            # The dead letter itself could not be written, and never will be as it is.
            log.error("webhook %s: request %s lost: %s", self.name, webhook_id, exc)
            await self._refuse(send, Problem(500, "the request could not be dead-lettered"))
            return
        if error is not None:
            await self._refuse(send, Problem(422, str(error)))
            return
        await self._accepted(send, webhook_id)

    # -- reading and answering -----------------------------------------------------------------

    async def _read_rest(self, receive: Receive, first: bytes) -> bytes | None:
        """The rest of a body that came in several chunks, after ``first``; ``None`` as soon
        as it grows past ``max_body`` (the rest is not read). Raises :class:`_Disconnected`
        when the client went away."""
        chunks = [first]
        size = len(first)
        limit = self.max_body
        while size <= limit:
            message = await receive()
            if message["type"] != "http.request":
                raise _Disconnected
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks) if size <= limit else None
        return None

    def _not_allowed(self, method: str) -> Problem:
        problem = self._method_not_allowed.get(method)
        if problem is None:
            problem = problems.method_not_allowed(method, self.methods)
            if len(self._method_not_allowed) < 32:
                self._method_not_allowed[method] = problem
        return problem

    async def _accepted(self, send: Send, webhook_id: str) -> None:
        start, body = _accepted_messages(webhook_id)
        await send(start)
        await send(body)
        self._accepted_count.value += 1

    async def _refuse(self, send: Send, problem: Problem, *, body_read: bool = True) -> None:
        body = problem.body()
        headers = [
            (b"content-type", PROBLEM_CONTENT_TYPE),
            (b"content-length", str(len(body)).encode("ascii")),
            *problem.headers,
        ]
        if not body_read:
            # Keeping the connection would make the server read (and drop) the rest of the
            # body before the next request; closing it reads nothing more.
            headers.append(_CLOSE)
        await send({"type": "http.response.start", "status": problem.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self._count(problem.status)

    def _count(self, status: int) -> None:
        self._counter(status).inc()

    def _counter(self, status: int) -> Any:
        counter = self._answers.get(status)
        if counter is None:
            counter = metrics.HTTP_REQUESTS.labels(self.name, str(status))
            self._answers[status] = counter
        return counter


def _unavailable(detail: str) -> Problem:
    return problems.unavailable(detail, RETRY_AFTER_SECONDS)


def _accepted_messages(webhook_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ASGI messages of a ``202 {"id": ...}`` answer."""
    body = b'{"id":' + orjson.dumps(webhook_id) + b"}"
    start = {
        "type": "http.response.start",
        "status": 202,
        "headers": [(b"content-type", _JSON), (b"content-length", b"%d" % len(body))],
    }
    return start, {"type": "http.response.body", "body": body}

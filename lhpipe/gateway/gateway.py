"""The Gateway: every webhook of a compiled program as a route of the engine's HTTP listener.

:class:`Gateway` builds one :class:`~lhpipe.gateway.route.WebhookRoute` per
:class:`~lhpipe.graph.model.RouteSpec` and installs the table (path → handler) on the
listener's :class:`~lhpipe.gateway.server.EngineApp` in one assignment, so a later reload swaps
it between two requests. Paths that are not in the table get the listener's ``404``.

Everything a route needs from its configuration is resolved when the table is built: secrets
and issuers written ``env(...)``, HMAC keys, compiled schemas, key expressions, a direct-mode
pipeline's steps and targets. A webhook that cannot be built (an unset variable, a bad secret)
is reported, never fatal to the others: it is logged, shown as failed in ``/readyz`` (as
``webhook:<name>``), and its path answers ``503`` until a restart or a reload fixes it.

Hot reload (:meth:`Gateway.reload`) rebuilds only the webhooks whose fingerprint changed, keeps
the other route objects as they are, and installs the new table in one assignment.

Clients: topic-mode routes write through the Gateway's own idempotent producer (``acks=all``),
whose records time out after :data:`~lhpipe.gateway.route.ACK_DEADLINE_SECONDS`: a
request refused with ``503`` leaves no record behind in a queue that would deliver it later.
The schema registry, the LittleHorse client and the other senders, and the producer for dead
letters are the process's shared ones (the Supervisor's), made on first need.

Pipelines ``from webhook`` of a topic-mode webhook are ordinary topic pipelines of the
Supervisor (they read the webhook's topic); the pipeline of a direct-mode webhook is run here,
inside each request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from lhpipe.check.program import Program
from lhpipe.gateway import problems
from lhpipe.gateway.config import WebhookConfigError
from lhpipe.gateway.route import (
    ACK_DEADLINE_SECONDS,
    BodySchema,
    DirectPipeline,
    Producer,
    WebhookRoute,
)
from lhpipe.gateway.server import ASGIApp, EngineApp, Receive, Scope, Send
from lhpipe.graph.model import CompiledProgram, RouteSpec
from lhpipe.runtime.kind import Clients, PipelineNotRunnable
from lhpipe.runtime.status import PipelineStatus, State
from lhpipe.settings import Settings, SettingsError

log = logging.getLogger(__name__)

#: How long :meth:`Gateway.start` waits for the registry to take the webhooks' schemas before
#: leaving it to their first requests.
WARM_UP_SECONDS = 5.0


class _Unavailable:
    """A path that answers 503 with ``Retry-After``: a webhook that could not be built (the
    reason is only in the log), or every webhook once the process is shutting down."""

    def __init__(self, detail: str, retry_after_s: int) -> None:
        self.problem = problems.unavailable(detail, retry_after_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = self.problem.body()
        await send(
            {
                "type": "http.response.start",
                "status": self.problem.status,
                "headers": [
                    (b"content-type", problems.PROBLEM_CONTENT_TYPE),
                    (b"content-length", str(len(body)).encode("ascii")),
                    *self.problem.headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def starting_routes(compiled: CompiledProgram) -> dict[str, ASGIApp]:
    """The table of a process that is still starting: every path ``compiled`` declares answers
    503 with ``Retry-After: 1`` until the Gateway installs its routes, so a provider that calls
    during start-up retries instead of taking a 404 for "this endpoint is gone"."""
    starting = _Unavailable("lhpipe is starting; try again shortly", 1)
    return dict.fromkeys((spec.path for spec in compiled.routes.values()), starting)


class Gateway:
    """The webhook routes of ``compiled`` (see the module docstring).

    ``producer`` replaces the Gateway's own producer (tests); ``ack_deadline`` is how long a
    topic-mode request waits for Kafka (the timeout of the Gateway's producer's records).
    """

    def __init__(
        self,
        compiled: CompiledProgram,
        program: Program,
        settings: Settings,
        clients: Clients,
        *,
        producer: Producer | None = None,
        ack_deadline: float = ACK_DEADLINE_SECONDS,
    ) -> None:
        from lhpipe.gateway.oauth import IssuerDirectory

        self.compiled = compiled
        self.program = program
        self.settings = settings
        self.clients = clients
        self.ack_deadline = ack_deadline
        self.issuers = IssuerDirectory()
        self._producer = producer
        self._own_producer: Any = None
        self.routes: dict[str, ASGIApp] = {}
        self.failed: dict[str, str] = {}
        self._built: dict[str, WebhookRoute] = {}
        self._app: EngineApp | None = None
        # Topics known to exist, with the partitions asked for them (a reload that changes a
        # webhook's `partitions` asks again, so that a topic left as it was is logged).
        self._ensured: set[tuple[str, int]] = set()
        self._retired: list[Any] = []  # own producers of earlier settings (hot reload)
        # The shared clients and the producer each built route was made with.
        self._built_with: dict[str, tuple[Clients, Any]] = {}

    # -- building ------------------------------------------------------------------------------

    def build(self) -> dict[str, ASGIApp]:
        """Build every route; returns the table (also kept as :attr:`routes`)."""
        table: dict[str, ASGIApp] = {}
        for spec in self.compiled.routes.values():
            table[spec.path] = self._build_one(spec, self._built, self.failed)
        self.routes = table
        return table

    def _build_one(
        self, spec: RouteSpec, built: dict[str, WebhookRoute], failed: dict[str, str]
    ) -> ASGIApp:
        """The handler of ``spec``'s path: its route (recorded in ``built``), or a 503 answer
        when it cannot be built (the reason recorded in ``failed``)."""
        try:
            route = self._route(spec)
        except (WebhookConfigError, PipelineNotRunnable, SettingsError, ValueError) as exc:
            log.error("webhook %s: not served: %s", spec.name, exc)
            failed[spec.name] = str(exc)
            return _Unavailable(
                f"webhook {spec.name} is not configured correctly; see the lhpipe log", 60
            )
        except Exception as exc:  # one webhook's defect must not keep the others from serving
            log.exception("webhook %s: could not be built", spec.name)
            failed[spec.name] = f"could not be built: {exc}"
            return _Unavailable(f"webhook {spec.name} could not be built; see the lhpipe log", 60)
        built[spec.name] = route
        self._built_with[spec.name] = (self.clients, route.producer)
        return route

    def install(self, app: EngineApp) -> None:
        """Put the route table on the listener, in one assignment."""
        app.routes = self.routes
        self._app = app

    def _route(self, spec: RouteSpec) -> WebhookRoute:
        from lhpipe.gateway.auth import build_authenticator

        webhook = spec.webhook
        authenticator = build_authenticator(webhook.name, webhook.auth, self.settings, self.issuers)
        schema = self.program.schemas.get(webhook.body)
        registry = self.clients.schema_registry() if schema is not None else None
        body = BodySchema(webhook, schema, registry)
        if spec.topic is None:
            return WebhookRoute(
                webhook, self.program, authenticator, body, direct=self._direct(spec)
            )
        return WebhookRoute(
            webhook,
            self.program,
            authenticator,
            body,
            producer=self._webhook_producer(),
        )

    def _direct(self, spec: RouteSpec) -> DirectPipeline:
        from lhpipe.kinds.build import build_delivery

        if spec.direct_pipeline is None:
            raise ValueError("no pipeline reads this direct-mode webhook")
        info = self.program.pipelines[spec.direct_pipeline]
        built = build_delivery(info, self.program, self.settings, self.clients)
        return DirectPipeline(info, built.steps, built.targets, built.dead_letters)

    def _webhook_producer(self) -> Producer:
        if self._producer is None:
            from lhpipe.gateway.producer import GatewayProducer

            self._own_producer = GatewayProducer(
                self.settings, timeout_ms=int(self.ack_deadline * 1000)
            )
            self._producer = self._own_producer
        return self._producer

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the topics the routes write to when missing (webhook topics, direct-mode
        dead-letter topics) and register the webhooks' schemas, so that first requests do
        not wait for either; neither is fatal (the first request retries the registry)."""
        await self._prepare(list(self._built.values()))
        self._announce(self.compiled.routes)

    async def reload(
        self,
        compiled: CompiledProgram,
        program: Program,
        settings: Settings,
        clients: Clients,
    ) -> None:
        """Serve ``compiled``'s webhooks from now on (hot reload).

        A webhook whose fingerprint did not change keeps its route object (and a webhook that
        could not be built stays failed); changed and added ones are built and prepared (topics,
        schemas) while the old table still serves; removed ones leave the table. The new table
        is installed in one assignment, so each request sees the old routes or the new ones;
        a request already running in an old route finishes there.
        """
        if settings != self.settings and self._own_producer is not None:
            # New routes write with the new connection settings; routes kept from before keep
            # the old producer, which is closed with the Gateway.
            self._retired.append(self._own_producer)
            self._own_producer = None
            self._producer = None
        before = self.compiled.routes
        self.compiled, self.program, self.settings, self.clients = (
            compiled,
            program,
            settings,
            clients,
        )
        table: dict[str, ASGIApp] = {}
        built: dict[str, WebhookRoute] = {}
        failed: dict[str, str] = {}
        fresh: dict[str, RouteSpec] = {}
        for name, spec in compiled.routes.items():
            previous = before.get(name)
            if previous is not None and previous.fingerprint == spec.fingerprint:
                if name in self._built:
                    built[name] = self._built[name]
                    table[spec.path] = built[name]
                    continue
                if name in self.failed:
                    failed[name] = self.failed[name]
                    table[spec.path] = self.routes[previous.path]
                    continue
            fresh[name] = spec
            handler = self._build_one(spec, built, failed)
            table[spec.path] = handler
        await self._prepare([built[name] for name in fresh if name in built])
        self._built = built
        self._built_with = {name: self._built_with[name] for name in built}
        self.failed = failed
        self.routes = table
        if self._app is not None:
            self._app.routes = table
        self._announce(fresh)

    async def _prepare(self, routes: list[WebhookRoute]) -> None:
        """Topics and schemas of ``routes``, ready before they take requests (topics already
        checked by this Gateway are not asked for again). Missing topics are created with the
        partitions :mod:`lhpipe.clients.kafka.topics` gives them."""
        topics = {route.topic for route in routes if route.topic is not None}
        for route in routes:
            if route.direct is not None and route.direct.dead_letters is not None:
                topics.add(route.direct.dead_letters.topic)
        if topics:
            await self._ensure_topics(topics)
        warm = [r.body.ready(needs_id=r.topic is not None) for r in routes]
        if warm:
            try:
                await asyncio.wait_for(
                    asyncio.gather(*warm, return_exceptions=True), WARM_UP_SECONDS
                )
            except TimeoutError:
                log.warning("the schema registry is slow; schemas are registered on first use")

    async def _ensure_topics(self, topics: set[str]) -> None:
        """Create the missing ones of ``topics``; not fatal when Kafka cannot be asked (the
        topics may exist, and a request that cannot be produced is answered 503 or 500)."""
        from lhpipe.clients.kafka.admin import ensure_topics
        from lhpipe.clients.kafka.topics import partitions_for

        try:
            partitions = partitions_for(topics, self.program, self.settings)
        except SettingsError as exc:
            log.error("the webhooks' topics are not created: %s", exc)
            return
        asked = set(partitions.items()) - self._ensured
        if not asked:
            return
        try:
            created = await asyncio.to_thread(
                ensure_topics,
                self.settings,
                [topic for topic, _ in asked],
                partitions=partitions,
            )
        except Exception as exc:
            log.warning("could not check the webhooks' topics: %s", exc)
            return
        self._ensured |= asked
        for topic in created:
            log.info("created topic %r with %d partition(s)", topic, partitions[topic])

    def _announce(self, specs: Mapping[str, RouteSpec]) -> None:
        for name, spec in specs.items():
            if name in self._built:
                where = (
                    f"topic {spec.topic!r}" if spec.topic else f"pipeline {spec.direct_pipeline}"
                )
                log.info("webhook %s: %s %s → %s", name, "/".join(spec.methods), spec.path, where)

    async def close(self) -> None:
        """Stop taking requests (every webhook path answers 503 from now on, while the listener
        still serves /readyz), let the records in flight be acknowledged, and close the
        Gateway's own producer and the issuers' HTTP client (the shared clients are closed by
        their owner)."""
        if self._app is not None:
            closing = _Unavailable("lhpipe is shutting down; try again shortly", 5)
            self._app.routes = dict.fromkeys(self.routes, closing)
        for producer in (*self._retired, self._own_producer):
            if producer is not None:
                await producer.close()
        await self.issuers.aclose()

    def uses(self, clients: Clients) -> bool:
        """Whether a route in the table was built with ``clients``."""
        return any(used is clients for used, _ in self._built_with.values())

    def has_retired(self) -> bool:
        return bool(self._retired)

    async def release_retired(self) -> None:
        """Close the own producers of earlier settings that no route writes with any more."""
        in_use = {id(producer) for _, producer in self._built_with.values()}
        for producer in [p for p in self._retired if id(p) not in in_use]:
            self._retired = [other for other in self._retired if other is not producer]
            try:
                await producer.close()
            except Exception:
                log.exception("closing a producer of earlier settings failed")

    # -- status --------------------------------------------------------------------------------

    def statuses(self) -> list[PipelineStatus]:
        """Webhooks that could not be built (failed) and direct-mode pipelines (running,
        targets healthy or not), for ``/readyz``."""
        result = [
            PipelineStatus(
                name=f"webhook:{name}", state=State.FAILED, source_connected=False, detail=why
            )
            for name, why in self.failed.items()
        ]
        for route in self._built.values():
            direct = route.direct
            if direct is None:
                continue
            targets = {t.label: t.delivery.healthy() for t in direct.targets}
            down = [label for label, ok in targets.items() if not ok]
            result.append(
                PipelineStatus(
                    name=direct.name,
                    state=State.RUNNING,
                    source_connected=True,
                    targets=targets,
                    detail=f"not connected: {', '.join(down)}" if down else None,
                )
            )
        return result

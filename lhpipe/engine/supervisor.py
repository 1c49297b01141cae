"""The Supervisor: every pipeline of a compiled program, the clients they share, and the drain.

It builds one :class:`~lhpipe.runtime.runner.PipelineRunner` per pipeline from its
:class:`~lhpipe.graph.model.PipelineSpec` through the one pipeline builder
(:func:`lhpipe.kinds.build.build_runner`: the source kind's parts, each target kind's planner
and sender), and holds the process's shared clients, each made only when some pipeline needs
it: the LittleHorse client, the schema registry (Avro), the idempotent Kafka producer (dead
letters and ``to topic``), and one sender per target kind. Dead-letter topics that do not exist
are created at start (see :func:`lhpipe.clients.kafka.admin.ensure_topics`).

The webhooks are the :class:`~lhpipe.gateway.gateway.Gateway`'s: the Supervisor builds it with
the shared clients and installs its routes on the listener (:meth:`Supervisor.start`). A
pipeline ``from webhook`` of a topic-mode webhook is an ordinary topic pipeline here; the
pipeline of a direct-mode webhook runs inside the Gateway's requests, not as a runner.
Kafka Connect connectors are kept in line with the declarations by a
:class:`~lhpipe.engine.connectors.ConnectorManager`.

A pipeline that cannot run is reported, never fatal to the others: a setting that cannot be
resolved (a dead-letter topic or a consumer group from an unset ``env()``, a bad
``LHPIPE_LH_OUTPUT_LOOKBACK``) gives a pipeline in state ``failed`` with the reason, in
``/readyz`` and in the log.

Runners can be started and stopped one by one (:meth:`Supervisor.start_pipeline`,
:meth:`Supervisor.stop_pipeline`); :meth:`Supervisor.reload` (hot reload) replaces the program:
the webhook routes are swapped first, then the removed and changed pipelines drain and commit,
then the changed and added ones start (a changed one from its committed offsets, with a new
runner). Unchanged pipelines keep their runner (same consumer, no rebalance). :meth:`stop`
drains them all at once and closes the shared clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lhpipe.check.program import ConnectorInfo, PipelineInfo, Program
from lhpipe.core import metrics
from lhpipe.core.senders import Sender
from lhpipe.graph.model import CompiledProgram, PipelineSpec
from lhpipe.kinds import TARGETS
from lhpipe.runtime.kind import PipelineNotRunnable, resolve_text
from lhpipe.runtime.ordering import DEFAULT_MAX_IN_FLIGHT
from lhpipe.runtime.runner import DRAIN_SECONDS, PipelineRunner
from lhpipe.runtime.status import PipelineStatus, State
from lhpipe.settings import Settings, SettingsError
from lhpipe.syntax import ast

if TYPE_CHECKING:
    from lhpipe.engine.connectors import ConnectorManager
    from lhpipe.engine.reload import ProgramDiff
    from lhpipe.gateway.gateway import Gateway
    from lhpipe.gateway.server import EngineApp

log = logging.getLogger(__name__)

#: How long after a reload the clients of earlier settings that nothing uses any more are
#: closed: a request that began on a replaced webhook route finishes well within it (direct
#: mode waits at most 10 s).
RETIRE_GRACE_SECONDS = 30.0

MAX_IN_FLIGHT_SETTING = "LHPIPE_MAX_IN_FLIGHT"
HEALTH_INTERVAL_SECONDS = 5.0


def is_direct(info: PipelineInfo) -> bool:
    """The pipeline of a direct-mode webhook (run by the Gateway, inside each request)."""
    return info.source.webhook is not None and info.source.topic is None


@dataclass
class _Shared:
    """The clients the runners share, created on first need: one sender per target kind
    (made by the kind, :attr:`lhpipe.runtime.kind.TargetDef.sender`), the idempotent
    producer, the schema registry and the LittleHorse client."""

    settings: Settings
    senders: dict[ast.TargetKind, Sender] = field(default_factory=dict)
    producer: Any = None
    littlehorse_client: Any = None
    registry: Any = None

    def kafka_producer(self) -> Any:
        if self.producer is None:
            from lhpipe.clients.kafka.producer import KafkaProducer

            self.producer = KafkaProducer(self.settings)
        return self.producer

    def schema_registry(self) -> Any:
        if self.registry is None:
            from lhpipe.clients.registry import SchemaRegistry

            self.registry = SchemaRegistry.from_settings(self.settings)
        return self.registry

    def littlehorse(self) -> Any:
        if self.littlehorse_client is None:
            from lhpipe.clients.littlehorse import LittleHorseClient

            self.littlehorse_client = LittleHorseClient.from_settings(self.settings)
        return self.littlehorse_client

    def forget_registry_schemas(self) -> None:
        """Registry schemas that senders keep are read again on next use (a reload may follow
        a new version in the registry)."""
        for sender in self._distinct():
            forget = getattr(sender, "forget_registry_schemas", None)
            if forget is not None:
                forget()

    def sender(self, kind: ast.TargetKind) -> Sender:
        existing = self.senders.get(kind)
        if existing is None:
            existing = self.senders[kind] = TARGETS[kind].sender(self)
        return existing

    def _distinct(self) -> list[Sender]:
        """Each sender once (the LittleHorse client serves three kinds)."""
        return list({id(sender): sender for sender in self.senders.values()}.values())

    async def close(self) -> None:
        for sender in self._distinct():
            try:
                await sender.close()
            except Exception:
                log.exception("closing a sender failed")
        if self.producer is not None:
            await self.producer.close()
        if self.registry is not None:
            await self.registry.close()


class Supervisor:
    """Runs every pipeline of ``compiled``; see the module docstring."""

    def __init__(
        self,
        compiled: CompiledProgram,
        program: Program,
        settings: Settings,
        *,
        max_in_flight: int | None = None,
    ) -> None:
        self.compiled = compiled
        self.program = program
        self.settings = settings
        self.max_in_flight = max_in_flight or _max_in_flight(settings)
        self._shared = _Shared(settings)
        self._runners: dict[str, PipelineRunner] = {}
        self._failed: dict[str, PipelineStatus] = {}
        self._health: asyncio.Task[None] | None = None
        self._app: EngineApp | None = None
        self._retired: list[_Shared] = []  # clients of earlier settings (hot reload)
        self._runner_clients: dict[str, _Shared] = {}  # the clients each runner was built with
        self._release: asyncio.Task[None] | None = None
        self._dead_letter_topics: set[str] = set()  # known to exist
        self.gateway: Gateway | None = None
        self.connectors: ConnectorManager | None = None
        self._connector_sweep: asyncio.Task[None] | None = None

    # -- life cycle ------------------------------------------------------------------------------

    async def start(self, app: EngineApp | None = None) -> None:
        """Build and start every pipeline; a pipeline that cannot run is reported as failed.
        The webhooks' routes go on ``app``, the listener's application."""
        for name, spec in self.compiled.pipelines.items():
            if is_direct(spec.pipeline):
                continue
            runner = self._build_reported(spec)
            if runner is not None:
                self._runners[name] = runner
                self._runner_clients[name] = self._shared
        self._app = app
        await self._create_dead_letter_topics(self._runners)
        await self._sync_connectors()
        if self.compiled.routes:
            # Before the pipelines: it creates the webhooks' topics they read.
            await self._start_gateway()
        for name in list(self._runners):
            await self.start_pipeline(name)
        self._health = asyncio.get_running_loop().create_task(self._watch_health())

    async def reload(
        self,
        compiled: CompiledProgram,
        program: Program,
        settings: Settings,
        deadline: float = DRAIN_SECONDS,
    ) -> ProgramDiff:
        """Run ``compiled`` from now on, touching only what changed (hot reload; see
        :mod:`lhpipe.engine.reload`); returns what changed.

        The new runners are built first (a pipeline that cannot be built is reported failed,
        as at start), then the Gateway swaps its routes, then the removed and changed runners
        drain within ``deadline`` and commit, then the new runners start. New settings (an
        edited ``lhpipe.toml``) give the new runners and routes new shared clients; the
        unchanged ones keep theirs, closed with the Supervisor.
        """
        from lhpipe.engine.reload import diff_programs

        diff = diff_programs(self.compiled, compiled)
        if settings != self.settings:
            self._retired.append(self._shared)
            self._shared = _Shared(settings)
        else:
            self._shared.forget_registry_schemas()
        self.compiled, self.program, self.settings = compiled, program, settings
        self._sync_in_flight_limit()
        fresh: dict[str, PipelineRunner] = {}
        for name in (*diff.pipelines.changed, *diff.pipelines.added):
            self._failed.pop(name, None)
            spec = compiled.pipelines[name]
            if not is_direct(spec.pipeline):
                runner = self._build_reported(spec)
                if runner is not None:
                    fresh[name] = runner
        for name in diff.pipelines.removed:
            self._failed.pop(name, None)
        # From here on every step reports its own failure and the next ones still run: a
        # reload stopped half-way would leave pipelines that the next diff calls unchanged.
        try:
            if self.gateway is not None:
                await self.gateway.reload(compiled, program, settings, self._shared)
            elif compiled.routes:
                await self._start_gateway()
        except Exception:
            log.exception("reload: the webhook routes could not be brought up to date")
        leaving = [
            self._runners[name]
            for name in (*diff.pipelines.changed, *diff.pipelines.removed)
            if name in self._runners
        ]
        stopped = await asyncio.gather(
            *(runner.stop(deadline) for runner in leaving), return_exceptions=True
        )
        for runner, outcome in zip(leaving, stopped, strict=True):
            if isinstance(outcome, BaseException):
                log.error("pipeline %s: the drain failed: %r", runner.name, outcome)
        for runner in leaving:
            del self._runners[runner.name]
            del self._runner_clients[runner.name]
        for name in diff.pipelines.removed:
            with contextlib.suppress(KeyError):  # a pipeline that never ran has no gauge
                metrics.IN_FLIGHT.remove(name)
        self._runners.update(fresh)
        self._runner_clients.update(dict.fromkeys(fresh, self._shared))
        await self._create_dead_letter_topics(fresh)
        await self._sync_connectors()
        for name in fresh:
            await self.start_pipeline(name)
        if self._retired or (self.gateway is not None and self.gateway.has_retired()):
            self._schedule_release()
        return diff

    def _schedule_release(self) -> None:
        """Close, a while from now, the clients of earlier settings that nothing uses any more
        (:data:`RETIRE_GRACE_SECONDS`: requests that began on a replaced route finish first)."""
        if self._release is None or self._release.done():
            self._release = asyncio.get_running_loop().create_task(self._release_later())

    async def _release_later(self) -> None:
        await asyncio.sleep(RETIRE_GRACE_SECONDS)
        await self.release_retired()

    async def release_retired(self) -> None:
        """Close the retired shared clients that no runner and no webhook route was built with
        (and the Gateway's retired producers likewise)."""
        if self.gateway is not None:
            await self.gateway.release_retired()
        used = {id(clients) for clients in self._runner_clients.values()}
        for shared in list(self._retired):
            if id(shared) in used or (self.gateway is not None and self.gateway.uses(shared)):
                continue
            self._retired = [other for other in self._retired if other is not shared]
            try:
                await shared.close()
            except Exception:
                log.exception("closing the clients of earlier settings failed")

    async def stop(self, deadline: float = DRAIN_SECONDS) -> None:
        """Drain every runner at once within ``deadline`` seconds, then close the clients."""
        if self._health is not None:
            self._health.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health
            self._health = None
        if self._release is not None:
            self._release.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._release
        if self.gateway is not None:
            # First: the webhooks stop taking requests while the pipelines drain.
            await self.gateway.close()
        await asyncio.gather(*(runner.stop(deadline) for runner in self._runners.values()))
        if self._connector_sweep is not None:
            self._connector_sweep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector_sweep
        if self.connectors is not None:
            await self.connectors.close()
        for shared in (*self._retired, self._shared):
            await shared.close()

    async def start_pipeline(self, name: str) -> None:
        """Start one built pipeline (again)."""
        runner = self._runners[name]
        try:
            await runner.start()
        except Exception as exc:
            log.exception("pipeline %s: could not start", name)
            runner.state = State.FAILED
            runner.detail = f"could not start: {exc}"

    async def stop_pipeline(self, name: str, deadline: float = DRAIN_SECONDS) -> None:
        """Drain and stop one pipeline; the shared clients stay open."""
        await self._runners[name].stop(deadline)

    def statuses(self) -> list[PipelineStatus]:
        """Every pipeline's status, in declaration order, then the webhooks that could not be
        built (cheap: for ``/readyz``)."""
        gateway = {s.name: s for s in self.gateway.statuses()} if self.gateway else {}
        result = []
        for name in self.compiled.pipelines:
            runner = self._runners.get(name)
            if runner is not None:
                result.append(runner.status())
            elif name in self._failed:
                result.append(self._failed[name])
            elif name in gateway:
                result.append(gateway.pop(name))
        result.extend(gateway.values())
        if self.connectors is not None:
            result.extend(self.connectors.statuses())
        return result

    def runner(self, name: str) -> PipelineRunner:
        """The runner of pipeline ``name`` (``KeyError`` if it could not be built)."""
        return self._runners[name]

    # -- building --------------------------------------------------------------------------------

    def _build(self, spec: PipelineSpec) -> PipelineRunner:
        from lhpipe.kinds.build import build_runner

        return build_runner(
            spec, self.program, self.settings, self._shared, max_in_flight=self.max_in_flight
        )

    def _build_reported(self, spec: PipelineSpec) -> PipelineRunner | None:
        """:meth:`_build`, or ``None`` with the pipeline reported failed."""
        try:
            return self._build(spec)
        except (PipelineNotRunnable, SettingsError) as exc:
            self._fail(spec.name, str(exc))
        except Exception as exc:  # one pipeline's defect must not stop the others
            log.exception("pipeline %s: could not be built", spec.name)
            self._fail(spec.name, f"could not be built: {exc}")
        return None

    async def _start_gateway(self) -> None:
        from lhpipe.gateway.gateway import Gateway

        self.gateway = Gateway(self.compiled, self.program, self.settings, self._shared)
        self.gateway.build()
        if self._app is not None:
            self.gateway.install(self._app)
        await self.gateway.start()

    def _sync_in_flight_limit(self) -> None:
        """New runners take ``LHPIPE_MAX_IN_FLIGHT`` from the new settings (a bad value keeps
        the one in force)."""
        try:
            self.max_in_flight = _max_in_flight(self.settings)
        except SettingsError as exc:
            log.error("%s; keeping %d", exc, self.max_in_flight)

    def _fail(self, name: str, why: str) -> None:
        log.error("pipeline %s: not running: %s", name, why)
        self._failed[name] = PipelineStatus(
            name=name, state=State.FAILED, source_connected=False, detail=why
        )

    async def _sync_connectors(self) -> None:
        """Bring the Kafka Connect cluster in line with the program's ``connector``
        declarations.

        The manager is always made, because a program without connectors must still remove
        the ones an earlier run of it deployed (those marked as lhpipe's). With nothing
        declared that clean-up runs in the background: a process that does not use Kafka
        Connect neither waits for it nor reports it in ``/readyz``."""
        if self.connectors is not None and self.connectors.settings != self.settings:
            # Edited settings (the Connect URL, the owner, env() values): a manager made
            # with them; the old one's background rounds end.
            await self.connectors.close()
            self.connectors = None
        if self.connectors is None:
            from lhpipe.clients.kafka.ownership import Callback, Lease
            from lhpipe.engine.connectors import ConnectorManager

            settings = self.settings

            def lease(acquire: Callback, release: Callback, version: Callable[[], str]) -> Lease:
                from lhpipe.engine.connectors import DEFAULT_OWNER, OWNER_SETTING

                owner = settings.get(OWNER_SETTING) or DEFAULT_OWNER
                name = f"connectors-{owner}"
                return Lease(settings, name, acquire=acquire, release=release, version=version)

            self.connectors = ConnectorManager(settings, lease=lease)
        if self._connector_sweep is not None and not self._connector_sweep.done():
            self._connector_sweep.cancel()
        self._connector_sweep = None
        declared = self.program.connectors
        if declared:
            await self._sync_connectors_now(declared)
        else:
            self._connector_sweep = asyncio.get_running_loop().create_task(
                self._sync_connectors_now(declared)
            )

    async def _sync_connectors_now(self, declared: Mapping[str, ConnectorInfo]) -> None:
        assert self.connectors is not None
        try:
            await self.connectors.sync(declared)
        except Exception:
            log.exception("could not bring the connectors up to date")

    async def _create_dead_letter_topics(self, runners: Mapping[str, PipelineRunner]) -> None:
        """The dead-letter topics of ``runners`` that this process has not seen yet, created
        when missing with the partitions :mod:`lhpipe.clients.kafka.topics` gives them."""
        from lhpipe.clients.kafka.admin import ensure_topics
        from lhpipe.clients.kafka.topics import partitions_for

        topics = set()
        for name in runners:
            policy = self.compiled.pipelines[name].pipeline.on_error
            if policy.dead_letter is not None:
                topics.add(resolve_text(policy.dead_letter, self.settings, "dead_letter"))
        topics -= self._dead_letter_topics
        if not topics:
            return
        try:
            partitions = partitions_for(topics, self.program, self.settings)
        except SettingsError as exc:
            log.error("the dead-letter topics are not created: %s", exc)
            return
        try:
            created = await asyncio.to_thread(
                ensure_topics, self.settings, topics, partitions=partitions
            )
        except Exception as exc:
            # Not fatal: the topics may exist, and a dead letter that cannot be written stops
            # its pipeline with the reason rather than losing the record.
            log.warning("could not check the dead-letter topics: %s", exc)
            return
        self._dead_letter_topics |= topics
        for topic in created:
            log.info("created dead-letter topic %r with %d partition(s)", topic, partitions[topic])

    async def _watch_health(self) -> None:
        """Ping LittleHorse every few seconds, so that ``/readyz`` follows an outage and the
        recovery even when no record is flowing; publish consumer lag."""
        while True:
            try:
                # Read each time: the client is made on first need, and a reload with new
                # settings makes a new one.
                client = self._shared.littlehorse_client
                if client is not None:
                    await client.ping()
                for runner in self._runners.values():
                    runner.publish_lag()
            except Exception:
                log.exception("health check failed")
            await asyncio.sleep(HEALTH_INTERVAL_SECONDS)


def _max_in_flight(settings: Settings) -> int:
    return settings.integer(MAX_IN_FLIGHT_SETTING, DEFAULT_MAX_IN_FLIGHT, minimum=1)

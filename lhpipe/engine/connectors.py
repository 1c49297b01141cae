"""``connector NAME { class config topic }``: Kafka Connect connectors that lhpipe keeps on a
Connect cluster (setting ``LHPIPE_CONNECT_URL``, default the local stack's
``http://127.0.0.1:8083``): source connectors, whose topic ``from connector NAME`` reads, and
sink connectors, which read the topic ``to connector NAME`` writes.

How a declaration becomes a connector (see docs/connectors.md):

* The connector is named after the declaration. Its config is the declaration's ``config``
  (``env()`` read now, every value as text), plus ``connector.class``, plus the topic under
  the key the class reads it from (:data:`TOPIC_KEYS`; a sink connector reads Kafka Connect's
  own ``topics``; a source class not listed must be told the topic by its own settings), plus
  the owner marker ``lhpipe.owner`` (setting
  ``LHPIPE_CONNECT_OWNER``, default ``lhpipe``). A FileStream connector also gets Connect's
  ``StringConverter`` for values unless ``config`` names a ``value.converter``, so each line
  reaches Kafka (or the file) as it is written.
* :meth:`ConnectorManager.sync` (at start and on every reload) and a background round every
  few seconds compare the cluster with the declarations: a connector that is missing or whose
  config differs gets ``PUT /connectors/{name}/config`` (create or update, idempotent); a
  connector whose ``lhpipe.owner`` is ours and that is no longer declared is deleted. Others'
  connectors are never touched, across restarts too: the marker lives in the cluster.
* :meth:`ConnectorManager.statuses` reports one ``connector:<name>`` status each, from the last
  round (cheap, for ``/readyz``): ready when the connector and all its tasks are RUNNING;
  FAILED with the first line of Connect's trace; an unreachable cluster is ``failed`` with the
  reason and is retried, never fatal.

Values of ``from connector`` decode as JSON when the record is JSON, else as its UTF-8 text,
and a JsonConverter envelope ``{"schema", "payload"}`` gives its payload
(:class:`lhpipe.sources.connector.ConnectorValueDecoder`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lhpipe.check.program import ConnectorInfo
from lhpipe.clients.connect_rest import (
    ClusterConnector,
    ConnectRejected,
    ConnectRest,
    ConnectRestError,
)
from lhpipe.clients.kafka.ownership import Callback, Lease
from lhpipe.core import metrics
from lhpipe.runtime.status import PipelineStatus, State
from lhpipe.settings import Settings, SettingsError, resolve_text

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

OWNER_KEY = "lhpipe.owner"
OWNER_SETTING = "LHPIPE_CONNECT_OWNER"
DEFAULT_OWNER = "lhpipe"
REFRESH_SECONDS = 5.0
SETTLING_SECONDS = 1.0  # while a connector is starting, look again sooner

FILE_STREAM_SOURCE = "org.apache.kafka.connect.file.FileStreamSourceConnector"
FILE_STREAM_SINK = "org.apache.kafka.connect.file.FileStreamSinkConnector"
#: The key every Kafka Connect sink connector reads its topics from.
SINK_TOPICS_KEY = "topics"
STRING_CONVERTER = "org.apache.kafka.connect.storage.StringConverter"

#: The config key a connector class reads its output topic from; lhpipe sets it to the
#: declaration's ``topic``. Aliases are Connect's: the simple class name, with or without its
#: ``Connector`` suffix.
TOPIC_KEYS: Mapping[str, str] = {FILE_STREAM_SOURCE: "topic", FILE_STREAM_SINK: SINK_TOPICS_KEY}

#: Connector classes whose records are single lines of text: they get ``StringConverter``
#: for values unless the declaration chooses a converter.
TEXT_LINE_CLASSES = frozenset({FILE_STREAM_SOURCE, FILE_STREAM_SINK})


def canonical_class(connector_class: str) -> str:
    """The fully qualified name of a known class written as one of Connect's aliases
    (``FileStreamSource``, ``FileStreamSourceConnector``); any other class unchanged."""
    for known in (*TOPIC_KEYS, *TEXT_LINE_CLASSES):
        simple = known.rsplit(".", 1)[-1]
        if connector_class in (known, simple, simple.removesuffix("Connector")):
            return known
    return connector_class


def connect_text(value: object) -> str:
    """A config value as Kafka Connect takes it: text (booleans as ``true``/``false``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def cluster_config(info: ConnectorInfo, settings: Settings, owner: str) -> dict[str, str]:
    """The config lhpipe puts on the cluster for ``info``; :class:`SettingsError` when an
    ``env()`` without a default is not set."""
    config: dict[str, str] = {}
    for key, value in info.config.items():
        if isinstance(value, str | int | float | bool):
            config[key] = connect_text(value)
        else:
            config[key] = resolve_text(value, settings, f"connector {info.name}: {key}")
    known = canonical_class(info.connector_class)
    topic_key = TOPIC_KEYS.get(known, SINK_TOPICS_KEY if info.sink else None)
    if topic_key is not None:
        config[topic_key] = info.topic
    if known in TEXT_LINE_CLASSES:
        config.setdefault("value.converter", STRING_CONVERTER)
        if info.sink:
            # FileStreamSink writes values only, but Connect converts every key first: a text
            # key (a WfRun id) is not JSON for the worker's default JsonConverter.
            config.setdefault("key.converter", STRING_CONVERTER)
    config["connector.class"] = info.connector_class
    config["name"] = info.name
    config[OWNER_KEY] = owner
    return config


def first_line(trace: object) -> str | None:
    """The first non-blank line of a Java stack trace (the exception and its message)."""
    if not isinstance(trace, str):
        return None
    return next((line.strip() for line in trace.splitlines() if line.strip()), None)


@dataclass(frozen=True, slots=True)
class ConnectorHealth:
    """What one round learnt about a connector: a state and, when not running, why."""

    state: State
    detail: str | None = None
    connected: bool = False
    connect: dict[str, Any] = field(default_factory=dict)


def health_of(status: Mapping[str, Any]) -> ConnectorHealth:
    """A connector's health from Connect's status (``GET /connectors/{name}/status``):
    RUNNING with every task RUNNING is ``running``; a FAILED connector or task is ``failed``
    with its trace's first line; PAUSED and STOPPED are ``paused`` and ``stopped``; anything
    else (UNASSIGNED, RESTARTING, no tasks yet) is ``starting``."""
    connector = status.get("connector")
    connector = connector if isinstance(connector, dict) else {}
    state = str(connector.get("state") or "UNASSIGNED")
    raw_tasks = status.get("tasks")
    tasks = [t for t in raw_tasks if isinstance(t, dict)] if isinstance(raw_tasks, list) else []
    seen = {"connector": state, "tasks": [str(t.get("state")) for t in tasks]}
    if state == "FAILED":
        why = first_line(connector.get("trace")) or "no trace"
        return ConnectorHealth(State.FAILED, f"connector FAILED: {why}", True, seen)
    for task in tasks:
        if task.get("state") == "FAILED":
            why = first_line(task.get("trace")) or "no trace"
            return ConnectorHealth(State.FAILED, f"task {task.get('id')} FAILED: {why}", True, seen)
    if state == "PAUSED":
        return ConnectorHealth(State.PAUSED, "paused on the Connect cluster", True, seen)
    if state == "STOPPED":
        return ConnectorHealth(State.STOPPED, "stopped on the Connect cluster", True, seen)
    if state == "RUNNING" and tasks and all(t.get("state") == "RUNNING" for t in tasks):
        return ConnectorHealth(State.RUNNING, None, True, seen)
    waiting = ", ".join(f"task {t.get('id')} {t.get('state')}" for t in tasks) or "no task yet"
    return ConnectorHealth(State.STARTING, f"connector {state}: {waiting}", True, seen)


class ConnectorManager:
    """Keeps the Connect cluster's connectors in line with the declarations (see the module
    docstring). ``rest`` and ``create_topics`` serve tests a fake cluster and broker."""

    def __init__(
        self,
        settings: Settings,
        rest: ConnectRest | None = None,
        create_topics: Callable[[Settings, Iterable[str]], object] | None = None,
        lease: Callable[[Callback, Callback, Callable[[], str]], Lease] | None = None,
    ) -> None:
        self.settings = settings
        self.owner = settings.get(OWNER_SETTING) or DEFAULT_OWNER
        # One manager per group of processes (lhpipe.clients.kafka.ownership): joined once there
        # is something to manage; without a lease factory (unit tests) this one manages.
        self._lease_factory = lease
        self._lease: Lease | None = None
        self._rest = rest
        self._create_topics = create_topics or _ensure_topics
        self._topics_made: set[str] = set()
        self._declared: dict[str, ConnectorInfo] = {}
        self._configs: dict[str, dict[str, str]] = {}
        self._health: dict[str, ConnectorHealth] = {}
        self._lock = asyncio.Lock()
        self._loop: asyncio.Task[None] | None = None
        # Ours and deleted: the cluster may list them a moment longer; delete quietly again.
        self._removed: set[str] = set()
        self._deployed_any = False

    @property
    def url(self) -> str:
        return self.rest.url

    @property
    def rest(self) -> ConnectRest:
        if self._rest is None:
            self._rest = ConnectRest(self.settings.connect_url)
        return self._rest

    async def sync(self, connectors: Mapping[str, ConnectorInfo]) -> None:
        """Create, update or remove connectors so that the cluster has exactly these (one
        round now; the background rounds retry what could not be done)."""
        async with self._lock:  # a background round finishes with the previous declarations
            self._declared = dict(connectors)
            self._configs = {}
            health: dict[str, ConnectorHealth] = {}
            for name, info in self._declared.items():
                try:
                    self._configs[name] = cluster_config(info, self.settings, self.owner)
                except SettingsError as exc:
                    health[name] = ConnectorHealth(State.FAILED, str(exc))
                    log.error("connector %s: not deployed: %s", name, exc)
                    continue
                previous = self._health.get(name)
                health[name] = previous or ConnectorHealth(State.STARTING, "not deployed yet")
            self._health = health
            if self._lease is not None:
                self._lease.reclaim()
            self._deployed_any = self._deployed_any or bool(self._declared)
            await self._make_topics()
            settled = await self._round()
        # With nothing declared ever, leftovers of an earlier run get one try only: a program
        # without connectors must not poll a Connect cluster that may not exist (unless this
        # process stands by while another one removes them).
        retry = self._declared or (not settled and (self._deployed_any or self._lease is not None))
        if retry and (self._loop is None or self._loop.done()):
            self._loop = asyncio.get_running_loop().create_task(self._refresh_forever())

    async def refresh(self) -> bool:
        """One round: read the cluster, put what differs, delete what is ours and undeclared,
        note every declared connector's health. True when no removal is left to do."""
        async with self._lock:
            return await self._round()

    def statuses(self) -> list[PipelineStatus]:
        """One status per declared connector, as ``connector:<name>``; ready only when the
        connector and all its tasks run."""
        result = []
        lease = self._lease
        standby = lease is not None and lease.standing_by
        for name, info in self._declared.items():
            health = self._health.get(name) or ConnectorHealth(State.STARTING, "not deployed yet")
            state, detail = health.state, health.detail
            if lease is not None and not lease.owned and not standby:
                # What the cluster shows may be an older program's: not ready until this
                # process manages the connectors or knows who does.
                state, detail = State.STARTING, "waiting to know which process manages them"
            elif standby and lease is not None:
                on_cluster = health.detail or health.state.value
                state, detail = State.STANDBY, f"{lease.describe()}; on the cluster: {on_cluster}"
            result.append(
                PipelineStatus(
                    name=f"connector:{name}",
                    state=state,
                    source_connected=health.connected,
                    detail=detail,
                    stats={"class": info.connector_class, "topic": info.topic, **health.connect},
                )
            )
        return result

    async def close(self) -> None:
        """Stop the background rounds and release the HTTP client (the connectors keep
        running on the cluster, so a restart finds them as they were)."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            self._loop = None
        if self._lease is not None:
            await self._lease.stop()
        if self._rest is not None:
            await self._rest.close()

    # -- one round -------------------------------------------------------------------------------

    async def _make_topics(self) -> None:
        """Create the declared topics that do not exist before their connectors write to them:
        the pipelines reading them find them at once, and a broker that does not create topics
        on first use works too (a failure is logged; Connect may still create them)."""
        topics = {info.topic for info in self._declared.values()} - self._topics_made
        if not topics:
            return
        try:
            await asyncio.to_thread(self._create_topics, self.settings, sorted(topics))
        except Exception as exc:  # the broker's problem shows in the pipelines' status
            log.warning("connectors: could not create the topics %s: %s", sorted(topics), exc)
            return
        self._topics_made |= topics

    def _manages(self, present: Mapping[str, ClusterConnector]) -> bool:
        """Whether this process is the one that changes the cluster now. The owners' group is
        joined when something is declared or connectors of ours are on the cluster."""
        if self._lease_factory is None:
            return True
        if self._lease is None:
            ours = any(c.config.get(OWNER_KEY) == self.owner for c in present.values())
            if not self._declared and not ours:
                return False
            self._lease = self._lease_factory(self._acquired, self._released, self.version)
            self._lease.start()
        return self._lease.owned

    def version(self) -> str:
        """The declarations' fingerprint (names, classes, topics, config as written, ``env()``
        unread), for the owners' group: a process of another version that started later
        takes the management over (:class:`~lhpipe.clients.kafka.ownership.Lease`)."""
        text = repr(
            sorted(
                (name, info.connector_class, info.topic, sorted(map(repr, info.config.items())))
                for name, info in self._declared.items()
            )
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    async def _acquired(self) -> None:
        """This process manages the connectors from now on: a round at once."""
        await self.refresh()
        if self._loop is None or self._loop.done():
            self._loop = asyncio.get_running_loop().create_task(self._refresh_forever())

    async def _released(self) -> None:
        """Another process manages them from now on: a round under way ends first."""
        async with self._lock:
            pass

    async def _round(self) -> bool:
        try:
            present = await self.rest.connectors()
        except ConnectRestError as exc:
            self._unreachable(exc)
            return False
        if not self._manages(present):
            # Standing by: only the health of what is declared, read from the cluster.
            for name in self._configs:
                found = present.get(name)
                if found is not None:
                    self._note(name, health_of(found.status))
            return not any(
                c.config.get(OWNER_KEY) == self.owner and n not in self._declared
                for n, c in present.items()
            )
        for name, config in self._configs.items():
            await self._deploy(name, config, present.get(name))
        self._removed &= present.keys()
        settled = True
        for name, found in present.items():
            if name not in self._declared and found.config.get(OWNER_KEY) == self.owner:
                settled = await self._remove(name) and settled
        return settled

    async def _deploy(
        self, name: str, config: dict[str, str], found: ClusterConnector | None
    ) -> None:
        if found is not None and dict(found.config) == config:
            self._note(name, health_of(found.status))
            return
        try:
            await self.rest.put_config(name, config)
        except ConnectRejected as exc:
            self._note(name, ConnectorHealth(State.FAILED, f"rejected by Kafka Connect: {exc}"))
            return
        except ConnectRestError as exc:
            self._note(name, self._unreachable_health(exc))
            return
        self._removed.discard(name)
        if found is None:
            log.info("connector %s: created on %s", name, self.url)
        else:
            log.info("connector %s: config updated on %s", name, self.url)
        action = "created" if found is None else "updated"
        self._note(name, ConnectorHealth(State.STARTING, f"{action}, waiting for it to run", True))

    async def _remove(self, name: str) -> bool:
        try:
            await self.rest.delete(name)
        except ConnectRestError as exc:
            log.warning("connector %s: could not be removed (will retry): %s", name, exc)
            return False
        if name not in self._removed:
            self._removed.add(name)
            log.info("connector %s: removed from %s (no longer declared)", name, self.url)
        return True

    def _note(self, name: str, health: ConnectorHealth) -> None:
        before = self._health.get(name)
        self._health[name] = health
        if health.state is State.FAILED and (before is None or before.detail != health.detail):
            log.error("connector %s: %s", name, health.detail)
        elif health.state is State.RUNNING and (
            before is None or before.state is not State.RUNNING
        ):
            log.info("connector %s: running", name)

    def _unreachable_health(self, exc: ConnectRestError) -> ConnectorHealth:
        return ConnectorHealth(
            State.FAILED,
            f"Kafka Connect at {self.url} is unreachable (retrying every "
            f"{REFRESH_SECONDS:g} s): {exc}",
        )

    def _unreachable(self, exc: ConnectRestError) -> None:
        if not self._configs:
            log.debug("connectors: Kafka Connect at %s is unreachable: %s", self.url, exc)
        health = self._unreachable_health(exc)
        for name in self._configs:
            self._note(name, health)

    async def _refresh_forever(self) -> None:
        """Rounds until nothing is declared and nothing is left to remove (a program without
        connectors costs nothing once its predecessors' connectors are gone)."""
        while True:
            settling = any(h.state is State.STARTING for h in self._health.values())
            await asyncio.sleep(SETTLING_SECONDS if settling else REFRESH_SECONDS)
            try:
                settled = await self.refresh()
            except Exception:  # a defect here must not end the rounds
                log.exception("connectors: a refresh round failed")
                continue
            metrics.CONNECTOR_ROUNDS.inc()
            if settled and not self._declared:
                return


def _ensure_topics(settings: Settings, topics: Iterable[str]) -> object:
    from lhpipe.clients.kafka.admin import ensure_topics

    return ensure_topics(settings, topics)

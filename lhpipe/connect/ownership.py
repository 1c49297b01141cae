"""One owner per group of processes for the work that must not run twice, chosen by Kafka.

Some work of a program is a singleton: a ``from poll`` pipeline (two pollers would fetch and
send every item twice and interleave their state writes) and the management of the
``connector`` declarations (two managers with different programs would undo each other's
changes). When several ``lhpipe run`` processes run the same files, exactly one of them does
such work at a time: the **owner**.

The owner is chosen through Kafka's own group coordination, not an election of lhpipe's. Each
singleton has a consumer group, ``lhpipe-owner-<name>`` (``poll-<pipeline>`` or
``connectors-<owner marker>``), whose members subscribe to the one-partition coordination
topic (``lhpipe_coordination`` unless ``LHPIPE_COORDINATION_TOPIC`` names another, created when
missing). The member the group coordinator assigns that partition to is the owner; the others
stand by. The assignor is cooperative-sticky, so a process joining never moves ownership; the
owner leaving (a graceful stop leaves the group at once) or dying (its session times out,
``LHPIPE_SESSION_TIMEOUT_MS``) gives it to another member.

A hand-over is ordered: when the owner's partition is revoked, :class:`Lease` runs its
``release`` callback on the event loop and waits for it (bounded) before the rebalance goes
on, so the old owner has stopped and written its state before the new one is assigned and
reads it. A *lost* partition (the owner's session expired while it lived) releases at once.
Nothing is ever read from the topic: the partition stays paused.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from lhpipe.connect.kafka import client_config, group_membership, settle_then_close
from lhpipe.settings import Settings

log = logging.getLogger(__name__)

COORDINATION_TOPIC_SETTING = "LHPIPE_COORDINATION_TOPIC"
DEFAULT_COORDINATION_TOPIC = "lhpipe_coordination"
#: How long a revocation waits for the owner's work to stop and save its state.
RELEASE_WAIT_SECONDS = 20.0
#: How often a process standing by looks up who owns the work (for the status).
LOOKUP_SECONDS = 10.0
POLL_SECONDS = 0.2

Callback = Callable[[], Awaitable[None]]


def coordination_topic(settings: Settings) -> str:
    return settings.get(COORDINATION_TOPIC_SETTING) or DEFAULT_COORDINATION_TOPIC


def process_id() -> str:
    """How this process names itself to the group (its ``client.id``): host, pid, worker."""
    worker = os.environ.get("LHPIPE_WORKER_INDEX")
    suffix = f"-w{worker}" if worker is not None else ""
    return f"lhpipe@{socket.gethostname()}:{os.getpid()}{suffix}"


def _admin(settings: Settings) -> AdminClient:
    config: dict[str, Any] = {
        **client_config(settings),
        "logger": logging.getLogger("lhpipe.kafka"),
    }
    return AdminClient(config)


def ensure_coordination_topic(settings: Settings, timeout: float = 15.0) -> None:
    """Create the one-partition coordination topic when it is missing."""
    topic = coordination_topic(settings)
    admin = _admin(settings)
    if topic in admin.list_topics(timeout=timeout).topics:
        return
    future = admin.create_topics(
        [NewTopic(topic, num_partitions=1, replication_factor=-1)], request_timeout=timeout
    )[topic]
    try:
        future.result(timeout)
        log.info("created the coordination topic %r", topic)
    except KafkaException as exc:
        error = exc.args[0]
        if not (isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS):
            raise


class Lease:
    """Membership in a singleton's owner group (see the module docstring).

    ``acquire`` runs on the loop when this process becomes the owner, ``release`` when it stops
    being it (and is waited for before the partition is given up). :attr:`owned` says which it
    is now; :attr:`owner` names the owning process as far as this one knows (for the status).
    """

    def __init__(
        self, settings: Settings, name: str, *, acquire: Callback, release: Callback
    ) -> None:
        self.name = name
        self.group = f"lhpipe-owner-{name}"
        self.topic = coordination_topic(settings)
        self._settings = settings
        self._acquire = acquire
        self._release = release
        self.me = process_id()
        self._config: dict[str, Any] = {
            "partition.assignment.strategy": "cooperative-sticky",
            **client_config(settings),
            **group_membership(settings, f"owner-{name}", static=False),
            "group.id": self.group,
            "client.id": self.me,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "logger": logging.getLogger("lhpipe.kafka.consumer"),
        }
        self.owned = False
        self.owner: str | None = None
        self.error: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._done = threading.Event()
        self._last_rebalance = 0.0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._run, name=f"lhpipe-lease-{self.name}", daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        """Release the work (if owned) and leave the group, so that another member takes it
        over at once."""
        if self._thread is None:
            return
        self._stopping.set()
        await asyncio.to_thread(self._done.wait, RELEASE_WAIT_SECONDS + 15)
        self._thread = None

    def describe(self) -> str:
        """Who runs the work, in words (for a process standing by)."""
        if self.owned:
            return f"owned by this process ({self.me})"
        who = self.owner or "another process of the group"
        return f"standing by: {who} owns it (group {self.group})"

    # -- the thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        consumer: Consumer | None = None
        try:
            while consumer is None and not self._stopping.is_set():
                try:
                    ensure_coordination_topic(self._settings)
                    consumer = Consumer(self._config)
                except Exception as exc:  # Kafka not there yet: stand by and try again
                    self.error = f"cannot join {self.group}: {exc}"
                    log.warning("%s", self.error)
                    self._stopping.wait(2.0)
            if consumer is None:
                return
            consumer.subscribe(
                [self.topic],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            self.error = None
            looked = 0.0
            while not self._stopping.is_set():
                consumer.poll(POLL_SECONDS)  # nothing is read: the partition is paused
                now = time.monotonic()
                if not self.owned and now - looked > LOOKUP_SECONDS:
                    looked = now
                    self._look_up_owner()
            if self.owned:
                self._give_up(wait=True)
        except Exception:
            log.exception("the owner group %s failed", self.group)
        finally:
            if consumer is not None:
                try:
                    # Leaves the group: another member is assigned at once.
                    settle_then_close(consumer, lambda: self._last_rebalance)
                except Exception:
                    log.exception("leaving the owner group %s failed", self.group)
            self._done.set()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._last_rebalance = time.monotonic()
        consumer.incremental_assign(partitions)
        if partitions:
            consumer.pause(partitions)
        if any(tp.topic == self.topic for tp in partitions) and not self.owned:
            self.owned = True
            self.owner = self.me
            log.info("%s: this process is the owner now (group %s)", self.name, self.group)
            self._on_loop(self._acquire, wait=False)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._last_rebalance = time.monotonic()
        if any(tp.topic == self.topic for tp in partitions) and self.owned:
            self._give_up(wait=True)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.owned:
            log.warning("%s: ownership lost (the group session expired)", self.name)
            self._give_up(wait=False)

    def _give_up(self, *, wait: bool) -> None:
        self.owned = False
        self.owner = None
        log.info("%s: this process is no longer the owner (group %s)", self.name, self.group)
        self._on_loop(self._release, wait=wait)

    def _on_loop(self, callback: Callback, *, wait: bool) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        future = asyncio.run_coroutine_threadsafe(_guarded(callback, self.name), loop)
        if not wait:
            return
        try:
            future.result(RELEASE_WAIT_SECONDS)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
            log.warning(
                "%s: the work did not stop within %.0f s; handing it over anyway",
                self.name,
                RELEASE_WAIT_SECONDS,
            )

    def _look_up_owner(self) -> None:
        """Ask the coordinator which member holds the partition (for the status only)."""
        admin = _admin(self._settings)
        try:
            future = admin.describe_consumer_groups([self.group], request_timeout=5)[self.group]
            description = future.result(5)
        except Exception:
            return
        for member in description.members:
            assignment = getattr(member, "assignment", None)
            partitions = getattr(assignment, "topic_partitions", None) or []
            if any(tp.topic == self.topic for tp in partitions):
                self.owner = f"{member.client_id} ({member.host.lstrip('/')})"
                return
        self.owner = None


async def _guarded(callback: Callback, name: str) -> None:
    try:
        await callback()
    except Exception:
        log.exception("%s: the owner's callback failed", name)

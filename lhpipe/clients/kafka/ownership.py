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

A group whose work carries a *version* (the connector declarations) also prefers the newest
program: its members write claims to the topic, and a holder that finds a live member of
another version started later hands the partition on (:class:`Lease`). Groups without a
version read nothing from the topic: their partition stays paused.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from lhpipe.clients.kafka.admin import admin_client, ensure_compacted_topic
from lhpipe.clients.kafka.config import client_config
from lhpipe.clients.kafka.consumer import SETTLE_QUIET_SECONDS, group_membership, settle_then_close
from lhpipe.core.worker import this_worker
from lhpipe.settings import Settings

log = logging.getLogger(__name__)

COORDINATION_TOPIC_SETTING = "LHPIPE_COORDINATION_TOPIC"
DEFAULT_COORDINATION_TOPIC = "lhpipe_coordination"
#: How long a revocation waits for the owner's work to stop and save its state.
RELEASE_WAIT_SECONDS = 20.0
#: How often a process standing by looks up who owns the work (for the status).
LOOKUP_SECONDS = 10.0
POLL_SECONDS = 0.2
#: How often an owner with a version looks for a newer program among the members.
CHECK_SECONDS = 2.0
#: When this process started (milliseconds since the epoch): "newest" compares these.
STARTED_MS = time.time_ns() // 1_000_000

Callback = Callable[[], Awaitable[None]]


def coordination_topic(settings: Settings) -> str:
    return settings.get(COORDINATION_TOPIC_SETTING) or DEFAULT_COORDINATION_TOPIC


def process_id() -> str:
    """How this process names itself to the group (its ``client.id``): host, pid, worker."""
    me = this_worker()
    suffix = f"-w{me.index}" if me.one_of_many else ""
    return f"lhpipe@{socket.gethostname()}:{me.pid}{suffix}"


def ensure_coordination_topic(settings: Settings) -> None:
    """Create the one-partition, compacted coordination topic when it is missing (compacted:
    the newest claim of each member is kept)."""
    topic = coordination_topic(settings)
    if ensure_compacted_topic(settings, topic):
        log.info("created the coordination topic %r", topic)


class Lease:
    """Membership in a singleton's owner group (see the module docstring).

    ``acquire`` runs on the loop when this process becomes the owner, ``release`` when it stops
    being it (and is waited for before the partition is given up). :attr:`owned` says which it
    is now; :attr:`owner` names the owning process as far as this one knows (for the status).

    With ``version`` (the connectors: a hash of the program's declarations), the newest program
    wins: each member writes a *claim* to the coordination topic when it joins (its version
    and when its process started), and the member assigned the partition reads the claims
    before it takes the work. If a live member (one the coordinator lists in the group) started
    later with another version, the holder does not take the work, or gives it up, and leaves
    the group for a moment, so that the partition moves on; a process never takes work from a
    newer program, and processes of one version never hand it between them.
    """

    def __init__(
        self,
        settings: Settings,
        name: str,
        *,
        acquire: Callback,
        release: Callback,
        version: Callable[[], str] | None = None,
    ) -> None:
        self.name = name
        self.group = f"lhpipe-owner-{name}"
        self.topic = coordination_topic(settings)
        self._settings = settings
        self._acquire = acquire
        self._release = release
        self._version = version
        self.me = process_id()
        self._config: dict[str, Any] = {
            "partition.assignment.strategy": "cooperative-sticky",
            **client_config(settings),
            **group_membership(settings, f"owner-{name}", static=False),
            "group.id": self.group,
            "client.id": self.me,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
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
        self._holding = False  # assigned the partition (owned once the claims allow it)
        self._claims: dict[str, _Claim] = {}  # member -> its newest claim
        self._claim_wanted = version is not None
        self._yielded_to: str | None = None
        self._rejoin_at: float | None = None

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

    def reclaim(self) -> None:
        """The version changed (a reload): write a new claim."""
        if self._version is not None:
            self._claim_wanted = True

    @property
    def standing_by(self) -> bool:
        """Another process does the work now (as far as this one knows): not while the group
        has not chosen yet, nor while this process decides."""
        if self.owned or self._holding:
            return False
        return self._yielded_to is not None or (self.owner is not None and self.owner != self.me)

    def describe(self) -> str:
        """Who runs the work, in words (for a process standing by)."""
        if self.owned:
            return f"owned by this process ({self.me})"
        if self._yielded_to is not None:
            return (
                f"standing by: handed over to {self._yielded_to}, of a newer program "
                f"(group {self.group})"
            )
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
            admin = admin_client(self._settings)
            self._write_claim()  # before joining: the holder finds it when it sees the member
            self._subscribe(consumer)
            self.error = None
            looked = checked = 0.0
            while not self._stopping.is_set():
                message = consumer.poll(POLL_SECONDS)
                if message is not None and message.error() is None:
                    self._note_claim(message.value())
                now = time.monotonic()
                if self._claim_wanted:
                    self._write_claim()
                if self._rejoin_at is not None and now >= self._rejoin_at:
                    self._rejoin_at = None
                    self._subscribe(consumer)
                if self._holding and not self.owned and self._settled(now):
                    self._decide(consumer, admin)
                elif self.owned and self._version is not None and now - checked > CHECK_SECONDS:
                    checked = now
                    self._decide(consumer, admin)
                if not self._holding and now - looked > LOOKUP_SECONDS:
                    looked = now
                    self._look_up_owner(admin)
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

    def _subscribe(self, consumer: Consumer) -> None:
        consumer.subscribe(
            [self.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    def _settled(self, now: float) -> bool:
        """Without versions, at once; with them, once the rebalance is over and the claims
        written so far are read."""
        return self._version is None or now - self._last_rebalance >= SETTLE_QUIET_SECONDS

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._last_rebalance = time.monotonic()
        consumer.incremental_assign(partitions)
        if partitions and self._version is None:
            consumer.pause(partitions)  # nothing to read: the claims serve versions only
        if any(tp.topic == self.topic for tp in partitions):
            self._holding = True

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._last_rebalance = time.monotonic()
        if any(tp.topic == self.topic for tp in partitions):
            self._holding = False
            if self.owned:
                self._give_up(wait=True)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._last_rebalance = time.monotonic()
        self._holding = False
        if self.owned:
            log.warning("%s: ownership lost (the group session expired)", self.name)
            self._give_up(wait=False)

    def _decide(self, consumer: Consumer, admin: AdminClient) -> None:
        """Take the work, or hand it to a live member of a newer program."""
        newer = self._newer_member(admin) if self._version is not None else None
        if newer is None:
            if not self.owned:
                self.owned = True
                self.owner = self.me
                self._yielded_to = None
                log.info("%s: this process is the owner now (group %s)", self.name, self.group)
                self._on_loop(self._acquire, wait=False)
            return
        log.info(
            "%s: %s runs a newer program (started later, another version): handing the work "
            "over to it",
            self.name,
            newer,
        )
        if self.owned:
            self._give_up(wait=True)
        self._holding = False
        self._yielded_to = newer
        consumer.unsubscribe()
        self._rejoin_at = time.monotonic() + SETTLE_QUIET_SECONDS

    def _newer_member(self, admin: AdminClient) -> str | None:
        """A live member whose claim started later than this process with another version."""
        mine = self._claims.get(self.me)
        version = self._version() if self._version is not None else None
        live = self._members(admin)
        if mine is None or version is None or live is None:
            return None
        best: _Claim | None = None
        for member in live:
            claim = self._claims.get(member)
            if claim is None or member == self.me:
                continue
            newer = claim.started > mine.started and claim.version != version
            if newer and (best is None or claim.started > best.started):
                best = claim
        return best.member if best is not None else None

    def _members(self, admin: AdminClient) -> list[str] | None:
        """The client ids of the group's live members, as the coordinator lists them."""
        description = self._describe(admin)
        return None if description is None else [m.client_id for m in description.members]

    def _describe(self, admin: AdminClient) -> Any:
        """The coordinator's description of the group, or ``None`` when it does not answer."""
        try:
            future = admin.describe_consumer_groups([self.group], request_timeout=5)[self.group]
            return future.result(5)
        except Exception:
            return None

    def _write_claim(self) -> None:
        self._claim_wanted = False
        if self._version is None:
            return
        claim = {
            "group": self.group,
            "member": self.me,
            "version": self._version(),
            "started": STARTED_MS,
        }
        producer = Producer(
            {
                **client_config(self._settings),
                "acks": "all",
                "logger": logging.getLogger("lhpipe.kafka.producer"),
            }
        )
        producer.produce(
            self.topic, key=f"{self.group}/{self.me}".encode(), value=json.dumps(claim).encode()
        )
        if producer.flush(10) > 0:
            log.warning("%s: the claim could not be written; trying again", self.name)
            self._claim_wanted = True
            return
        self._claims[self.me] = _Claim(self.me, str(claim["version"]), STARTED_MS)

    def _note_claim(self, raw: bytes | None) -> None:
        try:
            data = json.loads(raw or b"")
            if data.get("group") != self.group:
                return
            claim = _Claim(str(data["member"]), str(data["version"]), int(data["started"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            return  # not a claim of ours (or not one at all)
        self._claims[claim.member] = claim

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

    def _look_up_owner(self, admin: AdminClient) -> None:
        """Ask the coordinator which member holds the partition (for the status only)."""
        description = self._describe(admin)
        if description is None:
            return
        for member in description.members:
            assignment = getattr(member, "assignment", None)
            partitions = getattr(assignment, "topic_partitions", None) or []
            if any(tp.topic == self.topic for tp in partitions):
                mine = member.client_id == self.me  # the assignment is on its way here
                self.owner = None if mine else f"{member.client_id} ({member.host.lstrip('/')})"
                return
        self.owner = None


@dataclass(frozen=True, slots=True)
class _Claim:
    """What a member of an owner group wrote when it joined: its program's version and when
    its process started (milliseconds since the epoch)."""

    member: str
    version: str
    started: int


async def _guarded(callback: Callback, name: str) -> None:
    try:
        await callback()
    except Exception:
        log.exception("%s: the owner's callback failed", name)

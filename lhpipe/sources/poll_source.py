"""`from poll` sources: an HTTP JSON endpoint read page by page into records.

A :class:`PollSource` runs as one task on the event loop (httpx is asynchronous, so no thread):

1. At start it reads the pipeline's durable state (:mod:`lhpipe.sources.poll_state`): the
   cursor, the ETag and the dedupe window. Until that succeeds the source is not connected.
2. It asks ``GET <url with the cursor>`` with the block's ``headers`` (and ``If-None-Match``
   when it holds an ETag of that very URL), reads the items and the next cursor
   (:mod:`lhpipe.sources.poll_items`), drops items whose id is in the dedupe window, and hands
   the others to the runner as records, as fast as the runner has room.
3. When a page gave new records and moved the cursor, the next page is asked at once;
   otherwise the source waits ``every`` before asking again. A ``304 Not Modified`` is a page
   without items.
4. Failures never move the cursor: a connection error, a timeout, an HTTP error status, an
   answer that is not JSON, or ``items``/``cursor`` failing on it is logged, shows the source
   as not connected (``/readyz``, with the reason), and the same request is asked again at
   the next tick.

**Durability.** Every item is a record under ``poll:<pipeline>`` with a sequence number as its
offset, so the runner's contiguous commit tracker says when every item up to some point is
done. A page's state (the cursor after it, its ETag, the window with its ids) is written to
the state topic only once every item of that page and of the pages before it is done; while a
page is partly done, the state written is the one from before it plus the ids of its items
done so far. A process killed mid-page therefore asks that page again after its restart and
the dedupe window drops the items it had finished. Items that were in flight at the kill are
sent again under the same ids (:class:`~lhpipe.sources.poll_items.PollOrigin`), which
LittleHorse answers with ALREADY_EXISTS: nothing repeats and nothing is skipped.

The dedupe window (the last ``LHPIPE_POLL_DEDUPE_WINDOW`` ids, default 1000, kept in the
state too) is what keeps an endpoint without a cursor (the newest N items, an ETag'd list)
from giving the same item twice across ticks and restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import httpx

from lhpipe.clients.kafka.ownership import Callback, Lease
from lhpipe.core.errors import ExpressionError
from lhpipe.core.evaluate import parse_json
from lhpipe.core.record import Record
from lhpipe.core.redact import redact_text, redact_url
from lhpipe.core.sink import RecordSink, TopicPartition
from lhpipe.sources.poll_items import PollRequests
from lhpipe.sources.poll_state import PollState, PollStateStore

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

DEFAULT_DEDUPE_WINDOW = 1000
REQUEST_TIMEOUT_SECONDS = 30.0
#: How often a full runner (or a paused pipeline) is looked at again.
ROOM_WAIT_SECONDS = 0.01
#: The first wait after the state could not be read or written; reads double it up to
#: ``MAX_STATE_RETRY_SECONDS``.
STATE_RETRY_SECONDS = 1.0
MAX_STATE_RETRY_SECONDS = 30.0
#: How long a stop waits for the last state to be written.
FINAL_WRITE_SECONDS = 10.0
MIN_EVERY_SECONDS = 0.05


class PollSource:
    """One poll pipeline's source (see the module docstring); a
    :class:`lhpipe.runtime.runner.Source`."""

    def __init__(
        self,
        requests: PollRequests,
        store: PollStateStore,
        sink: RecordSink,
        *,
        dedupe_window: int = DEFAULT_DEDUPE_WINDOW,
        transport: httpx.AsyncBaseTransport | None = None,
        lease: Callable[[Callback, Callback], Lease] | None = None,
        committable: Callable[[], dict[TopicPartition, int]] | None = None,
    ) -> None:
        self.requests = requests
        self.pipeline = requests.pipeline
        self._store = store
        self._sink = sink
        self._window = max(0, dedupe_window)
        self._transport = transport
        self._partition: TopicPartition = (requests.topic, 0)
        self.paused = False
        self.error: str | None = None
        self.lag: dict[TopicPartition, int] = {}
        #: How many times it began to wait ``every`` after an answer (tests wait for it).
        self.waits = 0
        self._connected = False
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        # What the next request asks with, and what is known of the answers so far.
        self._cursor: Any = None
        self._etag: str | None = None
        self._etag_url: str | None = None
        self._seen: dict[str, None] = {}  # insertion-ordered: the dedupe window
        # Sequence numbers: the next one to give, and one past the last done item.
        self._next_sequence = 0
        self._done = 0
        self._pages: deque[_Page] = deque()  # not yet done, in order
        self._wanted: PollState | None = None  # the newest state whose pages are all done
        self._durable: PollState | None = None  # the newest state Kafka has
        self._write_needed = asyncio.Event()
        self._written = asyncio.Event()
        # One poller per group of processes (lhpipe.clients.kafka.ownership): without a lease (unit
        # tests) this source always polls.
        self._lease = lease(self._acquired, self._released) if lease is not None else None
        self._committable = committable
        self._standing_by = False

    # -- the runner's side ---------------------------------------------------------------------

    def start(self) -> None:
        if self._lease is None:
            self._begin()
            return
        self._standing_by = True
        self._lease.start()

    def _begin(self) -> None:
        loop = asyncio.get_running_loop()
        self._standing_by = False
        self._task = loop.create_task(self._run(), name=f"lhpipe-poll-{self.pipeline}")
        self._writer = loop.create_task(
            self._write_states(), name=f"lhpipe-poll-state-{self.pipeline}"
        )

    async def _acquired(self) -> None:
        """This process polls from now on: from the state the last owner wrote."""
        if self._task is None:
            self._pages.clear()
            self._wanted = self._durable = None
            self._begin()

    async def _released(self) -> None:
        """Another process polls from now on: stop asking, let the items handed over finish
        (bounded), write the state of what is done, and never write again."""
        await self._end(self._committable or dict)
        self._pages.clear()
        self._wanted = self._durable = None
        self._standing_by = True

    @property
    def standby(self) -> str | None:
        """Why this process does not poll now (another one owns the pipeline), or ``None``."""
        if not self._standing_by or self._lease is None or not self._lease.standing_by:
            return None
        return self._lease.describe()

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Every item before ``offsets[poll:<pipeline>, 0]`` is done: the pages they end are
        done, and the newest of their states is written."""
        done = offsets.get(self._partition)
        if done is None:
            return
        self._done = max(self._done, done)
        self._advance()
        self._sink.on_committed({self._partition: done})

    async def stop(self, final_offsets: Callable[[], dict[TopicPartition, int]]) -> None:
        """Stop asking, write the state of every page done (waiting a bounded time), and
        leave the owners' group."""
        await self._end(final_offsets)
        if self._lease is not None:
            await self._lease.stop()

    async def _end(self, final_offsets: Callable[[], dict[TopicPartition, int]]) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._lease is not None and self._committable is not None:
            # A hand-over: the items handed over get a while to finish, so that the next
            # owner does not send them again.
            deadline = time.monotonic() + FINAL_WRITE_SECONDS
            while self._done < self._next_sequence and time.monotonic() < deadline:
                self.commit(final_offsets())
                await asyncio.sleep(0.05)
        self.commit(final_offsets())
        writer, self._writer = self._writer, None
        if writer is None:
            return
        if self._wanted is not None and self._wanted != self._durable:
            try:
                await asyncio.wait_for(self._until_written(), FINAL_WRITE_SECONDS)
            except TimeoutError:
                log.warning(
                    "pipeline %s: the poll state was not written in %.0f s; the pages since "
                    "the last written state will be asked again",
                    self.pipeline,
                    FINAL_WRITE_SECONDS,
                )
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        self._connected = False

    def connected(self) -> bool:
        """The state was read and the last request was answered (standing by: the group
        can be reached)."""
        if self._standing_by and self._lease is not None:
            return self.standby is not None and self._lease.error is None
        return self._connected and self._task is not None

    # -- polling --------------------------------------------------------------------------------

    async def _run(self) -> None:
        await self._load_state()
        self._sink.on_assigned([self._partition])
        every = max(MIN_EVERY_SECONDS, self.requests.every_seconds)
        async with httpx.AsyncClient(
            timeout=REQUEST_TIMEOUT_SECONDS, transport=self._transport, follow_redirects=True
        ) as client:
            while True:
                try:
                    more = await self._poll_once(client)
                except Exception as exc:  # a defect must show, and polling go on
                    log.exception("pipeline %s: polling failed", self.pipeline)
                    self._fail(f"polling failed: {type(exc).__name__}: {exc}")
                    more = False
                if not more:
                    self.waits += 1
                    await asyncio.sleep(every)

    async def _load_state(self) -> None:
        delay = STATE_RETRY_SECONDS
        while True:
            try:
                state = await self._store.load(self.pipeline)
                break
            except Exception as exc:
                self._fail(f"cannot read the poll state: {exc}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_STATE_RETRY_SECONDS)
        if state is not None:
            self._cursor = state.cursor
            self._etag, self._etag_url = state.etag, state.etag_url
            self._seen = dict.fromkeys(state.seen[-self._window :] if self._window else ())
            log.info("pipeline %s: polling from cursor %r", self.pipeline, state.cursor)
        self._durable = self._wanted = state
        self._connected = True
        self.error = None

    async def _poll_once(self, client: httpx.AsyncClient) -> bool:
        """Ask one page and hand its items over; whether to ask the next one at once."""
        requests = self.requests
        cursor = self._cursor
        try:
            url = requests.url(cursor)
            headers = requests.headers()
        except ExpressionError as exc:
            self._fail(f"the URL or headers cannot be made: {exc}")
            return False
        if self._etag is not None and self._etag_url == url:
            headers["if-none-match"] = self._etag
        try:
            response = await client.get(url, headers=headers)
        except httpx.HTTPError as exc:
            self._fail(f"GET {redact_url(url)}: {type(exc).__name__}: {exc}".rstrip(": "))
            return False
        if response.status_code == httpx.codes.NOT_MODIFIED:
            self._ok()
            return False
        if response.status_code >= 300:
            self._fail(f"GET {redact_url(url)}: HTTP {response.status_code}")
            return False
        try:
            page = requests.page(parse_json(response.content))
        except ExpressionError as exc:
            self._fail(f"GET {redact_url(url)}: {exc}")
            return False
        self._ok()
        before = self._state()
        start = self._next_sequence
        records, ids = self._records(page.items, url)
        etag = response.headers.get("etag")
        self._cursor = cursor if page.cursor in (None, "") else page.cursor
        self._etag, self._etag_url = (etag, url) if etag else (None, None)
        self._pages.append(_Page(start, self._next_sequence, before, ids, self._state()))
        self._advance()
        await self._hand_over(records)
        # A page of only known items does not hurry: a cursor that wraps around to the start
        # must not make a loop of requests without a pause.
        return bool(records) and self._cursor != cursor

    def _state(self) -> PollState:
        return PollState(self._cursor, self._etag, self._etag_url, tuple(self._seen))

    def _records(self, items: list[Any], url: str) -> tuple[list[Record], list[str]]:
        """The records of the items not seen before, and their ids."""
        records, ids = [], []
        seen = self._seen
        arrived_ms = time.time_ns() // 1_000_000
        for item in items:
            polled = self.requests.item(item, self._next_sequence, url, arrived_ms)
            if polled.id in seen:
                continue
            if self._window:
                seen[polled.id] = None
                if len(seen) > self._window:
                    del seen[next(iter(seen))]
            records.append(polled.record)
            ids.append(polled.id)
            self._next_sequence += 1
        return records, ids

    async def _hand_over(self, records: list[Record]) -> None:
        sink = self._sink
        while records:
            room = 0 if self.paused else sink.room()
            if room <= 0:
                await asyncio.sleep(ROOM_WAIT_SECONDS)
                continue
            batch, records = records[:room], records[room:]
            sink.on_records(batch)
            self.lag[self._partition] = self._next_sequence - self._done

    def _ok(self) -> None:
        if self.error is not None:
            log.info("pipeline %s: the poll endpoint answers again", self.pipeline)
        self.error = None
        self._connected = True

    def _fail(self, why: str) -> None:
        # Shown in /readyz, the status page and the logs: no URL with its credentials
        # (docs/webhooks.md, "What is redacted where"), not even one inside an exception.
        why = redact_text(why)
        if why != self.error:
            log.warning("pipeline %s: %s; asking again at the next tick", self.pipeline, why)
        self.error = why
        self._connected = False

    # -- the durable state ----------------------------------------------------------------------

    def _advance(self) -> None:
        """Pop the pages whose items are all done: the newest of their states is wanted. When
        the first page left is partly done, the state before it plus the ids of its done items
        is wanted instead: a restart asks that page again and the dedupe window drops those."""
        pages = self._pages
        done = self._done
        newest = None
        while pages and pages[0].end <= done:
            newest = pages.popleft().after
        if pages and pages[0].start < done and self._window:
            page = pages[0]
            seen = (*page.before.seen, *page.ids[: done - page.start])[-self._window :]
            newest = replace(page.before, seen=seen)
        self.lag[self._partition] = self._next_sequence - done
        if newest is not None and newest != self._wanted:
            self._wanted = newest
            self._written.clear()
            self._write_needed.set()

    async def _until_written(self) -> None:
        while self._wanted != self._durable:
            await self._written.wait()
            self._written.clear()

    async def _write_states(self) -> None:
        """Write the wanted state whenever it changes, one write at a time, so that an older
        state never lands after a newer one; a failed write is tried again."""
        while True:
            await self._write_needed.wait()
            self._write_needed.clear()
            state = self._wanted
            if state is None or state == self._durable:
                self._written.set()
                continue
            try:
                await self._store.save(self.pipeline, self.requests.url_template, state)
            except Exception as exc:
                log.warning("pipeline %s: writing the poll state failed: %s", self.pipeline, exc)
                await asyncio.sleep(STATE_RETRY_SECONDS)
                self._write_needed.set()
                continue
            self._durable = state
            self._written.set()


@dataclass(frozen=True, slots=True)
class _Page:
    """One answer whose items are not all done: its records' sequence numbers
    (``start`` to ``end``, exclusive), their ids, and the states before and after it."""

    start: int
    end: int
    before: PollState
    ids: list[str]
    after: PollState

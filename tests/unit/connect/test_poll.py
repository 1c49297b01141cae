"""`from poll`: paging with a cursor, the durable state written only behind finished pages, a
restart that resumes there, ETags, failures that never move the cursor, dedupe, and the ids
polled items give. The endpoint is an ``httpx.MockTransport``; the runner is a fake sink with
the real contiguous commit tracker."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from waiting import until

from lhpipe.check.program import Program
from lhpipe.core.errors import ExpressionError
from lhpipe.core.planning import generated_id
from lhpipe.core.record import Record
from lhpipe.core.steps import initial_env
from lhpipe.kinds import load_texts
from lhpipe.runtime.commit import ContiguousCommitTracker
from lhpipe.sources.poll_items import (
    URL_HEADER,
    PollOrigin,
    PollRequests,
    generated_part,
    poll_environment,
)
from lhpipe.sources.poll_source import PollSource
from lhpipe.sources.poll_state import PollState

FEED = """
pipeline feed {
  from poll "http://feed.test/items?after=${cursor}" {
    every = 100ms
    items = response.items
    cursor = response.next
    id = item.id
    headers { authorization = "Bearer t0ken" }
  }
  to log
}
"""


def program(text: str = FEED) -> Program:
    result = load_texts({"p.lhp": text})
    assert result.program is not None, [d.message for d in result.diagnostics]
    return result.program


def requests_of(text: str = FEED, name: str = "feed") -> PollRequests:
    prog = program(text)
    return PollRequests(prog.pipelines[name], prog)


class Feed:
    """A paged endpoint: ``?after=N`` gives items N.. (``page`` of them) and ``next``."""

    def __init__(self, total: int = 250, page: int = 100) -> None:
        self.total = total
        self.page = page
        self.requests: list[httpx.Request] = []
        self.failures: list[int | Exception] = []  # answered first, one per request

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.failures:
            failure = self.failures.pop(0)
            if isinstance(failure, Exception):
                raise failure
            return httpx.Response(failure, text="down")
        after = request.url.params.get("after") or "0"
        start = int(after)
        end = min(start + self.page, self.total)
        items = [{"id": f"item-{n}", "n": n} for n in range(start, end)]
        return httpx.Response(200, json={"items": items, "next": str(end) if items else None})

    def afters(self) -> list[str]:
        return [r.url.params.get("after", "") for r in self.requests]


class Store:
    """An in-memory state store that records every write."""

    def __init__(self) -> None:
        self.states: dict[str, PollState] = {}
        self.writes: list[PollState] = []
        self.fail_loads = 0

    async def load(self, pipeline: str) -> PollState | None:
        if self.fail_loads:
            self.fail_loads -= 1
            raise OSError("kafka is down")
        return self.states.get(pipeline)

    async def save(self, pipeline: str, url: str, state: PollState) -> None:
        self.states[pipeline] = state
        self.writes.append(state)


class Sink:
    """The runner's side: registers records with the real tracker; the test finishes them."""

    def __init__(self, room: int = 10_000) -> None:
        self.tracker = ContiguousCommitTracker()
        self.records: list[Record] = []
        self.finished = 0
        self.capacity = room
        self.refused = 0  # how many times the source asked for room and there was none

    def room(self) -> int:
        room = self.capacity - (len(self.records) - self.finished)
        if room <= 0:
            self.refused += 1
        return room

    def on_assigned(self, partitions: list[tuple[str, int]]) -> None:
        for topic, partition in partitions:
            self.tracker.assign(topic, partition)

    def on_records(self, records: list[Record]) -> None:
        for record in records:
            origin = record.origin
            assert isinstance(origin, PollOrigin)
            self.tracker.register(origin.topic, origin.partition, origin.offset)
        self.records.extend(records)

    def on_committed(self, offsets: dict[tuple[str, int], int]) -> None:
        self.tracker.mark_committed(offsets)

    def finish(self, count: int) -> None:
        """Mark the next ``count`` records done (in read order)."""
        for record in self.records[self.finished : self.finished + count]:
            origin = record.origin
            assert isinstance(origin, PollOrigin)
            offsets = self.tracker.get(origin.topic, origin.partition)
            assert offsets is not None
            offsets.mark_done(origin.offset)
        self.finished = min(len(self.records), self.finished + count)

    def values(self) -> list[Any]:
        return [orjson.loads(r.value or b"null") for r in self.records]


def source(feed: Any, store: Store, sink: Sink, text: str = FEED, **kwargs: Any) -> PollSource:
    return PollSource(requests_of(text), store, sink, transport=httpx.MockTransport(feed), **kwargs)


async def commit_and_settle(poll: PollSource, sink: Sink) -> None:
    poll.commit(sink.tracker.committable())
    for _ in range(5):
        await asyncio.sleep(0)


# --- paging and the durable cursor -------------------------------------------------------------


def test_pages_are_read_one_after_the_other_until_the_feed_is_exhausted() -> None:
    feed, store, sink = Feed(total=250, page=100), Store(), Sink()

    async def scenario() -> None:
        poll = source(feed, store, sink)
        poll.start()
        await until(lambda: len(sink.records) == 250, "250 records")
        await until(lambda: len(feed.requests) >= 4, "the empty page after the last")
        assert poll.connected()
        sink.finish(250)
        await poll.stop(sink.tracker.committable)

    asyncio.run(scenario())
    assert [v["n"] for v in sink.values()] == list(range(250))
    # The first request has no cursor; each full page is followed at once by the next.
    assert feed.afters()[:4] == ["", "100", "200", "250"]
    assert feed.requests[0].headers["authorization"] == "Bearer t0ken"
    assert store.states["feed"].cursor == "250"
    assert dict(sink.records[0].headers)[URL_HEADER] == b"http://feed.test/items?after="


def test_the_cursor_moves_only_when_every_item_of_its_page_is_done() -> None:
    feed, store, sink = Feed(total=250, page=100), Store(), Sink()

    async def scenario() -> None:
        poll = source(feed, store, sink)
        poll.start()
        await until(lambda: len(sink.records) == 250, "250 records")
        sink.finish(99)
        await commit_and_settle(poll, sink)
        # Page 1 still has an item in flight: no cursor yet, but its done items are known.
        assert store.writes[-1].cursor is None
        assert store.writes[-1].seen == tuple(f"item-{n}" for n in range(99))
        sink.finish(51)  # 150 done: page 1 complete, page 2 half
        await commit_and_settle(poll, sink)
        assert store.writes[-1].cursor == "100"
        assert store.writes[-1].seen[-1] == "item-149"
        sink.finish(100)
        await commit_and_settle(poll, sink)
        await until(lambda: store.writes[-1].cursor == "250", "the last cursor")
        await poll.stop(sink.tracker.committable)

    asyncio.run(scenario())
    assert {w.cursor for w in store.writes} == {None, "100", "250"}


def test_a_restart_asks_the_unfinished_page_again_and_sends_only_what_was_not_done() -> None:
    feed, store = Feed(total=250, page=100), Store()
    first, second = Sink(), Sink()

    async def scenario() -> None:
        poll = source(feed, store, first)
        poll.start()
        await until(lambda: len(first.records) == 250, "250 records")
        first.finish(130)  # page 1 and part of page 2 are done when the process "dies"
        await commit_and_settle(poll, first)
        await poll.stop(lambda: {})  # a crash commits nothing more
        feed.requests.clear()
        again = source(feed, store, second)
        again.start()
        await until(lambda: len(second.records) == 120, "the items not done")
        second.finish(120)
        await again.stop(second.tracker.committable)

    asyncio.run(scenario())
    assert feed.afters()[:2] == ["100", "200"]
    assert [v["n"] for v in second.values()] == list(range(130, 250))
    assert store.states["feed"].cursor == "250"


def test_items_in_flight_at_a_crash_come_back_with_the_same_ids() -> None:
    feed, store = Feed(total=100, page=100), Store()
    first, second = Sink(), Sink()

    async def scenario() -> None:
        poll = source(feed, store, first)
        poll.start()
        await until(lambda: len(first.records) == 100, "100 records")
        first.finish(40)
        await commit_and_settle(poll, first)
        # Items 40..59 reached LittleHorse, but were not committed when the process died.
        await poll.stop(lambda: {})
        again = source(feed, store, second)
        again.start()
        await until(lambda: len(second.records) == 60, "the items not committed")
        await again.stop(lambda: {})

    asyncio.run(scenario())
    before = [generated_id("feed", r) for r in first.records[40:60]]
    after = [generated_id("feed", r) for r in second.records[:20]]
    assert before == after == [f"feed-item-{n}" for n in range(40, 60)]


def test_records_wait_for_room_in_the_runner() -> None:
    feed, store, sink = Feed(total=100, page=100), Store(), Sink(room=10)

    async def scenario() -> None:
        poll = source(feed, store, sink)
        poll.start()
        await until(lambda: len(sink.records) == 10, "the first 10")
        refused = sink.refused
        await until(lambda: sink.refused >= refused + 2, "the source to find no room, twice")
        assert len(sink.records) == 10
        sink.finish(10)
        await until(lambda: len(sink.records) == 20, "10 more")
        await poll.stop(sink.tracker.committable)

    asyncio.run(scenario())


# --- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [503, 404, httpx.ConnectError("connection refused")],
    ids=["5xx", "4xx", "connection"],
)
def test_a_failed_request_is_asked_again_at_the_next_tick_without_moving_the_cursor(
    failure: int | Exception,
) -> None:
    feed, store, sink = Feed(total=50, page=100), Store(), Sink()
    feed.failures = [failure]
    seen: list[tuple[bool, str | None]] = []
    poll_ref: list[PollSource] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if len(feed.requests) == 1:  # the retry: what the source said after the failure
            seen.append((poll_ref[0].connected(), poll_ref[0].error))
        return feed(request)

    async def scenario() -> None:
        poll = source(handler, store, sink)
        poll_ref.append(poll)
        poll.start()
        await until(lambda: len(sink.records) == 50, "the items after the retry")
        seen.append((poll.connected(), poll.error))
        await poll.stop(sink.tracker.committable)

    asyncio.run(scenario())
    (down, why), (up, after) = seen
    assert not down and why is not None and "http://feed.test/items?after=" in why
    assert up and after is None
    assert feed.afters()[:2] == ["", ""]


def test_an_answer_that_is_not_json_or_has_no_items_list_is_a_failed_request() -> None:
    answers = [
        httpx.Response(200, text="<html>"),
        httpx.Response(200, json={"items": "nope"}),
        httpx.Response(200, json={"items": [{"id": "a"}], "next": "1"}),
        httpx.Response(200, json={"items": [], "next": None}),
    ]
    errors: list[str | None] = []
    sink, store = Sink(), Store()
    poll_ref: list[PollSource] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if poll_ref:
            errors.append(poll_ref[0].error)
        return answers.pop(0) if answers else httpx.Response(200, json={"items": []})

    async def scenario() -> None:
        poll = source(handler, store, sink)
        poll_ref.append(poll)
        poll.start()
        await until(lambda: len(sink.records) == 1, "the good page")
        await poll.stop(sink.tracker.committable)

    asyncio.run(scenario())
    assert errors[1] is not None and "not JSON" in errors[1]
    assert errors[2] is not None and "`items` must give a list" in errors[2]


def test_the_state_is_read_again_until_kafka_answers() -> None:
    feed, store, sink = Feed(total=5), Store(), Sink()
    store.fail_loads = 1
    store.states["feed"] = PollState(cursor="3")

    async def scenario() -> list[bool]:
        import lhpipe.sources.poll_source as poll_module

        poll_module.STATE_RETRY_SECONDS = 0.01
        try:
            poll = source(feed, store, sink)
            poll.start()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            early = poll.connected()
            await until(lambda: len(sink.records) == 2, "items 3 and 4")
            await poll.stop(sink.tracker.committable)
            return [early]
        finally:
            poll_module.STATE_RETRY_SECONDS = 1.0

    assert asyncio.run(scenario()) == [False]
    assert feed.afters()[0] == "3"


# --- ETag and dedupe ---------------------------------------------------------------------------


class Latest:
    """An endpoint without a cursor: the newest items, with an ETag."""

    def __init__(self) -> None:
        self.items = [{"id": 1}, {"id": 2}]
        self.requests: list[httpx.Request] = []

    def etag(self) -> str:
        return f'"v{len(self.items)}"'

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.headers.get("if-none-match") == self.etag():
            return httpx.Response(304)
        return httpx.Response(200, json=self.items[-2:], headers={"ETag": self.etag()})


LATEST = """
pipeline latest {
  from poll "http://feed.test/latest" {
    every = 10ms
    id = value.id
  }
  to log
}
"""


def test_etags_are_sent_back_and_items_seen_before_are_dropped_across_restarts() -> None:
    feed, store, first, second = Latest(), Store(), Sink(), Sink()

    async def scenario() -> None:
        poll = PollSource(
            PollRequests(program(LATEST).pipelines["latest"], program(LATEST)),
            store,
            first,
            transport=httpx.MockTransport(feed),
        )
        poll.start()
        await until(lambda: len(feed.requests) >= 3, "a few ticks")
        assert len(first.records) == 2
        feed.items.append({"id": 3})
        await until(lambda: len(first.records) == 3, "the new item")
        first.finish(3)
        await poll.stop(first.tracker.committable)
        feed.items.append({"id": 4})
        again = PollSource(
            PollRequests(program(LATEST).pipelines["latest"], program(LATEST)),
            store,
            second,
            transport=httpx.MockTransport(feed),
        )
        again.start()
        await until(lambda: len(second.records) == 1, "only the item never seen")
        waits = again.waits
        await until(lambda: again.waits >= waits + 2, "a later tick answered")
        await again.stop(second.tracker.committable)

    asyncio.run(scenario())
    assert [orjson.loads(r.value or b"") for r in first.records] == [{"id": n} for n in (1, 2, 3)]
    assert [orjson.loads(r.value or b"") for r in second.records] == [{"id": 4}]
    assert feed.requests[1].headers["if-none-match"] == '"v2"'
    assert feed.requests[-1].headers["if-none-match"] == '"v4"'  # the later ticks: 304
    assert store.states["latest"].seen == ("1", "2", "3")


def test_without_an_id_items_are_known_by_their_content() -> None:
    text = """
pipeline anon {
  from poll "http://feed.test/x" { every = 1m }
  to log
}
"""
    requests = requests_of(text, "anon")
    a = requests.item({"b": 1, "a": 2}, 0, "u")
    b = requests.item({"a": 2, "b": 1}, 5, "u")
    c = requests.item({"a": 3}, 6, "u")
    assert a.id == b.id != c.id
    assert generated_id("anon", a.record) == generated_id("anon", b.record)
    assert generated_id("anon", a.record) == f"anon-{a.id}" and len(a.id) == 32


# --- the pure parts ------------------------------------------------------------------------------


def test_urls_encode_the_cursor_and_leave_it_out_before_the_first_answer() -> None:
    requests = requests_of()
    assert requests.url(None) == "http://feed.test/items?after="
    assert requests.url("a+b/c==") == "http://feed.test/items?after=a%2Bb%2Fc%3D%3D"
    assert requests.url(42) == "http://feed.test/items?after=42"


def test_items_default_to_the_answer_and_a_null_cursor_keeps_the_old_one() -> None:
    text = 'pipeline p { from poll "http://x.test/a" { every = 1m } to log }'
    requests = requests_of(text, "p")
    assert requests.page([1, 2]).items == [1, 2]
    assert requests.page({"a": 1}).items == [{"a": 1}]
    assert requests.page({"a": 1}).cursor is None
    feed = requests_of()
    assert feed.page({"items": None, "next": None}).items == []


def test_a_polled_item_has_a_record_of_its_place_in_the_poller() -> None:
    prog = program()
    polled = PollRequests(prog.pipelines["feed"], prog).item({"id": "a"}, 5, "u", 1_700_000_000_000)
    # As `lhpipe run` (the poll source's environment) and `lhpipe test` (the steps') see it.
    env = poll_environment(polled.record, None, {"id": "a"})
    assert env == initial_env(polled.record, None, {"id": "a"})
    assert env["record"] == {
        "topic": "poll:feed",
        "partition": 0,
        "offset": 5,
        "timestamp": datetime.fromtimestamp(1_700_000_000, UTC),
    }


@pytest.mark.parametrize("name", ["response", "value", "body"])
def test_items_and_cursor_name_the_answer_response_value_or_body(name: str) -> None:
    text = (
        f'pipeline p {{ from poll "http://x.test/a?c=${{cursor}}" {{ every = 1m  '
        f"items = {name}.data  cursor = {name}.meta.next }} to log }}"
    )
    page = requests_of(text, "p").page({"data": [{"n": 1}], "meta": {"next": "c2"}})
    assert page.items == [{"n": 1}] and page.cursor == "c2"


@pytest.mark.parametrize(
    ("item_id", "part"),
    [
        ("item-7", "item-7"),
        ("42", "42"),
        ("Item-7", None),
        ("user_1", None),
        ("a/b", None),
        ("x" * 65, None),
    ],
)
def test_item_ids_appear_in_generated_ids_as_they_are_or_hashed(
    item_id: str, part: str | None
) -> None:
    shown = generated_part(item_id)
    if part is not None:
        assert shown == part
    else:
        assert shown.startswith("h") and len(shown) == 33 and shown != generated_part("other")


def test_an_item_whose_id_fails_becomes_a_failing_record() -> None:
    requests = requests_of()
    polled = requests.item({"n": 1}, 0, "u")
    with pytest.raises(ExpressionError, match="`id`"):
        poll_environment(polled.record, None, {"n": 1})
    fine = requests.item({"id": 7}, 1, "u")
    env = poll_environment(fine.record, None, {"id": 7})
    assert env == {
        "value": {"id": 7},
        "key": None,
        "headers": {URL_HEADER: "u"},
        "record": {"topic": "poll:feed", "partition": 0, "offset": 1, "timestamp": None},
    }
    assert fine.id == "7"


def test_lhpipe_test_gives_a_polled_item_the_id_the_poller_would(tmp_path: Any) -> None:
    import io

    from lhpipe.commands.test import run_test

    path = tmp_path / "t.lhp"
    path.write_text(
        FEED.replace("to log", 'run_wf "onboard" { variables { n = value.n } }')
        + """
test "items start a WfRun named after their id" {
  pipeline = feed
  given { value = { id = "item-7", n = 7 } }
  expect run_wf "onboard" { id = "feed-item-7"  variables { n = 7 } }
}

test "an item without an id fails" {
  pipeline = feed
  given { value = { n = 7 } }
  expect nothing
}
""",
        encoding="utf-8",
    )
    out = io.StringIO()
    code = run_test([str(path)], stdout=out, stderr=io.StringIO())
    report = out.getvalue()
    assert code == 1, report
    assert "PASS items start a WfRun named after their id" in report
    assert "FAIL an item without an id fails" in report
    assert "`id`" in report


def test_an_empty_cursor_keeps_the_last_one_and_known_items_do_not_hurry() -> None:
    """The last page says ``next: ""``: the poller keeps its cursor; a feed that sends it back
    to the first page (all known items) waits ``every`` instead of looping."""
    asked: list[str] = []

    def wrapping(request: httpx.Request) -> httpx.Response:
        after = request.url.params.get("after") or "0"
        asked.append(after)
        if after == "0":
            return httpx.Response(200, json={"items": [{"id": "a"}], "next": "1"})
        if after == "1":
            return httpx.Response(200, json={"items": [{"id": "b"}], "next": ""})
        return httpx.Response(200, json={"items": [{"id": "a"}], "next": "1"})

    sink, store = Sink(), Store()

    async def scenario() -> None:
        poll = source(wrapping, store, sink, text=FEED.replace("100ms", "10s"))
        poll.start()
        await until(lambda: len(sink.records) == 2, "two items")
        await until(lambda: poll.waits == 1, "the wait for the next tick")
        await poll.stop(sink.tracker.committable)

    asyncio.run(scenario())
    # "" kept cursor "1": the next tick (10 s away) would ask after=1 again, not the start.
    assert asked == ["0", "1"]


def test_a_cursor_that_wraps_around_to_known_items_waits_for_the_next_tick() -> None:
    pages = {
        "0": {"items": [{"id": "a"}], "next": "1"},
        "1": {"items": [{"id": "b"}], "next": "wrap"},
        "wrap": {"items": [{"id": "a"}], "next": "1"},
    }
    asked: list[str] = []

    def wrapping(request: httpx.Request) -> httpx.Response:
        after = request.url.params.get("after") or "0"
        asked.append(after)
        if len(asked) > 5:  # a loop of requests: a failure ends it, and the test with it
            return httpx.Response(503)
        return httpx.Response(200, json=pages[after])

    sink, store = Sink(), Store()

    async def scenario() -> None:
        poll = source(wrapping, store, sink, text=FEED.replace("100ms", "10s"))
        poll.start()
        await until(lambda: poll.waits == 1, "the wait for the next tick")
        await poll.stop(sink.tracker.committable)

    asyncio.run(scenario())
    assert asked == ["0", "1", "wrap"]
    assert len(sink.records) == 2


def test_source_parts_read_the_settings_and_decode_items_as_json() -> None:
    from lhpipe.kinds import compile_program
    from lhpipe.runtime.kind import PipelineNotRunnable
    from lhpipe.settings import Settings
    from lhpipe.sources.poll import SOURCE

    source_parts = SOURCE.parts

    prog = program()
    spec = compile_program(prog, Settings(environ={})).pipelines["feed"]

    class Clients:
        def kafka_producer(self) -> Any:
            return object()

        def schema_registry(self) -> Any:
            raise AssertionError("a poll source needs no registry")

        def sender(self, kind: Any) -> Any:
            raise AssertionError("no sender")

    parts = source_parts(spec, prog, Settings(environ={}), Clients())
    assert parts.decoder.decode_value(b'{"id": "a"}') == {"id": "a"}
    assert not parts.decoder.is_avro
    for bad in ("many", "-1"):
        with pytest.raises(PipelineNotRunnable, match="LHPIPE_POLL_DEDUPE_WINDOW"):
            source_parts(
                spec, prog, Settings(environ={"LHPIPE_POLL_DEDUPE_WINDOW": bad}), Clients()
            )


def test_header_values_that_are_null_are_left_out() -> None:
    text = FEED.replace(
        'headers { authorization = "Bearer t0ken" }',
        "headers { authorization = null  x_count = 3 }",
    )
    assert requests_of(text).headers() == {"x_count": "3"}

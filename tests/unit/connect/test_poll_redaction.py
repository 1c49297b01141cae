"""`from poll`: a URL's credentials never reach /readyz's detail or the log (issue 12, item 3)."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from test_poll import FEED, Feed, Sink, Store, source
from waiting import until

from lhpipe.sources.poll_source import PollSource

SECRET_FEED = FEED.replace(
    "http://feed.test/items?after=", "http://bot:PW9@feed.test/items?key=K3Y&after="
)


@pytest.mark.parametrize(
    "failure", [503, httpx.ConnectError("cannot reach http://bot:PW9@feed.test/?key=K3Y")]
)
def test_a_failed_poll_names_its_url_redacted(
    failure: int | Exception, caplog: pytest.LogCaptureFixture
) -> None:
    feed, store, sink = Feed(total=5), Store(), Sink()
    feed.failures = [failure]
    errors: list[str | None] = []
    poll_ref: list[PollSource] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if len(feed.requests) == 1:
            errors.append(poll_ref[0].error)
        return feed(request)

    async def scenario() -> None:
        poll = source(handler, store, sink, text=SECRET_FEED)
        poll_ref.append(poll)
        poll.start()
        await until(lambda: len(sink.records) == 5, "the items after the retry")
        await poll.stop(sink.tracker.committable)

    with caplog.at_level(logging.INFO, logger="lhpipe.sources.poll_source"):
        asyncio.run(scenario())
    [why] = errors
    assert why is not None and "GET http://***@feed.test/items?key=***&after=***" in why
    for text in (why, caplog.text):
        assert "PW9" not in text and "K3Y" not in text, text

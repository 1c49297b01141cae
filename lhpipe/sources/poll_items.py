"""The pure part of `from poll`: the request a cursor gives, the items an answer holds, and
the record each item becomes. No I/O here (:mod:`lhpipe.sources.poll_source` polls).

* **URL.** The source's URL is rendered for each request with the current ``cursor`` in
  scope. An interpolated value is percent-encoded (it is a value inside a URL: an opaque
  cursor such as ``a+b/c==`` must reach the server as written), and a null one, the cursor
  before the first answer, renders as nothing (``?after=${cursor}`` asks ``?after=``).
* **Items.** ``items`` (over ``response``, the answer's JSON, also named ``value`` and
  ``body``) gives the list of items; null
  means none. Without ``items``, an answer that is a list is the list of items, and any other
  answer is one item.
* **Cursor.** ``cursor`` (over ``response``) gives the next cursor; null or ``""`` (or no
  ``cursor`` key) keeps the one there is, so the end of a feed never sends the poller back to
  its start.
* **Identity.** Each item has a dedupe id: the ``id`` expression (over ``item``, also named
  ``value``) rendered as text, or without ``id`` the SHA-256 of the item's canonical JSON
  (keys sorted), so an item seen again is recognised. The record's origin
  (:class:`PollOrigin`) carries it, so generated ids (``run_wf`` without ``id``, ``post_event``
  guids) are ``<pipeline>-<item id>``: the same item gives the same WfRun id in every run. An
  id that is not already a valid lower-case LittleHorse id (``ABC``, ``a/b``, ``user_1``, or
  longer than 64 characters) stands as ``h`` and 32 hex digits of its SHA-256 there, so two
  different ids never share a generated id. An ``id`` expression that fails on an item (a
  missing field, a null) makes that item a failing record: the pipeline's error policy
  handles it like any expression error.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson

from lhpipe.check.program import PipelineInfo, Program
from lhpipe.check.rules import WF_RUN_ID
from lhpipe.core.errors import ExpressionError, PermanentError
from lhpipe.core.evaluate import (
    Evaluator,
    compile_expr,
    describe,
    json_text,
    render_text,
    to_text,
)
from lhpipe.core.planning import normalise_id
from lhpipe.core.record import KafkaOrigin, Record
from lhpipe.syntax import ast

#: The "topic" of a poll pipeline's records: ``poll:<pipeline>`` (partition 0, offsets are the
#: items' sequence numbers in this run). Dead letters carry it as ``lhpipe.source.topic``.
POLL_TOPIC_PREFIX = "poll:"
#: The header every record carries: the URL its page was read from.
URL_HEADER = "lhpipe.poll.url"
MAX_READABLE_ID = 64


@dataclass(slots=True, unsafe_hash=True)
class PollOrigin(KafkaOrigin):
    """Where a polled item came from: a sequence number under ``poll:<pipeline>`` for the
    runner's contiguous commits, and the item's id for generated ids. ``problem`` is why
    its id could not be read (the record then fails in the pipeline)."""

    item: str = ""
    problem: str | None = None

    def coordinates(self) -> str:
        """The item's id as generated ids use it (see the module docstring)."""
        return self.item


@dataclass(frozen=True, slots=True)
class PollPage:
    """One answer, read: its items and the cursor for the next request (``None``: keep)."""

    items: list[Any]
    cursor: Any


@dataclass(frozen=True, slots=True)
class PolledItem:
    """One item ready to go: its dedupe id and its record."""

    id: str
    record: Record


class PollRequests:
    """A ``from poll`` source, compiled: URLs, request headers, pages and items."""

    def __init__(self, pipeline: PipelineInfo, program: Program) -> None:
        source = pipeline.source
        self.pipeline = pipeline.name
        self.topic = POLL_TOPIC_PREFIX + pipeline.name
        arg = source.decl.arg
        if not isinstance(arg, ast.StringLit):
            raise PermanentError("`from poll` needs a URL", code="POLL_URL")
        self._url_parts: list[str | Evaluator] = [
            part if isinstance(part, str) else compile_expr(part, program) for part in arg.parts
        ]
        self.url_template = source.url or _written(arg)
        self.every_seconds = (source.every_ms or 60_000) / 1000
        settings = source.settings
        self._items = _compiled(settings.get("items"), program)
        self._cursor = _compiled(settings.get("cursor"), program)
        self._id = _compiled(settings.get("id"), program)
        self.has_cursor = self._cursor is not None
        self._headers = {
            name: compile_expr(expr, program) for name, expr in (source.headers or {}).items()
        }

    def url(self, cursor: Any) -> str:
        """The URL to ask with ``cursor`` (``None`` before the first answer)."""
        env = {"cursor": cursor}
        pieces = []
        for part in self._url_parts:
            if isinstance(part, str):
                pieces.append(part)
                continue
            value = part(env)
            if value is None:
                continue
            text = render_text(value)
            pieces.append(quote(to_text(value) if text is None else text, safe=""))
        return "".join(pieces)

    def headers(self) -> dict[str, str]:
        """The request headers (a null value leaves its header out)."""
        result = {}
        for name, evaluate in self._headers.items():
            value = evaluate({})
            if value is not None:
                result[name] = to_text(value)
        return result

    def page(self, response: Any) -> PollPage:
        """The items and next cursor of an answer's JSON; :class:`ExpressionError` when
        ``items`` or ``cursor`` fails or ``items`` is not a list."""
        env = {"response": response, "value": response, "body": response}
        if self._items is None:
            items = response if isinstance(response, list) else [response]
        else:
            found = self._items(env)
            if found is None:
                items = []
            elif isinstance(found, list):
                items = found
            else:
                raise ExpressionError(f"`items` must give a list, found {describe(found)}")
        cursor = None if self._cursor is None else self._cursor(env)
        return PollPage(items, cursor)

    def item(
        self, item: Any, sequence: int, url: str, timestamp_ms: int | None = None
    ) -> PolledItem:
        """The record of one item, ``sequence`` its offset under ``poll:<pipeline>``,
        ``timestamp_ms`` when its answer arrived (``record.timestamp``)."""
        value = json_text(item).encode("utf-8")
        problem = None
        if self._id is None:
            item_id = _digest(orjson.dumps(item, option=orjson.OPT_SORT_KEYS))
        else:
            try:
                found = self._id({"item": item, "value": item})
                if found is None:
                    raise ExpressionError("the item's `id` is null")
                item_id = to_text(found)
            except ExpressionError as exc:
                problem = f"`id`: {exc}"
                item_id = _digest(value)
        origin = PollOrigin(self.topic, 0, sequence, generated_part(item_id), problem)
        record = Record(
            origin=origin,
            key=None,
            value=value,
            headers=((URL_HEADER, url.encode("utf-8")),),
            timestamp_ms=timestamp_ms,
        )
        return PolledItem(item_id, record)


def poll_environment(record: Record, key: Any, value: Any) -> dict[str, Any]:
    """The names a polled record's expressions start with: ``value`` (the item), ``key``
    (null), ``headers`` (``lhpipe.poll.url``) and ``record`` (``poll:<pipeline>``, its
    sequence, when its answer arrived). An item whose ``id`` failed fails here."""
    from lhpipe.core.steps import record_env

    origin = record.origin
    if isinstance(origin, PollOrigin) and origin.problem is not None:
        raise ExpressionError(origin.problem)
    return record_env(record, key, value)


def generated_part(item_id: str) -> str:
    """How an item id appears in generated ids: as it is when it is a valid lower-case
    LittleHorse id of at most 64 characters, else ``h`` + 32 hex digits of its SHA-256."""
    if (
        len(item_id) <= MAX_READABLE_ID
        and WF_RUN_ID.fullmatch(item_id) is not None
        and normalise_id(item_id) == item_id
    ):
        return item_id
    return "h" + _digest(item_id.encode("utf-8"))


def _written(literal: ast.StringLit) -> str:
    from lhpipe.syntax.formatter import format_expr

    return "".join(p if isinstance(p, str) else "${" + format_expr(p) + "}" for p in literal.parts)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def _compiled(expr: ast.Expr | None, program: Program) -> Evaluator | None:
    return None if expr is None else compile_expr(expr, program)


def given_origin(pipeline: PipelineInfo, program: Program, value: Any) -> PollOrigin:
    """The origin ``lhpipe test`` gives a ``given`` value of a poll pipeline: the item's id
    as the poller would read it, sequence 0."""
    origin = PollRequests(pipeline, program).item(value, 0, "").record.origin
    assert isinstance(origin, PollOrigin)
    return origin

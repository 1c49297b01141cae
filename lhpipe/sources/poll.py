"""``from poll "url" { every = ... items = ... cursor = ... id = ... headers { ... } }``: an
HTTP JSON endpoint asked every ``every``, each item of ``items`` a record, the ``cursor``
carried from page to page, items with an ``id`` seen before dropped. One process of a group
polls (it holds the pipeline's lease). The polling itself is :mod:`lhpipe.sources.poll_source`
(its pure part :mod:`lhpipe.sources.poll_items`, its durable state
:mod:`lhpipe.sources.poll_state`), loaded when a pipeline runs."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from lhpipe.check import types as t
from lhpipe.check.blocks import spec
from lhpipe.check.kinds import Entries, SourceCheck
from lhpipe.check.names import EMPTY_SCOPE, Binding, Scope
from lhpipe.check.program import PipelineInfo, Program, SourceInfo
from lhpipe.core.errors import ExpressionError
from lhpipe.graph.compile import poll_url
from lhpipe.graph.kinds import KAFKA_SETTINGS, GraphBuilder, SourceGraph
from lhpipe.graph.model import Node, NodeKind
from lhpipe.runtime.kind import Given, PipelineNotRunnable, SourceDef, SourceParts
from lhpipe.settings import Settings
from lhpipe.syntax import ast

if TYPE_CHECKING:
    from lhpipe.check.context import CheckContext
    from lhpipe.graph.model import PipelineSpec
    from lhpipe.runtime.kind import Clients
    from lhpipe.runtime.runner import PipelineRunner

#: The compacted topic of every poll source's cursor, ETag and dedupe window.
STATE_TOPIC_SETTING = "LHPIPE_POLL_STATE_TOPIC"
DEFAULT_STATE_TOPIC = "lhpipe_poll_state"
#: How many item ids the dedupe window keeps.
DEDUPE_WINDOW_SETTING = "LHPIPE_POLL_DEDUPE_WINDOW"


def state_topic(settings: Settings) -> str:
    """The poll state topic: ``LHPIPE_POLL_STATE_TOPIC``, else ``lhpipe_poll_state``."""
    return settings.get(STATE_TOPIC_SETTING) or DEFAULT_STATE_TOPIC


def _check(ctx: CheckContext, info: SourceInfo, found: Entries) -> SourceInfo:
    arg = info.decl.arg
    url = None
    if isinstance(arg, ast.StringLit):
        cursor_scope = Scope({"cursor": Binding(t.JSON)})
        ctx.exprs.check(arg, cursor_scope)
        url = ctx.url(arg)
    if "every" not in found:
        ctx.report("LHP108", info.decl.span, "`from poll` needs `every`", "e.g. `every = 1m`")
    every_expr = ctx.setting(found, "every")
    every = ctx.duration(every_expr, "`every`", "LHP409") if every_expr else None
    # The answer's JSON: `response`, also `value` (the name every source's expressions
    # know) and `body` (an HTTP answer's body).
    response_scope = Scope(
        {"response": Binding(t.JSON), "value": Binding(t.JSON), "body": Binding(t.JSON)}
    )
    for key in ("items", "cursor"):
        expr = ctx.setting(found, key)
        if expr is not None:
            ctx.exprs.check(expr, response_scope)
    id_expr = ctx.setting(found, "id")
    if id_expr is not None:
        # One item of `items`: `item`, or `value` as the pipeline will call it.
        item_scope = Scope({"item": Binding(t.JSON), "value": Binding(t.JSON)})
        id_type = ctx.exprs.check(id_expr, item_scope)
        if not t.is_scalar(id_type):
            ctx.report(
                "LHP201",
                id_expr.span,
                f"an item's `id` must be text or a number, found `{id_type}`",
            )
    headers = None
    if "headers" in found:
        headers = ctx.header_map(found["headers"], EMPTY_SCOPE, http=True)
    # A polled item is a record of `poll:<pipeline>` (poll_items.PollOrigin); no group.
    return replace(info, group=None, url=url, every_ms=every, headers=headers)


def _upstream(graph: GraphBuilder, source: SourceInfo) -> str | None:
    url = poll_url(source)
    if url is None:
        return None
    return graph.node(
        Node(f"external:poll:{url}", NodeKind.EXTERNAL, f"GET {url}", attrs={"url": url})
    )


def _settings(source: SourceInfo, program: Program) -> tuple[str, ...]:
    return (*KAFKA_SETTINGS, STATE_TOPIC_SETTING, DEDUPE_WINDOW_SETTING)


def _given(pipeline: PipelineInfo, program: Program, key: Any, value: Any) -> Given:
    """A polled item: the id its ``id`` gives (generated ids are ``<pipeline>-<item id>``)."""
    from lhpipe.sources.poll_items import given_origin

    origin = given_origin(pipeline, program, value)
    if origin.problem is not None:
        raise ExpressionError(origin.problem)
    return Given(origin, key, value)


def _parts(
    spec_: PipelineSpec, program: Program, settings: Settings, clients: Clients
) -> SourceParts:
    """A :class:`~lhpipe.sources.poll_source.PollSource` on the shared producer's state
    topic; JSON values."""
    from lhpipe.clients.kafka.ownership import Callback, Lease
    from lhpipe.core.decode import Decoder
    from lhpipe.sources.poll_items import PollRequests, poll_environment
    from lhpipe.sources.poll_source import DEFAULT_DEDUPE_WINDOW, PollSource
    from lhpipe.sources.poll_state import KafkaPollStateStore

    info = spec_.pipeline
    requests = PollRequests(info, program)
    window = settings.integer(
        DEDUPE_WINDOW_SETTING, DEFAULT_DEDUPE_WINDOW, error=PipelineNotRunnable
    )
    store = KafkaPollStateStore(settings, clients.kafka_producer(), state_topic(settings))

    def make_source(runner: PipelineRunner) -> PollSource:
        def lease(acquire: Callback, release: Callback) -> Lease:
            return Lease(settings, f"poll-{spec_.name}", acquire=acquire, release=release)

        return PollSource(
            requests,
            store,
            runner,
            dedupe_window=window,
            lease=lease,
            committable=runner.committable,
        )

    return SourceParts(
        decoder=Decoder(info.source, program),
        initial_env=poll_environment,
        make_source=make_source,
    )


SOURCE = SourceDef(
    kind=ast.SourceKind("poll"),
    check=SourceCheck(spec("`from poll`", "every items cursor id", "headers"), _check),
    graph=SourceGraph(
        label=lambda source: f'from poll "{poll_url(source)}"',
        upstream=_upstream,
        settings=_settings,
    ),
    parts=_parts,
    given=_given,
)

"""``from webhook NAME``: the requests of a declared webhook. In topic mode (the webhook has a
``topic``) the pipeline reads that topic like ``from topic``, values decoded as the webhook's
``body``; in direct mode the Gateway runs the pipeline inside each request (see
:mod:`lhpipe.gateway.route`), and the source has no Kafka record."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from lhpipe.check import types as t
from lhpipe.check.blocks import spec
from lhpipe.check.kinds import Entries, SourceCheck
from lhpipe.check.program import PipelineInfo, Program, SourceInfo
from lhpipe.core.record import WebhookOrigin
from lhpipe.graph.kinds import KAFKA_SETTINGS, GraphBuilder, SourceGraph
from lhpipe.runtime.kind import Given, SourceDef, kafka_given
from lhpipe.sources._kafka import kafka_parts
from lhpipe.syntax import ast

if TYPE_CHECKING:
    from lhpipe.check.context import CheckContext


def _check(ctx: CheckContext, info: SourceInfo, found: Entries) -> SourceInfo:
    arg = info.decl.arg
    assert isinstance(arg, ast.Ident)
    webhook = ctx.reference(arg, ctx.webhooks, "LHP104", "webhook", ast.WebhookDecl)
    if webhook is None:
        return replace(info, webhook=arg.name, value_type=t.UNKNOWN)
    return replace(
        info,
        webhook=webhook.name,
        topic=webhook.topic,
        group=info.group if webhook.topic else None,
        value=webhook.body,
        value_type=webhook.body_type,
    )


def _has_record(ctx: CheckContext, info: SourceInfo) -> bool:
    webhook = ctx.webhooks.get(info.webhook) if info.webhook else None
    return not (webhook is not None and webhook.direct)


def _label(source: SourceInfo) -> str:
    return f"from webhook {source.webhook}\nvalue {source.value}"


def _upstream(graph: GraphBuilder, source: SourceInfo) -> str | None:
    if source.webhook is None:
        return None
    webhook = graph.program.webhooks[source.webhook]
    upstream = graph.webhook_node(webhook)
    if webhook.topic is not None:
        upstream = graph.topic(webhook.topic)
    return upstream


def _settings(source: SourceInfo, program: Program) -> tuple[str, ...]:
    return KAFKA_SETTINGS if source.topic is not None else ()


def _reads(source: SourceInfo, program: Program) -> object:
    webhook = program.webhooks.get(source.webhook or "")
    if webhook is None:
        return None
    return ("webhook", webhook.name, webhook.topic, webhook.body)


def _given(pipeline: PipelineInfo, program: Program, key: Any, value: Any) -> Given:
    """A direct-mode webhook's test record is a request with the webhook id ``test``."""
    webhook = program.webhooks.get(pipeline.source.webhook or "")
    if webhook is not None and webhook.direct:
        return Given(WebhookOrigin(webhook.name, "test"), key, value, request=webhook)
    return kafka_given(pipeline, program, key, value)


SOURCE = SourceDef(
    kind=ast.SourceKind("webhook"),
    check=SourceCheck(
        spec("`from webhook`"),
        _check,
        has_record=_has_record,
        words=lambda source: "direct-mode webhook",
    ),
    graph=SourceGraph(label=_label, upstream=_upstream, settings=_settings, reads=_reads),
    parts=lambda spec_, program, settings, clients: kafka_parts(spec_, program, settings),
    given=_given,
)

"""The names that pipeline and webhook expressions see, and their types.

Pipeline expressions see:

* ``value``: the record's value, typed by the source (``from topic``'s ``value =``, the
  webhook's ``body``, ``json`` for ``poll``, ``connector`` and ``lh_output``);
* ``key``: the record key (``string``, or ``json`` with ``key = json``);
* ``headers``: ``map<string>`` (Kafka headers decoded as UTF-8, or the HTTP request headers of
  a direct-mode webhook);
* ``record``: ``{topic: string, partition: int, offset: long, timestamp: timestamp}``, the
  Kafka coordinates; not available where there is no Kafka record (``poll``, direct-mode
  webhooks);
* ``event``: only for ``from lh_output``, the decoded LittleHorse output-topic record, see
  :data:`EVENT`;
* the ``let`` names, each visible after its definition.

Webhook expressions (``key =``) see ``body`` (typed by ``body =``), ``headers`` and ``query``
(``map<string>``), ``claims`` (``json``, the verified token's claims; only with
``auth = oauth``) and ``request`` (``{id: string}``, the webhook id of delivery.md).
"""

from __future__ import annotations

from typing import Final

from lhpipe.check import types as t
from lhpipe.check.names import Binding, Scope
from lhpipe.check.types import Type
from lhpipe.check.words import a

#: ``record``: where a Kafka record came from.
RECORD: Final = t.RecordType(
    "record",
    {"topic": t.STRING, "partition": t.INT, "offset": t.LONG, "timestamp": t.TIMESTAMP},
)

#: ``request`` in webhook expressions.
REQUEST: Final = t.RecordType("request", {"id": t.STRING})

#: The LittleHorse output-topic record kinds that ``from lh_output { kinds = [...] }`` selects.
LH_OUTPUT_KINDS: Final = (
    "wf_run",
    "task_run",
    "variable",
    "external_event",
    "user_task_run",
    "workflow_event",
)

_WF_SPEC: Final = t.RecordType(
    "wf_spec", {"name": t.STRING, "major_version": t.INT, "revision": t.INT}
)

#: ``event`` in an ``lh_output`` pipeline: one LittleHorse ``OutputTopicRecord``.
#:
#: * ``kind``: which of :data:`LH_OUTPUT_KINDS` it is;
#: * ``wf_run_id``, ``wf_spec {name major_version revision}``: the WfRun it belongs to
#:   (``wf_spec`` is null when no record read so far named the WfRun's WfSpec);
#: * ``status``: the new status for ``wf_run`` (``"RUNNING"``, ``"COMPLETED"``, ``"ERROR"``,
#:   ...), ``task_run`` (``"TASK_SUCCESS"``, ...) and ``user_task_run`` (``"DONE"``, ...),
#:   else null;
#: * ``variable {name value}``: for ``variable``, the variable and its new value;
#: * ``variables``: the WfRun's PUBLIC variables, each with the latest value read so far;
#: * ``task {name attempt output}``: for ``task_run``, the TaskDef, attempt number and output;
#: * ``external_event {name guid content}``: for ``external_event``;
#: * ``workflow_event {name content}``: for ``workflow_event``;
#: * ``user_task {name user_id user_group}``: for ``user_task_run``;
#: * ``start_time``, ``end_time``: the WfRun's (``wf_run``) or the last attempt's
#:   (``task_run``), else null;
#: * ``timestamp``: when it happened; ``payload``: the whole record as protobuf JSON, for
#:   anything not listed here.
#:
#: See ``docs/lh_output.md`` and :mod:`lhpipe.sources.lh_output_reader`.
EVENT: Final = t.RecordType(
    "event",
    {
        "kind": t.STRING,
        "wf_run_id": t.STRING,
        "wf_spec": t.optional(_WF_SPEC),
        "status": t.optional(t.STRING),
        "variable": t.optional(t.RecordType("variable", {"name": t.STRING, "value": t.JSON})),
        "variables": t.MapType(t.JSON),
        "task": t.optional(
            t.RecordType("task", {"name": t.STRING, "attempt": t.INT, "output": t.JSON})
        ),
        "external_event": t.optional(
            t.RecordType("external_event", {"name": t.STRING, "guid": t.STRING, "content": t.JSON})
        ),
        "workflow_event": t.optional(
            t.RecordType("workflow_event", {"name": t.STRING, "content": t.JSON})
        ),
        "user_task": t.optional(
            t.RecordType(
                "user_task",
                {
                    "name": t.STRING,
                    "user_id": t.optional(t.STRING),
                    "user_group": t.optional(t.STRING),
                },
            )
        ),
        "start_time": t.optional(t.TIMESTAMP),
        "end_time": t.optional(t.TIMESTAMP),
        "timestamp": t.TIMESTAMP,
        "payload": t.JSON,
    },
)

HEADERS: Final = t.MapType(t.STRING)


def pipeline_scope(value: Type, key: Type, *, has_record: bool, source: str, event: bool) -> Scope:
    """The names a pipeline's expressions see before any ``let``; ``source`` names the
    source kind in messages."""
    names = {
        "value": Binding(value),
        "key": Binding(key),
        "headers": Binding(HEADERS),
        "record": Binding(RECORD)
        if has_record
        else Binding(
            t.UNKNOWN,
            f"`record` is not available: {a(source)} source has no Kafka record",
        ),
        "event": Binding(EVENT)
        if event
        else Binding(t.UNKNOWN, "`event` is only available in pipelines `from lh_output`"),
    }
    return Scope(names)


def webhook_scope(body: Type, *, oauth: bool) -> Scope:
    """The names a webhook's expressions see."""
    return Scope(
        {
            "body": Binding(body),
            "headers": Binding(HEADERS),
            "query": Binding(t.MapType(t.STRING)),
            "claims": Binding(t.JSON)
            if oauth
            else Binding(
                t.UNKNOWN,
                "`claims` is only available with `auth = oauth { ... }`",
                code="LHP307",
            ),
            "request": Binding(REQUEST),
        }
    )

"""Planners: what each target would send for one record, derived exactly as delivery.md says.

:func:`compile_planner` compiles a target's expressions once into a :data:`Planner`, a pure
function ``(env, record) -> Plan`` (:mod:`lhpipe.core.plans`). A planner never performs I/O;
the senders of ``lhpipe.connect`` do. Errors are permanent: an
:class:`~lhpipe.core.errors.ExpressionError` from an expression, a
:class:`~lhpipe.core.errors.BadIdError` for an id LittleHorse would reject, a
:class:`~lhpipe.core.errors.PermanentError` for a value that cannot be a plan.

Ids and idempotency (delivery.md):

* ``run_wf`` id: ``id`` when written, else the ``wfRunId`` header, else the record key, else the
  generated ``<pipeline>-<topic>-<partition>-<offset>``. A key that is the record's webhook id
  (a webhook's default key) is made a valid id (:func:`webhook_id_as_id`): the webhook id plays
  the role of the record's position, so it is treated like a generated id.
* ``post_event`` guid: ``guid`` when written, else the ``guid`` header, else the generated id
  (never the key); ``wf_run_id``: written, else the ``wfRunId`` header, else the key (made a
  valid id like ``run_wf``'s when it is the record's webhook id). In a
  ``wf_run_id`` (and a ``run_wf`` ``parent``), ``a_b`` names child ``b`` of parent ``a``; the
  plan keeps the ``a_b`` text and every part is checked.
* ``correlate`` key: written, else the ``correlationId`` header, else the record key.
* Generated ids are lower-cased with ``_`` and ``.`` turned into ``-``. For a webhook delivery
  (direct mode, or a record the Gateway produced: its ``lhpipe.webhook.id`` header) the webhook
  id stands in for ``<topic>-<partition>-<offset>``, so a provider's retry of a delivery, which
  is a new record at a new offset, still gets the same id and guid (delivery.md); any other
  character an id does not allow becomes ``-`` too.
* Every id and guid is checked against LittleHorse 1.x's ``[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?``
  before any call. Correlation keys are not ids (LittleHorse takes any text): they must only
  be non-empty.

Decisions where the spec is silent: a written id that evaluates to null, and an empty header or
key, count as not given (the next default applies); a key used as an id must be a string. The
``wfRunId``, ``guid`` and ``correlationId`` headers of a webhook request run in direct mode
are not read: no auth kind signs a request's headers, so they
would let a replayed signed request choose its WfRun (docs/webhooks.md, "Headers that never
steer a request"); a setting that reads ``headers`` explicitly still can.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from lhpipe.check.program import PipelineInfo, Program, TargetInfo
from lhpipe.check.rules import WF_RUN_ID
from lhpipe.core.errors import BadIdError, ExpressionError, PermanentError
from lhpipe.core.evaluate import Evaluator, compile_expr, describe, render_text, to_text
from lhpipe.core.plans import (
    CorrelatePlan,
    FilePlan,
    HttpPlan,
    LogPlan,
    Plan,
    PostEventPlan,
    RunWfPlan,
    TopicPlan,
    TopicSchema,
)
from lhpipe.core.record import Record
from lhpipe.syntax import ast
from lhpipe.syntax.formatter import target_words

#: A compiled target: (the record's environment after the steps, the record) -> its plan.
Planner = Callable[[Mapping[str, Any], Record], Plan]

ID_RULE = "letters, digits and inner hyphens: [A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?"

_Optional = Evaluator | None


def compile_planner(target: TargetInfo, pipeline: PipelineInfo, program: Program) -> Planner:
    """Compile ``target`` of ``pipeline`` into a :data:`Planner`."""
    settings = {key: compile_expr(expr, program) for key, expr in target.settings.items()}
    builder = _BUILDERS[target.kind]
    return builder(_Target(target, pipeline, program, settings))


# ---------------------------------------------------------------------------------------------
# Ids
# ---------------------------------------------------------------------------------------------


_NOT_ID_CHARACTER: Final = re.compile(r"[^A-Za-z0-9-]")


def normalise_id(text: str) -> str:
    """A generated id as LittleHorse wants it: lower case, ``_`` and ``.`` turned into ``-``."""
    return text.lower().replace("_", "-").replace(".", "-")


def webhook_id_as_id(webhook_id: str) -> str:
    """A webhook id as a LittleHorse id: every character an id does not allow turned into
    ``-`` and leading and trailing ``-`` removed (``msg_2KWP`` → ``msg-2KWP``); ids of letters,
    digits and inner hyphens (UUIDs) stay as they are. An id with no letter or digit at all
    (an ``Idempotency-Key`` of ``***``) becomes ``h`` and 32 hex digits of its SHA-256."""
    safe = _NOT_ID_CHARACTER.sub("-", webhook_id).strip("-")
    if safe:
        return safe
    return "h" + hashlib.sha256(webhook_id.encode("utf-8")).hexdigest()[:32]


def generated_id(pipeline: str, record: Record) -> str:
    """``<pipeline>-<topic>-<partition>-<offset>``, or ``<pipeline>-<webhook id>`` for a
    webhook delivery, normalised."""
    webhook_id = record.webhook_id()
    if webhook_id is None:
        return normalise_id(f"{pipeline}-{record.origin.coordinates()}")
    return normalise_id(f"{pipeline}-{webhook_id_as_id(webhook_id)}")


def check_id(text: str, what: str, *, allow_parent: bool = False) -> str:
    """``text`` if LittleHorse 1.x accepts it as an id, else :class:`BadIdError` naming
    ``what`` (where the id came from). With ``allow_parent``, ``a_b`` (child ``b`` of ``a``)
    is accepted when each part is an id."""
    parts = text.split("_") if allow_parent else (text,)
    for part in parts:
        if WF_RUN_ID.fullmatch(part) is None:
            shown = f' (its part "{part}")' if len(parts) > 1 else ""
            raise BadIdError(f'{what} "{text}"{shown} is not a valid LittleHorse id: {ID_RULE}')
    return text


def _key_text(env: Mapping[str, Any], what: str) -> str | None:
    key = env.get("key")
    if key is None or key == "":
        return None
    if isinstance(key, str):
        return key
    raise PermanentError(
        f"{what}: the record key is {describe(key)}, not text: write the id explicitly",
        code="BAD_ID",
    )


def _header(record: Record, name: str) -> str | None:
    """A routing header (``wfRunId``, ``guid``, ``correlationId``); never one of a direct-mode
    webhook request's (:meth:`~lhpipe.core.record.Record.routing_header`)."""
    return record.routing_header(name)


class _Target:
    """What a builder needs: the target, its pipeline, and its compiled settings."""

    def __init__(
        self,
        target: TargetInfo,
        pipeline: PipelineInfo,
        program: Program,
        settings: Mapping[str, Evaluator],
    ) -> None:
        self.info = target
        self.pipeline = pipeline.name
        self.program = program
        self.settings = settings
        self.label = target_words(target.kind, target.name)

    def setting(self, key: str) -> _Optional:
        return self.settings.get(key)

    def map(self, entries: Mapping[str, ast.Expr] | None) -> tuple[tuple[str, Evaluator], ...]:
        return tuple(
            (name, compile_expr(expr, self.program)) for name, expr in (entries or {}).items()
        )


def _text(value: Any, label: str, key: str) -> str | None:
    """A written text setting (an id, a key); ``None`` when null."""
    if value is None or isinstance(value, str):
        return value
    raise ExpressionError(f"{label}: `{key}` must be a string, found {describe(value)}")


def _number(evaluate: _Optional, env: Mapping[str, Any], label: str, key: str) -> int | None:
    if evaluate is None:
        return None
    value = evaluate(env)
    if value is None:
        return None
    if type(value) is int and value >= 0:
        return value
    raise ExpressionError(
        f"{label}: `{key}` must be a whole number, 0 or more, found {describe(value)}"
    )


def _header_texts(
    entries: tuple[tuple[str, Evaluator], ...], env: Mapping[str, Any], label: str
) -> dict[str, str]:
    """Header values as text; a null value leaves the header out."""
    headers: dict[str, str] = {}
    for name, evaluate in entries:
        value = evaluate(env)
        if value is None:
            continue
        text = render_text(value)
        if text is None:
            raise ExpressionError(f"{label}: header `{name}` must be text, found {describe(value)}")
        headers[name] = text
    return headers


# ---------------------------------------------------------------------------------------------
# LittleHorse targets
# ---------------------------------------------------------------------------------------------


def _run_wf(target: _Target) -> Planner:
    wf_spec = target.info.name
    assert wf_spec is not None
    label = target.label
    pipeline = target.pipeline
    written_id = target.setting("id")
    parent = target.setting("parent")
    major_version = target.setting("major_version")
    revision = target.setting("revision")
    variables = target.map(target.info.variables) if target.info.variables is not None else None
    # Where an id came from, for the message of a bad one (formatted once, here).
    from_written = f"{label}: the written `id`"
    from_header = f"{label}: the wfRunId header"
    from_key = f"{label}: the record key"
    from_generated = f"{label}: the generated id"
    from_parent = f"{label}: `parent`"

    def plan(env: Mapping[str, Any], record: Record) -> Plan:
        wf_run_id = None if written_id is None else _text(written_id(env), label, "id")
        if wf_run_id is not None:
            check_id(wf_run_id, from_written)
        elif (wf_run_id := _header(record, "wfRunId")) is not None:
            check_id(wf_run_id, from_header)
        elif (wf_run_id := _key_text(env, label)) is not None:
            if wf_run_id == record.webhook_id():  # a webhook's default key
                wf_run_id = webhook_id_as_id(wf_run_id)
            check_id(wf_run_id, from_key)
        else:
            wf_run_id = check_id(generated_id(pipeline, record), from_generated)
        parent_id = None if parent is None else _text(parent(env), label, "parent")
        if parent_id is not None:
            check_id(parent_id, from_parent, allow_parent=True)
        return RunWfPlan(
            wf_spec,
            wf_run_id,
            {name: evaluate(env) for name, evaluate in variables}
            if variables is not None
            else _value_fields(env, label),
            _number(major_version, env, label, "major_version"),
            _number(revision, env, label, "revision"),
            parent_id,
        )

    return plan


def _value_fields(env: Mapping[str, Any], label: str) -> dict[str, Any]:
    """Without ``variables``: each top-level field of ``value`` is a variable (delivery.md);
    a null value gives none."""
    value = env.get("value")
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    raise PermanentError(
        f"{label} has no `variables`, so each top-level field of the value becomes a "
        f"variable, but the value is {describe(value)}: write `variables {{ ... }}`",
        code="NOT_A_RECORD",
    )


def _post_event(target: _Target) -> Planner:
    event_def = target.info.name
    assert event_def is not None
    label = target.label
    pipeline = target.pipeline
    written_wf_run_id = target.setting("wf_run_id")
    written_guid = target.setting("guid")
    content = target.setting("content")
    thread_run_number = target.setting("thread_run_number")
    node_run_position = target.setting("node_run_position")
    id_written = f"{label}: the written `wf_run_id`"
    id_header = f"{label}: the wfRunId header"
    id_key = f"{label}: the record key"
    guid_written = f"{label}: the written `guid`"
    guid_header = f"{label}: the guid header"
    guid_generated = f"{label}: the generated guid"

    def plan(env: Mapping[str, Any], record: Record) -> Plan:
        wf_run_id = (
            None if written_wf_run_id is None else _text(written_wf_run_id(env), label, "wf_run_id")
        )
        if wf_run_id is not None:
            check_id(wf_run_id, id_written, allow_parent=True)
        elif (wf_run_id := _header(record, "wfRunId")) is not None:
            check_id(wf_run_id, id_header, allow_parent=True)
        elif (wf_run_id := _key_text(env, label)) is not None:
            if wf_run_id == record.webhook_id():  # a webhook's default key, as for run_wf
                wf_run_id = webhook_id_as_id(wf_run_id)
            check_id(wf_run_id, id_key, allow_parent=True)
        else:
            raise PermanentError(
                f"{label}: no WfRun id: `wf_run_id` is not written, and the record has no "
                "wfRunId header and no key",
                code="BAD_ID",
            )
        guid = None if written_guid is None else _text(written_guid(env), label, "guid")
        if guid is not None:
            check_id(guid, guid_written)
        elif (guid := _header(record, "guid")) is not None:
            check_id(guid, guid_header)
        else:
            guid = check_id(generated_id(pipeline, record), guid_generated)
        return PostEventPlan(
            event_def,
            wf_run_id,
            guid,
            env.get("value") if content is None else content(env),
            _number(thread_run_number, env, label, "thread_run_number"),
            _number(node_run_position, env, label, "node_run_position"),
        )

    return plan


def _correlate(target: _Target) -> Planner:
    event_def = target.info.name
    assert event_def is not None
    label = target.label
    written_key = target.setting("key")
    content = target.setting("content")

    def plan(env: Mapping[str, Any], record: Record) -> Plan:
        key = None if written_key is None else _text(written_key(env), label, "key")
        if not key:
            key = _header(record, "correlationId") or _key_text(env, label)
        if not key:
            raise PermanentError(
                f"{label}: no correlation key: `key` is not written, and the record has no "
                "correlationId header and no key",
                code="BAD_ID",
            )
        return CorrelatePlan(
            external_event_def=event_def,
            key=key,
            content=env.get("value") if content is None else content(env),
        )

    return plan


# ---------------------------------------------------------------------------------------------
# Exports
# ---------------------------------------------------------------------------------------------


def _to_topic(target: _Target) -> Planner:
    topic = target.info.name
    assert topic is not None
    label = target.label
    written_key = target.setting("key")
    value = target.setting("value")
    headers = target.map(target.info.headers)
    schema = _topic_schema(target)

    def plan(env: Mapping[str, Any], record: Record) -> Plan:
        if written_key is not None:
            key = _topic_key(written_key(env), label)
        else:
            key = _forwarded_key(env.get("key"))
        return TopicPlan(
            topic=topic,
            key=key,
            value=env.get("value") if value is None else value(env),
            headers=_header_texts(headers, env, label),
            schema=schema,
        )

    return plan


def _topic_schema(target: _Target) -> TopicSchema | None:
    """The Avro schema of ``schema = NAME``: its Avro JSON, or its registry subject."""
    name = target.info.schema
    if name is None:
        return None
    info = target.program.schemas[name]
    return TopicSchema(name=name, avro=info.avro, subject=info.subject)


def _topic_key(key: Any, label: str) -> str | None:
    if key is None or isinstance(key, str):
        return key
    if isinstance(key, bytes):
        try:
            return key.decode("utf-8")
        except UnicodeDecodeError:
            pass
    raise ExpressionError(f"{label}: `key` must be text, found {describe(key)}")


def _forwarded_key(key: Any) -> str | None:
    """Without ``key``, the record's own key is kept (so is its per-key order downstream);
    a ``json`` key as its JSON text."""
    if key is None or isinstance(key, str):
        return key
    return to_text(key)


def _to_http(target: _Target) -> Planner:
    arg = target.info.decl.arg
    assert arg is not None
    url = compile_expr(arg, target.program)
    method = target.setting("method")
    body = target.setting("body")
    headers = target.map(target.info.headers)
    label = target.label

    def plan(env: Mapping[str, Any], record: Record) -> Plan:
        return HttpPlan(
            url=url(env),
            method="POST" if method is None else method(env),
            headers=_header_texts(headers, env, label),
            body=env.get("value") if body is None else body(env),
        )

    return plan


def _to_file(target: _Target) -> Planner:
    path = target.info.name
    assert path is not None
    value = target.setting("value")

    def plan(env: Mapping[str, Any], record: Record) -> Plan:
        return FilePlan(path=path, line=env.get("value") if value is None else value(env))

    return plan


def _to_log(target: _Target) -> Planner:
    value = target.setting("value")

    def plan(env: Mapping[str, Any], record: Record) -> Plan:
        return LogPlan(value=env.get("value") if value is None else value(env))

    return plan


_BUILDERS: Mapping[ast.TargetKind, Callable[[_Target], Planner]] = {
    ast.TargetKind.RUN_WF: _run_wf,
    ast.TargetKind.POST_EVENT: _post_event,
    ast.TargetKind.CORRELATE: _correlate,
    ast.TargetKind.TOPIC: _to_topic,
    ast.TargetKind.HTTP: _to_http,
    ast.TargetKind.FILE: _to_file,
    ast.TargetKind.LOG: _to_log,
}

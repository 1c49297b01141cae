"""What every planner shares: the ids of delivery.md, and the compiled settings of a target.

Each target kind (``lhpipe/targets/``) compiles its expressions once into a :data:`Planner`, a
pure function ``(env, record) -> Plan`` (:mod:`lhpipe.core.plans`), from a
:class:`PlannedTarget`. A planner never performs I/O; the
kinds' senders do. Errors are permanent: an
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
from lhpipe.core.evaluate import Evaluator, compile_expr, describe, render_text
from lhpipe.core.plans import (
    Plan,
)
from lhpipe.core.record import Record
from lhpipe.syntax import ast
from lhpipe.syntax.formatter import target_words

#: A compiled target: (the record's environment after the steps, the record) -> its plan.
Planner = Callable[[Mapping[str, Any], Record], Plan]

ID_RULE = "letters, digits and inner hyphens: [A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?"

OptionalEvaluator = Evaluator | None


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


def key_text(env: Mapping[str, Any], what: str) -> str | None:
    key = env.get("key")
    if key is None or key == "":
        return None
    if isinstance(key, str):
        return key
    raise PermanentError(
        f"{what}: the record key is {describe(key)}, not text: write the id explicitly",
        code="BAD_ID",
    )


def routing_header(record: Record, name: str) -> str | None:
    """A routing header (``wfRunId``, ``guid``, ``correlationId``); never one of a direct-mode
    webhook request's (:meth:`~lhpipe.core.record.Record.routing_header`)."""
    return record.routing_header(name)


class PlannedTarget:
    """What a target kind's planner is built from: the target, its pipeline's name, the
    program, and the target's settings compiled once; ``label`` names the target in messages
    (``run_wf "kyc"``)."""

    def __init__(self, target: TargetInfo, pipeline: PipelineInfo, program: Program) -> None:
        self.info = target
        self.pipeline = pipeline.name
        self.program = program
        self.settings: Mapping[str, Evaluator] = {
            key: compile_expr(expr, program) for key, expr in target.settings.items()
        }
        self.label = target_words(target.kind, target.name)

    def setting(self, key: str) -> OptionalEvaluator:
        return self.settings.get(key)

    def map(self, entries: Mapping[str, ast.Expr] | None) -> tuple[tuple[str, Evaluator], ...]:
        return tuple(
            (name, compile_expr(expr, self.program)) for name, expr in (entries or {}).items()
        )


def text_setting(value: Any, label: str, key: str) -> str | None:
    """A written text setting (an id, a key); ``None`` when null."""
    if value is None or isinstance(value, str):
        return value
    raise ExpressionError(f"{label}: `{key}` must be a string, found {describe(value)}")


def number_setting(
    evaluate: OptionalEvaluator, env: Mapping[str, Any], label: str, key: str
) -> int | None:
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


def header_texts(
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

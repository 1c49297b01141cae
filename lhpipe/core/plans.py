"""What a target would send for one record, as plain data.

A target is split in two: a pure *planner* (compiled once from the target's typed expressions;
given a record's evaluation environment it returns one of these plans, or raises a
:class:`~lhpipe.core.errors.PermanentError`) and a *sender* (made by the target's kind,
``lhpipe/targets/``) that performs the plan against LittleHorse, Kafka, HTTP or a file.
``lhpipe test`` runs the planners only and compares the plans with the ``expect`` blocks.

Values inside plans are plain Python values (``str``, ``int``, ``float``, ``bool``, ``bytes``,
``datetime``, ``list``, ``dict``, ``None``); the LittleHorse sender maps them to
``VariableValue`` and coerces them to the types the WfSpec or ExternalEventDef declares.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Plans are made once per record: they are slotted dataclasses, not frozen ones (a frozen
# dataclass's ``__init__`` sets each field through ``object.__setattr__``, five times the cost),
# hashable and compared by value, and never changed after they are made.


@dataclass(slots=True, unsafe_hash=True)
class RunWfPlan:
    """A ``RunWfRequest``. ``wf_run_id`` is already derived and checked (delivery.md);
    ``parent_wf_run_id`` is set for a child WfRun."""

    wf_spec: str
    wf_run_id: str
    variables: Mapping[str, Any]
    major_version: int | None = None
    revision: int | None = None
    parent_wf_run_id: str | None = None


@dataclass(slots=True, unsafe_hash=True)
class PostEventPlan:
    """A ``PutExternalEventRequest``; ``wf_run_id`` of the form ``parent_child`` names a
    child WfRun."""

    external_event_def: str
    wf_run_id: str
    guid: str
    content: Any
    thread_run_number: int | None = None
    node_run_position: int | None = None


@dataclass(slots=True, unsafe_hash=True)
class CorrelatePlan:
    """A ``PutCorrelatedEventRequest``: the first event with a key wins."""

    external_event_def: str
    key: str
    content: Any


@dataclass(slots=True, unsafe_hash=True)
class TopicPlan:
    """A record for ``to topic``: ``value`` is serialised by the sender (JSON, or Avro when
    the target names a schema)."""

    topic: str
    key: str | None
    value: Any
    headers: Mapping[str, str] = field(default_factory=dict)
    schema: TopicSchema | None = None


@dataclass(frozen=True, slots=True)
class TopicSchema:
    """The Avro schema a ``to topic`` target writes with (``schema = NAME``): the schema's
    Avro JSON (an inline or ``.avsc`` schema), or the registry subject it is read from."""

    name: str
    avro: Mapping[str, Any] | None = None
    subject: str | None = None


@dataclass(slots=True, unsafe_hash=True)
class HttpPlan:
    """A request for ``to http``; ``body`` is sent as JSON."""

    url: str
    method: str
    headers: Mapping[str, str]
    body: Any


@dataclass(slots=True, unsafe_hash=True)
class FilePlan:
    """One JSON line appended to ``path`` for ``to file``."""

    path: str
    line: Any


@dataclass(slots=True, unsafe_hash=True)
class LogPlan:
    """One structured log line for ``to log``."""

    value: Any


Plan = RunWfPlan | PostEventPlan | CorrelatePlan | TopicPlan | HttpPlan | FilePlan | LogPlan

"""``from lh_output``: LittleHorse's execution output topic as a pipeline source.

LittleHorse writes one ``OutputTopicRecord`` (raw protobuf) to ``<cluster>_<tenant>_execution``
for every change of a WfRun, TaskRun, PUBLIC variable, ExternalEvent, UserTaskRun and
WorkflowEvent, inside Kafka transactions: the consumer reads with
``isolation.level=read_committed`` so that records of aborted transactions are never seen. The
records of one WfRun share its id as key, so they sit in one partition in the order they
happened, and the runner handles records of one key strictly in order.

:class:`EventDecoder` turns each record into the ``event`` of
:data:`lhpipe.check.scopes.EVENT` (a dict; it is also the record's ``value``). A record
says only what changed, so the decoder remembers, per WfRun, what earlier records of the
partition told (:class:`WfRunMemory`): the WfSpec (a TaskRun record does not name it) and the
latest value of each PUBLIC variable, which becomes ``event.variables`` (a ``wf_run`` record
carries no variable values). The ``kinds`` and ``wf_spec`` filters are applied by the
pipeline's steps (:func:`lhpipe.core.steps.compile_steps`), so a record they leave out is
acknowledged like one a ``where`` drops.

The memory is in the process. So that a restart (which resumes at the group's committed
offset) does not forget the variables of WfRuns that are still running, :class:`OutputTopicSource`
first replays, when partitions are assigned, up to ``LHPIPE_LH_OUTPUT_LOOKBACK`` records (per
partition, default 10,000) before each committed offset into the memory, in the consumer
thread and before any record of those partitions reaches the runner.

The topic is ``LHPIPE_LH_OUTPUT_TOPIC`` when set, else
``<LHPIPE_LH_CLUSTER_ID>_<LHC_TENANT_ID>_execution`` (cluster id default ``lhpipe``, the local
stack's ``LHS_CLUSTER_ID``; tenant default ``default``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, KafkaError, TopicPartition
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message
from littlehorse.model import (
    LHStatus,
    OutputTopicRecord,
    TaskStatus,
    UserTaskRunStatus,
    VariableValue,
    WfRunId,
    WfSpecId,
)
from littlehorse.utils import extract_value

from lhpipe.check.scopes import LH_OUTPUT_KINDS
from lhpipe.clients.kafka.config import client_config
from lhpipe.clients.kafka.consumer import KafkaSource
from lhpipe.core.errors import DecodeError
from lhpipe.core.sink import KafkaRecordSink
from lhpipe.core.timestamps import timestamp_text

if TYPE_CHECKING:
    from google.protobuf.timestamp_pb2 import Timestamp

    from lhpipe.settings import Settings

log = logging.getLogger(__name__)

#: A replay that takes longer is cut short (with a warning): the rebalance must go on.
REPLAY_DEADLINE_SECONDS = 60.0

#: How many WfRuns :class:`WfRunMemory` keeps (least recently seen forgotten first).
MAX_REMEMBERED_WF_RUNS = 10_000

# The protobuf oneof names of the kinds `event` describes; other payloads (CorrelatedEvent,
# task checkpoints, anything newer) belong to no WfRun in the same way and are not passed on.
_KINDS = frozenset(LH_OUTPUT_KINDS)


# ---------------------------------------------------------------------------------------------
# What earlier records told about each WfRun
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _WfRunFacts:
    wf_spec: dict[str, Any] | None = None
    variables: dict[str, Any] = field(default_factory=dict)


class WfRunMemory:
    """Per WfRun id: its WfSpec and the latest value of each PUBLIC variable seen so far.

    Bounded: beyond ``limit`` WfRuns the least recently seen is forgotten; a replay raises the
    limit to hold every WfRun it reads (:meth:`make_room`: at most the lookback times the
    partitions assigned). It lives in the process: :class:`OutputTopicSource` refills it at
    each assignment from the records just before the committed offsets; older updates of a
    WfRun are missing from ``event.variables`` until they change again.
    """

    def __init__(self, limit: int = MAX_REMEMBERED_WF_RUNS) -> None:
        self._limit = limit
        self._runs: OrderedDict[str, _WfRunFacts] = OrderedDict()
        # The replay at assignment writes from the consumer thread while the loop may decode
        # records of other partitions: the two never share a WfRun, but they share the dict.
        self._lock = threading.Lock()

    def facts(self, wf_run_id: str) -> _WfRunFacts:
        runs = self._runs
        with self._lock:
            found = runs.get(wf_run_id)
            if found is None:
                found = runs[wf_run_id] = _WfRunFacts()
                if len(runs) > self._limit:
                    runs.popitem(last=False)
            else:
                runs.move_to_end(wf_run_id)
        return found

    def make_room(self, count: int) -> None:
        """Room for ``count`` more WfRuns besides those remembered now, so that a replay of
        ``count`` records never forgets what it replayed first (the records of several
        partitions interleave; a WfRun still running may be among the first)."""
        with self._lock:
            self._limit = max(self._limit, len(self._runs) + count)

    def __len__(self) -> int:
        return len(self._runs)


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------


class EventDecoder:
    """The :class:`~lhpipe.runtime.runner.RecordDecoder` of an ``lh_output`` source: the key is
    the WfRun id (text), the value an ``OutputTopicRecord`` turned into ``event``, or ``None``
    for a payload that is not one of :data:`~lhpipe.check.scopes.LH_OUTPUT_KINDS`."""

    is_avro = False

    def __init__(self, memory: WfRunMemory | None = None) -> None:
        self.memory = memory if memory is not None else WfRunMemory()

    def decode_key(self, raw: bytes | None) -> Any:
        if raw is None:
            return None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"the key is not UTF-8 text: {exc}") from None

    def decode_value(self, raw: bytes | None, writer_schema: Any = None) -> Any:
        if raw is None:
            return None
        try:
            record = OutputTopicRecord.FromString(raw)
        except ProtobufDecodeError as exc:
            raise DecodeError(f"the value is not a LittleHorse OutputTopicRecord: {exc}") from None
        return event_of(record, self.memory)


def event_of(record: OutputTopicRecord, memory: WfRunMemory) -> dict[str, Any] | None:
    """``record`` as ``event`` (see :data:`lhpipe.check.scopes.EVENT`), updating ``memory``
    with what it tells; ``None`` for a kind ``event`` does not describe."""
    kind = record.WhichOneof("payload")
    if kind not in _KINDS:
        return None
    payload = getattr(record, kind)
    event: dict[str, Any] = {
        "kind": kind,
        "wf_run_id": "",
        "wf_spec": None,
        "status": None,
        "variable": None,
        "task": None,
        "external_event": None,
        "workflow_event": None,
        "user_task": None,
        "variables": {},
        "start_time": None,
        "end_time": None,
        "timestamp": _time(record.timestamp),
        "payload": ProtobufJson(record),
    }
    wf_spec_id: WfSpecId | None = None
    if kind == "wf_run":
        wf_run_id = payload.id
        wf_spec_id = payload.wf_spec_id
        event["status"] = LHStatus.Name(payload.status)
        event["start_time"] = _time(payload.start_time)
        event["end_time"] = _time(payload.end_time) if payload.HasField("end_time") else None
    elif kind == "variable":
        wf_run_id = payload.id.wf_run_id
        wf_spec_id = payload.wf_spec_id if payload.HasField("wf_spec_id") else None
        event["variable"] = {"name": payload.id.name, "value": plain_value(payload.value)}
    elif kind == "task_run":
        wf_run_id = payload.id.wf_run_id
        event["status"] = TaskStatus.Name(payload.status)
        event["task"] = _task(payload)
        if payload.attempts:
            last = payload.attempts[-1]
            event["start_time"] = _time(last.start_time) if last.HasField("start_time") else None
            event["end_time"] = _time(last.end_time) if last.HasField("end_time") else None
    elif kind == "external_event":
        wf_run_id = payload.id.wf_run_id
        event["external_event"] = {
            "name": payload.id.external_event_def_id.name,
            "guid": payload.id.guid,
            "content": plain_value(payload.content),
        }
    elif kind == "user_task_run":
        wf_run_id = payload.id.wf_run_id
        event["status"] = UserTaskRunStatus.Name(payload.status)
        event["user_task"] = {
            "name": payload.user_task_def_id.name,
            "user_id": payload.user_id if payload.HasField("user_id") else None,
            "user_group": payload.user_group if payload.HasField("user_group") else None,
        }
    else:  # workflow_event
        wf_run_id = payload.id.wf_run_id
        event["workflow_event"] = {
            "name": payload.id.workflow_event_def_id.name,
            "content": plain_value(payload.content),
        }
    run_id = wf_run_id_text(wf_run_id)
    facts = memory.facts(run_id)
    if wf_spec_id is not None and wf_spec_id.name:
        facts.wf_spec = {
            "name": wf_spec_id.name,
            "major_version": wf_spec_id.major_version,
            "revision": wf_spec_id.revision,
        }
    if event["variable"] is not None:
        facts.variables[event["variable"]["name"]] = event["variable"]["value"]
    event["wf_run_id"] = run_id
    event["wf_spec"] = None if facts.wf_spec is None else dict(facts.wf_spec)
    # A copy: the record may still be in flight when a later update of the WfRun is decoded.
    event["variables"] = dict(facts.variables)
    return event


class ProtobufJson(Mapping[str, Any]):
    """A protobuf message as its canonical JSON object (``MessageToDict``), made on first
    read: turning a whole record into JSON costs several times more than the rest of its
    decoding, and most pipelines never read ``event.payload``. It is a read-only mapping, so
    expressions, comparisons and every JSON encoder of the engine take it like a dict.

    One change to the canonical form: its timestamps are written as lhpipe writes every
    timestamp (:mod:`lhpipe.core.timestamps`), not as protobuf does (no fraction for a whole second,
    else 3, 6 or 9 digits), so ``event.payload.timestamp`` is the very text of
    ``str(event.timestamp)``."""

    __slots__ = ("_json", "_message")

    def __init__(self, message: Message) -> None:
        self._message = message
        self._json: dict[str, Any] | None = None

    def _object(self) -> dict[str, Any]:
        if self._json is None:
            found = MessageToDict(self._message)
            _restamp(self._message, found)
            self._json = found
        return self._json

    def __getitem__(self, name: str) -> Any:
        return self._object()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._object())

    def __len__(self) -> int:
        return len(self._object())

    def __repr__(self) -> str:
        return repr(self._object())


_TIMESTAMP = "google.protobuf.Timestamp"
_WELL_KNOWN = "google.protobuf."

#: Per message type (full name): its fields that hold a ``Timestamp``, however deep, by JSON
#: key, as (attribute name, whether it is a map, the full name of the message it holds).
_PLANS: dict[str, dict[str, tuple[str, bool, str]]] = {}


def _restamp(message: Message, json_object: dict[str, Any]) -> None:
    """Rewrite in place every ``Timestamp`` of ``json_object``, which is
    ``MessageToDict(message)``, as :func:`~lhpipe.core.timestamps.timestamp_text` writes it.

    Walks the keys of the JSON (the fields that are set) and follows only those that can lead
    to a ``Timestamp`` (:func:`_plan`, worked out once per message type): a record sets a few
    fields, while its type has many that could hold a timestamp (each payload of the oneof).
    A field's key is its ``json_name`` (what ``MessageToDict`` writes by default); a repeated
    field's items and a map's values are in the same order in both (the JSON was made by
    iterating the same containers)."""
    plan = _PLANS.get(message.DESCRIPTOR.full_name)
    if plan is None:
        plan = _plan(message.DESCRIPTOR)
    for key, found in json_object.items():
        step = plan.get(key)
        if step is None:
            continue
        name, is_map, kind = step
        value = getattr(message, name)
        if is_map:
            # `MessageToDict` writes map keys as text: pair each value with its key by order.
            for json_key, item in zip(list(found), value.values(), strict=True):
                found[json_key] = _restamped(kind, item, found[json_key])
        elif isinstance(found, list):
            json_object[key] = [
                _restamped(kind, item, item_json)
                for item, item_json in zip(value, found, strict=True)
            ]
        else:
            json_object[key] = _restamped(kind, value, found)


def _restamped(kind: str, message: Any, found: Any) -> Any:
    """``found`` (the JSON of ``message``, of type ``kind``) with its timestamps rewritten."""
    if kind == _TIMESTAMP:
        return timestamp_text(_time(message))
    _restamp(message, found)
    return found


def _held(field: Any) -> tuple[Any, bool] | None:
    """The message type a field holds (a map's value type for a map) and whether it is a map;
    ``None`` for scalars and for well-known types other than ``Timestamp`` (wrappers,
    ``Struct``, ``Duration``... have JSON forms of their own and hold no ``Timestamp``)."""
    kind = field.message_type
    if kind is None:
        return None
    is_map = bool(kind.GetOptions().map_entry)
    if is_map:
        kind = kind.fields_by_name["value"].message_type
        if kind is None:
            return None
    if kind.full_name.startswith(_WELL_KNOWN) and kind.full_name != _TIMESTAMP:
        return None
    return kind, is_map


def _plan(root: Any) -> dict[str, tuple[str, bool, str]]:
    """Fill :data:`_PLANS` for ``root`` and every message type it can hold; ``root``'s plan."""
    reachable: dict[str, Any] = {}
    todo = [root]
    while todo:
        descriptor = todo.pop()
        if descriptor.full_name in reachable or descriptor.full_name == _TIMESTAMP:
            continue
        reachable[descriptor.full_name] = descriptor
        todo.extend(held[0] for held in map(_held, descriptor.fields) if held is not None)
    # Which types hold a Timestamp however deep: grown until it stops (types may nest in
    # cycles, so a depth-first answer could be cut short by a type still being looked at).
    holders = {_TIMESTAMP}
    grown = True
    while grown:
        grown = False
        for name, descriptor in reachable.items():
            if name not in holders and any(
                held is not None and held[0].full_name in holders
                for held in map(_held, descriptor.fields)
            ):
                holders.add(name)
                grown = True
    for name, descriptor in reachable.items():
        steps = {}
        for one in descriptor.fields:
            held = _held(one)
            if held is not None and held[0].full_name in holders:
                steps[one.json_name] = (one.name, held[1], held[0].full_name)
        _PLANS[name] = steps
    return _PLANS[root.full_name]


def _task(task_run: Any) -> dict[str, Any]:
    output = None
    if task_run.attempts:
        last = task_run.attempts[-1]
        if last.HasField("output"):
            output = plain_value(last.output)
    return {
        "name": task_run.task_def_id.name,
        "attempt": len(task_run.attempts),
        "output": output,
    }


def wf_run_id_text(wf_run_id: WfRunId) -> str:
    """A WfRun id as lhpipe writes ids: ``parent_child`` for a child WfRun
    (:func:`lhpipe.clients.lh_values.wf_run_id` reads it back)."""
    if wf_run_id.HasField("parent_wf_run_id"):
        return f"{wf_run_id_text(wf_run_id.parent_wf_run_id)}_{wf_run_id.id}"
    return str(wf_run_id.id)


def plain_value(value: VariableValue) -> Any:
    """A LittleHorse value as a JSON-friendly Python value: JSON_OBJ/JSON_ARR parsed, a
    timestamp as an aware UTC datetime, a WfRunId as its text, unset as ``None``."""
    which = value.WhichOneof("value")
    if which == "utc_timestamp":
        return _time(value.utc_timestamp)
    if which == "wf_run_id":
        return wf_run_id_text(value.wf_run_id)
    if which in ("json_obj", "json_arr"):
        text = getattr(value, which)
        try:
            return extract_value(value)
        except Exception:
            return text  # not valid JSON after all: the text as LittleHorse holds it
    return extract_value(value)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _time(stamp: Timestamp) -> datetime:
    # Exact to the microsecond, like Timestamp.ToDatetime, at a third of its cost.
    return _EPOCH + timedelta(seconds=stamp.seconds, microseconds=stamp.nanos // 1000)


# ---------------------------------------------------------------------------------------------
# The source
# ---------------------------------------------------------------------------------------------


class OutputTopicSource(KafkaSource):
    """The pipeline's read_committed consumer of the output topic; when partitions are
    assigned to it, it first replays the records just before the group's committed offsets
    into the decoder's :class:`WfRunMemory` (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        pipeline: str,
        topic: str,
        group: str,
        sink: KafkaRecordSink,
        memory: WfRunMemory,
        replay: int,
    ) -> None:
        super().__init__(
            settings,
            pipeline=pipeline,
            topic=topic,
            group=group,
            sink=sink,
            config={"isolation.level": "read_committed"},
        )
        self._settings = settings
        self._memory = memory
        self._replay = replay

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._replay > 0 and partitions:
            try:
                self._replay_before_committed(consumer, partitions)
            except Exception:  # a replay that fails costs only variables, never records
                log.exception("pipeline %s: replaying the output topic failed", self.pipeline)
        super()._on_assign(consumer, partitions)

    def _replay_before_committed(
        self, consumer: Consumer, partitions: list[TopicPartition]
    ) -> None:
        starts: dict[int, tuple[int, int]] = {}  # partition -> (first offset, committed offset)
        for tp in consumer.committed(partitions, timeout=10):
            if tp.offset < 0:
                continue  # no committed offset: the group reads from the start anyway
            low, _high = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
            first = max(low, tp.offset - self._replay)
            if first < tp.offset:
                starts[tp.partition] = (first, tp.offset)
        if not starts:
            return
        reader = Consumer(
            {
                **client_config(self._settings),
                "group.id": f"{self.group}-replay",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                "isolation.level": "read_committed",
                "client.id": f"lhpipe-{self.pipeline}-replay",
                "logger": logging.getLogger("lhpipe.kafka.consumer"),
            }
        )
        try:
            replayed = _replay(reader, self.topic, starts, self._memory)
        finally:
            reader.close()
        log.info(
            "pipeline %s: replayed %d output-topic record(s) before the committed offsets of %s",
            self.pipeline,
            replayed,
            ", ".join(f"{self.topic}[{p}]" for p in sorted(starts)),
        )


def _replay(
    reader: Consumer, topic: str, starts: Mapping[int, tuple[int, int]], memory: WfRunMemory
) -> int:
    """Read each partition from its first offset up to (not including) its committed one,
    updating ``memory``; returns how many records were read."""
    memory.make_room(sum(committed - first for first, committed in starts.values()))
    reader.assign([TopicPartition(topic, p, first) for p, (first, _) in starts.items()])
    pending = set(starts)
    replayed = 0
    deadline = time.monotonic() + REPLAY_DEADLINE_SECONDS
    while pending:
        if time.monotonic() > deadline:
            log.warning("replaying %s took too long; partitions %s not finished", topic, pending)
            return replayed
        for message in reader.consume(num_messages=500, timeout=0.5):
            partition = message.partition()
            if partition is None or partition not in pending:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(partition)
                continue
            offset = message.offset()
            if offset is None or offset >= starts[partition][1]:
                pending.discard(partition)
                continue
            value = message.value()
            if value is None:
                continue
            try:
                event_of(OutputTopicRecord.FromString(value), memory)
            except (ProtobufDecodeError, ValueError):
                continue  # the pipeline itself will dead-letter it when it reads it
            replayed += 1
        # Transaction markers take offsets too: the position may pass the committed offset
        # without a record at it.
        for tp in reader.position([TopicPartition(topic, p) for p in list(pending)]):
            if tp.offset >= starts[tp.partition][1]:
                pending.discard(tp.partition)
    return replayed

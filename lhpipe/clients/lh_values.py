"""Run-time values into LittleHorse ``VariableValue`` messages, typed as LittleHorse declares.

Plans carry plain Python values (:mod:`lhpipe.core.plans`). Where nothing is declared (an
ExternalEventDef without a content type), a value maps by its own type (delivery.md)::

    str → STR    int → INT    float → DOUBLE    bool → BOOL    bytes → BYTES
    datetime → UTC_TIMESTAMP    list → JSON_ARR    dict → JSON_OBJ    None → unset

Where the WfSpec variable or the ExternalEventDef content declares a type, the value is
*coerced* to it. The rules are conservative: a conversion happens only when it cannot lose or
invent information, anything else is a :class:`ConversionError` (permanent: the same record
would fail the same way every time).

========================  ===============================================================
declared type             accepted values
========================  ===============================================================
STR                       str; int, float, bool, Decimal, UUID as their text (``true``);
                          datetime as lhpipe writes every timestamp (:mod:`lhpipe.core.timestamps`:
                          ``2024-05-01T10:00:00.000Z``, cut to the millisecond like a
                          timestamp LittleHorse stores)
INT                       int; a float or Decimal without a fraction; a string of decimal
                          digits with an optional sign (``"42"``, not ``"4.2"``, ``"4e1"``
                          or ``" 42"``); within 64 bits
DOUBLE                    int, float, Decimal; a decimal number string (``"1.5"``, ``"-2e3"``)
BOOL                      bool; the strings ``"true"`` and ``"false"``
BYTES                     bytes; a str as its UTF-8 bytes
TIMESTAMP                 datetime (a naive one is UTC); an ISO-8601 string (no zone: UTC);
                          an int as milliseconds since the epoch (Avro ``timestamp-millis``)
JSON_OBJ / JSON_ARR       a dict / a list; a str holding a JSON object / array
WF_RUN_ID                 a str, ``a_b`` naming child ``b`` of parent ``a``
a StructDef               a dict with the StructDef's fields, each coerced to its field type;
                          a missing or null field is allowed only when the field is nullable
                          or has a default; a field the StructDef does not have is an error
========================  ===============================================================

``None`` is an unset ``VariableValue`` whatever the declared type. Booleans never count as
numbers. Nested values inside JSON_OBJ/JSON_ARR are written as every export writes them
(:mod:`lhpipe.core.jsonenc`: datetimes as :mod:`lhpipe.core.timestamps` writes them,
bytes base64).

The pure functions here work on :class:`WfSpecShape` / :class:`EventDefShape`, plain data
that :class:`MetadataCache` builds from the server's WfSpec, ExternalEventDef and StructDef
(each fetched once, StructDefs resolved recursively) and refreshes when a call says it
changed.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as time_of_day
from decimal import Decimal
from typing import Any, Protocol, TypeVar, cast

from google.protobuf.timestamp_pb2 import Timestamp
from littlehorse.model import (
    ExternalEventDef,
    InlineStruct,
    Struct,
    StructDef,
    StructDefId,
    StructField,
    TypeDefinition,
    VariableType,
    VariableValue,
    WfRunId,
    WfRunVariableAccessLevel,
    WfSpec,
)

from lhpipe.core import jsonenc
from lhpipe.core.errors import PermanentError
from lhpipe.core.timestamps import timestamp_text

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")
_DECIMAL_TEXT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
_SHOWN_CHARS = 60


class ConversionError(PermanentError):
    """A value that cannot become the type LittleHorse declares for it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="CONVERSION")


class UndeclaredVariableError(PermanentError):
    """A variable the WfSpec does not declare as an input: LittleHorse would reject the run."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="UNDECLARED_VARIABLE")


# ---------------------------------------------------------------------------------------------
# Declared types, as plain data
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LHType:
    """A type LittleHorse declares: a ``VariableType`` name (``STR``, ``TIMESTAMP``...), or
    ``STRUCT`` with its resolved StructDef. The typed collections of LittleHorse 1.x
    (``ARRAY``, ``MAP``, ``INLINE_STRUCT``) are named but lhpipe cannot write them yet."""

    kind: str
    struct: StructShape | None = None

    def __str__(self) -> str:
        if self.struct is not None:
            return f"Struct<{self.struct.name},v{self.struct.version}>"
        return self.kind


@dataclass(frozen=True, slots=True)
class StructFieldShape:
    """One field of a StructDef; ``optional`` when it is nullable or has a default."""

    type: LHType
    optional: bool


@dataclass(frozen=True, slots=True)
class StructShape:
    """A StructDef version with its fields' types resolved."""

    name: str
    version: int
    fields: Mapping[str, StructFieldShape]


@dataclass(frozen=True, slots=True)
class WfSpecShape:
    """What ``RunWf`` may set on a WfSpec: its entrypoint thread's variables.

    ``variables`` are the ones a caller may give; ``inherited`` the ones that come from the
    parent WfRun (``INHERITED_VAR``) and cannot be given.
    """

    name: str
    major_version: int
    revision: int
    variables: Mapping[str, LHType]
    required: frozenset[str] = frozenset()
    inherited: frozenset[str] = frozenset()
    parent_wf_spec: str | None = None


@dataclass(frozen=True, slots=True)
class EventDefShape:
    """An ExternalEventDef: its content type (``None``: not declared) and whether it takes
    correlated events."""

    name: str
    content: LHType | None
    correlated: bool


# ---------------------------------------------------------------------------------------------
# Values without a declared type
# ---------------------------------------------------------------------------------------------


def default_value(value: Any, *, what: str = "value") -> VariableValue:
    """``value`` as the ``VariableValue`` its own Python type maps to (delivery.md)."""
    if value is None:
        return VariableValue()
    if isinstance(value, bool):
        return VariableValue(bool=value)
    if isinstance(value, str):
        return VariableValue(str=value)
    if isinstance(value, int):
        return VariableValue(int=_int64(value, what))
    if isinstance(value, float):
        return VariableValue(double=value)
    if isinstance(value, bytes | bytearray | memoryview):
        return VariableValue(bytes=bytes(value))
    if isinstance(value, datetime):
        return VariableValue(utc_timestamp=_timestamp(value))
    if isinstance(value, Mapping):
        return VariableValue(json_obj=_json(value, what))
    if isinstance(value, list | tuple):
        return VariableValue(json_arr=_json(value, what))
    if isinstance(value, Decimal | uuid.UUID | date | time_of_day):
        return VariableValue(str=_text_of(value))
    raise ConversionError(f"{what}: a {type(value).__name__} has no LittleHorse type")


# ---------------------------------------------------------------------------------------------
# Coercion to a declared type
# ---------------------------------------------------------------------------------------------


def coerce(value: Any, declared: LHType, *, what: str = "value") -> VariableValue:
    """``value`` as a ``VariableValue`` of type ``declared``; ``what`` names the value in
    the error message. Raises :class:`ConversionError`."""
    if value is None:
        return VariableValue()
    convert = _CONVERTERS.get(declared.kind)
    if convert is None:
        raise ConversionError(
            f"{what}: lhpipe cannot write LittleHorse {declared.kind} values (declared type)"
        )
    return convert(value, declared, what)


def _fail(value: Any, declared: LHType, what: str, why: str = "") -> ConversionError:
    shown = repr(value)
    if len(shown) > _SHOWN_CHARS:
        shown = shown[: _SHOWN_CHARS - 3] + "..."
    reason = f" ({why})" if why else ""
    return ConversionError(
        f"{what}: cannot convert {type(value).__name__} {shown} to {declared}{reason}"
    )


def _to_str(value: Any, declared: LHType, what: str) -> VariableValue:
    if isinstance(value, str):
        return VariableValue(str=value)
    if isinstance(value, bool):
        return VariableValue(str="true" if value else "false")
    if isinstance(value, int | float | Decimal | uuid.UUID | date | time_of_day):
        return VariableValue(str=_text_of(value))
    raise _fail(value, declared, what)


def _to_int(value: Any, declared: LHType, what: str) -> VariableValue:
    if isinstance(value, bool):
        raise _fail(value, declared, what, "a boolean is not a number")
    if isinstance(value, int):
        return VariableValue(int=_int64(value, what))
    if isinstance(value, float | Decimal):
        if not math.isfinite(value) or value != int(value):
            raise _fail(value, declared, what, "it has a fraction")
        return VariableValue(int=_int64(int(value), what))
    if isinstance(value, str) and _INTEGER_TEXT.fullmatch(value):
        return VariableValue(int=_int64(int(value), what))
    raise _fail(value, declared, what)


def _to_double(value: Any, declared: LHType, what: str) -> VariableValue:
    if isinstance(value, bool):
        raise _fail(value, declared, what, "a boolean is not a number")
    if isinstance(value, int | float | Decimal):
        return VariableValue(double=float(value))
    if isinstance(value, str) and _DECIMAL_TEXT.fullmatch(value):
        return VariableValue(double=float(value))
    raise _fail(value, declared, what)


def _to_bool(value: Any, declared: LHType, what: str) -> VariableValue:
    if isinstance(value, bool):
        return VariableValue(bool=value)
    if value in ("true", "false"):
        return VariableValue(bool=value == "true")
    raise _fail(value, declared, what)


def _to_bytes(value: Any, declared: LHType, what: str) -> VariableValue:
    if isinstance(value, bytes | bytearray | memoryview):
        return VariableValue(bytes=bytes(value))
    if isinstance(value, str):
        return VariableValue(bytes=value.encode("utf-8"))
    raise _fail(value, declared, what)


def _to_timestamp(value: Any, declared: LHType, what: str) -> VariableValue:
    if isinstance(value, datetime):
        return VariableValue(utc_timestamp=_timestamp(value))
    if isinstance(value, bool):
        raise _fail(value, declared, what, "a boolean is not a time")
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise _fail(value, declared, what, "beyond 64 bits")
        seconds, millis = divmod(value, 1000)
        return VariableValue(utc_timestamp=Timestamp(seconds=seconds, nanos=millis * 1_000_000))
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise _fail(value, declared, what, "not an ISO-8601 date-time") from None
        return VariableValue(utc_timestamp=_timestamp(parsed))
    raise _fail(value, declared, what)


def _to_json_obj(value: Any, declared: LHType, what: str) -> VariableValue:
    if isinstance(value, Mapping):
        return VariableValue(json_obj=_json(value, what))
    if isinstance(value, str) and isinstance(_parsed_json(value), dict):
        return VariableValue(json_obj=value)
    raise _fail(value, declared, what)


def _to_json_arr(value: Any, declared: LHType, what: str) -> VariableValue:
    if isinstance(value, list | tuple):
        return VariableValue(json_arr=_json(value, what))
    if isinstance(value, str) and isinstance(_parsed_json(value), list):
        return VariableValue(json_arr=value)
    raise _fail(value, declared, what)


def _to_wf_run_id(value: Any, declared: LHType, what: str) -> VariableValue:
    if isinstance(value, str) and value:
        return VariableValue(wf_run_id=wf_run_id(value))
    raise _fail(value, declared, what)


def _to_struct(value: Any, declared: LHType, what: str) -> VariableValue:
    shape = declared.struct
    if shape is None or not isinstance(value, Mapping):
        raise _fail(value, declared, what)
    extra = sorted(str(name) for name in value if name not in shape.fields)
    if extra:
        raise ConversionError(
            f"{what}: field(s) {', '.join(extra)} not in StructDef {shape.name} "
            f"v{shape.version} (it has {', '.join(sorted(shape.fields)) or 'no fields'})"
        )
    fields: dict[str, StructField] = {}
    for name, field_shape in shape.fields.items():
        item = value.get(name)
        if item is None:
            if not field_shape.optional:
                raise ConversionError(
                    f"{what}: field {name} of StructDef {shape.name} v{shape.version} "
                    "is required and missing or null"
                )
            continue
        fields[name] = StructField(value=coerce(item, field_shape.type, what=f"{what}.{name}"))
    return VariableValue(
        struct=Struct(
            struct_def_id=StructDefId(name=shape.name, version=shape.version),
            struct=InlineStruct(fields=fields),
        )
    )


_CONVERTERS: Mapping[str, Callable[[Any, LHType, str], VariableValue]] = {
    "STR": _to_str,
    "INT": _to_int,
    "DOUBLE": _to_double,
    "BOOL": _to_bool,
    "BYTES": _to_bytes,
    "TIMESTAMP": _to_timestamp,
    "JSON_OBJ": _to_json_obj,
    "JSON_ARR": _to_json_arr,
    "WF_RUN_ID": _to_wf_run_id,
    "STRUCT": _to_struct,
}


def _int64(value: int, what: str) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise ConversionError(f"{what}: {value} does not fit LittleHorse INT (64 bits)")
    return value


def _timestamp(value: datetime) -> Timestamp:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    seconds = delta.days * 86_400 + delta.seconds
    return Timestamp(seconds=seconds, nanos=delta.microseconds * 1000)


def _text_of(value: Any) -> str:
    if isinstance(value, datetime):
        return timestamp_text(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, date | time_of_day):
        return value.isoformat()
    return str(value)


def _json(value: Any, what: str) -> str:
    try:
        return jsonenc.dumps_text(value)
    except PermanentError as exc:
        raise ConversionError(f"{what}: {exc.message}") from exc


def _parsed_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def wf_run_id(text: str) -> WfRunId:
    """The ``WfRunId`` an id names: ``a_b`` is child ``b`` of parent ``a`` (``a_b_c`` is
    ``c``, child of ``b``, child of ``a``), as the LittleHorse sinks read ids."""
    *parents, own = text.split("_")
    parent: WfRunId | None = None
    for part in parents:
        parent = WfRunId(id=part, parent_wf_run_id=parent)
    return WfRunId(id=own, parent_wf_run_id=parent)


# ---------------------------------------------------------------------------------------------
# Variables and contents against the declared shapes
# ---------------------------------------------------------------------------------------------


def run_wf_variables(shape: WfSpecShape, variables: Mapping[str, Any]) -> dict[str, VariableValue]:
    """The ``RunWfRequest.variables`` for ``variables``, each coerced to the type the
    WfSpec declares. Raises :class:`UndeclaredVariableError` or :class:`ConversionError`."""
    out: dict[str, VariableValue] = {}
    for name, value in variables.items():
        declared = shape.variables.get(name)
        if declared is None:
            raise UndeclaredVariableError(_undeclared_message(shape, name))
        out[name] = coerce(value, declared, what=f"variable {name}")
    return out


def _undeclared_message(shape: WfSpecShape, name: str) -> str:
    where = f"WfSpec {shape.name} v{shape.major_version}.{shape.revision}"
    if name in shape.inherited:
        return (
            f"variable {name} is inherited from the parent WfRun in {where}: it cannot be set "
            "by RunWf"
        )
    known = ", ".join(sorted(shape.variables)) or "none"
    return f"variable {name} is not declared by {where} (its input variables: {known})"


def event_content(shape: EventDefShape, content: Any) -> VariableValue:
    """The content of an ExternalEvent or CorrelatedEvent, coerced to the declared type."""
    what = f"content of {shape.name}"
    if shape.content is None:
        return default_value(content, what=what)
    return coerce(content, shape.content, what=what)


# ---------------------------------------------------------------------------------------------
# From the server's metadata to shapes
# ---------------------------------------------------------------------------------------------


class MetadataSource(Protocol):
    """Where metadata comes from (the LittleHorse client, or a fake in tests). Each method
    raises a :class:`~lhpipe.core.errors.DeliveryError` subclass (``NOT_FOUND`` is
    permanent)."""

    async def fetch_wf_spec(
        self, name: str, major_version: int | None, revision: int | None
    ) -> WfSpec: ...

    async def fetch_external_event_def(self, name: str) -> ExternalEventDef: ...

    async def fetch_struct_def(self, name: str, version: int) -> StructDef: ...


V = TypeVar("V")


@dataclass
class _Entry:
    value: Any
    fetched_at: float


@dataclass
class _Table:
    """One kind of metadata: fetched values and fetches in flight (so that many concurrent
    sends for one WfSpec cost one fetch)."""

    entries: dict[Hashable, _Entry] = field(default_factory=dict)
    pending: dict[Hashable, asyncio.Future[Any]] = field(default_factory=dict)


class MetadataCache:
    """WfSpecs, ExternalEventDefs and StructDefs as shapes, fetched once each.

    A WfSpec addressed without a version is its latest: LittleHorse may get a new revision at
    any time, so :meth:`forget_wf_spec` drops it when a call says the types changed, and
    :meth:`is_stale` tells whether a cached one is old enough (``min_refresh_seconds``) to be
    worth fetching again before calling a variable undeclared. A WfSpec pinned to a major
    version and revision never changes.
    """

    def __init__(
        self,
        source: MetadataSource,
        *,
        min_refresh_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._min_refresh = min_refresh_seconds
        self._clock = clock
        self._wf_specs = _Table()
        self._event_defs = _Table()
        self._struct_defs = _Table()

    async def wf_spec(
        self, name: str, major_version: int | None = None, revision: int | None = None
    ) -> WfSpecShape:
        """The shape of a WfSpec (latest when no version is given)."""
        key = (name, major_version, revision)
        shape: WfSpecShape = await self._get(
            self._wf_specs, key, lambda: self._load_wf_spec(name, major_version, revision)
        )
        return shape

    def cached_wf_spec(
        self, name: str, major_version: int | None = None, revision: int | None = None
    ) -> WfSpecShape | None:
        """The shape of a WfSpec if it is cached now (no await: the hot path's first try)."""
        entry = self._wf_specs.entries.get((name, major_version, revision))
        return None if entry is None else cast(WfSpecShape, entry.value)

    def cached_event_def(self, name: str) -> EventDefShape | None:
        """The shape of an ExternalEventDef if it is cached now."""
        entry = self._event_defs.entries.get(name)
        return None if entry is None else cast(EventDefShape, entry.value)

    async def event_def(self, name: str) -> EventDefShape:
        """The shape of an ExternalEventDef."""
        shape: EventDefShape = await self._get(
            self._event_defs, name, lambda: self._load_event_def(name)
        )
        return shape

    def forget_wf_spec(
        self, name: str, major_version: int | None = None, revision: int | None = None
    ) -> None:
        """Drop a WfSpec (and the StructDefs, which may have a new version too)."""
        self._wf_specs.entries.pop((name, major_version, revision), None)
        self._struct_defs.entries.clear()

    def forget_event_def(self, name: str) -> None:
        """Drop an ExternalEventDef (and the StructDefs)."""
        self._event_defs.entries.pop(name, None)
        self._struct_defs.entries.clear()

    def is_stale(
        self, name: str, major_version: int | None = None, revision: int | None = None
    ) -> bool:
        """Whether the cached WfSpec may be out of date: addressed without a pinned version
        and fetched more than ``min_refresh_seconds`` ago."""
        if major_version is not None and revision is not None:
            return False
        entry = self._wf_specs.entries.get((name, major_version, revision))
        return entry is not None and self._clock() - entry.fetched_at >= self._min_refresh

    async def _get(self, table: _Table, key: Hashable, load: Callable[[], Awaitable[V]]) -> V:
        entry = table.entries.get(key)
        if entry is not None:
            value: V = entry.value
            return value
        pending = table.pending.get(key)
        if pending is not None:
            return cast(V, await asyncio.shield(pending))
        started = asyncio.ensure_future(load())
        table.pending[key] = started
        try:
            loaded = await asyncio.shield(started)
        finally:
            table.pending.pop(key, None)
        table.entries[key] = _Entry(loaded, self._clock())
        return loaded

    async def _load_wf_spec(
        self, name: str, major_version: int | None, revision: int | None
    ) -> WfSpecShape:
        spec = await self._source.fetch_wf_spec(name, major_version, revision)
        thread = spec.thread_specs[spec.entrypoint_thread_name]
        variables: dict[str, LHType] = {}
        required: set[str] = set()
        inherited: set[str] = set()
        for thread_var in thread.variable_defs:
            var_name = thread_var.var_def.name
            if thread_var.access_level == WfRunVariableAccessLevel.INHERITED_VAR:
                inherited.add(var_name)
                continue
            variables[var_name] = await self._lh_type(_type_definition(thread_var.var_def))
            if thread_var.required:
                required.add(var_name)
        parent = spec.parent_wf_spec.wf_spec_name if spec.HasField("parent_wf_spec") else None
        return WfSpecShape(
            name=spec.id.name,
            major_version=spec.id.major_version,
            revision=spec.id.revision,
            variables=variables,
            required=frozenset(required),
            inherited=frozenset(inherited),
            parent_wf_spec=parent,
        )

    async def _load_event_def(self, name: str) -> EventDefShape:
        event_def = await self._source.fetch_external_event_def(name)
        content: LHType | None = None
        info = event_def.type_information
        if event_def.HasField("type_information") and info.HasField("return_type"):
            content = await self._lh_type(info.return_type)
        return EventDefShape(
            name=event_def.id.name,
            content=content,
            correlated=event_def.HasField("correlated_event_config"),
        )

    async def _lh_type(self, type_def: TypeDefinition) -> LHType:
        which = type_def.WhichOneof("defined_type")
        if which == "primitive_type":
            return LHType(VariableType.Name(type_def.primitive_type))
        if which == "struct_def_id":
            struct_id = type_def.struct_def_id
            return LHType("STRUCT", await self._struct(struct_id.name, struct_id.version))
        kinds = {
            "inline_array_def": "ARRAY",
            "inline_map_def": "MAP",
            "inline_struct_def": "INLINE_STRUCT",
        }
        return LHType(kinds.get(which or "", "UNKNOWN"))

    async def _struct(self, name: str, version: int) -> StructShape:
        shape: StructShape = await self._get(
            self._struct_defs, (name, version), lambda: self._load_struct(name, version)
        )
        return shape

    async def _load_struct(self, name: str, version: int) -> StructShape:
        struct_def = await self._source.fetch_struct_def(name, version)
        fields: dict[str, StructFieldShape] = {}
        for field_name, field_def in struct_def.struct_def.fields.items():
            fields[field_name] = StructFieldShape(
                type=await self._lh_type(field_def.field_type),
                optional=field_def.is_nullable or field_def.HasField("default_value"),
            )
        return StructShape(name=struct_def.id.name, version=struct_def.id.version, fields=fields)


def _type_definition(var_def: Any) -> TypeDefinition:
    """A VariableDef's type: ``type_def``, or the older ``type`` field that servers before
    ``type_def`` existed fill in."""
    if var_def.HasField("type_def"):
        type_def: TypeDefinition = var_def.type_def
        return type_def
    return TypeDefinition(primitive_type=var_def.type)

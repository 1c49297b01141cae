"""Avro values for ``to topic "t" { schema = NAME }``: the value checked against the schema,
converted where a conversion is safe, and written in the registry wire format.

:class:`AvroValueEncoder` compiles one schema once into a check-and-convert function over the
engine's plain values (:mod:`lhpipe.core.plans`), then writes with the compiled writer the
Gateway's webhooks use too (:mod:`lhpipe.core.avro.writer`; fastavro's ``schemaless_writer``
for what it does not cover) behind the wire header (magic byte 0, 4-byte big-endian schema id)
that :func:`lhpipe.core.avro.wire.schema_id_of` reads. The walk over the schema and the checks
that are the same for JSON bodies are shared with the Gateway
(:mod:`lhpipe.core.avro.compile`); what differs is what each accepts (below) and how each
reports a misfit (here the first, with its path; the Gateway names every problem).

:class:`TopicSchemas` finds the schema id: the schema is registered under the topic's subject
``<topic>-value`` (the registry's TopicNameStrategy, as the Gateway does for webhooks) on first
use and cached per process.

What a schema accepts, type by type (the Gateway's rules for JSON bodies, plus the values only
the engine has: datetimes, bytes):

=========================  ====================================================================
Avro                       accepted → written
=========================  ====================================================================
``record``                 a map; every field without a default must be there (a missing field
                           that is optional, a union with null, is null); a key that is not a
                           field is refused (a misspelt field would otherwise vanish)
``int`` / ``long``         an integer within 32 / 64 bits (not a boolean, not ``1.0``)
``float`` / ``double``     a number (an integer is widened); a ``float`` must fit 32 bits
``boolean``                ``true`` / ``false``
``string``                 text (``enum``: one of its symbols; ``uuid``: also a UUID)
``bytes`` / ``fixed``      bytes, or base64 text (standard alphabet); ``fixed`` of its exact size
``timestamp-millis``       a datetime (a naive one is UTC), ISO-8601 text, or an integer of
/ ``-micros``              epoch milliseconds (``-micros``: microseconds)
``date``                   a date, ISO-8601 date text, or days since the epoch
``decimal``                a decimal, an integer, or decimal text
``string`` + ``json``      any value, written as its JSON text (the inline ``json`` field type)
``array`` / ``map``        a list / a map with text keys, each item checked
unions                     null for a union with null; otherwise the first branch that takes
                           the value
=========================  ====================================================================

A value that does not fit raises :class:`~lhpipe.core.errors.PermanentError` with code
``ENCODE`` and the path of the first misfit (``value.items[2].price: expected a long, got
"x"``): the same value would fail on every attempt (delivery.md: dead letter).

Registry failures keep the classes of :mod:`lhpipe.clients.registry`: unreachable, 429 and 5xx
are transient (retried); a schema the registry refuses, an incompatible one (409) included, is
permanent, like a value that does not fit: it would be refused again until someone changes the
registry or the pipeline.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Protocol

from lhpipe.core.avro.compile import (
    LONG_RANGE,
    Check,
    CheckWalker,
    Misfit,
    fail,
    named_types,
    simple_checks,
)
from lhpipe.core.avro.wire import encode, parse_avro_schema, topic_subject
from lhpipe.core.avro.writer import AVRO_DATUM, EPOCH, EPOCH_DAY, compile_writer, wire_record
from lhpipe.core.errors import PermanentError
from lhpipe.core.jsonenc import dumps
from lhpipe.core.plans import TopicSchema


def _where(misfit: Misfit) -> tuple[str, str]:
    """Where the first misfit is (``value.items[2].price``) and what it is."""
    path, message = misfit.found[0]
    text = "value"
    for segment in path:
        if isinstance(segment, int):
            text += f"[{segment}]"
        else:
            text += segment  # written as the check found it: ``.field`` or ``["key"]``
    return text, message


def _describe(value: Any) -> str:
    """A value as a message shows it: its type, and short values themselves."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a map"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, bytes | bytearray):
        return f"{len(value)} bytes"
    text = json.dumps(value) if isinstance(value, str | int | float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class AvroValueEncoder:
    """Checks, converts and writes values of one Avro schema (see the module docstring)."""

    def __init__(self, name: str, avro: Mapping[str, Any]) -> None:
        self.name = name
        self.parsed = parse_avro_schema(avro)
        self._check = _Compiler(named_types(self.parsed), _describe, "").node(self.parsed)
        self._writer = compile_writer(self.parsed, AVRO_DATUM)

    def to_avro(self, value: Any) -> Any:
        """``value`` as fastavro writes it; :class:`PermanentError` (``ENCODE``) when it does
        not fit."""
        try:
            return self._check(value)
        except Misfit as misfit:
            where, message = _where(misfit)
            raise PermanentError(
                f"the value does not fit schema {self.name}: {where}: {message}", code="ENCODE"
            ) from None

    def encode(self, schema_id: int, value: Any) -> bytes:
        """``value`` in the registry wire format under ``schema_id``: by the schema's compiled
        writer (:mod:`lhpipe.core.avro.writer`, the webhooks' own) when it has one and takes
        the value, else by fastavro (a union of several types, a decimal, an absent field
        with a default)."""
        datum = self.to_avro(value)
        written = wire_record(self._writer, schema_id, datum)
        if written is not None:
            return written
        return encode(schema_id, self.parsed, datum)


class Registry(Protocol):
    """The part of :class:`lhpipe.clients.registry.SchemaRegistry` the encoder uses."""

    async def register(self, subject: str, avro: Mapping[str, Any] | str) -> int: ...

    async def latest(self, subject: str) -> Any:
        """A :class:`~lhpipe.clients.registry.RegisteredSchema` (its ``avro``)."""
        ...


#: How a ``from registry`` schema is known in :class:`TopicSchemas` (then its subject).
REGISTRY_IDENTITY: Final = "registry:"


class TopicSchemas:
    """Schema ids and encoders of the ``to topic`` targets of one process.

    On first use of a (topic, schema): a registry schema (``from registry "subject"``) is read
    as the subject's latest version; the schema is then registered under ``<topic>-value``
    (registering a schema the subject already has returns its id) and its encoder compiled.
    The result is kept for the life of the process (a hot reload forgets the ``from registry``
    ones: :meth:`forget_registry_schemas`); a failure is not kept, so the next attempt asks
    again. Concurrent first uses share one registration.
    """

    def __init__(self, registry: Callable[[], Registry]) -> None:
        self._registry = registry
        self._found: dict[tuple[str, str], asyncio.Future[tuple[int, AvroValueEncoder]]] = {}
        self._ready: dict[tuple[str, str], tuple[int, AvroValueEncoder]] = {}
        # A planner hands the same TopicSchema to every plan: its identity text is computed
        # once per object (the object is kept, so its id is not reused).
        self._identities: dict[int, tuple[TopicSchema, str]] = {}

    def forget_registry_schemas(self) -> None:
        """Forget what was read from registry subjects (``from registry``), so that the next
        use reads the subject's latest version again (a hot reload does this); schemas written
        in the files stay known."""
        for known in (self._ready, self._found):
            for key in [key for key in known if key[1].startswith(REGISTRY_IDENTITY)]:
                del known[key]

    async def encode(self, topic: str, schema: TopicSchema, value: Any) -> bytes:
        """``value`` as the record value for ``topic`` (the registry wire format)."""
        schema_id, encoder = await self.resolve(topic, schema)
        return encoder.encode(schema_id, value)

    async def resolve(self, topic: str, schema: TopicSchema) -> tuple[int, AvroValueEncoder]:
        """The schema id under ``<topic>-value`` and the encoder of ``schema``."""
        key = (topic, self._identity(schema))
        ready = self._ready.get(key)
        if ready is not None:
            return ready
        future = self._found.get(key)
        if future is None:
            future = asyncio.ensure_future(self._resolve(topic, schema))
            self._found[key] = future
        try:
            result = await asyncio.shield(future)
        except BaseException:
            if future.done() and self._found.get(key) is future:
                del self._found[key]
            raise
        self._ready[key] = result
        return result

    def _identity(self, schema: TopicSchema) -> str:
        known = self._identities.get(id(schema))
        if known is None or known[0] is not schema:
            text = (
                json.dumps(schema.avro, sort_keys=True)
                if schema.avro is not None
                else f"{REGISTRY_IDENTITY}{schema.subject}"
            )
            known = (schema, text)
            self._identities[id(schema)] = known
        return known[1]

    async def _resolve(self, topic: str, schema: TopicSchema) -> tuple[int, AvroValueEncoder]:
        registry = self._registry()
        avro = schema.avro
        if avro is None:
            if schema.subject is None:
                raise PermanentError(f"schema {schema.name} has no Avro form", code="ENCODE")
            avro = (await registry.latest(schema.subject)).avro
        schema_id = await registry.register(topic_subject(topic), avro)
        return schema_id, AvroValueEncoder(schema.name, avro)


# ---------------------------------------------------------------------------------------------
# Compiling a parsed schema into a check
# ---------------------------------------------------------------------------------------------


class _Compiler(CheckWalker):
    """Compiles a parsed schema into a check-and-convert over the engine's values (the module
    docstring; the Gateway's check of JSON bodies is :mod:`lhpipe.gateway.validate`)."""

    def primitive(self, name: str) -> Check:
        return _PRIMITIVES[name]

    def logical(self, kind: Any, logical: str, schema: Mapping[str, Any]) -> Check | None:
        return _logical(logical, kind)

    def record(self, schema: Mapping[str, Any]) -> Check:
        name = str(schema["name"])
        fields: list[tuple[str, Check, bool, bool]] = []
        check = _record_check(name, fields)
        self.done[name] = check
        for field in schema["fields"]:
            field_type = field["type"]
            nullable = isinstance(field_type, list) and "null" in field_type
            fields.append((field["name"], self.node(field_type), "default" in field, nullable))
        return check

    def array(self, items: Check) -> Check:
        return _array(items)

    def map(self, values: Check) -> Check:
        return _map(values)


def _record_check(name: str, fields: list[tuple[str, Check, bool, bool]]) -> Check:
    """The check of a record; ``fields`` may be filled after this returns (recursion)."""

    def check(value: Any) -> Any:
        if type(value) is not dict and not isinstance(value, Mapping):
            fail(f"expected a record ({name}), got {_describe(value)}")
        out: dict[str, Any] = {}
        present = 0
        for field_name, field_check, has_default, nullable in fields:
            if field_name in value:
                present += 1
                try:
                    out[field_name] = field_check(value[field_name])
                except Misfit as misfit:
                    misfit.under(f".{field_name}")
                    raise
            elif nullable and not has_default:
                out[field_name] = None
            elif not has_default:  # with a default, fastavro writes the default
                fail(f"missing field `{field_name}` of {name}")
        if present != len(value):
            known = {f[0] for f in fields}
            for key in value:
                if key not in known:
                    fail(f"unknown field `{key}`: {name} has no such field")
        return out

    return check


def _array(item: Check) -> Check:
    def check(value: Any) -> Any:
        if not isinstance(value, list | tuple):
            fail(f"expected a list, got {_describe(value)}")
        out = []
        for index, element in enumerate(value):
            try:
                out.append(item(element))
            except Misfit as misfit:
                misfit.under(index)
                raise
        return out

    return check


def _map(values: Check) -> Check:
    def check(value: Any) -> Any:
        if not isinstance(value, Mapping):
            fail(f"expected a map, got {_describe(value)}")
        out = {}
        for key, element in value.items():
            if not isinstance(key, str):
                fail(f"a map key must be text, got {_describe(key)}")
            try:
                out[key] = values(element)
            except Misfit as misfit:
                misfit.under(f"[{json.dumps(key)}]")
                raise
        return out

    return check


def _bytes(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if type(value) is str:
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            pass
    fail(f"expected bytes (or base64 text), got {_describe(value)}")


_PRIMITIVES: Final[Mapping[str, Check]] = {**simple_checks(_describe, "text"), "bytes": _bytes}


def _logical(logical: str, kind: Any) -> Check | None:
    if kind == "long" and logical in ("timestamp-millis", "timestamp-micros"):
        return _timestamp(1000 if logical == "timestamp-millis" else 1_000_000)
    if kind == "int" and logical == "date":
        return _date
    if kind == "string" and logical == "json":
        return _json_text
    if kind == "string" and logical == "uuid":
        return _uuid
    if kind in ("bytes", "fixed") and logical == "decimal":
        return _decimal
    return None


def _timestamp(per_second: int) -> Check:
    unit = "milliseconds" if per_second == 1000 else "microseconds"
    what = f"a timestamp (a datetime, ISO-8601 text or epoch {unit})"
    limit = LONG_RANGE

    def check(value: Any) -> Any:
        kind = type(value)
        if isinstance(value, datetime):
            return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        try:
            if kind is int and limit[0] <= value <= limit[1]:
                return EPOCH + timedelta(microseconds=value * (1_000_000 // per_second))
            if kind is str:
                parsed = datetime.fromisoformat(value)
                return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
        except (ValueError, OverflowError):
            pass
        fail(f"expected {what}, got {_describe(value)}")

    return check


def _date(value: Any) -> Any:
    if isinstance(value, datetime):
        fail(f"expected a date, got a datetime ({value.isoformat()})")
    if isinstance(value, date):
        return value
    try:
        if type(value) is int:
            return EPOCH_DAY + timedelta(days=value)
        if type(value) is str:
            return date.fromisoformat(value)
    except (ValueError, OverflowError):
        pass
    fail(f"expected a date (ISO-8601 text or days since 1970-01-01), got {_describe(value)}")


def _json_text(value: Any) -> Any:
    try:
        return dumps(value).decode()
    except PermanentError as exc:
        fail(str(exc))


def _uuid(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    return _PRIMITIVES["string"](value)


def _decimal(value: Any) -> Any:
    if isinstance(value, Decimal):
        return value
    if type(value) is int or type(value) is str:
        try:
            return Decimal(value)
        except InvalidOperation:
            pass
    fail(f"expected a decimal (a number or decimal text), got {_describe(value)}")

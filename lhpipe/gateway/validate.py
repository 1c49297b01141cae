"""A webhook's request body, decoded and checked against its ``body`` (a schema, ``json`` or
``bytes``).

``body = bytes``
    The raw bytes, whatever the ``Content-Type``.
``body = json``
    Any JSON value. The ``Content-Type`` must be ``application/json`` or ``application/*+json``
    (a ``charset`` parameter, if any, must be UTF-8, the only encoding JSON allows); anything
    else, or none, is 415. Text that is not JSON (or is empty) is 400. JSON is parsed by orjson
    (about 3x the standard library, performance.md), which reads an integer beyond 64 bits as
    a float: such a number is not an ``int``/``long`` for a schema.
``body = SCHEMA``
    The same, then the value must match the Avro record schema. The result is what expressions
    see as ``body`` and what the registry encoder writes after :meth:`SchemaBody.to_avro`.
    Every mismatch is collected (up to :data:`MAX_PROBLEMS`) and named by its field path
    (``age``, ``address.city``, ``tags[2]``, ``meta.color``, ``meta["a key"]``); the 400
    problem lists them all.

The JSON a schema accepts, type by type (Avro's own JSON encoding is not used: it wraps union
values in objects and writes bytes as code points, which no webhook sender does):

=========================  ====================================================================
Avro                       JSON accepted → value
=========================  ====================================================================
``record``                 an object; every field without a default must be there; a field
                           that is absent takes its default (an optional ``T?``, a union with
                           null, defaults to null even without ``"default"``); a member that is
                           not a field is refused (``note: unknown field``)
``int`` / ``long``         an integer (not ``1.0``, not ``"1"``) within 32 / 64 bits
``float`` / ``double``     a number; a ``float`` must fit 32 bits
``boolean``                ``true`` / ``false``
``string``                 a string (``enum``: one of its symbols)
``bytes`` / ``fixed``      base64 text (standard alphabet, padded); ``fixed`` of its exact size
``timestamp-millis``       ISO-8601 text (``2024-05-01T12:30:00Z``; without an offset it is
/ ``-micros``              UTC, as everywhere in lhpipe) or an integer: epoch milliseconds
                           (``-micros``: microseconds) → a UTC datetime
``string`` + ``json``      any JSON value (the inline ``json`` field type), kept parsed
``array`` / ``map``        an array / an object, each item checked
``null``                   ``null``; a union with null accepts null or its other branch
other unions               the first branch the value matches
other logical types        as their underlying type (``date``: an integer, ``uuid``: a string)
=========================  ====================================================================

Unknown members are refused rather than dropped: a misspelt optional field (``nte`` for
``note``) would otherwise vanish without a word. A webhook that takes open-ended payloads from
a provider (GitHub's events have hundreds of fields) declares ``body = json``.
"""

from __future__ import annotations

import base64
import binascii
import copy
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

import orjson

from lhpipe.core.avro import convert as _avro
from lhpipe.core.avro.compile import (
    Check,
    CheckWalker,
    Misfit,
    Segment,
    fail,
    named_types,
    simple_checks,
)
from lhpipe.core.avro.wire import encode, parse_avro_schema
from lhpipe.core.avro.writer import AVRO_DATUM, EPOCH, JSON_BODY, compile_writer, wire_record
from lhpipe.gateway import problems
from lhpipe.gateway.problems import FieldProblem, Problem

#: At most this many problems are reported for one body.
MAX_PROBLEMS: Final = 20


class BodyRejected(Exception):
    """The body cannot be accepted: answer :attr:`problem` (400 or 415)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.detail)
        self.problem = problem


class BodyDecoder(Protocol):
    """Decodes and checks one webhook's request bodies."""

    def decode(self, content_type: str | None, body: bytes) -> Any:
        """The body as expressions see it; raises :class:`BodyRejected`."""
        ...


class RawBody:
    """``body = bytes``: the bytes as they came."""

    def decode(self, content_type: str | None, body: bytes) -> Any:
        return body


class JsonBody:
    """``body = json``: any JSON value."""

    def decode(self, content_type: str | None, body: bytes) -> Any:
        return parse_json(content_type, body)


class SchemaBody:
    """``body = SCHEMA``: JSON that matches an Avro record schema (the module docstring).

    ``avro`` is the schema as JSON (``SchemaInfo.avro``, or a registry schema once fetched);
    :attr:`parsed` is the same parsed by fastavro, for the encoder.
    """

    def __init__(self, name: str, avro: Mapping[str, Any]) -> None:
        self.name = name
        self.parsed = parse_avro_schema(avro)
        self._check = _Compiler(named_types(self.parsed), _describe, " as base64 text").node(
            self.parsed
        )
        self._to_avro = _avro.converter(self.parsed, _write_rule)
        # Checks while it writes, from the parsed JSON: the fast path of a record.
        self._body_writer = compile_writer(self.parsed, JSON_BODY)
        # Writes a checked body after to_avro (the slow path).
        self._datum_writer = compile_writer(self.parsed, AVRO_DATUM)

    def decode(self, content_type: str | None, body: bytes) -> Any:
        return self._checked(parse_json(content_type, body))

    def _checked(self, value: Any) -> Any:
        try:
            return self._check(value)
        except Misfit as misfit:
            found = tuple(_problems(misfit))
            raise BodyRejected(problems.bad_request(_summary(self.name, found), found)) from None

    def to_avro(self, value: Any) -> Any:
        """``value`` (from :meth:`decode`) as fastavro writes it: ``json`` fields as text."""
        return value if self._to_avro is None else self._to_avro(value)

    def record(self, content_type: str | None, body: bytes, schema_id: int) -> bytes:
        """The record value of a request body, for a route that needs only that (no key
        expression, no pipeline in the request): the body's JSON written as Avro by a writer
        that checks as it writes (:data:`~lhpipe.core.avro.writer.JSON_BODY`), in one pass.
        A body that writer does not take goes the slow way, :meth:`decode` (which names every
        problem: :class:`BodyRejected`) then :meth:`encode`, so both ways accept the same
        bodies and write the same bytes."""
        parsed = parse_json(content_type, body)
        written = wire_record(self._body_writer, schema_id, parsed)
        if written is not None:
            return written
        return self.encode(schema_id, self._checked(parsed))

    def encode(self, schema_id: int, value: Any) -> bytes:
        """``value`` (from :meth:`decode`) in the registry wire format with ``schema_id``: by
        the schema's compiled writer (:mod:`lhpipe.core.avro.writer`) when it has one, else
        by fastavro, which also names what does not fit when the compiled writer fails (raises
        :class:`~lhpipe.core.errors.PermanentError`)."""
        datum = self.to_avro(value)
        written = wire_record(self._datum_writer, schema_id, datum)
        return written if written is not None else encode(schema_id, self.parsed, datum)


def body_decoder(body: str, avro: Mapping[str, Any] | None = None) -> BodyDecoder:
    """The decoder for a webhook's ``body``: ``"bytes"``, ``"json"`` or a schema name, whose
    Avro JSON ``avro`` must then be given."""
    if body == "bytes":
        return RawBody()
    if body == "json":
        return JsonBody()
    if avro is None:
        raise ValueError(f"schema {body} has no Avro schema yet")
    return SchemaBody(body, avro)


def is_json_media_type(content_type: str | None) -> bool:
    """``application/json`` or ``application/*+json``, with no charset but UTF-8."""
    if content_type is None:
        return False
    media, _, parameters = content_type.partition(";")
    media = media.strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        return False
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        charset = name.strip().lower() == "charset"
        if charset and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return False
    return True


def parse_json(content_type: str | None, body: bytes) -> Any:
    """The JSON value of a body sent as JSON; raises :class:`BodyRejected` (415, 400)."""
    if content_type != "application/json" and not is_json_media_type(content_type):
        got = "no Content-Type" if not content_type else f"Content-Type {content_type}"
        raise BodyRejected(problems.unsupported_media_type(f"expected application/json, got {got}"))
    if not body or body.isspace():  # isspace() stops at the first other byte; no copy
        raise BodyRejected(problems.bad_request("the body is empty; expected JSON"))
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BodyRejected(problems.bad_request(f"the body is not valid JSON: {exc}")) from None


def _summary(schema: str, found: tuple[FieldProblem, ...]) -> str:
    shown = "; ".join(str(p) for p in found[:3])
    more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
    return f"the body does not match schema {schema}: {shown}{more}"


def _write_rule(logical: str) -> _avro.Convert | None:
    if logical == "json":
        return lambda value: orjson.dumps(value).decode()
    return None


# ---------------------------------------------------------------------------------------------
# Checking a JSON value against a parsed Avro schema
# ---------------------------------------------------------------------------------------------

#: A record field: name, check, and the maker of its default (``None``: the field is required).
_Field = tuple[str, Check, Callable[[], Any] | None]


def _problems(misfit: Misfit) -> Iterator[FieldProblem]:
    for path, message in misfit.found[:MAX_PROBLEMS]:
        yield FieldProblem(_path_text(path), message)


def _path_text(path: list[Segment]) -> str:
    text = ""
    for segment in path:
        if isinstance(segment, int):
            text += f"[{segment}]"
        elif segment.isidentifier():
            text += f".{segment}" if text else segment
        else:
            text += f"[{orjson.dumps(segment).decode()}]"
    return text


def _describe(value: Any) -> str:
    """A JSON value as a message shows it: short, and never the whole of a large value."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    text = orjson.dumps(value).decode()
    return text if len(text) <= 40 else text[:37] + "..."


class _Compiler(CheckWalker):
    """Compiles a parsed schema to nested :data:`Check` closures, once per schema (JSON's
    rules: the module docstring)."""

    def primitive(self, name: str) -> Check:
        return _PRIMITIVES[name]

    def logical(self, kind: Any, logical: str, schema: Mapping[str, Any]) -> Check | None:
        if kind == "long" and logical in ("timestamp-millis", "timestamp-micros"):
            return _timestamp(1000 if logical == "timestamp-millis" else 1_000_000)
        if kind == "string" and logical == "json":
            return _any_json
        return None  # checked as its underlying type

    def record(self, schema: Mapping[str, Any]) -> Check:
        fields: list[_Field] = []
        check = _record(str(schema["name"]).rsplit(".", 1)[-1], fields)
        self.done[str(schema["name"])] = check
        fields.extend(self._field(f) for f in schema["fields"])
        return check

    def _field(self, field: Mapping[str, Any]) -> _Field:
        schema = field["type"]
        if "default" in field:
            default = _default_value(schema, field["default"], self.named)
        elif _nullable(schema):
            default = None
        else:
            return str(field["name"]), self.node(schema), None
        if isinstance(default, list | dict):
            return str(field["name"]), self.node(schema), lambda: copy.deepcopy(default)
        return str(field["name"]), self.node(schema), lambda: default

    def array(self, items: Check) -> Check:
        return _array(items)

    def map(self, values: Check) -> Check:
        return _map(values)


def _nullable(schema: Any) -> bool:
    return schema == "null" or (isinstance(schema, list) and "null" in schema)


def _record(name: str, fields: list[_Field]) -> Check:
    """The check of a record; ``fields`` may be filled after this returns (recursion)."""

    def check(value: Any) -> Any:
        if type(value) is not dict:
            fail(f"expected an object ({name}), got {_describe(value)}")
        out: dict[str, Any] = {}
        found: list[tuple[list[Segment], str]] = []
        present = 0
        for field_name, field_check, default in fields:
            if field_name in value:
                present += 1
                try:
                    out[field_name] = field_check(value[field_name])
                except Misfit as misfit:
                    found.extend(misfit.under(field_name))
            elif default is not None:
                out[field_name] = default()
            else:
                found.append(([field_name], "required field is missing"))
        if present != len(value):
            known = {f[0] for f in fields}
            found.extend(([k], "unknown field") for k in value if k not in known)
        if found:
            raise Misfit(found)
        return out

    return check


def _array(item: Check) -> Check:
    def check(value: Any) -> Any:
        if type(value) is not list:
            fail(f"expected an array, got {_describe(value)}")
        out = []
        found: list[tuple[list[Segment], str]] = []
        for index, element in enumerate(value):
            try:
                out.append(item(element))
            except Misfit as misfit:
                found.extend(misfit.under(index))
                if len(found) >= MAX_PROBLEMS:
                    break
        if found:
            raise Misfit(found)
        return out

    return check


def _map(values: Check) -> Check:
    def check(value: Any) -> Any:
        if type(value) is not dict:
            fail(f"expected an object (a map), got {_describe(value)}")
        out = {}
        found: list[tuple[list[Segment], str]] = []
        for key, element in value.items():
            try:
                out[key] = values(element)
            except Misfit as misfit:
                found.extend(misfit.under(key))
                if len(found) >= MAX_PROBLEMS:
                    break
        if found:
            raise Misfit(found)
        return out

    return check


def _bytes(value: Any) -> Any:
    if type(value) is not str:
        fail(f"expected bytes as base64 text, got {_describe(value)}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        fail(f"expected bytes as base64 text, got {_describe(value)}")


def _any_json(value: Any) -> Any:
    return value


_PRIMITIVES: Final[Mapping[str, Check]] = {
    **simple_checks(_describe, "a string"),
    "bytes": _bytes,
}


def _timestamp(per_second: int) -> Check:
    unit = "milliseconds" if per_second == 1000 else "microseconds"
    what = f"a timestamp (ISO-8601 text or epoch {unit})"

    def check(value: Any) -> Any:
        kind = type(value)
        try:
            if kind is int:
                return EPOCH + timedelta(microseconds=value * (1_000_000 // per_second))
            if kind is str:
                parsed = datetime.fromisoformat(value)
                if parsed.tzinfo is None:
                    return parsed.replace(tzinfo=UTC)
                return parsed.astimezone(UTC)
        except (ValueError, OverflowError):
            fail(f"expected {what}, got {_describe(value)}")
        fail(f"expected {what}, got {_describe(value)}")

    return check


def _default_value(schema: Any, default: Any, named: Mapping[str, Any]) -> Any:
    """A field's Avro default (in Avro's JSON form) as :meth:`SchemaBody.decode` gives values:
    a union's default is of its first branch, a ``bytes`` default is Latin-1 code points."""
    if isinstance(schema, list):
        return _default_value(schema[0], default, named)
    if isinstance(schema, str):
        if schema in named:
            return _default_value(named[schema], default, named)
        if schema == "bytes" and isinstance(default, str):
            return default.encode("latin-1")
        if schema in ("float", "double") and isinstance(default, int):
            return float(default)
        return default
    kind = schema["type"]
    logical = schema.get("logicalType")
    if kind == "long" and logical in ("timestamp-millis", "timestamp-micros"):
        per_second = 1000 if logical == "timestamp-millis" else 1_000_000
        return EPOCH + timedelta(microseconds=default * (1_000_000 // per_second))
    if kind == "string" and logical == "json" and isinstance(default, str):
        return orjson.loads(default)
    if kind in ("record", "error") and isinstance(default, dict):
        fields = {f["name"]: f for f in schema["fields"]}
        return {
            name: _default_value(f["type"], default.get(name, f.get("default")), named)
            for name, f in fields.items()
        }
    if kind == "fixed" and isinstance(default, str):
        return default.encode("latin-1")
    if kind == "array" and isinstance(default, list):
        return [_default_value(schema["items"], item, named) for item in default]
    if kind == "map" and isinstance(default, dict):
        return {k: _default_value(schema["values"], v, named) for k, v in default.items()}
    if kind == "enum":
        return default
    return _default_value(kind, default, named)

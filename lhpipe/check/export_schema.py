"""Whether a ``to topic`` value fits the Avro schema it is written with (``schema = NAME``).

The checker calls :func:`misfits` with the value's static type; what it cannot know (a ``json``
value, a schema ``from registry``) the encoder checks at run time
(:mod:`lhpipe.core.avro.encode`), where a misfit is a permanent error. The rules follow what
the encoder accepts:

* an ``int`` or ``long`` fits any numeric field, a ``float`` or ``double`` only a ``float`` or
  ``double`` field (the run time checks that the number is within the field's range: ``len()``
  and ``int()`` give ``long``, number literals with a point ``double``);
* a ``timestamp`` field also takes a ``string`` (ISO-8601 text) and an ``int``/``long`` (epoch
  milliseconds), converted at run time;
* a ``bytes`` field also takes a ``string`` (base64 text, decoded at run time);
* a value that may be null (``T?``, ``null``) needs an optional field;
* a record must give every field that is neither optional nor has a default, and may not have a
  field the schema lacks (the encoder refuses it rather than drop it, as the Gateway does).
"""

from __future__ import annotations

from dataclasses import dataclass

from lhpipe.check import types as t
from lhpipe.check.types import Type

_INTEGERS = (t.INT, t.LONG)

#: A path segment for an array's items / a map's values.
ITEM = "[]"
VALUE = "{}"


@dataclass(frozen=True, slots=True)
class Misfit:
    """One way the value does not fit: where (field names from the top of the value, or
    :data:`ITEM` / :data:`VALUE`), what, whether it is a field the schema lacks, and a hint."""

    path: tuple[str, ...]
    message: str
    unknown_field: bool = False
    hint: str | None = None


def misfits(value: Type, schema: Type) -> list[Misfit]:
    """Every way a value of static type ``value`` does not fit ``schema`` (none when either is
    dynamic)."""
    found: list[Misfit] = []
    _fit(value, schema, (), found, set())
    return found


def path_text(path: tuple[str, ...]) -> str:
    """``value``, ``value.address.city``, ``value.tags[]``..."""
    text = "value"
    for segment in path:
        text += segment if segment in (ITEM, VALUE) else f".{segment}"
    return text


def _fit(
    source: Type,
    target: Type,
    path: tuple[str, ...],
    found: list[Misfit],
    seen: set[tuple[int, int]],
) -> None:
    if isinstance(source, t.Dynamic) or isinstance(target, t.Dynamic):
        return
    if isinstance(target, t.OptionalType):
        if source != t.NULL:
            _fit(t.unwrap(source), target.inner, path, found, seen)
        return
    if isinstance(source, t.OptionalType) or source == t.NULL:
        found.append(
            Misfit(
                path,
                f"`{path_text(path)}` may be null (`{source}`), but the schema's `{target}` "
                "is not optional",
                hint='give a value for null with `??`, e.g. `x ?? ""`',
            )
        )
        return
    if isinstance(target, t.RecordType) and isinstance(source, t.RecordType):
        _record(source, target, path, found, seen)
        return
    if isinstance(target, t.MapType):
        if isinstance(source, t.MapType):
            _fit(source.values, target.values, (*path, VALUE), found, seen)
            return
        if isinstance(source, t.RecordType):
            for name, field_type in source.fields.items():
                _fit(field_type, target.values, (*path, name), found, seen)
            return
    if isinstance(target, t.ArrayType) and isinstance(source, t.ArrayType):
        if source.item != t.NULL:  # an empty list fits any array
            _fit(source.item, target.item, (*path, ITEM), found, seen)
        return
    if not _scalar_fits(source, target):
        found.append(
            Misfit(path, f"`{path_text(path)}` must be `{target}` for the schema, found `{source}`")
        )


def _record(
    source: t.RecordType,
    target: t.RecordType,
    path: tuple[str, ...],
    found: list[Misfit],
    seen: set[tuple[int, int]],
) -> None:
    if source is target or (id(source), id(target)) in seen:
        return
    seen.add((id(source), id(target)))
    for name, field_type in target.fields.items():
        if name in source.fields:
            _fit(source.fields[name], field_type, (*path, name), found, seen)
        elif name not in target.defaults and not isinstance(field_type, t.OptionalType | t.Dynamic):
            found.append(
                Misfit(
                    path,
                    f"`{path_text(path)}` lacks field `{name}` (`{field_type}`), which schema "
                    f"`{target}` requires",
                )
            )
    for name in source.fields:
        if name not in target.fields:
            found.append(
                Misfit(
                    (*path, name), f"schema `{target}` has no field `{name}`", unknown_field=True
                )
            )


def _scalar_fits(source: Type, target: Type) -> bool:
    if t.is_numeric(source) and t.is_numeric(target):
        return source in _INTEGERS or target not in _INTEGERS
    if target == t.TIMESTAMP:
        return source in (t.TIMESTAMP, t.STRING, t.INT, t.LONG)
    if target == t.BYTES:
        return source in (t.BYTES, t.STRING)
    return t.same(source, target)

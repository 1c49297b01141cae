"""Run-time evaluation of `.lhp` expressions, compiled once into closures.

:func:`compile_expr` turns a typed expression into an :data:`Evaluator`: a plain function from
the names an expression sees (``value``, ``key``, ``headers``, ``record``, ``event``, the ``let``
names) to a value. The tree is walked once, at compile time; evaluating a record only calls
closures, so a typical ``where`` + ``let`` + target mapping costs a few microseconds.

Run-time values are plain Python: ``str``, ``int``, ``float``, ``bool``, ``bytes``,
``datetime`` (UTC-aware), ``list``, ``dict`` and ``None``. Every failure raises
:class:`~lhpipe.core.errors.ExpressionError` (a permanent error, delivery.md) whose message
starts with the failing expression as written, e.g.
``value.release.id: `value.release` has no field `id` (its fields: name, tag)``.

Semantics where the spec is silent (docs/runtime.md is the user-facing version):

* Field access ``a.b`` on a record or map: a field whose static type is optional (an optional
  field, a map entry) is null when absent; a null ``a`` of optional type gives null (the checker
  types ``a.b`` as optional then). On a ``json`` value a missing field, or reading a field of
  null, is an error naming the path: delivery.md makes a wrong field a permanent error.
* ``x ?? d`` and ``coalesce(x, ...)`` are the way to say "missing is fine": inside their
  operands, a missing field, a field of null and an index out of range give null instead of an
  error, so ``value.note ?? ""`` works on ``json`` values too.
* ``a[i]``: lists by an ``int`` (negative counts from the end), maps and records by a string.
* ``==``/``!=`` compare values, not Python objects: ``1 == 1.0`` is true, ``true == 1`` is
  false, lists and maps compare item by item, null equals only null.
* ``< <= > >=`` need two numbers, two strings or two timestamps; anything else (null included)
  is an error. ``and``/``or``/``not`` need booleans and short-circuit.
* Arithmetic: ``int op int`` is an ``int`` (the checker types it so, and LittleHorse INT is
  64-bit), so ``/`` on two ints divides and truncates toward zero, as Java does (``7 / 2 == 3``,
  ``-7 / 2 == -3``); any float operand gives a float. ``%`` takes the sign of the dividend.
  Division or remainder by zero is an error. ``+`` also joins two strings or two lists.
* ``in``: an item in a list, a key in a map, a substring in a string; nothing is in null.
* ``"${e}"`` renders strings as they are, integers in decimal, floats in their shortest
  round-trip form (``0.5``, ``30.0``), booleans as ``true``/``false`` and timestamps as
  :func:`lhpipe.core.timestamps.timestamp_text` writes them everywhere (RFC 3339 UTC, cut to exactly
  three fractional digits: ``2024-05-01T12:00:00.000Z``). Null, lists, maps and bytes are
  errors, as the checker rejects them statically: use ``??`` or ``str(...)``.
* ``str(x)`` renders scalars as interpolation does, null as ``null``, bytes as UTF-8 text and
  lists and maps as compact JSON (timestamps as in interpolation, bytes inside JSON base64).
* ``int`` truncates floats toward zero and parses decimal integer text; ``float`` parses
  JSON-style number text; ``bool`` accepts ``"true"``/``"false"`` (any case, surrounding spaces
  ignored) and numbers (non-zero is true). Booleans convert to ``1``/``0``.
* ``env("NAME", "default")`` is read when the expression is compiled (when the program starts);
  an unset variable without a default fails each evaluation that needs it.
"""

from __future__ import annotations

import base64
import hashlib
import math
import operator
import os
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from lhpipe.check import types as t
from lhpipe.check.program import Program
from lhpipe.core.errors import ExpressionError
from lhpipe.core.timestamps import timestamp_text
from lhpipe.syntax import ast

#: A compiled expression: the names it sees -> its value.
Evaluator = Callable[[Mapping[str, Any]], Any]

_NUMBERS = (int, float)
_INT_TEXT = re.compile(r"\s*[-+]?[0-9]+\s*")
_FLOAT_TEXT = re.compile(r"\s*-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\s*")


def compile_expr(expr: ast.Expr, program: Program) -> Evaluator:
    """Compile a typed expression of ``program`` into an :data:`Evaluator`.

    The static types the checker recorded (``program.type_of``) decide how null and missing
    fields behave; an expression the checker did not type is treated as ``json``.
    """
    return _Compiler(program).compile(expr, lenient=False)


# ---------------------------------------------------------------------------------------------
# Value helpers, shared with the planners and `lhpipe test`
# ---------------------------------------------------------------------------------------------


def describe(value: Any) -> str:
    """What a value is, in words: ``null``, ``a string``, ``a list``..."""
    if value is None:
        return "null"
    kind = type(value)
    if kind is bool:
        return "a boolean"
    if kind is int:
        return "an int"
    if kind is float:
        return "a float"
    if kind is str:
        return "a string"
    if kind is bytes:
        return "bytes"
    if kind is list:
        return "a list"
    if isinstance(value, Mapping):
        return "a record"
    if isinstance(value, datetime):
        return "a timestamp"
    return f"a {kind.__name__}"


def values_equal(a: Any, b: Any) -> bool:
    """``a == b`` as the language means it: numbers by value (``1 == 1.0``), booleans only
    with booleans, lists and maps item by item."""
    ta, tb = type(a), type(b)
    if ta is tb and ta is not list and ta is not dict:
        return bool(a == b)
    if ta is bool or tb is bool:
        return False
    if ta in _NUMBERS and tb in _NUMBERS:
        return bool(a == b)
    if ta is list and tb is list:
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(values_equal(a[k], b[k]) for k in a)
    if isinstance(a, datetime) and isinstance(b, datetime):
        return a == b
    return False


def render_text(value: Any) -> str | None:
    """How a scalar renders in ``"${...}"``; ``None`` when it has no text form there (null,
    lists, maps, bytes)."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float:
        return repr(value)
    if isinstance(value, datetime):
        return timestamp_text(value)
    if value is None or kind is bytes or kind is list or isinstance(value, Mapping):
        return None
    # Other Avro logical values (decimal, uuid, date): their own canonical text.
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return timestamp_text(value)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Mapping):
        return dict(value)
    return str(value)


def json_text(value: Any) -> str:
    """``value`` as compact JSON text (what ``str(...)`` gives for lists and maps)."""
    try:
        encoded = orjson.dumps(value, default=_json_default, option=orjson.OPT_PASSTHROUGH_DATETIME)
    except orjson.JSONEncodeError as exc:
        raise ExpressionError(f"cannot write {describe(value)} as JSON: {exc}") from exc
    return encoded.decode("utf-8")


def to_text(value: Any) -> str:
    """``str(value)``: scalars as in interpolation, null as ``null``, bytes as UTF-8, lists
    and maps as compact JSON. Raises :class:`ExpressionError` for bytes that are not UTF-8."""
    text = render_text(value)
    if text is not None:
        return text
    if value is None:
        return "null"
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ExpressionError(f"the bytes are not UTF-8 text: {exc}") from exc
    return json_text(value)


def parse_json(text: str | bytes) -> Any:
    """Parse JSON text; raises :class:`ExpressionError` saying where it is wrong."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ExpressionError(f"not JSON: {exc.msg} at offset {exc.pos}") from exc


# ---------------------------------------------------------------------------------------------
# The compiler
# ---------------------------------------------------------------------------------------------


def _source(expr: ast.Expr) -> str:
    from lhpipe.syntax.formatter import format_expr

    return format_expr(expr)


def _fail(expr: ast.Expr, problem: str) -> ExpressionError:
    """An error naming the expression as written."""
    return ExpressionError(f"{_source(expr)}: {problem}")


def _constant(value: Any) -> Evaluator:
    def constant(env: Mapping[str, Any]) -> Any:
        return value

    return constant


class _Compiler:
    """Compiles expressions of one program. ``lenient`` compiles the operand of ``??`` and
    ``coalesce``, where missing fields and out-of-range indexes give null."""

    def __init__(self, program: Program) -> None:
        self.program = program

    def compile(self, expr: ast.Expr, *, lenient: bool) -> Evaluator:
        if isinstance(expr, ast.StringLit):
            return self._string(expr)
        if isinstance(expr, ast.IntLit | ast.FloatLit | ast.BoolLit):
            return _constant(expr.value)
        if isinstance(expr, ast.NullLit):
            return _constant(None)
        if isinstance(expr, ast.DurationLit):
            return _constant(expr.millis)
        if isinstance(expr, ast.SizeLit):
            return _constant(expr.size)
        if isinstance(expr, ast.ListLit):
            return self._list(expr)
        if isinstance(expr, ast.ObjectLit):
            return self._object(expr)
        if isinstance(expr, ast.Name):
            return self._name(expr)
        if isinstance(expr, ast.Attribute):
            return self._attribute(expr, lenient=lenient)
        if isinstance(expr, ast.Index):
            return self._index(expr, lenient=lenient)
        if isinstance(expr, ast.Call):
            return self._call(expr)
        if isinstance(expr, ast.Unary):
            return self._unary(expr)
        if isinstance(expr, ast.Binary):
            return self._binary(expr)
        raise TypeError(f"`{_source(expr)}` is a block, not a value expression")

    def _optional(self, expr: ast.Expr) -> bool:
        return isinstance(self.program.type_of(expr), t.OptionalType)

    # --- literals -----------------------------------------------------------------------

    def _string(self, expr: ast.StringLit) -> Evaluator:
        if expr.is_plain:
            return _constant(expr.text)
        pieces: list[Evaluator] = [
            _constant(part) if isinstance(part, str) else self._interpolated(part)
            for part in expr.parts
        ]

        def interpolate(env: Mapping[str, Any]) -> str:
            return "".join([piece(env) for piece in pieces])

        return interpolate

    def _interpolated(self, expr: ast.Expr) -> Evaluator:
        inner = self.compile(expr, lenient=False)

        def piece(env: Mapping[str, Any]) -> str:
            value = inner(env)
            if type(value) is str:
                return value
            text = render_text(value)
            if text is None:
                hint = (
                    "give a default with `??`"
                    if value is None
                    else "interpolate one of its parts, or use `str(...)` for JSON text"
                )
                raise _fail(expr, f"cannot interpolate {describe(value)} into a string: {hint}")
            return text

        return piece

    def _list(self, expr: ast.ListLit) -> Evaluator:
        items = tuple(self.compile(item, lenient=False) for item in expr.items)

        def make_list(env: Mapping[str, Any]) -> list[Any]:
            return [item(env) for item in items]

        return make_list

    def _object(self, expr: ast.ObjectLit) -> Evaluator:
        entries = tuple(
            (entry.key.name, self.compile(entry.value, lenient=False)) for entry in expr.entries
        )

        def make_object(env: Mapping[str, Any]) -> dict[str, Any]:
            return {name: value(env) for name, value in entries}

        return make_object

    # --- names and access ---------------------------------------------------------------

    def _name(self, expr: ast.Name) -> Evaluator:
        name = expr.name

        def lookup(env: Mapping[str, Any]) -> Any:
            try:
                return env[name]
            except KeyError:
                raise _fail(expr, f"`{name}` is not available here") from None

        return lookup

    def _attribute(self, expr: ast.Attribute, *, lenient: bool) -> Evaluator:
        checked = self._checked_attribute(expr, lenient=lenient)
        path = _name_path(expr)
        if path is None:
            return checked
        # `value.a.b` where every step is a dict: plain subscripts, and on any surprise (a
        # missing key, a null, a non-record) the checked evaluation says what it means.
        root, *names = path
        if len(names) == 1:
            (first,) = names

            def field(env: Mapping[str, Any]) -> Any:
                try:
                    return env[root][first]
                except (KeyError, TypeError, IndexError):
                    return checked(env)

            return field
        if len(names) == 2:
            first, second = names

            def nested(env: Mapping[str, Any]) -> Any:
                try:
                    return env[root][first][second]
                except (KeyError, TypeError, IndexError):
                    return checked(env)

            return nested
        return checked

    def _checked_attribute(self, expr: ast.Attribute, *, lenient: bool) -> Evaluator:
        obj = self.compile(expr.obj, lenient=lenient)
        name = expr.name.name
        null_ok = lenient or self._optional(expr.obj)
        missing_ok = lenient or self._optional(expr)

        def attribute(env: Mapping[str, Any]) -> Any:
            value = obj(env)
            if type(value) is dict or isinstance(value, Mapping):
                try:
                    return value[name]
                except KeyError:
                    if missing_ok:
                        return None
                    raise _missing(expr, expr.obj, name, value) from None
            if value is None:
                if null_ok:
                    return None
                raise _fail(expr, f"`{_source(expr.obj)}` is null: cannot read `.{name}`")
            raise _fail(expr, f"`{_source(expr.obj)}` is {describe(value)}, which has no fields")

        return attribute

    def _index(self, expr: ast.Index, *, lenient: bool) -> Evaluator:
        obj = self.compile(expr.obj, lenient=lenient)
        index = self.compile(expr.index, lenient=False)
        null_ok = lenient or self._optional(expr.obj)
        missing_ok = lenient or self._optional(expr)

        def item(env: Mapping[str, Any]) -> Any:
            value = obj(env)
            position = index(env)
            if type(value) is list:
                if type(position) is not int:
                    raise _fail(expr, f"a list index must be an int, found {describe(position)}")
                try:
                    return value[position]
                except IndexError:
                    if lenient:
                        return None
                    raise _fail(
                        expr, f"index {position} is out of range (the list has {len(value)})"
                    ) from None
            if type(value) is dict or isinstance(value, Mapping):
                if type(position) is not str:
                    raise _fail(expr, f"a map key must be a string, found {describe(position)}")
                try:
                    return value[position]
                except KeyError:
                    if missing_ok:
                        return None
                    raise _missing(expr, expr.obj, position, value) from None
            if value is None:
                if null_ok:
                    return None
                raise _fail(expr, f"`{_source(expr.obj)}` is null: cannot index it")
            raise _fail(expr, f"cannot index {describe(value)}")

        return item

    # --- operators ----------------------------------------------------------------------

    def _unary(self, expr: ast.Unary) -> Evaluator:
        operand = self.compile(expr.operand, lenient=False)
        if expr.op is ast.UnaryOp.NOT:

            def negate(env: Mapping[str, Any]) -> bool:
                value = operand(env)
                if value is True:
                    return False
                if value is False:
                    return True
                raise _fail(expr, f"`not` needs a boolean, found {describe(value)}")

            return negate

        def minus(env: Mapping[str, Any]) -> Any:
            value = operand(env)
            if type(value) in _NUMBERS:
                return -value
            raise _fail(expr, f"`-` needs a number, found {describe(value)}")

        return minus

    def _binary(self, expr: ast.Binary) -> Evaluator:
        op = expr.op
        if op is ast.BinaryOp.COALESCE:
            return self._coalesce_op(expr)
        left = self.compile(expr.left, lenient=False)
        right = self.compile(expr.right, lenient=False)
        if op is ast.BinaryOp.AND or op is ast.BinaryOp.OR:
            return _logic(expr, left, right)
        if op is ast.BinaryOp.EQ or op is ast.BinaryOp.NE:
            return _equality(expr, left, right)
        if op in _ORDERINGS:
            return _ordering(expr, left, right)
        if op is ast.BinaryOp.IN:
            return _membership(expr, left, right)
        return _arithmetic(expr, left, right)

    def _coalesce_op(self, expr: ast.Binary) -> Evaluator:
        left = self.compile(expr.left, lenient=True)
        right = self.compile(expr.right, lenient=False)

        def coalesce(env: Mapping[str, Any]) -> Any:
            value = left(env)
            return right(env) if value is None else value

        return coalesce

    # --- calls --------------------------------------------------------------------------

    def _call(self, expr: ast.Call) -> Evaluator:
        name = expr.func.name
        if name == "env":
            return _env(expr)
        if name == "coalesce":
            options = tuple(self.compile(arg, lenient=True) for arg in expr.args)

            def first_not_null(env: Mapping[str, Any]) -> Any:
                for option in options:
                    value = option(env)
                    if value is not None:
                        return value
                return None

            return first_not_null
        args = tuple(self.compile(arg, lenient=False) for arg in expr.args)
        if name == "now":
            return lambda env: datetime.now(UTC)
        if name == "uuid":
            return lambda env: str(uuid.uuid4())
        if name == "concat":
            return _concat(expr, args)
        function = _FUNCTIONS.get(name)
        if function is None:
            raise TypeError(f"unknown function `{name}`")
        (arg,) = args

        def call(env: Mapping[str, Any]) -> Any:
            value = arg(env)
            try:
                return function(value)
            except _Unfit as exc:
                raise _fail(expr, str(exc)) from None

        return call


# ---------------------------------------------------------------------------------------------
# Operators
# ---------------------------------------------------------------------------------------------

_ORDERINGS = frozenset({ast.BinaryOp.LT, ast.BinaryOp.LE, ast.BinaryOp.GT, ast.BinaryOp.GE})


def _name_path(expr: ast.Attribute) -> list[str] | None:
    """``["value", "a", "b"]`` for ``value.a.b``; ``None`` when the chain has other steps."""
    names: list[str] = []
    node: ast.Expr = expr
    while isinstance(node, ast.Attribute):
        names.append(node.name.name)
        node = node.obj
    if not isinstance(node, ast.Name):
        return None
    names.append(node.name)
    return names[::-1]


def _missing(expr: ast.Expr, obj: ast.Expr, name: str, value: Mapping[str, Any]) -> ExpressionError:
    fields = list(value)
    shown = ", ".join(fields[:10]) + (", ..." if len(fields) > 10 else "")
    listing = f" (its fields: {shown})" if fields else " (it is empty)"
    return _fail(expr, f"`{_source(obj)}` has no field `{name}`{listing}")


def _logic(expr: ast.Binary, left: Evaluator, right: Evaluator) -> Evaluator:
    is_and = expr.op is ast.BinaryOp.AND
    decided = not is_and  # `and` stops at false, `or` at true

    def check(side: ast.Expr, value: Any) -> bool:
        if value is True or value is False:
            return value
        raise _fail(side, f"`{expr.op.value}` needs a boolean, found {describe(value)}")

    def logic(env: Mapping[str, Any]) -> bool:
        first = left(env)
        if first is not True and first is not False:
            check(expr.left, first)
        if first is decided:
            return bool(decided)
        second = right(env)
        if second is True or second is False:
            return second
        return check(expr.right, second)

    return logic


def _equality(expr: ast.Binary, left: Evaluator, right: Evaluator) -> Evaluator:
    literal = _literal(expr.right)
    if type(literal) in _FAST_EQUAL:
        bound, kind = literal, type(literal)
        negate = expr.op is ast.BinaryOp.NE

        def equal_literal(env: Mapping[str, Any]) -> bool:
            a = left(env)
            same = bool(a == bound) if type(a) is kind else values_equal(a, bound)
            return same is not negate

        return equal_literal
    if expr.op is ast.BinaryOp.EQ:

        def equal(env: Mapping[str, Any]) -> bool:
            a, b = left(env), right(env)
            if type(a) is type(b) and type(a) in _FAST_EQUAL:
                return bool(a == b)
            return values_equal(a, b)

        return equal

    def not_equal(env: Mapping[str, Any]) -> bool:
        a, b = left(env), right(env)
        if type(a) is type(b) and type(a) in _FAST_EQUAL:
            return bool(a != b)
        return not values_equal(a, b)

    return not_equal


_FAST_EQUAL = frozenset({str, int, float, bool})
_NOT_LITERAL = object()


def _literal(expr: ast.Expr) -> Any:
    """The value of a scalar literal (a plain string, a number, a boolean), else a marker."""
    if isinstance(expr, ast.IntLit | ast.FloatLit | ast.BoolLit):
        return expr.value
    if isinstance(expr, ast.StringLit) and expr.is_plain:
        return expr.text
    return _NOT_LITERAL


# On two numbers or two strings these return a bool.
_COMPARE: Mapping[ast.BinaryOp, Callable[[Any, Any], bool]] = {
    ast.BinaryOp.LT: operator.lt,
    ast.BinaryOp.LE: operator.le,
    ast.BinaryOp.GT: operator.gt,
    ast.BinaryOp.GE: operator.ge,
}


def _ordering(expr: ast.Binary, left: Evaluator, right: Evaluator) -> Evaluator:
    compare = _COMPARE[expr.op]
    literal = _literal(expr.right)
    if type(literal) in _NUMBERS or type(literal) is str:
        # `value.age >= 18`: the common case skips a call and half the type checks.
        bound = literal
        same_kind = _NUMBERS if type(literal) in _NUMBERS else (str,)

        def ordering_literal(env: Mapping[str, Any]) -> bool:
            a = left(env)
            if type(a) in same_kind:
                return compare(a, bound)
            raise _fail(expr, f"cannot order {describe(a)} and {describe(bound)}")

        return ordering_literal

    def ordering(env: Mapping[str, Any]) -> bool:
        a, b = left(env), right(env)
        ta, tb = type(a), type(b)
        if (ta in _NUMBERS and tb in _NUMBERS) or (ta is tb and ta is str):
            return compare(a, b)
        if isinstance(a, datetime) and isinstance(b, datetime):
            try:
                return compare(a, b)
            except TypeError:
                pass  # naive against aware: reported below
        raise _fail(expr, f"cannot order {describe(a)} and {describe(b)}")

    return ordering


def _membership(expr: ast.Binary, left: Evaluator, right: Evaluator) -> Evaluator:
    def contains(env: Mapping[str, Any]) -> bool:
        item, container = left(env), right(env)
        kind = type(container)
        if kind is list:
            if type(item) is str:
                return item in container
            return any(values_equal(item, x) for x in container)
        if kind is dict or isinstance(container, Mapping):
            return type(item) is str and item in container
        if kind is str:
            if type(item) is str:
                return item in container
            if item is None:
                return False
            raise _fail(expr, f"cannot look for {describe(item)} in a string")
        if container is None:
            return False
        raise _fail(expr, f"`in` needs a list, a map or a string, found {describe(container)}")

    return contains


def _divide(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:
        quotient = a // b
        # Floor division rounds toward minus infinity; Java (and LittleHorse) truncate.
        if quotient < 0 and quotient * b != a:
            quotient += 1
        return quotient
    return a / b


def _remainder(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:
        return a - b * _divide(a, b)
    return math.fmod(a, b)


_ARITHMETIC: Mapping[ast.BinaryOp, Callable[[Any, Any], Any]] = {
    ast.BinaryOp.ADD: lambda a, b: a + b,
    ast.BinaryOp.SUB: lambda a, b: a - b,
    ast.BinaryOp.MUL: lambda a, b: a * b,
    ast.BinaryOp.DIV: _divide,
    ast.BinaryOp.MOD: _remainder,
}


def _arithmetic(expr: ast.Binary, left: Evaluator, right: Evaluator) -> Evaluator:
    op = expr.op
    apply = _ARITHMETIC[op]
    divides = op is ast.BinaryOp.DIV or op is ast.BinaryOp.MOD
    is_add = op is ast.BinaryOp.ADD

    def arithmetic(env: Mapping[str, Any]) -> Any:
        a, b = left(env), right(env)
        ta, tb = type(a), type(b)
        if ta in _NUMBERS and tb in _NUMBERS:
            if divides and b == 0:
                raise _fail(expr, "division by zero")
            return apply(a, b)
        if is_add and ta is tb and (ta is str or ta is list):
            return a + b
        wanted = "two numbers, two strings or two lists" if is_add else "two numbers"
        raise _fail(expr, f"`{op.value}` needs {wanted}, found {describe(a)} and {describe(b)}")

    return arithmetic


# ---------------------------------------------------------------------------------------------
# Functions (see lhpipe.check.builtins for their signatures)
# ---------------------------------------------------------------------------------------------


class _Unfit(Exception):
    """An argument a function cannot take; the caller names the call."""


def _string_arg(function: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    raise _Unfit(f"`{function}` needs a string, found {describe(value)}")


def _length(value: Any) -> int:
    if isinstance(value, str | bytes | list | Mapping):
        return len(value)
    raise _Unfit(f"`len` needs a string, bytes, a list or a map, found {describe(value)}")


def _to_str(value: Any) -> str:
    try:
        return to_text(value)
    except ExpressionError as exc:
        raise _Unfit(exc.message) from None


def _to_int(value: Any) -> int:
    kind = type(value)
    if kind is int:
        return value  # type: ignore[no-any-return]
    if kind is bool:
        return int(value)
    if kind is float:
        if not math.isfinite(value):
            raise _Unfit(f"cannot convert {value} to an int")
        return int(value)
    if kind is str:
        if _INT_TEXT.fullmatch(value):
            return int(value)
        raise _Unfit(f'"{value}" is not a whole number')
    raise _Unfit(f"cannot convert {describe(value)} to an int")


def _to_float(value: Any) -> float:
    kind = type(value)
    if kind is float:
        return value  # type: ignore[no-any-return]
    if kind is int or kind is bool:
        return float(value)
    if kind is str:
        if _FLOAT_TEXT.fullmatch(value):
            return float(value)
        raise _Unfit(f'"{value}" is not a number')
    raise _Unfit(f"cannot convert {describe(value)} to a float")


def _to_bool(value: Any) -> bool:
    kind = type(value)
    if kind is bool:
        return bool(value)
    if kind is str:
        word = value.strip().lower()
        if word in ("true", "false"):
            return bool(word == "true")
        raise _Unfit(f'"{value}" is not a boolean: write "true" or "false"')
    if kind is int or kind is float:
        return bool(value != 0)
    raise _Unfit(f"cannot convert {describe(value)} to a boolean")


def _json(value: Any) -> Any:
    if not isinstance(value, str | bytes):
        raise _Unfit(f"`json` needs JSON text, found {describe(value)}")
    try:
        return parse_json(value)
    except ExpressionError as exc:
        raise _Unfit(exc.message) from None


def _sha256(value: Any) -> str:
    if type(value) is str:
        return hashlib.sha256(value.encode("utf-8")).hexdigest()
    if type(value) is bytes:
        return hashlib.sha256(value).hexdigest()
    raise _Unfit(f"`sha256` needs a string or bytes, found {describe(value)}")


_FUNCTIONS: Mapping[str, Callable[[Any], Any]] = {
    "lower": lambda v: _string_arg("lower", v).lower(),
    "upper": lambda v: _string_arg("upper", v).upper(),
    "trim": lambda v: _string_arg("trim", v).strip(),
    "len": _length,
    "str": _to_str,
    "int": _to_int,
    "float": _to_float,
    "bool": _to_bool,
    "json": _json,
    "sha256": _sha256,
}


def _concat(expr: ast.Call, args: Sequence[Evaluator]) -> Evaluator:
    def concat(env: Mapping[str, Any]) -> Any:
        values = [arg(env) for arg in args]
        if all(type(v) is str for v in values):
            return "".join(values)
        if all(type(v) is list for v in values):
            return [item for v in values for item in v]
        found = ", ".join(describe(v) for v in values)
        raise _fail(expr, f"`concat` needs all strings or all lists, found {found}")

    return concat


def _env(expr: ast.Call) -> Evaluator:
    """``env("NAME", "default")``: read now, when the program starts."""
    texts = [a.text for a in expr.args if isinstance(a, ast.StringLit) and a.is_plain]
    if len(texts) != len(expr.args) or not texts:
        raise TypeError("env() takes literal strings")
    name = texts[0]
    found = os.environ.get(name, texts[1] if len(texts) > 1 else None)
    if found is not None:
        return _constant(found)

    def unset(env: Mapping[str, Any]) -> Any:
        raise _fail(expr, f"the environment variable {name} is not set (and has no default)")

    return unset

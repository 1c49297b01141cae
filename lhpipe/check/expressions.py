"""Typing of `.lhp` expressions.

:class:`ExpressionChecker` gives every expression node a static type (recorded for the graph
compiler), and reports what is wrong with it. An expression that has an error gets the dynamic
type ``UNKNOWN``, which every rule accepts silently, so one mistake gives one diagnostic.

Operator rules (see :mod:`lhpipe.check.types` for optionals and widening):

* ``== !=``: comparable types (``LHP201`` otherwise); comparing a value that can never be null
  with ``null`` is a warning (``LHP210``).
* ``< <= > >=``: two numbers, two strings or two timestamps, none optional (``LHP201``).
* ``and or not``: booleans (``LHP206``).
* ``in``: an element in a list, a string key in a map, a substring in a string (``LHP206``).
* ``+``: numbers, two strings (concatenation) or two arrays; ``- * / %``: numbers (``LHP206``).
* ``??``: the left side without its optional, or the right side's type when wider.
* ``"${e}"``: ``e`` must be a scalar (string, number, boolean, timestamp or json) and not
  optional.

``env("NAME")``/``env("NAME", "default")`` is allowed only as the *whole* value of a setting
(``secret = env("S")``, ``issuer = env("OIDC_ISSUER")``, a target's ``id = env("ID")``):
its arguments must be literal strings, and it is read once when the program starts. Anywhere
else (inside ``where`` and ``let``, inside another expression or an interpolation) it is
``LHP205``: values that depend on the record must not depend on the machine as well, and a
secret must not leak into data.
"""

from __future__ import annotations

from lhpipe.check import types as t
from lhpipe.check.builtins import BUILTINS
from lhpipe.check.names import Scope, did_you_mean
from lhpipe.check.types import Type
from lhpipe.check.words import a
from lhpipe.diagnostics import Diagnostic, Span, make
from lhpipe.syntax import ast

_INT32 = 2**31

_OPTIONAL_HINT = "use `??` to give a default for null, e.g. `x ?? 0`"


class ExpressionChecker:
    """Types expressions, appending diagnostics to ``diagnostics`` and recording each node's
    type in ``types`` (keyed by ``id(node)``)."""

    def __init__(self, diagnostics: list[Diagnostic], types: dict[int, Type]) -> None:
        self.diagnostics = diagnostics
        self.types = types
        self._env_allowed = False

    def check(self, expr: ast.Expr, scope: Scope, *, allow_env: bool = False) -> Type:
        """The type of ``expr`` in ``scope``; ``allow_env`` when ``expr`` is a setting's value
        (a value position), where ``env()`` may be used anywhere in it (``"Bearer
        ${env("TOKEN")}"``); the steps' expressions (``where``, ``let``) may not use it."""
        outer = self._env_allowed
        self._env_allowed = allow_env
        try:
            typ = self._check(expr, scope)
        finally:
            self._env_allowed = outer
        self.types[id(expr)] = typ
        return typ

    def _report(self, code: str, span: Span, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(make(code, span, message, hint))

    def _sub(self, expr: ast.Expr, scope: Scope) -> Type:
        typ = self._check(expr, scope)
        self.types[id(expr)] = typ
        return typ

    def _check(self, expr: ast.Expr, scope: Scope) -> Type:
        if isinstance(expr, ast.StringLit):
            return self._string(expr, scope)
        if isinstance(expr, ast.IntLit):
            return t.INT if -_INT32 <= expr.value < _INT32 else t.LONG
        if isinstance(expr, ast.FloatLit):
            return t.DOUBLE
        if isinstance(expr, ast.BoolLit):
            return t.BOOLEAN
        if isinstance(expr, ast.NullLit):
            return t.NULL
        if isinstance(expr, ast.DurationLit):
            return t.DURATION
        if isinstance(expr, ast.SizeLit):
            return t.SIZE
        if isinstance(expr, ast.ListLit):
            return t.ArrayType(t.common([self._sub(item, scope) for item in expr.items]))
        if isinstance(expr, ast.ObjectLit):
            return self._object(expr, scope)
        if isinstance(expr, ast.Name):
            return self._name(expr, scope)
        if isinstance(expr, ast.Attribute):
            return self._attribute(expr, scope)
        if isinstance(expr, ast.Index):
            return self._index(expr, scope)
        if isinstance(expr, ast.Call):
            return self._call(expr, scope)
        if isinstance(expr, ast.Unary):
            return self._unary(expr, scope)
        if isinstance(expr, ast.Binary):
            return self._binary(expr, scope)
        self._report(
            "LHP201",
            expr.span,
            f"`{expr.tag.name} {{ ... }}` is a block, not a value that an expression can use",
        )
        return t.UNKNOWN

    # --- literals -----------------------------------------------------------------------

    def _string(self, expr: ast.StringLit, scope: Scope) -> Type:
        for part in expr.parts:
            if isinstance(part, str):
                continue
            typ = self._sub(part, scope)
            if isinstance(typ, t.OptionalType):
                self._report(
                    "LHP201",
                    part.span,
                    f"cannot interpolate `{typ}`: it may be null",
                    _OPTIONAL_HINT,
                )
            elif not t.is_scalar(typ):
                self._report(
                    "LHP201",
                    part.span,
                    f"cannot interpolate a value of type `{typ}` into a string",
                    "interpolate one of its fields, or use `str(...)` for JSON text",
                )
        return t.STRING

    def _object(self, expr: ast.ObjectLit, scope: Scope) -> Type:
        record = t.RecordType(None)
        for entry in expr.entries:
            typ = self._sub(entry.value, scope)
            if entry.key.name in record.fields:
                self._report("LHP109", entry.key.span, f"key `{entry.key.name}` given twice")
                continue
            record.fields[entry.key.name] = typ
        return record

    # --- names and access ---------------------------------------------------------------

    def _name(self, expr: ast.Name, scope: Scope) -> Type:
        binding = scope.names.get(expr.name)
        if binding is None:
            hint = did_you_mean(expr.name, scope.visible())
            if hint is None and scope.visible():
                hint = "names available here: " + ", ".join(
                    f"`{n}`" for n in sorted(scope.visible())
                )
            self._report("LHP102", expr.span, f"unknown name `{expr.name}`", hint)
            return t.UNKNOWN
        if binding.unavailable is not None:
            self._report(binding.code, expr.span, binding.unavailable)
            return t.UNKNOWN
        return binding.type

    def _attribute(self, expr: ast.Attribute, scope: Scope) -> Type:
        obj = self._sub(expr.obj, scope)
        return self.field_of(obj, expr.name)

    def field_of(self, obj: Type, name: ast.Ident) -> Type:
        """The type of field ``name`` of a value of type ``obj`` (reports unknown fields)."""
        if isinstance(obj, t.Dynamic):
            return obj
        inner = t.unwrap(obj)
        nullable = isinstance(obj, t.OptionalType)
        if isinstance(inner, t.RecordType):
            found = inner.fields.get(name.name)
            if found is None:
                owner = f"`{inner.name}`" if inner.name else "this object"
                self._report(
                    "LHP202",
                    name.span,
                    f"{owner} has no field `{name.name}`",
                    did_you_mean(name.name, inner.fields),
                )
                return t.UNKNOWN
            return t.optional(found) if nullable else found
        if isinstance(inner, t.MapType):
            # A map entry read like a field: null when the key is absent.
            return t.optional(inner.values)
        self._report("LHP202", name.span, f"`{obj}` has no fields: cannot read `.{name.name}`")
        return t.UNKNOWN

    def _index(self, expr: ast.Index, scope: Scope) -> Type:
        obj = self._sub(expr.obj, scope)
        index = self._sub(expr.index, scope)
        if isinstance(obj, t.Dynamic):
            return obj
        inner = t.unwrap(obj)
        nullable = isinstance(obj, t.OptionalType)
        if isinstance(inner, t.ArrayType):
            if not (t.is_dynamic(index) or index in (t.INT, t.LONG)):
                self._report(
                    "LHP201", expr.index.span, f"an array index must be an int, found `{index}`"
                )
                return t.UNKNOWN
            return t.optional(inner.item) if nullable else inner.item
        if isinstance(inner, t.MapType):
            if not t.is_string_like(index):
                self._report(
                    "LHP201", expr.index.span, f"a map key must be a string, found `{index}`"
                )
                return t.UNKNOWN
            return t.optional(inner.values)
        if (
            isinstance(inner, t.RecordType)
            and isinstance(expr.index, ast.StringLit)
            and expr.index.is_plain
        ):
            found = self.field_of(inner, ast.Ident(expr.index.text, expr.index.span))
            return t.optional(found) if nullable else found
        self._report("LHP206", expr.span, f"cannot index a value of type `{obj}` with `{index}`")
        return t.UNKNOWN

    # --- calls --------------------------------------------------------------------------

    def _call(self, expr: ast.Call, scope: Scope) -> Type:
        name = expr.func.name
        if name == "env":
            return self._env(expr, allowed=self._env_allowed, scope=scope)
        builtin = BUILTINS.get(name)
        arg_types = [self._sub(arg, scope) for arg in expr.args]
        if builtin is None:
            self._report(
                "LHP203",
                expr.func.span,
                f"unknown function `{name}`",
                did_you_mean(name, BUILTINS),
            )
            return t.UNKNOWN
        if not self._arity_ok(expr, builtin.min_args, builtin.max_args, builtin.signature):
            return t.UNKNOWN
        if t.UNKNOWN in arg_types:
            # An argument already has an error: type the call, but do not report it again.
            result, _ = builtin.result([t.JSON if a == t.UNKNOWN else a for a in arg_types])
            return result
        result, problems = builtin.result(arg_types)
        for index, message in problems:
            self._report("LHP201", expr.args[index].span, f"`{name}`: {message}")
        return result

    def _arity_ok(
        self, expr: ast.Call, min_args: int, max_args: int | None, signature: str
    ) -> bool:
        count = len(expr.args)
        if count >= min_args and (max_args is None or count <= max_args):
            return True
        if max_args is None:
            wanted = f"at least {min_args}"
        elif min_args == max_args:
            wanted = str(min_args)
        else:
            wanted = f"{min_args} or {max_args}"
        plural = "" if wanted == "1" else "s"
        self._report(
            "LHP204",
            expr.span,
            f"`{expr.func.name}` takes {wanted} argument{plural}, found {count}",
            f"usage: {signature}",
        )
        return False

    def _env(self, expr: ast.Call, *, allowed: bool, scope: Scope) -> Type:
        if not allowed:
            self._report(
                "LHP205",
                expr.span,
                "`env()` can only be used in a setting's value, not in `where` or `let`",
                'read the environment in a setting, e.g. `secret = env("NAME")` or '
                '`headers { authorization = "Bearer ${env("TOKEN")}" }`',
            )
        if not self._arity_ok(expr, 1, 2, 'env("NAME") or env("NAME", "default")'):
            return t.UNKNOWN
        for arg in expr.args:
            if not (isinstance(arg, ast.StringLit) and arg.is_plain):
                self._report(
                    "LHP209",
                    arg.span,
                    "`env()` takes literal strings: a variable name and a default",
                )
            else:
                self.types[id(arg)] = t.STRING
        return t.STRING if allowed else t.UNKNOWN

    # --- operators ----------------------------------------------------------------------

    def _unary(self, expr: ast.Unary, scope: Scope) -> Type:
        operand = self._sub(expr.operand, scope)
        if t.is_dynamic(operand):
            return t.BOOLEAN if expr.op is ast.UnaryOp.NOT else operand
        if expr.op is ast.UnaryOp.NOT:
            if operand != t.BOOLEAN:
                self._operand_error("not", operand, expr.operand.span, "a boolean")
            return t.BOOLEAN
        if not t.is_numeric(operand):
            self._operand_error("-", operand, expr.operand.span, "a number")
            return t.UNKNOWN
        return operand

    def _operand_error(self, op: str, typ: Type, span: Span, wanted: str) -> None:
        hint = _OPTIONAL_HINT if isinstance(typ, t.OptionalType) else None
        self._report("LHP206", span, f"`{op}` needs {wanted}, found `{typ}`", hint)

    def _binary(self, expr: ast.Binary, scope: Scope) -> Type:
        left = self._sub(expr.left, scope)
        right = self._sub(expr.right, scope)
        op = expr.op
        if op in (ast.BinaryOp.AND, ast.BinaryOp.OR):
            for side, typ in ((expr.left, left), (expr.right, right)):
                if not (t.is_dynamic(typ) or typ == t.BOOLEAN):
                    self._operand_error(op.value, typ, side.span, "booleans")
            return t.BOOLEAN
        if op in (ast.BinaryOp.EQ, ast.BinaryOp.NE):
            return self._equality(expr, left, right)
        if op in (ast.BinaryOp.LT, ast.BinaryOp.LE, ast.BinaryOp.GT, ast.BinaryOp.GE):
            return self._ordering(expr, left, right)
        if op is ast.BinaryOp.IN:
            return self._membership(expr, left, right)
        if op is ast.BinaryOp.COALESCE:
            return self._coalesce(expr, left, right)
        return self._arithmetic(expr, left, right)

    def _equality(self, expr: ast.Binary, left: Type, right: Type) -> Type:
        if left == t.UNKNOWN or right == t.UNKNOWN:
            return t.BOOLEAN
        if not t.comparable(left, right):
            self._report(
                "LHP201",
                expr.span,
                f"cannot compare `{left}` with `{right}` using `{expr.op.value}`",
                _conversion_hint(left, right),
            )
            return t.BOOLEAN
        for this, other in ((left, right), (right, left)):
            if (
                other == t.NULL
                and this != t.NULL
                and not isinstance(this, t.OptionalType | t.Dynamic)
            ):
                always = "false" if expr.op is ast.BinaryOp.EQ else "true"
                never_null = a(f"`{this}`")
                self._report(
                    "LHP210",
                    expr.span,
                    f"{never_null} is never null: this comparison is always {always}",
                )
        return t.BOOLEAN

    def _ordering(self, expr: ast.Binary, left: Type, right: Type) -> Type:
        if left == t.UNKNOWN or right == t.UNKNOWN:
            return t.BOOLEAN
        if isinstance(left, t.OptionalType) or isinstance(right, t.OptionalType):
            optional_side = left if isinstance(left, t.OptionalType) else right
            self._report(
                "LHP201",
                expr.span,
                f"cannot order `{optional_side}` with `{expr.op.value}`: it may be null",
                _OPTIONAL_HINT,
            )
        elif not t.orderable(left, right):
            self._report(
                "LHP201",
                expr.span,
                f"cannot compare `{left}` with `{right}` using `{expr.op.value}`",
                _conversion_hint(left, right),
            )
        return t.BOOLEAN

    def _membership(self, expr: ast.Binary, left: Type, right: Type) -> Type:
        if t.is_dynamic(left) or t.is_dynamic(right):
            return t.BOOLEAN
        container = t.unwrap(right)
        if isinstance(container, t.ArrayType):
            ok = t.comparable(left, container.item) or container.item == t.NULL
        elif isinstance(container, t.MapType) or container == t.STRING:
            ok = t.unwrap(left) == t.STRING
        else:
            ok = False
        if not ok:
            self._report(
                "LHP206",
                expr.span,
                f"`in` cannot look for `{left}` in `{right}`",
                "`in` finds an element in a list, a key in a map or a substring in a string",
            )
        return t.BOOLEAN

    def _coalesce(self, expr: ast.Binary, left: Type, right: Type) -> Type:
        if t.is_dynamic(left):
            return left
        if right == t.UNKNOWN:
            return t.UNKNOWN
        if right == t.NULL:
            return left
        inner = t.unwrap(left)
        if left == t.NULL:
            return right
        result = t.common([inner, right])
        if t.is_dynamic(result) and not t.is_dynamic(right):
            self._report(
                "LHP201",
                expr.right.span,
                f"the default `{right}` does not fit the `{inner}` it stands in for",
            )
            return t.UNKNOWN
        return result

    def _arithmetic(self, expr: ast.Binary, left: Type, right: Type) -> Type:
        op = expr.op
        if t.is_dynamic(left) or t.is_dynamic(right):
            if left == t.UNKNOWN or right == t.UNKNOWN:
                return t.UNKNOWN
            return t.JSON
        if t.is_numeric(left) and t.is_numeric(right):
            return t.wider_number(left, right)
        if op is ast.BinaryOp.ADD:
            if left == t.STRING and right == t.STRING:
                return t.STRING
            if isinstance(left, t.ArrayType) and isinstance(right, t.ArrayType):
                return t.ArrayType(t.common([left.item, right.item]))
        optional_side = next((x for x in (left, right) if isinstance(x, t.OptionalType)), None)
        if optional_side is not None:
            hint: str | None = _OPTIONAL_HINT
        elif op is ast.BinaryOp.ADD and t.STRING in (left, right):
            hint = 'turn the other side into text with `str(...)` or use "${...}"'
        else:
            hint = None
        wanted = "numbers, strings or arrays" if op is ast.BinaryOp.ADD else "numbers"
        self._report(
            "LHP206",
            expr.span,
            f"`{op.value}` needs {wanted}, found `{left}` and `{right}`",
            hint,
        )
        return t.UNKNOWN


def _conversion_hint(left: Type, right: Type) -> str | None:
    pair = {t.unwrap(left), t.unwrap(right)}
    if t.STRING in pair and any(t.is_numeric(x) for x in pair):
        return "convert one side: `int(...)` parses a string, `str(...)` formats a number"
    return None

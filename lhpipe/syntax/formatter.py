"""The canonical layout of `.lhp` text: ``lhpipe fmt`` and every expression shown to users.

The layout, in full:

- Two spaces of indentation; one declaration, entry, field, step or target per line;
  exactly one blank line between declarations; inside blocks a blank line written in the
  source is kept (several become one), never right after ``{`` or before ``}``.
- A block that is not a declaration's body (a source's or target's block, ``on_error``, a
  nested block like ``variables``, a tagged value like ``hmac { ... }``) stays on one line,
  ``{ a = 1  b = 2 }`` with two spaces between entries, when it has at most three entries, all
  of them ``key = value`` with a value that is not an object or a tagged block, no comment
  inside, and the line fits in 100 columns. Otherwise it is written one entry per line.
- Lists and objects stay on one line (``[a, b]``, ``{ a = 1, b = 2 }``) when they hold no
  comment and the line fits in 100 columns; otherwise one item per line (list items end with a
  comma, object entries take none). Other expressions are always one line.
- Operators are surrounded by single spaces; parentheses are exactly those precedence needs.
- Strings are re-escaped canonically (:func:`lhpipe.syntax._literals.escape_text`); numbers,
  durations and sizes are written as they were. A key is written bare when it is a name and
  quoted otherwise (``"tasks.max" = 1``), however it was written.
- Comments stay where they were written, in their own style (``//`` or ``#``): a comment on a
  line of its own stays on a line of its own before the same code; a comment after code stays
  at the end of that code's line, two spaces after it. A comment written inside an expression
  printed on one line moves to the line after it.

``format_file`` is idempotent and keeps the AST: parsing its output gives the same tree with
other spans.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass

from lhpipe.diagnostics import Span
from lhpipe.syntax import ast
from lhpipe.syntax._literals import escape_text

WIDTH = 100
INDENT = "  "
_INLINE_BLOCK_MAX = 3

# ---------------------------------------------------------------------------------------------
# Expressions
# ---------------------------------------------------------------------------------------------

_COMPARISONS = ["==", "!=", "<", "<=", ">", ">=", "in"]
_PRECEDENCE: dict[ast.BinaryOp, int] = {
    ast.BinaryOp.OR: 1,
    ast.BinaryOp.AND: 2,
    **{ast.BinaryOp(op): 4 for op in _COMPARISONS},
    ast.BinaryOp.COALESCE: 5,
    ast.BinaryOp.ADD: 6,
    ast.BinaryOp.SUB: 6,
    ast.BinaryOp.MUL: 7,
    ast.BinaryOp.DIV: 7,
    ast.BinaryOp.MOD: 7,
}
_NOT, _NEG, _POSTFIX, _ATOM = 3, 8, 9, 10
_NUMBERS = (ast.IntLit, ast.FloatLit, ast.DurationLit, ast.SizeLit)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# In a test's body `expect` starts an expectation, so a key of that name is written quoted.
_TEST_KEYWORDS = frozenset({"expect"})


def _precedence(expr: ast.Expr) -> int:
    if isinstance(expr, ast.Binary):
        return _PRECEDENCE[expr.op]
    if isinstance(expr, ast.Unary):
        return _NOT if expr.op is ast.UnaryOp.NOT else _NEG
    if isinstance(expr, ast.Attribute | ast.Index | ast.Call):
        return _POSTFIX
    return _ATOM


def _operand(expr: ast.Expr, parens: bool) -> str:
    text = format_expr(expr)
    return f"({text})" if parens else text


def format_expr(expr: ast.Expr) -> str:
    """One expression as canonical source text, on one line."""
    if isinstance(expr, ast.Binary):
        level = _PRECEDENCE[expr.op]
        left, right = _precedence(expr.left), _precedence(expr.right)
        if level == 4:  # comparisons do not chain
            left_parens, right_parens = left <= level, right <= level
        elif expr.op is ast.BinaryOp.COALESCE:  # right-associative
            left_parens, right_parens = left <= level, right < level
        else:
            left_parens, right_parens = left < level, right <= level
        return (
            f"{_operand(expr.left, left_parens)} {expr.op.value} "
            f"{_operand(expr.right, right_parens)}"
        )
    if isinstance(expr, ast.Unary):
        if expr.op is ast.UnaryOp.NOT:
            return f"not {_operand(expr.operand, _precedence(expr.operand) < _NOT)}"
        return f"-{_operand(expr.operand, _precedence(expr.operand) < _NEG)}"
    if isinstance(expr, ast.Attribute):
        # `(5).x`: without parentheses the lexer would read one invalid number `5.x`.
        parens = _precedence(expr.obj) < _POSTFIX or isinstance(expr.obj, _NUMBERS)
        return f"{_operand(expr.obj, parens)}.{expr.name.name}"
    if isinstance(expr, ast.Index):
        parens = _precedence(expr.obj) < _POSTFIX
        return f"{_operand(expr.obj, parens)}[{format_expr(expr.index)}]"
    if isinstance(expr, ast.Call):
        return f"{expr.func.name}({', '.join(format_expr(a) for a in expr.args)})"
    if isinstance(expr, ast.StringLit):
        return _format_string(expr)
    if isinstance(expr, ast.IntLit):
        return str(expr.value)
    if isinstance(expr, ast.FloatLit | ast.DurationLit | ast.SizeLit):
        return expr.text
    if isinstance(expr, ast.BoolLit):
        return "true" if expr.value else "false"
    if isinstance(expr, ast.NullLit):
        return "null"
    if isinstance(expr, ast.Name):
        return expr.name
    if isinstance(expr, ast.ListLit):
        return f"[{', '.join(format_expr(item) for item in expr.items)}]"
    if isinstance(expr, ast.ObjectLit):
        if not expr.entries:
            return "{}"
        entries = ", ".join(f"{format_key(e.key)} = {format_expr(e.value)}" for e in expr.entries)
        return f"{{ {entries} }}"
    return f"{expr.tag.name} {_inline_block(expr.block)}"


def target_words(kind: ast.TargetKind, name: str | None = None) -> str:
    """A target as messages name it, in the words of the source: ``run_wf "kyc"``,
    ``to topic "out"``, ``to log`` (``name`` as declared, quoted but not re-escaped)."""
    words = kind.value.replace("_", " ", 1) if kind.value.startswith("to_") else kind.value
    return f'{words} "{name}"' if name is not None else words


def format_key(key: ast.Ident, keywords: frozenset[str] = frozenset()) -> str:
    """A block or object key: bare when it is a name, quoted otherwise (``"tasks.max"``), and
    quoted when it is one of ``keywords``, the words that would start something else where
    the key stands (``expect`` in a test)."""
    if _NAME.fullmatch(key.name) and key.name not in keywords:
        return key.name
    return f'"{escape_text(key.name)}"'


def _format_string(string: ast.StringLit) -> str:
    parts = (
        escape_text(part) if isinstance(part, str) else f"${{{format_expr(part)}}}"
        for part in string.parts
    )
    return f'"{"".join(parts)}"'


def _inline_block(block: ast.Block) -> str:
    if not block.entries:
        return "{}"
    return "{ " + "  ".join(_inline_entry(entry) for entry in block.entries) + " }"


def _inline_entry(entry: ast.Entry) -> str:
    if isinstance(entry, ast.Setting):
        return f"{format_key(entry.key)} = {format_expr(entry.value)}"
    return f"{format_key(entry.key)} {_inline_block(entry.block)}"


def format_type(type_: ast.TypeExpr) -> str:
    """A schema field type as written canonically: ``[string]``, ``map<int>?``."""
    if isinstance(type_, ast.NamedType):
        return type_.name
    if isinstance(type_, ast.ArrayType):
        return f"[{format_type(type_.item)}]"
    if isinstance(type_, ast.MapType):
        return f"map<{format_type(type_.values)}>"
    return f"{format_type(type_.inner)}?"


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def format_file(file: ast.File, text: str) -> str:
    """The canonical text of ``file``, which was parsed from ``text`` (for its comments and
    blank lines)."""
    writer = _Writer(file.comments, text)
    for decl in file.decls:
        writer.declaration(decl)
    writer.finish()
    return writer.result()


@dataclass(frozen=True, slots=True)
class _PendingComment:
    comment: ast.Comment
    after_code: bool  # written after code on its line (else on a line of its own)

    @property
    def position(self) -> tuple[int, int]:
        return self.comment.span.line, self.comment.span.col


def _start(span: Span) -> tuple[int, int]:
    return span.line, span.col


def _closing(span: Span) -> tuple[int, int]:
    """The position of the closing brace that ends ``span``."""
    return span.end_line, span.end_col - 1


class _Writer:
    """Accumulates output lines, weaving the comments in by source position."""

    def __init__(self, comments: Sequence[ast.Comment], text: str) -> None:
        self.source = text.split("\n")
        self.pending = [
            _PendingComment(c, self.source[c.span.line - 1][: c.span.col - 1].strip() != "")
            for c in sorted(comments, key=lambda c: (c.span.line, c.span.col))
        ]
        self.positions = [p.position for p in self.pending]
        self.next_comment = 0
        self.lines: list[str] = []
        self.last_code: int | None = None  # index of the last line holding code
        self.last_code_line = 0  # the source line that code ended on
        self.last_end = 0  # the source line the last emitted item ended on
        self.trailing: set[int] = set()  # output lines that already end with a comment
        self.block_start = True  # nothing emitted yet in the current block
        self.after_declaration = False

    # --- low level -----------------------------------------------------------------------------

    def result(self) -> str:
        return "\n".join(self.lines) + "\n" if self.lines else ""

    def _blank_between(self, first: int, last: int) -> bool:
        """Whether a blank source line lies strictly between lines ``first`` and ``last``."""
        return any(not self.source[i - 1].strip() for i in range(first + 1, last))

    def _separate(self, start_line: int, top_level: bool) -> None:
        if self.block_start:
            self.block_start = False
            return
        if (top_level and self.after_declaration) or self._blank_between(self.last_end, start_line):
            self.lines.append("")

    def comments_before(
        self, position: tuple[int, int], depth: int, top_level: bool = False
    ) -> None:
        """Emit the comments written before ``position``: trailing comments back on the line of
        the code they followed, the others on lines of their own."""
        while self.next_comment < len(self.pending):
            pending = self.pending[self.next_comment]
            if pending.position >= position:
                return
            self.next_comment += 1
            span = pending.comment.span
            if (
                pending.after_code
                and self.last_code is not None
                and span.line == self.last_code_line
                and self.last_code not in self.trailing
            ):
                self.lines[self.last_code] += "  " + pending.comment.text
                self.trailing.add(self.last_code)
                continue
            self._separate(span.line, top_level)
            self.after_declaration = False
            self.lines.append(INDENT * depth + pending.comment.text)
            self.last_end = span.line

    def has_comment_within(self, span: Span) -> bool:
        index = bisect.bisect_right(self.positions, _start(span))
        return index < len(self.positions) and self.positions[index] < (span.end_line, span.end_col)

    def code(
        self, text: str, depth: int, start_line: int, end_line: int, top_level: bool = False
    ) -> None:
        """Emit one line of code that covers source lines ``start_line..end_line``."""
        self._separate(start_line, top_level)
        self.lines.append(INDENT * depth + text)
        self.last_code = len(self.lines) - 1
        self.last_code_line = end_line
        self.last_end = end_line

    def open_block(self) -> None:
        self.block_start = True

    def close_block(self, span: Span, depth: int) -> None:
        """Emit the comments left inside the block that ``span`` covers, then its ``}``."""
        self.comments_before(_closing(span), depth + 1)
        self.block_start = False
        self.lines.append(INDENT * depth + "}")
        self.last_code = len(self.lines) - 1
        self.last_code_line = span.end_line
        self.last_end = span.end_line

    def finish(self) -> None:
        self.comments_before((len(self.source) + 1, 0), 0, top_level=True)

    # --- declarations --------------------------------------------------------------------------

    def declaration(self, decl: ast.Decl) -> None:
        self.comments_before(_start(decl.span), 0, top_level=True)
        if isinstance(decl, ast.SchemaDecl):
            self._schema(decl)
        elif isinstance(decl, ast.WebhookDecl | ast.ConnectorDecl):
            keyword = "webhook" if isinstance(decl, ast.WebhookDecl) else "connector"
            self._header(f"{keyword} {decl.name.name}", decl.span, decl.body.span.line)
            self._entries(decl.body.entries, 1)
            self.close_block(decl.span, 0)
        elif isinstance(decl, ast.PipelineDecl):
            self._pipeline(decl)
        else:
            self._header(f"test {format_expr(decl.title)}", decl.span, decl.title.span.line)
            for item in decl.items:
                if isinstance(item, ast.Expect):
                    self._expect(item, 1)
                else:
                    self._entry(item, 1, in_test=True)
            self.close_block(decl.span, 0)
        self.after_declaration = True

    def _header(self, text: str, span: Span, line: int) -> None:
        self.code(text + " {", 0, span.line, line, top_level=True)
        self.open_block()

    def _schema(self, decl: ast.SchemaDecl) -> None:
        name = decl.name.name
        if decl.file is not None:
            self.code(
                f"schema {name} from {format_expr(decl.file)}",
                0,
                decl.span.line,
                decl.span.end_line,
                True,
            )
            return
        if decl.registry is not None:
            text = f"schema {name} from registry {format_expr(decl.registry)}"
            self.code(text, 0, decl.span.line, decl.span.end_line, True)
            return
        self._header(f"schema {name}", decl.span, decl.name.span.line)
        for field in decl.fields or ():
            self.comments_before(_start(field.span), 1)
            text = f"{field.name.name}: {format_type(field.type)}"
            if field.default is not None:
                text += f" = {format_expr(field.default)}"
            self.code(text, 1, field.span.line, field.span.end_line)
        self.close_block(decl.span, 0)

    def _pipeline(self, decl: ast.PipelineDecl) -> None:
        self._header(f"pipeline {decl.name.name}", decl.span, decl.name.span.line)
        source = decl.source
        head = f"from {source.kind.value}"
        if isinstance(source.arg, ast.StringLit):
            head += " " + format_expr(source.arg)
        elif isinstance(source.arg, ast.Ident):
            head += " " + source.arg.name
        self._headed_block(head, source.block, source.span, 1)
        for step in decl.steps:
            self.comments_before(_start(step.span), 1)
            if isinstance(step, ast.Where):
                self.code(
                    f"where {format_expr(step.condition)}", 1, step.span.line, step.span.end_line
                )
            else:
                self._value_line(f"let {step.name.name} = ", step.value, step.span, 1)
        for target in decl.targets:
            self._target(target, 1)
        if decl.on_error is not None:
            self._headed_block("on_error", decl.on_error, decl.on_error.span, 1)
        self.close_block(decl.span, 0)

    def _target(self, target: ast.Target, depth: int, prefix: str = "") -> None:
        head = prefix + target_words(target.kind)
        if isinstance(target.arg, ast.Ident):
            head += " " + target.arg.name
        elif target.arg is not None:
            head += " " + format_expr(target.arg)
        self._headed_block(head, target.block, target.span, depth)

    def _expect(self, expect: ast.Expect, depth: int) -> None:
        if expect.target is None:
            self.comments_before(_start(expect.span), depth)
            self.code("expect nothing", depth, expect.span.line, expect.span.end_line)
        else:
            self._target(expect.target, depth, "expect ")

    # --- blocks and entries --------------------------------------------------------------------

    def _headed_block(self, head: str, block: ast.Block | None, span: Span, depth: int) -> None:
        """``head`` then ``block`` (if any): `from topic "x" { ... }`, `run_wf "w"`."""
        self.comments_before(_start(span), depth)
        if block is None:
            self.code(head, depth, span.line, span.end_line)
            return
        inline = self._inline_block_or_none(block, len(INDENT * depth + head) + 1)
        if inline is not None:
            self.code(f"{head} {inline}", depth, span.line, span.end_line)
            return
        self.code(head + " {", depth, span.line, block.span.line)
        self.open_block()
        self._entries(block.entries, depth + 1)
        self.close_block(block.span, depth)

    def _inline_block_or_none(self, block: ast.Block, column: int) -> str | None:
        if len(block.entries) > _INLINE_BLOCK_MAX or self.has_comment_within(block.span):
            return None
        for entry in block.entries:
            if not isinstance(entry, ast.Setting) or isinstance(entry.value, ast.Tagged):
                return None
            if isinstance(entry.value, ast.ObjectLit) and entry.value.entries:
                return None
        text = _inline_block(block)
        return text if column + len(text) <= WIDTH else None

    def _entries(self, entries: Sequence[ast.Entry], depth: int) -> None:
        for entry in entries:
            self._entry(entry, depth)

    def _entry(self, entry: ast.Entry, depth: int, in_test: bool = False) -> None:
        key = format_key(entry.key, _TEST_KEYWORDS if in_test else frozenset())
        if isinstance(entry, ast.NestedBlock):
            self._headed_block(key, entry.block, entry.span, depth)
        else:
            self.comments_before(_start(entry.span), depth)
            self._value_line(f"{key} = ", entry.value, entry.span, depth)

    def _value_line(self, prefix: str, value: ast.Expr, span: Span, depth: int) -> None:
        """``prefix`` (``key = ``, ``let x = ``) and a value that may need several lines."""
        if isinstance(value, ast.Tagged):
            self._headed_block(prefix + value.tag.name, value.block, span, depth)
            return
        text = format_expr(value)
        fits = len(INDENT * depth + prefix + text) <= WIDTH and not self.has_comment_within(
            value.span
        )
        if fits or not isinstance(value, ast.ListLit | ast.ObjectLit) or not _items(value):
            self.code(prefix + text, depth, span.line, span.end_line)
            return
        opener, closer = ("[", "]") if isinstance(value, ast.ListLit) else ("{", "}")
        self.code(prefix + opener, depth, span.line, value.span.line)
        self.open_block()
        if isinstance(value, ast.ListLit):
            for item in value.items:
                self.comments_before(_start(item.span), depth + 1)
                self._value_line("", item, item.span, depth + 1)
                self.lines[-1] += ","
        else:
            for object_entry in value.entries:
                self.comments_before(_start(object_entry.span), depth + 1)
                self._value_line(
                    f"{format_key(object_entry.key)} = ",
                    object_entry.value,
                    object_entry.span,
                    depth + 1,
                )
        self.comments_before(_closing(value.span), depth + 1)
        self.block_start = False
        self.lines.append(INDENT * depth + closer)
        self.last_code = len(self.lines) - 1
        self.last_code_line = self.last_end = value.span.end_line


def _items(value: ast.ListLit | ast.ObjectLit) -> tuple[object, ...]:
    return value.items if isinstance(value, ast.ListLit) else value.entries

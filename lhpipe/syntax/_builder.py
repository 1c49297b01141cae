"""The AST builder: lark callbacks that turn each reduced grammar rule into an AST node.

It runs inline while the LALR parser reduces (no parse tree is built), so it must never raise:
invalid literals, escapes and interpolations become diagnostics in the current
:class:`ParseSession` and the node gets a harmless placeholder value. Spans are computed from
the first and last token or node of each rule, which is exact because every token that starts
or ends a construct is kept by the grammar.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from lark import Token, Transformer

from lhpipe.diagnostics import Diagnostic, Span, make
from lhpipe.syntax import ast
from lhpipe.syntax._literals import Interpolation, classify_number, scan_string

MAX_NESTING = 100
"""How deep an expression, a type or a block may nest: each operator, `.field`, `[index]`,
call, list, object, block, string interpolation, `[T]`, `map<T>` and `T?` is one level. Deeper
text is a syntax error (LHP010), so that nothing after the parser (the checker, the formatter,
the graph, the evaluator) ever walks a tree deeper than this."""


_Node = TypeVar("_Node")


@dataclass
class ParseSession:
    """The state of one call of ``parse()``: the file, the diagnostics found so far, the
    comments seen by the lexer and the last tokens (for error messages)."""

    path: str
    text: str
    parse_interpolation: Callable[[str, int, int], ast.Expr | None]
    diagnostics: list[Diagnostic] = field(default_factory=list)
    comments: list[Token] = field(default_factory=list)
    current: Token | None = None
    previous: Token | None = None
    # The nesting depth of each composite node built so far (by id, the node kept alive so
    # that its id is not reused), and whether the current declaration was already reported
    # as too deeply nested (once per declaration: every level above the limit is too deep).
    depths: dict[int, tuple[Any, int]] = field(default_factory=dict)
    too_deep: bool = False

    def token_span(self, token: Token) -> Span:
        line, col = token.line or 1, token.column or 1
        if token.end_line is None or token.end_column is None:
            # lark's copy of a parser (error recovery tries tokens on one) copies tokens
            # without their end; every token that reaches the builder is on one line.
            return Span(self.path, line, col, line, col + len(token))
        return Span(self.path, line, col, token.end_line, token.end_column)

    def report(self, code: str, span: Span, message: str, hint: str | None = None) -> None:
        """Record a diagnostic once: error recovery may build the same node more than once
        while it tries which tokens the parser accepts."""
        where = (span.line, span.col)
        for known in self.diagnostics:
            if known.code == code and (known.span.line, known.span.col) == where:
                return
        self.diagnostics.append(make(code, span, message, hint))

    def depth(self, item: _Item) -> int:
        """The nesting depth of a node (0 for a token or a leaf)."""
        known = self.depths.get(id(item))
        return 0 if known is None else known[1]

    def nest(self, node: _Node, children: list[_Item], at: Span | None, *, level: int = 1) -> _Node:
        """Note ``node``'s depth: ``level`` (1 for a construct that nests, 0 for a wrapper such
        as `key = value`) above its deepest child; report LHP010 at ``at`` (where the text
        crosses the limit) the first time a node of the declaration is deeper than
        :data:`MAX_NESTING`."""
        depth = level + max((self.depth(c) for c in children), default=0)
        if depth:
            self.depths[id(node)] = (node, depth)
        if depth > MAX_NESTING and at is not None:
            self.too_deeply_nested(at)
        return node

    def too_deeply_nested(self, at: Span) -> None:
        if not self.too_deep:
            self.too_deep = True
            self.report(
                "LHP010",
                at,
                f"too deeply nested: more than {MAX_NESTING} levels of expressions, types or "
                "blocks",
                "split it: give parts a name with `let`, or declare a schema for a nested record",
            )

    def end_of_declaration(self) -> None:
        """A declaration was read (or abandoned by error recovery): the next one may be
        reported too deep again."""
        self.too_deep = False


SESSION: ContextVar[ParseSession] = ContextVar("lhpipe_parse_session")

_Item = Any  # a Token or an AST node: what lark hands to a rule callback


def _start(item: _Item) -> tuple[int, int]:
    if isinstance(item, Token):
        return item.line or 1, item.column or 1
    span: Span = item.span
    return span.line, span.col


def _end(item: _Item) -> tuple[int, int]:
    if isinstance(item, Token):
        return item.end_line or 1, item.end_column or 1
    span: Span = item.span
    return span.end_line, span.end_col


def _span(session: ParseSession, first: _Item, last: _Item) -> Span:
    line, col = _start(first)
    end_line, end_col = _end(last)
    return Span(session.path, line, col, end_line, end_col)


def _nodes(children: list[_Item]) -> list[Any]:
    """The children that are AST nodes (punctuation and keywords dropped)."""
    return [c for c in children if not isinstance(c, Token)]


_BINARY_OPS = {op.value: op for op in ast.BinaryOp}
_COMPARISON = 4
_BINDING: dict[str, int] = {
    "or": 1,
    "and": 2,
    **dict.fromkeys(("==", "!=", "<", "<=", ">", ">=", "in"), _COMPARISON),
    "??": 5,
    "+": 6,
    "-": 6,
    "*": 7,
    "/": 7,
    "%": 7,
}
_NOT_OPERAND = _COMPARISON  # `not a == b` is `not (a == b)`
_NEGATION_OPERAND = 8  # tighter than every binary operator: `-a * b` is `(-a) * b`


class _Precedence:
    """Precedence climbing over the flat ``prefix* operand (operator prefix* operand)*``
    sequence that the grammar reads (the table is in ``grammar/lhp.lark``): ``??`` groups to
    the right, the other operators to the left, and comparisons do not chain."""

    def __init__(self, items: list[_Item], session: ParseSession) -> None:
        self.items = items
        self.next = 0
        self.session = session
        self.level = 0  # how deep expression() recurses: prefixes and `??` nest to the right

    def expression(self, weakest: int) -> ast.Expr:
        if self.level >= MAX_NESTING:
            # Too deep to build without deep recursion: the declaration is left out anyway.
            item = self.items[self.next]
            at = self.session.token_span(item) if isinstance(item, Token) else item.span
            self.session.too_deeply_nested(at)
            self.next = len(self.items)
            return ast.NullLit(at)
        self.level += 1
        try:
            return self._expression(weakest)
        finally:
            self.level -= 1

    def _expression(self, weakest: int) -> ast.Expr:
        left = self._operand()
        compared = False
        while self.next < len(self.items):
            operator: Token = self.items[self.next]
            binding = _BINDING[str(operator)]
            if binding < weakest:
                break
            self.next += 1
            if binding == _COMPARISON and compared:
                self.session.report(
                    "LHP001",
                    self.session.token_span(operator),
                    f"unexpected `{operator}`: comparisons do not chain",
                    "write `a < b and b < c`",
                )
            compared = binding == _COMPARISON
            right = self.expression(binding if str(operator) == "??" else binding + 1)
            op = _BINARY_OPS[str(operator)]
            binary = ast.Binary(op, left, right, _span(self.session, left, right))
            left = self.session.nest(binary, [left, right], self.session.token_span(operator))
        return left

    def _operand(self) -> ast.Expr:
        item = self.items[self.next]
        self.next += 1
        if not isinstance(item, Token):
            expr: ast.Expr = item
            return expr
        if item.type == "NOT":
            operand = self.expression(_NOT_OPERAND)
            unary = ast.Unary(ast.UnaryOp.NOT, operand, _span(self.session, item, operand))
        else:
            operand = self.expression(_NEGATION_OPERAND)
            unary = ast.Unary(ast.UnaryOp.NEG, operand, _span(self.session, item, operand))
        return self.session.nest(unary, [operand], self.session.token_span(item))


class AstBuilder(Transformer[Token, Any]):
    """One method per grammar rule (or alias); lark calls them with the rule's children."""

    @property
    def _s(self) -> ParseSession:
        return SESSION.get()

    # --- file and declarations ---------------------------------------------------------------

    def start(self, children: list[_Item]) -> tuple[ast.Decl, ...]:
        return tuple(children)

    def interpolation(self, children: list[_Item]) -> ast.Expr:
        expr: ast.Expr = children[0]
        return expr

    def schema_inline(self, c: list[_Item]) -> ast.SchemaDecl:
        self._s.end_of_declaration()
        fields = tuple(x for x in c[3:-1] if isinstance(x, ast.Field))
        return ast.SchemaDecl(c[1], fields, None, None, _span(self._s, c[0], c[-1]))

    def schema_file(self, c: list[_Item]) -> ast.SchemaDecl:
        self._s.end_of_declaration()
        return ast.SchemaDecl(c[1], None, c[3], None, _span(self._s, c[0], c[-1]))

    def schema_registry(self, c: list[_Item]) -> ast.SchemaDecl:
        self._s.end_of_declaration()
        return ast.SchemaDecl(c[1], None, None, c[4], _span(self._s, c[0], c[-1]))

    def field(self, c: list[_Item]) -> ast.Field:
        default = c[4] if len(c) == 5 else None
        node = ast.Field(c[0], c[2], default, _span(self._s, c[0], c[-1]))
        return self._s.nest(node, c, None, level=0)

    def named_type(self, c: list[_Item]) -> ast.NamedType:
        return ast.NamedType(str(c[0]), self._s.token_span(c[0]))

    def array_type(self, c: list[_Item]) -> ast.ArrayType:
        node = ast.ArrayType(c[1], _span(self._s, c[0], c[-1]))
        return self._s.nest(node, c, self._s.token_span(c[0]))

    def map_type(self, c: list[_Item]) -> ast.MapType:
        node = ast.MapType(c[2], _span(self._s, c[0], c[-1]))
        return self._s.nest(node, c, _span(self._s, c[0], c[1]))

    def optional_type(self, c: list[_Item]) -> ast.OptionalType:
        node = ast.OptionalType(c[0], _span(self._s, c[0], c[-1]))
        return self._s.nest(node, c, self._s.token_span(c[-1]))

    def webhook(self, c: list[_Item]) -> ast.WebhookDecl:
        self._s.end_of_declaration()
        return ast.WebhookDecl(c[1], c[2], _span(self._s, c[0], c[-1]))

    def connector(self, c: list[_Item]) -> ast.ConnectorDecl:
        self._s.end_of_declaration()
        return ast.ConnectorDecl(c[1], c[2], _span(self._s, c[0], c[-1]))

    def test(self, c: list[_Item]) -> ast.TestDecl:
        self._s.end_of_declaration()
        items = tuple(_nodes(c[2:-1]))
        return ast.TestDecl(c[1], items, _span(self._s, c[0], c[-1]))

    def expect(self, c: list[_Item]) -> ast.Expect:
        target = c[1] if isinstance(c[1], ast.Target) else None
        return ast.Expect(target, _span(self._s, c[0], c[-1]))

    # --- pipelines -----------------------------------------------------------------------------

    def pipeline(self, c: list[_Item]) -> ast.PipelineDecl:
        self._s.end_of_declaration()
        source: ast.Source | None = None
        steps: list[ast.Step] = []
        targets: list[ast.Target] = []
        on_error: ast.Block | None = None
        for item in c[3:-1]:
            if isinstance(item, ast.Source):
                source = item
            elif isinstance(item, ast.Where | ast.Let):
                steps.append(item)
            elif isinstance(item, ast.Target):
                targets.append(item)
            elif isinstance(item, ast.Block):
                on_error = item
        assert source is not None  # the grammar requires it
        return ast.PipelineDecl(
            c[1], source, tuple(steps), tuple(targets), on_error, _span(self._s, c[0], c[-1])
        )

    def source(self, c: list[_Item]) -> ast.Source:
        kind = ast.SourceKind(str(c[1]))
        arg = c[2] if len(c) > 2 and isinstance(c[2], ast.StringLit | ast.Ident) else None
        block = c[-1] if isinstance(c[-1], ast.Block) else None
        return ast.Source(kind, arg, block, _span(self._s, c[0], c[-1]))

    def where(self, c: list[_Item]) -> ast.Where:
        return ast.Where(c[1], _span(self._s, c[0], c[-1]))

    def let(self, c: list[_Item]) -> ast.Let:
        return ast.Let(c[1], c[3], _span(self._s, c[0], c[-1]))

    def target(self, c: list[_Item]) -> ast.Target:
        kind = ast.TargetKind("to_" + str(c[1])) if c[0].type == "TO" else ast.TargetKind(str(c[0]))
        arg = next((x for x in c if isinstance(x, ast.StringLit | ast.Ident)), None)
        block = c[-1] if isinstance(c[-1], ast.Block) else None
        return ast.Target(kind, arg, block, _span(self._s, c[0], c[-1]))

    def on_error(self, c: list[_Item]) -> ast.Block:
        block: ast.Block = c[1]
        return block

    # --- blocks --------------------------------------------------------------------------------

    def block(self, c: list[_Item]) -> ast.Block:
        node = ast.Block(tuple(_nodes(c[1:-1])), _span(self._s, c[0], c[-1]))
        return self._s.nest(node, c, self._s.token_span(c[0]))

    def setting(self, c: list[_Item]) -> ast.Setting:
        node = ast.Setting(c[0], c[2], _span(self._s, c[0], c[-1]))
        return self._s.nest(node, c, None, level=0)

    def nested(self, c: list[_Item]) -> ast.NestedBlock:
        node = ast.NestedBlock(c[0], c[1], _span(self._s, c[0], c[-1]))
        return self._s.nest(node, c, None, level=0)

    def tagged(self, c: list[_Item]) -> ast.Tagged:
        tag = ast.Ident(str(c[0]), self._s.token_span(c[0]))
        node = ast.Tagged(tag, c[1], _span(self._s, c[0], c[-1]))
        return self._s.nest(node, c, None, level=0)

    # --- expressions ---------------------------------------------------------------------------

    def _unterminated(self, span: Span) -> bool:
        """Whether the string at ``span`` is the empty stand-in for an unterminated string
        (already reported)."""
        return any(
            d.code == "LHP004" and (d.span.line, d.span.col) == (span.line, span.col)
            for d in self._s.diagnostics
        )

    def ident(self, c: list[_Item]) -> ast.Ident:
        return ast.Ident(str(c[0]), self._s.token_span(c[0]))

    def key(self, c: list[_Item]) -> ast.Ident:
        token: Token = c[0]
        if token.type == "NAME":
            return ast.Ident(str(token), self._s.token_span(token))
        # A quoted key is its decoded text; the span keeps the quotes.
        literal = self.string(c)
        if not literal.is_plain:
            self._s.report(
                "LHP009",
                literal.span,
                "a key cannot hold an interpolation",
                "a key is fixed text; compute values, not keys",
            )
        elif not literal.text and not self._unterminated(literal.span):
            self._s.report("LHP009", literal.span, "a key cannot be empty")
        return ast.Ident(literal.text, literal.span)

    def name(self, c: list[_Item]) -> ast.Name:
        return ast.Name(str(c[0]), self._s.token_span(c[0]))

    def call(self, c: list[_Item]) -> ast.Call:
        func = ast.Ident(str(c[0]), self._s.token_span(c[0]))
        node = ast.Call(func, tuple(_nodes(c[2:-1])), _span(self._s, c[0], c[-1]))
        return self._s.nest(node, c, func.span)

    def operation(self, c: list[_Item]) -> ast.Expr:
        return _Precedence(c, self._s).expression(0)

    def attribute(self, c: list[_Item]) -> ast.Attribute:
        node = ast.Attribute(c[0], c[2], _span(self._s, c[0], c[-1]))
        return self._s.nest(node, c, _span(self._s, c[1], c[2]))

    def index(self, c: list[_Item]) -> ast.Index:
        node = ast.Index(c[0], c[2], _span(self._s, c[0], c[-1]))
        return self._s.nest(node, c, _span(self._s, c[1], c[-1]))

    def paren(self, c: list[_Item]) -> ast.Expr:
        # No node for parentheses (the formatter puts back the ones precedence needs), but the
        # expression's span covers them so that diagnostics underline what was written.
        expr: ast.Expr = dataclasses.replace(c[1], span=_span(self._s, c[0], c[-1]))
        return self._s.nest(expr, [c[1]], None, level=0)  # parentheses add no level

    def true(self, c: list[_Item]) -> ast.BoolLit:
        return ast.BoolLit(True, self._s.token_span(c[0]))

    def false(self, c: list[_Item]) -> ast.BoolLit:
        return ast.BoolLit(False, self._s.token_span(c[0]))

    def null(self, c: list[_Item]) -> ast.NullLit:
        return ast.NullLit(self._s.token_span(c[0]))

    def list_lit(self, c: list[_Item]) -> ast.ListLit:
        node = ast.ListLit(tuple(_nodes(c[1:-1])), _span(self._s, c[0], c[-1]))
        return self._s.nest(node, c, self._s.token_span(c[0]))

    def object_lit(self, c: list[_Item]) -> ast.ObjectLit:
        node = ast.ObjectLit(tuple(_nodes(c[1:-1])), _span(self._s, c[0], c[-1]))
        return self._s.nest(node, c, self._s.token_span(c[0]))

    def object_entry(self, c: list[_Item]) -> ast.ObjectEntry:
        node = ast.ObjectEntry(c[0], c[2], _span(self._s, c[0], c[2]))
        return self._s.nest(node, c, None, level=0)

    def number(self, c: list[_Item]) -> ast.Expr:
        token: Token = c[0]
        span = self._s.token_span(token)
        text = str(token)
        number = classify_number(text)
        if number is None:
            self._s.report(
                "LHP006",
                span,
                f"invalid literal `{text}`",
                "numbers are written 42 or 4.2; durations 250ms, 5s, 2m, 1h; sizes 512KiB, 1MiB",
            )
            return ast.IntLit(0, span)
        if number.kind == "int":
            return ast.IntLit(int(number.value), span)
        if number.kind == "float":
            return ast.FloatLit(float(number.value), text, span)
        if number.kind == "duration":
            return ast.DurationLit(int(number.value), text, span)
        return ast.SizeLit(int(number.value), text, span)

    def string(self, c: list[_Item]) -> ast.StringLit:
        token: Token = c[0]
        session = self._s
        span = session.token_span(token)
        # Strings are one line: an offset into the content is a column offset.
        content_col = span.col + 1
        pieces, bad_escapes = scan_string(str(token)[1:-1])
        for bad in bad_escapes:
            col = content_col + bad.offset
            session.report(
                "LHP005",
                Span(session.path, span.line, col, span.line, col + bad.length),
                f"invalid escape `{bad.text}` in a string",
                'the escapes are \\" \\\\ \\n \\t \\r \\$ and \\u{hex}',
            )
        parts: list[str | ast.Expr] = []
        for piece in pieces:
            if isinstance(piece, Interpolation):
                expr = session.parse_interpolation(
                    piece.source, span.line, content_col + piece.offset
                )
                if expr is not None:
                    parts.append(expr)
            else:
                parts.append(piece)
        node = ast.StringLit(tuple(parts), span)
        expressions = [p for p in parts if not isinstance(p, str)]
        if expressions:
            self._s.nest(node, expressions, span)
        return node

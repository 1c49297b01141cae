"""``parse()``: `.lhp` text to an AST with exact spans, and every syntax error as a diagnostic.

The grammar (``grammar/lhp.lark``, shipped in the wheel as ``lhpipe/_grammar/lhp.lark``) is
compiled once per process by lark's LALR(1) generator, with lark's cache so that a cold
process only loads the tables. The AST is built inline while the parser reduces (no parse tree).

Errors never escape as exceptions. The parser's ``on_error`` hook receives each unexpected
token or character; it records a diagnostic worded by :mod:`lhpipe.syntax._messages` and
recovers so that independent errors in one file are all reported:

- an unexpected character is skipped; an unterminated string is replaced by an empty one up to
  the end of its line, so parsing continues as if it had been closed;
- an unexpected token abandons the declaration it is in: the parser's stacks are unwound to the
  top level, and the input is skipped to the end of that declaration (its braces counted) or to
  the next line that starts a declaration, whichever comes first.

The declarations before and after an error are in the returned :class:`ast.File`.

A declaration with a syntax error inside is left out of the file, whether recovery abandoned it
or repaired it (a placeholder for a bad literal, a `=` put back): its meaning is unknown, and
checking what is left of it would only report consequences of the syntax error. Its kind and
name, when the text got that far, are in :attr:`ParseResult.dropped`, so that the checker can
treat references to it as references to a declaration that exists but cannot be read, and
report nothing about them: the syntax error is the one diagnostic (see :mod:`lhpipe.check`).
"""

from __future__ import annotations

import bisect
import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lhpipe.diagnostics import Diagnostic, Span, make
from lhpipe.syntax import ast
from lhpipe.syntax._builder import SESSION, ParseSession
from lhpipe.syntax._literals import interpolation_end
from lhpipe.syntax._messages import (
    CLOSER,
    DECLARATION_TERMINALS,
    DECLARATIONS,
    ErrorWords,
    describe_error,
    expected_phrase,
)
from lhpipe.syntax.grammar import lark_parser

if TYPE_CHECKING:
    from lark import Token
    from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
    from lark.parsers.lalr_interactive_parser import InteractiveParser


@dataclass(frozen=True, slots=True)
class DroppedDecl:
    """A declaration left out of the AST because of a syntax error inside it: its ``kind``
    (``schema``, ``webhook``, ``pipeline`` or ``connector``) and its name as written."""

    kind: str
    name: ast.Ident


@dataclass(frozen=True)
class ParseResult:
    """The AST of one file (``None`` only when nothing useful could be built), the syntax
    diagnostics in source order, and the named declarations left out because of them."""

    file: ast.File | None
    diagnostics: tuple[Diagnostic, ...]
    dropped: tuple[DroppedDecl, ...] = ()


def parse(text: str, path: str) -> ParseResult:
    """Parse ``text`` (the content of the file at ``path``, which every span names).

    Never raises: syntax errors are diagnostics with codes ``LHP0xx``.
    """
    try:
        return _parse(text, path)
    except Exception as exc:
        span = Span(path, 1, 1, 1, 1)
        message = f"internal parser error ({type(exc).__name__}: {exc}); please report it"
        return ParseResult(None, (make("LHP001", span, message),))


# ---------------------------------------------------------------------------------------------
# The lark parser, built once per process
# ---------------------------------------------------------------------------------------------


@functools.cache
def _keywords() -> frozenset[str]:
    """The terminals that are words (`pipeline`, `to`, `and`...)."""
    return frozenset(
        t.name
        for t in lark_parser().terminals
        if t.pattern.type == "str" and re.fullmatch(r"[a-z_]+", t.pattern.value)
    )


@functools.cache
def _string_pattern() -> re.Pattern[str]:
    return re.compile(lark_parser().get_terminal("STRING").pattern.to_regexp())


# ---------------------------------------------------------------------------------------------
# Parsing and recovery
# ---------------------------------------------------------------------------------------------


def _parse(text: str, path: str) -> ParseResult:
    if text.startswith("\ufeff"):
        text = " " + text[1:]  # a byte-order mark: keep the columns, drop the character
    session = ParseSession(path, text, _parse_interpolation)
    recovery = _Recovery(session)
    token = SESSION.set(session)
    try:
        decls: tuple[ast.Decl, ...] = lark_parser().parse(  # type: ignore[assignment]
            text, start="start", on_error=recovery.handle
        )
    finally:
        SESSION.reset(token)
    comments = {c.start_pos: c for c in session.comments}  # recovery may re-read a token
    kept, repaired = _without_errors(decls, session.diagnostics)
    file = ast.File(
        path,
        kept,
        tuple(
            ast.Comment(str(c).rstrip("\r"), session.token_span(c))
            for _, c in sorted(comments.items())
        ),
        Span(path, 1, 1, *_end_of(text)),
    )
    diagnostics = sorted(session.diagnostics, key=lambda d: (d.span.line, d.span.col, d.code))
    dropped = sorted(
        [*recovery.abandoned, *repaired], key=lambda d: (d.name.span.line, d.name.span.col)
    )
    return ParseResult(file, tuple(diagnostics), tuple(dropped))


_KINDS: dict[type, str] = {
    ast.SchemaDecl: "schema",
    ast.WebhookDecl: "webhook",
    ast.PipelineDecl: "pipeline",
    ast.ConnectorDecl: "connector",
}


def _without_errors(
    decls: tuple[ast.Decl, ...], diagnostics: list[Diagnostic]
) -> tuple[tuple[ast.Decl, ...], list[DroppedDecl]]:
    """The declarations with no syntax error inside, and the named ones left out: one that
    needed a repair (a placeholder for a bad literal, a `=` put back) is left out, so that the
    checker does not report the consequences of the syntax error. (An error at a
    declaration's first token is an error of what came before it.)"""
    if not diagnostics:
        return decls, []
    starts = sorted((d.span.line, d.span.col) for d in diagnostics)

    def clean(decl: ast.Decl) -> bool:
        first, end = (decl.span.line, decl.span.col), (decl.span.end_line, decl.span.end_col)
        index = bisect.bisect_right(starts, first)
        return index == len(starts) or starts[index] >= end

    kept: list[ast.Decl] = []
    dropped: list[DroppedDecl] = []
    for decl in decls:
        if clean(decl):
            kept.append(decl)
        elif not isinstance(decl, ast.TestDecl):
            dropped.append(DroppedDecl(_KINDS[type(decl)], decl.name))
    return tuple(kept), dropped


def _end_of(text: str) -> tuple[int, int]:
    """The (line, col) just after the last character, not counting a final line break (an
    editor shows no line after it)."""
    body = text[:-1] if text.endswith("\n") else text
    line = body.count("\n") + 1
    return line, len(body) - (body.rfind("\n") + 1) + 1


def _parse_interpolation(source: str, line: int, col: int) -> ast.Expr | None:
    """Parse the expression inside ``${...}`` found at (line, col); ``None`` after reporting
    LHP007 when it is not one expression."""
    from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

    session = SESSION.get()
    saved = session.current, session.previous, len(session.comments)
    # Padding puts every token of the interpolation at its real line and column.
    padded = "\n" * (line - 1) + " " * (col - 1) + source
    try:
        expr: ast.Expr = lark_parser().parse(padded, start="interpolation")  # type: ignore[assignment]
        return expr
    except UnexpectedToken as exc:
        end = col + len(source)  # the column of the closing `}`
        if not source.strip():
            where = Span(session.path, line, col - 2, line, end + 1)
            message = "empty interpolation `${}`: expected an expression"
        elif exc.token.type == "$END":
            where = Span(session.path, line, end, line, end + 1)
            wanted = expected_phrase(exc.expected)
            message = f"invalid interpolation: unexpected `}}`, expected {wanted}"
        else:
            where = session.token_span(exc.token)
            if "$END" in exc.expected:
                wanted = "`}` (an interpolation holds one expression)"
            else:
                wanted = expected_phrase(exc.expected)
            message = f"invalid interpolation: unexpected `{exc.token}`, expected {wanted}"
        session.report("LHP007", where, message)
    except UnexpectedCharacters as exc:
        where = Span(session.path, exc.line, exc.column, exc.line, exc.column + 1)
        char = padded[exc.pos_in_stream or 0]
        session.report("LHP007", where, f"invalid interpolation: unexpected character `{char}`")
    except UnexpectedInput:
        session.report("LHP007", Span(session.path, line, col, line, col), "invalid interpolation")
    finally:
        session.current, session.previous = saved[0], saved[1]
        del session.comments[saved[2] :]
    return None


_OPENERS = frozenset(CLOSER)
_NAMED_DECLARATIONS = frozenset({"SCHEMA", "WEBHOOK", "PIPELINE", "CONNECTOR"})
_DECLARATION_START = re.compile(
    r"(?:(?:schema|webhook|pipeline|connector)[ \t]+[A-Za-z_]\w*[ \t]*(?:\{|from\b)"
    r'|test[ \t]+")'
)
_WORDS_AND_BRACES = re.compile(
    r"(?P<comment>(?://|#)[^\n]*)|(?P<open>\{)|(?P<close>\})|(?P<word>[A-Za-z_]\w*)|\""
)


class _Recovery:
    """The ``on_error`` hook of one parse: report, then repair the parser state (see the
    module docstring)."""

    def __init__(self, session: ParseSession) -> None:
        self.session = session
        self.text = session.text
        self.abandoned: list[DroppedDecl] = []

    def handle(self, error: UnexpectedInput) -> bool:
        from lark.exceptions import UnexpectedCharacters, UnexpectedToken

        if isinstance(error, UnexpectedCharacters):
            self._unexpected_character(error)
        elif isinstance(error, UnexpectedToken):
            self._unexpected_token(error)
        else:
            return False
        return True

    # --- characters ----------------------------------------------------------------------------

    def _unexpected_character(self, error: UnexpectedCharacters) -> None:
        session, text = self.session, self.text
        pos = error.pos_in_stream or 0
        line, col = error.line, error.column
        if text[pos] == '"':
            end = text.find("\n", pos)
            end = len(text) if end == -1 else end
            rest = text[pos:end]
            span = Span(session.path, line, col, line, col + len(rest.rstrip("\r")))
            opened = rest.find("${")
            if opened != -1 and interpolation_end(rest, opened + 2) == len(rest):
                at = Span(session.path, line, col + opened, line, col + len(rest.rstrip("\r")))
                session.report("LHP007", at, "unclosed `${` in a string", "close it with `}`")
            else:
                session.report(
                    "LHP004",
                    span,
                    'unterminated string: expected `"` before the end of the line',
                    "strings are one line; write a line break as \\n",
                )
            self._replace_with_empty_string(error, pos, end)
            return
        char = text[pos]
        previous = session.diagnostics[-1] if session.diagnostics else None
        if (
            previous is not None
            and previous.code == "LHP002"
            and (previous.span.end_line, previous.span.end_col) == (line, col)
        ):
            # A run of stray characters is one diagnostic.
            grown = Span(session.path, previous.span.line, previous.span.col, line, col + 1)
            session.diagnostics[-1] = make("LHP002", grown, previous.message, previous.hint)
            return
        hint = _CHARACTER_HINTS.get(char)
        shown = f"U+{ord(char):04X}" if hint is None and not char.isprintable() else f"`{char}`"
        session.report(
            "LHP002",
            Span(session.path, line, col, line, col + 1),
            f"unexpected character {shown}",
            hint,
        )

    def _replace_with_empty_string(self, error: UnexpectedCharacters, pos: int, end: int) -> None:
        """Continue as if the unterminated string had been closed at the end of its line."""
        from lark import Token
        from lark.exceptions import UnexpectedToken

        parser = error.interactive_parser
        if (
            "STRING"
            in parser.parser_state.parse_conf.parse_table.states[parser.parser_state.position]
        ):
            line, col = error.line, error.column
            placeholder = Token("STRING", '""', pos, line, col, line, col + (end - pos), end)
            # The table's lookahead sets are merged between similar states: a string may be
            # listed where it still cannot follow (`webhook w"`), so try it on a copy first.
            try:
                parser.copy().feed_token(placeholder)  # type: ignore[no-untyped-call]
            except UnexpectedToken:
                pass
            else:
                parser.feed_token(placeholder)
        _move_lexer(parser, self.text, end)

    # --- tokens --------------------------------------------------------------------------------

    def _unexpected_token(self, error: UnexpectedToken) -> None:
        session = self.session
        parser: InteractiveParser = error.interactive_parser
        state = parser.parser_state
        token: Token = error.token
        if token.type in _keywords() and self._feed_as_name(parser, token):
            return
        expected = frozenset(parser.accepts())  # type: ignore[no-untyped-call]
        openers = [v for v in state.value_stack if _is_token(v) and v.type in _OPENERS]
        previous = session.previous if session.current is token else session.current

        if token.type == "$END":
            self._report_end_of_file(expected, openers)
            self._abandon(_unwind_to_top_level(parser))
            return

        start = token.start_pos or 0
        declaration = self._declaration_start_near(token, previous) if openers else None
        if declaration is not None:
            # `pipeline b {` while a `{` is still open: the `}` of the declaration before is
            # missing. Resume at this declaration rather than losing it.
            opener = next(o for o in reversed(openers) if o.type == "LBRACE")
            line, col = _line_col(self.text, declaration)
            session.report(
                "LHP001",
                Span(session.path, line, col, line, col + len(self.text[declaration:].split()[0])),
                f"expected `}}` to close the `{{` opened at {opener.line}:{opener.column} "
                "before the next declaration",
            )
            resume = declaration
        else:
            words = describe_error(token, expected, previous)
            self._report_token(words, token)
            if self._repair_locally(parser, words, token):
                return
            depth = sum(1 for o in openers if o.type == "LBRACE")
            resume = self._end_of_declaration(start, depth)
            if resume == start and not openers and len(state.state_stack) <= 2:
                resume = token.end_pos or start + 1  # already at the top level: skip the token
        self._abandon(_unwind_to_top_level(parser))
        _move_lexer(parser, self.text, resume)

    def _abandon(self, partial: list[object]) -> None:
        """Note the kind and name of the declaration whose parts (tokens and nodes, in source
        order) were just dropped, when its name had been read."""
        from lark import Token

        self.session.end_of_declaration()
        if len(partial) < 2:
            return
        keyword, name = partial[0], partial[1]
        if not isinstance(keyword, Token) or keyword.type not in _NAMED_DECLARATIONS:
            return
        if isinstance(name, Token) and name.type == "NAME":
            name = ast.Ident(str(name), self.session.token_span(name))
        if isinstance(name, ast.Ident):
            self.abandoned.append(DroppedDecl(str(keyword), name))

    def _feed_as_name(self, parser: InteractiveParser, token: Token) -> bool:
        """Read a keyword as a plain name where the grammar wants a name: LALR lookahead sets
        are merged between similar states, so the contextual lexer may see `to` as a keyword
        in `{ a = 1  to = 2 }` although only a key can follow there."""
        from lark import Token
        from lark.exceptions import UnexpectedToken

        name = Token.new_borrow_pos("NAME", str(token), token)
        try:
            trial: InteractiveParser = parser.copy()  # type: ignore[no-untyped-call]
            trial.feed_token(name)
        except UnexpectedToken:
            return False
        parser.feed_token(name)
        return True

    def _repair_locally(self, parser: InteractiveParser, words: ErrorWords, token: Token) -> bool:
        """Keep the declaration for the two slips that have an obvious repair: a forgotten
        `=` is put back, and a comma between block entries is dropped."""
        from lark import Token
        from lark.exceptions import UnexpectedToken

        if words.code == "LHP008":
            repaired = [Token.new_borrow_pos("EQ", "=", token), token]
        elif token.type == "COMMA" and words.hint is not None:
            repaired = []
        else:
            return False
        trial = parser.copy()  # type: ignore[no-untyped-call]
        try:
            for item in repaired:
                trial.feed_token(item)
        except UnexpectedToken:
            return False
        for item in repaired:
            parser.feed_token(item)
        return True

    def _report_token(self, words: ErrorWords, token: Token) -> None:
        self.session.report(words.code, self.session.token_span(token), words.message, words.hint)

    def _report_end_of_file(self, expected: frozenset[str], openers: list[Token]) -> None:
        session = self.session
        line, col = _end_of(self.text)
        at = Span(session.path, line, col, line, col)
        if openers:
            opener = openers[-1]
            message = (
                f"unexpected end of file: unclosed `{opener}` "
                f"opened at {opener.line}:{opener.column}"
            )
            session.report("LHP003", at, message, f"add the closing `{CLOSER[opener.type]}`")
        else:
            session.report(
                "LHP003", at, f"unexpected end of file: expected {expected_phrase(expected)}"
            )

    def _declaration_start_near(self, token: Token, previous: Token | None) -> int | None:
        """The offset of a declaration keyword at the start of its line, if the offending token
        or the one before it is one (a keyword inside a block is lexed as a plain name)."""
        for candidate in (token, previous):
            if candidate is None or str(candidate) not in DECLARATIONS:
                continue
            offset = candidate.start_pos or 0
            line_start = self.text.rfind("\n", 0, offset) + 1
            if self.text[line_start:offset].strip() == "" and _DECLARATION_START.match(
                self.text, offset
            ):
                return offset
        return None

    def _end_of_declaration(self, start: int, depth: int) -> int:
        """Where to resume after an error at ``start`` with ``depth`` braces open: just after the
        brace that closes the declaration, or at the next line that starts a declaration."""
        text = self.text
        string = _string_pattern()
        pos = start
        while True:
            match = _WORDS_AND_BRACES.search(text, pos)
            if match is None:
                return len(text)
            kind = match.lastgroup
            if kind == "open":
                depth += 1
            elif kind == "close":
                depth -= 1
                if depth <= 0:
                    return match.end()
            elif kind == "word":
                offset = match.start()
                line_start = text.rfind("\n", 0, offset) + 1
                if (
                    offset > start
                    and match.group() in DECLARATIONS
                    and text[line_start:offset].strip() == ""
                    and _DECLARATION_START.match(text, offset)
                ):
                    return offset
            elif kind is None:  # a string: skip it whole (its braces do not count)
                closed = string.match(text, match.start())
                if closed is not None:
                    pos = closed.end()
                    continue
                end = text.find("\n", match.start())
                pos = len(text) if end == -1 else end
                continue
            pos = match.end()


_CHARACTER_HINTS = {
    ";": "statements are not terminated: remove the `;`",
    "&": "write `and`",
    "|": "write `or`",
    "!": "write `not`, or `!=` for inequality",
    "'": 'strings are written with double quotes: "..."',
}


def _is_token(value: object) -> bool:
    from lark import Token

    return isinstance(value, Token)


def _unwind_to_top_level(parser: InteractiveParser) -> list[object]:
    """Drop the partial declaration: pop the parser's stacks back to a state that accepts a
    declaration keyword. Returns what was popped (tokens and nodes), in source order."""
    state = parser.parser_state
    table = state.parse_conf.parse_table.states
    popped: list[object] = []
    while (
        len(state.state_stack) > 1
        and not table[state.state_stack[-1]].keys() >= DECLARATION_TERMINALS
    ):
        state.state_stack.pop()
        popped.append(state.value_stack.pop())
    popped.reverse()
    return popped


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line_start = text.rfind("\n", 0, offset) + 1
    return text.count("\n", 0, offset) + 1, offset - line_start + 1


def _move_lexer(parser: InteractiveParser, text: str, offset: int) -> None:
    """Make the lexer continue at ``offset``."""
    lexer_state = parser.lexer_thread.state
    assert lexer_state is not None  # set for every parse of text
    counter = lexer_state.line_ctr
    line_start = text.rfind("\n", 0, offset) + 1
    counter.char_pos = offset
    counter.line = text.count("\n", 0, offset) + 1
    counter.line_start_pos = line_start
    counter.column = offset - line_start + 1

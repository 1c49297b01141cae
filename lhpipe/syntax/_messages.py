"""Parse errors in words: what was found and what was expected, never grammar rule names.

The LALR parser knows, in the state where it stopped, the set of terminals it would have
accepted. :func:`describe_error` turns that set, the offending token and the token before it
into a message a user of the language understands ("missing `=` after `path`", "expected a
value", "a pipeline needs at least one target").
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lark import Token

DECLARATIONS = ("schema", "webhook", "pipeline", "connector", "test")
DECLARATION_TERMINALS = frozenset(word.upper() for word in DECLARATIONS)

_PUNCTUATION = {
    "LBRACE": "{",
    "RBRACE": "}",
    "LSQB": "[",
    "RSQB": "]",
    "LPAR": "(",
    "RPAR": ")",
    "COMMA": ",",
    "COLON": ":",
    "DOT": ".",
    "QMARK": "?",
    "QQ": "??",
    "EQ": "=",
    "EQEQ": "==",
    "NE": "!=",
    "LE": "<=",
    "GE": ">=",
    "LT": "<",
    "GT": ">",
    "PLUS": "+",
    "MINUS": "-",
    "STAR": "*",
    "SLASH": "/",
    "PERCENT": "%",
}
CLOSER = {"LBRACE": "}", "LSQB": "]", "LPAR": ")"}

_VALUE_START = frozenset(
    {"NAME", "STRING", "NUMBER", "TRUE", "FALSE", "NULL", "LSQB", "LBRACE", "LPAR", "MINUS", "NOT"}
)
# Terminals that may continue an expression: listing them in every message would drown what
# the user actually missed, so they are only named when nothing else was possible.
_OPERATORS = frozenset(
    {"OR", "AND", "EQEQ", "NE", "LT", "LE", "GT", "GE", "IN", "QQ"}
    | {"PLUS", "MINUS", "STAR", "SLASH", "PERCENT", "DOT", "LSQB", "LPAR"}
)
_STEPS = frozenset({"WHERE", "LET"})
_TYPE_START = frozenset({"NAME", "LSQB", "MAP"})
_KEY_START = frozenset({"NAME", "STRING"})


def _words(names: Sequence[str]) -> str:
    return _join([f"`{name}`" for name in names])


@functools.cache
def _groups() -> tuple[tuple[frozenset[str], str], ...]:
    """The groups of terminals named together, the kinds' taken from the grammar
    (:mod:`lhpipe.syntax.kinds`): a new kind is named in the messages without an edit here."""
    from lhpipe.syntax.kinds import source_words, target_words

    sources = source_words()
    targets = target_words()
    leading = list(dict.fromkeys(k.terminals[0] for k in targets))
    after_to = [k.terminals[1] for k in targets if k.terminals[0] == "TO" and len(k.terminals) > 1]
    target_names = [name.lower() if name != "TO" else "to ..." for name in leading]
    return (
        (
            DECLARATION_TERMINALS,
            "a declaration (`schema`, `webhook`, `pipeline`, `connector` or `test`)",
        ),
        (
            frozenset(k.terminals[1] for k in sources),
            f"a source ({_words([k.name for k in sources])})",
        ),
        (frozenset(after_to), _words([name.lower() for name in after_to])),
        (_STEPS, "a step (`where` or `let`)"),
        (frozenset(leading), f"a target ({_words(target_names)})"),
    )


def targets_in_words() -> str:
    """The targets as a hint names them: "`run_wf`, `post_event`, `correlate` or `to ...`"."""
    return _groups()[-1][1].removeprefix("a target (").removesuffix(")")


@dataclass(frozen=True, slots=True)
class ErrorWords:
    """The diagnostic to report for one syntax error."""

    code: str
    message: str
    hint: str | None = None


def terminal_word(name: str) -> str:
    """How a terminal is named in a message: `}`, `pipeline`, a name, a string..."""
    if name in _PUNCTUATION:
        return f"`{_PUNCTUATION[name]}`"
    if name == "NAME":
        return "a name"
    if name == "STRING":
        return "a string"
    if name == "NUMBER":
        return "a number"
    if name == "$END":
        return "the end of the file"
    return f"`{name.lower()}`"


def token_word(token: Token) -> str:
    """How the offending token is named: `}`, `foo`, the string "abc", the end of the file."""
    if token.type == "$END":
        return "end of file"
    if token.type == "STRING":
        text = str(token)
        return f"string {text if len(text) <= 24 else text[:20] + '…'}"
    return f"`{token}`"


def _join(words: Sequence[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " or " + words[-1]


def expected_phrase(expected: Iterable[str]) -> str:
    """The set of acceptable terminals in words, grouped ("a value", "a target", ...)."""
    remaining = set(expected) - {"$END"}
    phrases: list[str] = []
    if {"STRING", "NUMBER", "NAME", "LSQB"} <= remaining:
        phrases.append("a value")
        remaining -= _VALUE_START
    if remaining >= _KEY_START:
        # Only the start of a block or object entry takes a name or a string but no other value.
        phrases.append("a key")
        remaining -= _KEY_START
    if remaining >= _TYPE_START:
        phrases.append("a type")
        remaining -= _TYPE_START
    for group, words in _groups():
        if group <= remaining:
            phrases.append(words)
            remaining -= group
    if phrases or remaining - _OPERATORS:
        remaining -= _OPERATORS
    phrases.extend(terminal_word(name) for name in sorted(remaining, key=_terminal_order))
    if "$END" in expected and not phrases:
        phrases.append("the end of the file")
    return _join(phrases) or "something else"


def _terminal_order(name: str) -> tuple[int, str]:
    # Names and values first, closing punctuation last: "a name or `}`" reads naturally.
    return (1 if name in _PUNCTUATION else 0, name)


def describe_error(token: Token, expected: frozenset[str], previous: Token | None) -> ErrorWords:
    """Words for an unexpected ``token`` where the parser accepted ``expected`` terminals;
    ``previous`` is the token before it (``None`` at the start of the file)."""
    found = token_word(token)
    after = f" after `{previous}`" if previous is not None and previous.type != "STRING" else ""

    if "EQ" in expected and previous is not None and previous.type in ("NAME", "STRING"):
        # After a key: `path "/x"` is the common slip of a forgotten `=`.
        wanted = "`=` or `{`" if "LBRACE" in expected else "`=`"
        if token.type in _VALUE_START and token.type != "LBRACE":
            return ErrorWords(
                "LHP008", f"missing `=` after `{previous}`", f"write `{previous} = {token}`"
            )
        return ErrorWords("LHP001", f"unexpected {found}: expected {wanted} after `{previous}`")

    if token.type == "RBRACE" and "RUN_WF" in expected and "RBRACE" not in expected:
        return ErrorWords(
            "LHP001",
            "unexpected `}`: a pipeline needs at least one target",
            f"add {targets_in_words()} before the `}}`",
        )
    if expected == {"FROM"}:
        return ErrorWords(
            "LHP001", f"unexpected {found}: a pipeline starts with its source, `from ...`"
        )

    if expected >= DECLARATION_TERMINALS and token.type == "NAME":
        close = difflib.get_close_matches(str(token), DECLARATIONS, n=1)
        hint = f"did you mean `{close[0]}`?" if close else None
        return ErrorWords(
            "LHP001",
            f"unknown declaration `{token}`: expected `schema`, `webhook`, `pipeline`, "
            "`connector` or `test`",
            hint,
        )

    if expected == {"NAME"} and previous is not None:
        return ErrorWords("LHP001", f"expected a name after `{previous}`, found {found}")

    if token.type == "COMMA" and {"NAME", "RBRACE"} <= expected and "COMMA" not in expected:
        return ErrorWords(
            "LHP001",
            "unexpected `,`: entries in a block are not separated by commas",
            "put each entry on its own line, or separate them with spaces",
        )

    return ErrorWords("LHP001", f"unexpected {found}: expected {expected_phrase(expected)}{after}")

"""Literal text in both directions: classifying numbers, decoding and re-escaping strings.

The grammar lexes anything that starts with a digit as one ``NUMBER`` token so that ``5xs`` or
``1.2.3`` is reported as one invalid literal instead of a confusing token sequence;
:func:`classify_number` decides what it is. Strings are decoded by the AST builder with
:func:`scan_string`, which reports bad escapes and finds the ``${...}`` interpolations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DURATION_UNITS: dict[str, int] = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
SIZE_UNITS: dict[str, int] = {
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
}

_INT = re.compile(r"[0-9]+")
_FLOAT = re.compile(r"[0-9]+(?:\.[0-9]+(?:[eE][+-]?[0-9]+)?|[eE][+-]?[0-9]+)")
_UNIT = re.compile(r"([0-9]+)([A-Za-z]+)")


@dataclass(frozen=True, slots=True)
class Number:
    """What a ``NUMBER`` token turned out to be; ``kind`` is ``int``, ``float``, ``duration``
    or ``size``, and ``value`` the integer, float, milliseconds or bytes."""

    kind: str
    value: int | float


def classify_number(text: str) -> Number | None:
    """The meaning of a token that starts with a digit, or ``None`` when it is not a valid
    integer, float, duration (``250ms 5s 2m 1h 1d``) or size (``512KiB 1MiB``, ``B KB MB GB
    KiB MiB GiB``)."""
    if _INT.fullmatch(text):
        return Number("int", int(text))
    if _FLOAT.fullmatch(text):
        return Number("float", float(text))
    unit = _UNIT.fullmatch(text)
    if unit:
        amount, suffix = int(unit.group(1)), unit.group(2)
        if suffix in DURATION_UNITS:
            return Number("duration", amount * DURATION_UNITS[suffix])
        if suffix in SIZE_UNITS:
            return Number("size", amount * SIZE_UNITS[suffix])
    return None


_SIMPLE_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r", "$": "$"}


@dataclass(frozen=True, slots=True)
class BadEscape:
    """An invalid escape at ``offset`` (into the string's content) of ``length`` characters."""

    offset: int
    length: int
    text: str


@dataclass(frozen=True, slots=True)
class Interpolation:
    """The text between ``${`` and ``}``, starting at ``offset`` in the string's content."""

    offset: int
    source: str


def scan_string(content: str) -> tuple[list[str | Interpolation], list[BadEscape]]:
    """Split the content of a string token (without its quotes) into decoded text and the
    interpolations, in order, and list the invalid escapes.

    The lexer guarantees that every ``${`` has its matching ``}`` on the line and that the
    inner strings are closed; bad escapes are dropped from the decoded text.
    """
    parts: list[str | Interpolation] = []
    bad: list[BadEscape] = []
    text: list[str] = []
    i, n = 0, len(content)
    while i < n:
        char = content[i]
        if char == "\\":
            decoded, length = _escape(content, i)
            if decoded is None:
                bad.append(BadEscape(i, length, content[i : i + length]))
            else:
                text.append(decoded)
            i += length
        elif char == "$" and content.startswith("{", i + 1):
            end = interpolation_end(content, i + 2)
            if text:
                parts.append("".join(text))
                text = []
            parts.append(Interpolation(i + 2, content[i + 2 : end]))
            i = end + 1
        else:
            text.append(char)
            i += 1
    if text:
        parts.append("".join(text))
    return parts, bad


def _escape(content: str, start: int) -> tuple[str | None, int]:
    """Decode the escape at ``start`` (a backslash): the text and how many characters it took,
    or ``None`` and the length to report when it is invalid."""
    if start + 1 >= len(content):
        return None, 1
    kind = content[start + 1]
    if kind in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[kind], 2
    if kind == "u":
        match = re.compile(r"\{([0-9A-Fa-f]{1,6})\}").match(content, start + 2)
        if match is None:
            return None, 2
        code = int(match.group(1), 16)
        if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            return None, match.end() - start
        return chr(code), match.end() - start
    return None, 2


def interpolation_end(content: str, start: int) -> int:
    """The index of the ``}`` that closes the interpolation whose text starts at ``start``."""
    depth = 0
    i = start
    while i < len(content):
        char = content[i]
        if char == '"':
            i += 1
            while i < len(content) and content[i] != '"':
                i += 2 if content[i] == "\\" else 1
        elif char == "{":
            depth += 1
        elif char == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    return len(content)


def escape_text(text: str) -> str:
    """``text`` as the inside of a canonical string literal: quotes, backslashes, control
    characters and a literal ``${`` escaped, everything else as is."""
    out: list[str] = []
    for i, char in enumerate(text):
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif char == "\r":
            out.append("\\r")
        elif char == "$" and text.startswith("{", i + 1):
            out.append("\\$")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{{{ord(char):x}}}")
        else:
            out.append(char)
    return "".join(out)

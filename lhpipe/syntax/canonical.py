"""The meaning of `.lhp` syntax without its layout: AST nodes reduced to plain nested tuples.

Two trees with the same :func:`structure` mean the same thing: spans are dropped, and literals
that keep the text as written (``1.50``, ``60s``, ``1MiB``) are compared by value. `lhpipe fmt`
compares it before and after formatting, so that it never writes a file whose meaning changed,
and the graph's fingerprints hash it, so that reformatting a file or editing a comment changes
no fingerprint.
"""

from __future__ import annotations

import dataclasses
from enum import Enum

from lhpipe.syntax import ast

# The value field says what these mean; their ``text`` is only how it was written.
_SPELLING_ONLY = (ast.FloatLit, ast.DurationLit, ast.SizeLit)

Structure = tuple[object, ...] | str | int | float | bool | None


def structure(node: object) -> Structure:
    """``node`` (an AST node, a tuple of them, or a leaf value) as span-free nested tuples."""
    if isinstance(node, Enum):
        return str(node.value)
    if isinstance(node, tuple):
        return tuple(structure(item) for item in node)
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        skip = {"span", "text"} if isinstance(node, _SPELLING_ONLY) else {"span"}
        parts: list[object] = [type(node).__name__]
        for f in dataclasses.fields(node):
            if f.name not in skip:
                parts.append((f.name, structure(getattr(node, f.name))))
        return tuple(parts)
    if node is None or isinstance(node, str | int | float | bool):
        return node
    raise TypeError(f"not an AST value: {type(node).__name__}")

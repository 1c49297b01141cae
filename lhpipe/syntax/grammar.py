"""The grammar (``grammar/lhp.lark``, shipped in the wheel as ``lhpipe/_grammar/lhp.lark``) and
the lark parser built from it once per process, with lark's cache so that a cold start does
not rebuild the LALR tables. :mod:`lhpipe.syntax.parser` parses with it;
:mod:`lhpipe.syntax.kinds` reads the source and target kinds from its rules."""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import os
from pathlib import Path
from typing import TYPE_CHECKING

from lhpipe.syntax._builder import AstBuilder

if TYPE_CHECKING:
    from lark import Lark


def _grammar_text() -> str:
    """The grammar from the installed package (wheel) or else from the source tree."""
    try:
        return importlib.resources.files("lhpipe").joinpath("_grammar/lhp.lark").read_text("utf-8")
    except OSError:
        return (Path(__file__).resolve().parents[2] / "grammar" / "lhp.lark").read_text("utf-8")


def _cache_location(grammar: str) -> str | bool:
    """Where lark keeps the compiled tables: the user's cache directory, which stays writable
    when lhpipe is installed read-only; lark's own temporary file when there is none."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = Path(base) / "lhpipe"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return True
    digest = hashlib.sha256(grammar.encode("utf-8")).hexdigest()[:16]
    return str(folder / f"lhp-grammar-{digest}.lark-cache")


@functools.cache
def lark_parser() -> Lark:
    from lark import Lark

    from lhpipe.syntax._lexer import LhpLexer

    grammar = _grammar_text()
    return Lark(
        grammar,
        parser="lalr",
        lexer=LhpLexer,
        start=["start", "interpolation"],
        transformer=AstBuilder(),
        maybe_placeholders=False,
        cache=_cache_location(grammar),
    )


def grammar_rules() -> list[tuple[str, list[tuple[str, str | None]]]]:
    """The grammar's rules as (rule, [(symbol, the keyword it spells or None)]): a terminal
    that is a fixed word gives its word, any other symbol ``None`` (see
    :mod:`lhpipe.syntax.kinds`)."""
    lark = lark_parser()
    words = {t.name: t.pattern.value for t in lark.terminals if t.pattern.type == "str"}
    return [
        (
            rule.origin.name,
            [(s.name, words.get(s.name) if s.is_term else None) for s in rule.expansion],
        )
        for rule in lark.rules
    ]

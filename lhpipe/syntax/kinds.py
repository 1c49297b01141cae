"""The source and target kinds, as the grammar spells them.

The grammar (``grammar/lhp.lark``) is the one list of kinds: each alternative of its ``source``
rule (``FROM TOPIC string block?``) is a source kind, each alternative of ``target``
(``RUN_WF string block?``, ``TO TOPIC string block?``) a target kind. A kind's name is its
leading words joined by ``_``, ``from`` left out: ``topic``, ``lh_output``, ``run_wf``,
``to_topic``. Adding a kind to the grammar adds it here; the kinds' registry
(:mod:`lhpipe.kinds`) then refuses to be built until the kind has a module.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from lhpipe.syntax.ast import SourceKind, TargetKind
from lhpipe.syntax.grammar import grammar_rules


@dataclass(frozen=True, slots=True)
class KindWords:
    """One kind's alternative of the grammar: its name and the terminals that begin it."""

    name: str
    terminals: tuple[str, ...]


def _leading(rule: str) -> list[KindWords]:
    words = grammar_rules()
    found: dict[str, KindWords] = {}
    for origin, expansion in words:
        if origin != rule:
            continue
        terminals = []
        for name, text in expansion:
            if text is None:
                break
            terminals.append((name, text))
        texts = [text for _, text in terminals if text != "from"]
        kind = "_".join(texts)
        found.setdefault(kind, KindWords(kind, tuple(name for name, _ in terminals)))
    return list(found.values())


@functools.cache
def source_words() -> tuple[KindWords, ...]:
    """The source kinds with their terminals (``FROM TOPIC``), in the grammar's order."""
    return tuple(_leading("source"))


@functools.cache
def target_words() -> tuple[KindWords, ...]:
    """The target kinds with their terminals (``TO TOPIC``), in the grammar's order."""
    return tuple(_leading("target"))


def source_kinds() -> tuple[SourceKind, ...]:
    """Every source kind of the grammar, in its order."""
    return tuple(SourceKind(k.name) for k in source_words())


def target_kinds() -> tuple[TargetKind, ...]:
    """Every target kind of the grammar, in its order."""
    return tuple(TargetKind(k.name) for k in target_words())

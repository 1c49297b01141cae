"""The keys each kind of block accepts, and the generic checks of a block's entries.

A block key is either a *value* (``key = expr``) or a *map* (``key { k = v ... }``, also
accepted as ``key = { k = v ... }``). Unknown keys (``LHP107``, with a hint), keys given twice
(``LHP109``) and entries of the wrong form (``LHP114``) are reported here; what a value must
be is checked by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from lhpipe.check.names import did_you_mean
from lhpipe.diagnostics import Diagnostic, make
from lhpipe.syntax import ast

Form = Literal["value", "map"]


@dataclass(frozen=True, slots=True)
class BlockSpec:
    """The keys of one kind of block, with their forms; ``what`` names the block in
    messages (``webhook``, ``run_wf target``...)."""

    what: str
    keys: Mapping[str, Form]


def spec(what: str, values: str = "", maps: str = "") -> BlockSpec:
    """The keys of a block: ``values`` take ``key = expr``, ``maps`` take ``key { ... }``
    (both space-separated). A source's or target's block is its kind's (``lhpipe/sources/``,
    ``lhpipe/targets/``)."""
    keys: dict[str, Form] = {k: "value" for k in values.split()}
    keys.update({k: "map" for k in maps.split()})
    return BlockSpec(what, keys)


WEBHOOK: Final = spec("a webhook", "path methods auth body topic partitions key max_body")
OAUTH: Final = spec("`oauth`", "issuer audience scopes leeway")
HMAC: Final = spec("`hmac`", "preset secret header algorithm encoding prefix")
CONNECTOR: Final = spec("a connector", "class topic", "config")

ON_ERROR: Final = spec("`on_error`", "retry backoff dead_letter partitions permanent")
TEST: Final = spec("a test", "pipeline", "given")
GIVEN: Final = spec("`given`", "key value", "headers")


@dataclass(frozen=True, slots=True)
class MapEntry:
    """One ``k = v`` of a map-form key."""

    key: ast.Ident
    value: ast.Expr


def entries(
    block: ast.Block | None, spec: BlockSpec, diagnostics: list[Diagnostic]
) -> dict[str, ast.Entry]:
    """The known entries of ``block`` by key (first occurrence), reporting unknown keys,
    keys given twice and entries of the wrong form."""
    found: dict[str, ast.Entry] = {}
    if block is None:
        return found
    for entry in block.entries:
        key = entry.key.name
        form = spec.keys.get(key)
        if form is None:
            if spec.keys:
                hint = did_you_mean(key, spec.keys) or "known keys: " + ", ".join(
                    f"`{k}`" for k in spec.keys
                )
            else:
                hint = "this block takes no keys"
            diagnostics.append(
                make("LHP107", entry.key.span, f"unknown key `{key}` in {spec.what}", hint)
            )
            continue
        if key in found:
            first = found[key].key.span
            diagnostics.append(
                make(
                    "LHP109",
                    entry.key.span,
                    f"key `{key}` given twice in {spec.what}",
                    f"first given at line {first.line}",
                )
            )
            continue
        if form == "value" and isinstance(entry, ast.NestedBlock):
            diagnostics.append(
                make(
                    "LHP114",
                    entry.key.span,
                    f"`{key}` takes a value: write `{key} = ...`",
                )
            )
            continue
        found[key] = entry
    return found


def map_entries(entry: ast.Entry, diagnostics: list[Diagnostic]) -> list[MapEntry] | None:
    """The ``k = v`` pairs of a map-form key (``key { ... }`` or ``key = { ... }``), with
    duplicate keys reported; ``None`` (after a diagnostic) when it is not a map."""
    pairs: list[MapEntry] = []
    seen: set[str] = set()
    if isinstance(entry, ast.NestedBlock):
        for inner in entry.block.entries:
            if isinstance(inner, ast.NestedBlock):
                diagnostics.append(
                    make(
                        "LHP114",
                        inner.key.span,
                        f"`{inner.key.name}` takes a value: write `{inner.key.name} = ...`",
                    )
                )
                continue
            pairs.append(MapEntry(inner.key, inner.value))
    elif isinstance(entry.value, ast.ObjectLit):
        pairs = [MapEntry(e.key, e.value) for e in entry.value.entries]
    else:
        diagnostics.append(
            make(
                "LHP114",
                entry.value.span,
                f"`{entry.key.name}` takes a block: write `{entry.key.name} {{ name = ... }}`",
            )
        )
        return None
    unique: list[MapEntry] = []
    for pair in pairs:
        if pair.key.name in seen:
            diagnostics.append(make("LHP109", pair.key.span, f"key `{pair.key.name}` given twice"))
            continue
        seen.add(pair.key.name)
        unique.append(pair)
    return unique

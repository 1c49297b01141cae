"""Building a registry of kinds: exhaustive, or not at all."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar


class RegistryError(Exception):
    """A registry that does not match the grammar's kinds, or a kind without a part."""


class _Kind(Protocol):
    @property
    def kind(self) -> str: ...


K = TypeVar("K", bound=_Kind)


def registry(role: str, kinds: Sequence[str], definitions: Iterable[K]) -> Mapping[Any, K]:
    """The ``definitions`` by kind, in the grammar's order of ``kinds``. Every kind of the
    grammar must have exactly one definition, no definition may name a kind the grammar lacks,
    and every part of a definition must be given (a part that is ``None`` is missing)."""
    found: dict[str, K] = {}
    for definition in definitions:
        kind = definition.kind
        if kind in found:
            raise RegistryError(f"{role} kind `{kind}` is registered twice")
        if kind not in kinds:
            raise RegistryError(
                f"{role} kind `{kind}` is registered but the grammar has no such {role}"
            )
        missing = [
            f.name
            for f in dataclasses.fields(definition)  # type: ignore[arg-type]
            if getattr(definition, f.name) is None
        ]
        if missing:
            raise RegistryError(f"{role} kind `{kind}` lacks {', '.join(missing)}")
        found[kind] = definition
    absent = [kind for kind in kinds if kind not in found]
    if absent:
        raise RegistryError(
            f"the grammar's {role} kind{'s' if len(absent) > 1 else ''} "
            + ", ".join(f"`{k}`" for k in absent)
            + f" {'have' if len(absent) > 1 else 'has'} no module in the registry "
            "(lhpipe/kinds/__init__.py)"
        )
    return {kind: found[kind] for kind in kinds}

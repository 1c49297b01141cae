"""Name lookups shared by the checker: "did you mean" hints and the names an expression sees."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from lhpipe.check.types import Type


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A hint naming the candidate closest to ``name``, if one is close enough."""
    pool = [c for c in candidates if c != name]
    if not pool:
        return None
    # difflib costs an import of ~10 ms: only pay it when a name is actually unknown.
    import difflib

    lowered = {c.lower(): c for c in pool}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    if not close:
        return None
    return f"did you mean `{lowered[close[0]]}`?"


@dataclass(frozen=True, slots=True)
class Binding:
    """A name an expression may use. When ``unavailable`` is set the name exists in the
    language but not here (``event`` outside an ``lh_output`` pipeline, ``claims`` without
    oauth): using it is the diagnostic ``code`` with that message."""

    type: Type
    unavailable: str | None = None
    code: str = "LHP405"


@dataclass(frozen=True, slots=True)
class Scope:
    """The names visible to one expression."""

    names: Mapping[str, Binding]

    def with_name(self, name: str, typ: Type) -> Scope:
        """This scope plus one more name (a ``let``)."""
        return Scope({**self.names, name: Binding(typ)})

    def visible(self) -> list[str]:
        """The names that can be used here, for hints."""
        return [n for n, b in self.names.items() if b.unavailable is None]


EMPTY_SCOPE = Scope({})

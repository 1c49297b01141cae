"""How deep schemas nest through each other: the loader's half of the nesting limit.

The parser refuses an expression, a type or a block nested more than
:data:`~lhpipe.syntax._builder.MAX_NESTING` levels (LHP010), so that nothing after it walks a
deeper tree. Schemas can still nest without limit through their names: `schema S0 { f: S1 }`,
`schema S1 { f: S2 }`, ... a thousand times. The checker's Avro compiler, the registry and the
engine's encoders walk such records level by level, so an inline schema that nests records,
lists, maps and optionals more than the same number of levels is LHP010 too, at the field where
its nesting crosses the limit, and is left out of the check like a declaration with a syntax
error (references to it are not reported again). A schema that refers to itself (or to a
schema that refers back to it) is not deep because of it: Avro names a record it is already
inside of. A schema read from a `.avsc` file counts one level here; the file's own nesting is
limited where it is read (:mod:`lhpipe.check.schemas`).

Everything here is iterative: it must not recurse as deep as the schemas it measures.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from lhpipe.syntax import ast
from lhpipe.syntax._builder import MAX_NESTING


@dataclass(frozen=True, slots=True)
class TooDeep:
    """An inline schema nested deeper than the limit: ``field`` (of ``at``, a schema on the
    way down from ``schema`` along its deepest fields) is where the limit is crossed."""

    schema: ast.SchemaDecl
    at: ast.SchemaDecl
    field: ast.Field | None
    depth: int


def _edges(
    decl: ast.SchemaDecl, schemas: Mapping[str, ast.SchemaDecl]
) -> Iterator[tuple[ast.Field, str | None, int]]:
    """Each field, the inline schema its type leads to (``None`` for none) and how many list,
    map and optional levels are on the way there."""
    for field in decl.fields or ():
        levels = 0
        current: ast.TypeExpr = field.type
        while not isinstance(current, ast.NamedType):
            levels += 1
            if isinstance(current, ast.ArrayType):
                current = current.item
            elif isinstance(current, ast.MapType):
                current = current.values
            else:
                current = current.inner
        yield field, current.name if current.name in schemas else None, levels


def schema_depths(schemas: Mapping[str, ast.SchemaDecl]) -> dict[str, int]:
    """The nesting depth of each inline schema: 1 for its record, plus its deepest field (a
    list, map or optional level counts 1, a schema its own depth). A reference back to a
    schema on the way there counts 0."""
    depths: dict[str, int] = {}
    on_path: set[str] = set()
    for root in schemas:
        if root in depths:
            continue
        # Each frame: the schema, its remaining fields, the deepest field so far, and the
        # levels of the field being followed below it.
        stack: list[_Frame] = [_Frame(root, _edges(schemas[root], schemas))]
        on_path.add(root)
        while stack:
            frame = stack[-1]
            child_frame = None
            for _, child, levels in frame.edges:
                if child is None or child in on_path:
                    frame.best = max(frame.best, levels)
                elif child in depths:
                    frame.best = max(frame.best, levels + depths[child])
                else:
                    frame.pending = levels
                    child_frame = _Frame(child, _edges(schemas[child], schemas))
                    break
            if child_frame is not None:
                on_path.add(child_frame.name)
                stack.append(child_frame)
                continue
            stack.pop()
            on_path.discard(frame.name)
            depths[frame.name] = 1 + frame.best
            if stack:
                parent = stack[-1]
                parent.best = max(parent.best, parent.pending + depths[frame.name])
    return depths


class _Frame:
    __slots__ = ("best", "edges", "name", "pending")

    def __init__(self, name: str, edges: Iterator[tuple[ast.Field, str | None, int]]) -> None:
        self.name = name
        self.edges = edges
        self.best = 0
        self.pending = 0


def too_deep_schemas(files: Sequence[ast.File]) -> tuple[list[TooDeep], set[str]]:
    """The inline schemas of ``files`` nested deeper than the limit: the ones to report (only
    the outermost: a schema that a reported one uses is too deep because of the same chain)
    and the names of all of them."""
    schemas: dict[str, ast.SchemaDecl] = {}
    for file in files:
        for decl in file.decls:
            if isinstance(decl, ast.SchemaDecl) and decl.fields is not None:
                schemas.setdefault(decl.name.name, decl)
    if not schemas:
        return [], set()
    depths = schema_depths(schemas)
    deep = {name for name, depth in depths.items() if depth > MAX_NESTING}
    if not deep:
        return [], set()
    used = {
        child
        for name in deep
        for _, child, _ in _edges(schemas[name], schemas)
        if child is not None and child != name
    }
    outermost = [name for name in schemas if name in deep and name not in used]
    if not outermost:  # each one is inside another (a cycle): the first declared
        outermost = [next(name for name in schemas if name in deep)]
    found = [
        TooDeep(schemas[name], *_crossing(name, schemas, depths), depths[name])
        for name in outermost
    ]
    return found, deep


def _crossing(
    root: str, schemas: Mapping[str, ast.SchemaDecl], depths: Mapping[str, int]
) -> tuple[ast.SchemaDecl, ast.Field | None]:
    """The schema and field where following the deepest fields from ``root`` goes past the
    limit."""
    name, used = root, 0
    where: tuple[ast.SchemaDecl, ast.Field | None] = (schemas[root], None)
    seen: set[str] = set()
    while name not in seen:
        seen.add(name)
        used += 1  # the record itself
        deepest = max(
            _edges(schemas[name], schemas),
            key=lambda e: e[2] + (depths[e[1]] if e[1] is not None and e[1] not in seen else 0),
            default=None,
        )
        if deepest is None:
            break
        field, child, levels = deepest
        where = (schemas[name], field)
        if child is None or child in seen or used + levels + 1 > MAX_NESTING:
            break
        used += levels
        name = child
    return where

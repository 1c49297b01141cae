"""Loading a run's `.lhp` files: discover, parse each, check them all together.

This is the one entry point of the front end for the CLI (``lint``, ``graph``, ``test``,
``run``) and for hot reload: bad `.lhp` content only ever gives diagnostics; a path that does
not exist or cannot be read (a file, a folder given, or a folder under one), or that is not a
regular file (a FIFO, a socket, a device: never read, so never waited on), raises
:class:`OSError`, and a file that is not UTF-8 raises :class:`UnicodeDecodeError` naming the
file and the line (the CLI's exit code 2).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lhpipe.check.files import NotARegularFile, check_regular, read_text
from lhpipe.check.kinds import KindChecks
from lhpipe.check.program import Program
from lhpipe.diagnostics import Diagnostic, Span, make
from lhpipe.syntax import DroppedDecl, ast


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What :func:`load` found.

    ``program`` is ``None`` when any diagnostic is an error; ``diagnostics`` are sorted by
    (file, line, col, code); ``sources`` maps each path (as used in spans) to its text, for
    rendering carets under spans. ``schema_files`` are the ``.avsc`` files the schemas of the
    parsed files name (``schema S from "x.avsc"``), whether they could be read or not: what
    ``--watch`` must watch even while the program is rejected.
    """

    program: Program | None
    diagnostics: tuple[Diagnostic, ...]
    sources: Mapping[str, str]
    schema_files: tuple[Path, ...] = ()

    @property
    def has_errors(self) -> bool:
        return any(d.is_error for d in self.diagnostics)


def discover(paths: Sequence[str | Path]) -> list[Path]:
    """The `.lhp` files of ``paths``: a file is taken as given (whatever its suffix), a folder
    gives its ``**/*.lhp`` sorted, those under hidden folders last. Duplicates (the same file
    resolved) are dropped, first occurrence kept.

    Raises :class:`FileNotFoundError` for a path that does not exist,
    :class:`PermissionError` for a folder (given, or under one given) that cannot be listed, and
    :class:`~lhpipe.check.files.NotARegularFile` for a FIFO, socket or device given or found
    (a `*.lhp` link that leads nowhere in a folder is passed over).
    """
    found: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            # A file reached through a hidden folder too (a Kubernetes ConfigMap mount links
            # `kyc.lhp` to `..2026_12_07_…/kyc.lhp`) is named by its visible path.
            candidates = sorted(
                (p for p in _lhp_files_under(path) if _readable_file(p)),
                key=lambda p: (_hidden(p.relative_to(path)), p),
            )
        elif path.exists():
            check_regular(path)
            candidates = [path]
        else:
            raise FileNotFoundError(2, "no such file or directory", str(path))
        for candidate in candidates:
            resolved = candidate.resolve()
            if resolved not in seen:
                seen.add(resolved)
                found.append(candidate)
    return found


def _lhp_files_under(folder: Path) -> Iterator[Path]:
    """Every ``*.lhp`` name in ``folder`` and the folders under it, as ``Path.rglob`` finds
    them (links to folders are not followed), except that a folder that cannot be listed
    raises :class:`PermissionError` (or the :class:`OSError` it gave) where ``rglob`` passes
    over it without a word: its pipelines would be missing from the run, a folder given would
    look empty and ``lhpipe graph`` would draw nothing and succeed."""

    def fail(error: OSError) -> None:
        raise error

    for folder_name, _folders, names in os.walk(folder, onerror=fail):
        for name in names:
            if fnmatch.fnmatchcase(name, "*.lhp"):
                yield Path(folder_name, name)


def _readable_file(path: Path) -> bool:
    """Whether a `*.lhp` found in a folder is a file to read: a regular file yes, a folder or
    a dangling link no, and anything else (a FIFO, a socket, a device) is refused."""
    if path.is_file():
        return True
    if path.is_dir() or not path.exists():
        return False
    raise NotARegularFile(path, path.stat().st_mode)


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def load(paths: Sequence[str | Path], kinds: KindChecks) -> LoadResult:
    """Discover, parse and check the files of ``paths`` together, each source and target by
    its kind's check in ``kinds`` (:func:`lhpipe.kinds.load` passes the registry's).

    Never raises on bad `.lhp` content; raises :class:`OSError` when a path is missing or a
    file cannot be read (a `.avsc` file a schema names is content: its problems are
    diagnostics).
    """
    files = discover(paths)
    sources = {str(path): read_text(path) for path in files}
    return load_texts(sources, kinds)


def load_texts(sources: Mapping[str, str], kinds: KindChecks) -> LoadResult:
    """Parse and check in-memory texts (path -> text) as one run; `.avsc` files are still read
    from disk, relative to each path."""
    from lhpipe.check.checker import check
    from lhpipe.syntax.parser import parse

    diagnostics: list[Diagnostic] = []
    parsed: list[ast.File] = []
    unreadable: list[DroppedDecl] = []
    for path, text in sources.items():
        result = parse(text, path)
        diagnostics.extend(result.diagnostics)
        unreadable.extend(result.dropped)
        if result.file is not None:
            parsed.append(result.file)
    checked = _without_too_deep_schemas(parsed, diagnostics, unreadable)
    try:
        program, check_diagnostics = check(checked, kinds, unreadable)
    except RecursionError:
        # Not expected past the nesting limits; a diagnostic rather than a traceback (and,
        # under --watch, rather than a reload that dies).
        program, check_diagnostics = None, [_exhausted(parsed, sources)]
    diagnostics.extend(check_diagnostics)
    diagnostics.sort(key=lambda d: (d.span.file, d.span.line, d.span.col, d.code))
    has_errors = any(d.is_error for d in diagnostics)
    return LoadResult(
        program=None if has_errors else program,
        diagnostics=tuple(diagnostics),
        sources=dict(sources),
        schema_files=_schema_files(parsed),
    )


def _without_too_deep_schemas(
    files: list[ast.File], diagnostics: list[Diagnostic], unreadable: list[DroppedDecl]
) -> list[ast.File]:
    """``files`` without the inline schemas that nest deeper than the limit through each other
    (LHP010 for the outermost, reported into ``diagnostics``): they are left out like a
    declaration with a syntax error, named in ``unreadable``."""
    from lhpipe.check.nesting import too_deep_schemas
    from lhpipe.syntax._builder import MAX_NESTING

    found, deep = too_deep_schemas(files)
    if not deep:
        return files
    for item in found:
        at = item.at.name.span if item.field is None else item.field.type.span
        diagnostics.append(
            make(
                "LHP010",
                at,
                f"too deeply nested: schema `{item.schema.name.name}` nests records, lists, "
                f"maps and optionals {item.depth} levels deep, more than {MAX_NESTING} (level "
                f"{MAX_NESTING + 1} is here)",
                "fewer records inside records: a field of type `json` holds any value",
            )
        )
    kept: list[ast.File] = []
    for file in files:
        decls = []
        for decl in file.decls:
            if isinstance(decl, ast.SchemaDecl) and decl.name.name in deep:
                unreadable.append(DroppedDecl("schema", decl.name))
            else:
                decls.append(decl)
        kept.append(dataclasses.replace(file, decls=tuple(decls)))
    return kept


def _exhausted(files: Sequence[ast.File], sources: Mapping[str, str]) -> Diagnostic:
    """The diagnostic for a check that ran out of stack: at the first file."""
    path = files[0].path if files else next(iter(sources), "")
    return make(
        "LHP010",
        Span(path, 1, 1, 1, 1),
        "too deeply nested: the files nest too deeply to be checked",
        "fewer levels of schemas, expressions or blocks inside each other",
    )


def _schema_files(files: Sequence[ast.File]) -> tuple[Path, ...]:
    """The ``.avsc`` paths named by the schemas of ``files``, relative to each file's folder
    (as the checker reads them)."""
    return tuple(
        Path(file.path).parent / decl.file.text
        for file in files
        for decl in file.decls
        if isinstance(decl, ast.SchemaDecl) and decl.file is not None
    )

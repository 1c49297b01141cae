"""Loading a run's `.lhp` files: discover, parse each, check them all together.

This is the one entry point of the front end for the CLI (``lint``, ``graph``, ``test``,
``run``) and for hot reload: bad `.lhp` content only ever gives diagnostics; a path that does
not exist or cannot be read raises :class:`OSError` (the CLI's exit code 2).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lhpipe.check.program import Program
from lhpipe.diagnostics import Diagnostic
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

    Raises :class:`FileNotFoundError` for a path that does not exist.
    """
    found: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            # A file reached through a hidden folder too (a Kubernetes ConfigMap mount links
            # `kyc.lhp` to `..2026_12_07_…/kyc.lhp`) is named by its visible path.
            candidates = sorted(
                (p for p in path.rglob("*.lhp") if p.is_file()),
                key=lambda p: (_hidden(p.relative_to(path)), p),
            )
        elif path.exists():
            candidates = [path]
        else:
            raise FileNotFoundError(2, "no such file or directory", str(path))
        for candidate in candidates:
            resolved = candidate.resolve()
            if resolved not in seen:
                seen.add(resolved)
                found.append(candidate)
    return found


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def load(paths: Sequence[str | Path]) -> LoadResult:
    """Discover, parse and check the files of ``paths`` together.

    Never raises on bad `.lhp` content; raises :class:`OSError` when a path is missing or a
    file cannot be read (a `.avsc` file a schema names is content: its problems are
    diagnostics).
    """
    files = discover(paths)
    sources = {str(path): path.read_text(encoding="utf-8") for path in files}
    return load_texts(sources)


def load_texts(sources: Mapping[str, str]) -> LoadResult:
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
    program, check_diagnostics = check(parsed, unreadable)
    diagnostics.extend(check_diagnostics)
    diagnostics.sort(key=lambda d: (d.span.file, d.span.line, d.span.col, d.code))
    has_errors = any(d.is_error for d in diagnostics)
    return LoadResult(
        program=None if has_errors else program,
        diagnostics=tuple(diagnostics),
        sources=dict(sources),
        schema_files=_schema_files(parsed),
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

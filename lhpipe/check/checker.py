"""The checker: resolves names and types across all files of one run (being written)."""

from __future__ import annotations

from collections.abc import Sequence

from lhpipe.check.program import Program
from lhpipe.diagnostics import Diagnostic
from lhpipe.syntax import ast


def check(files: Sequence[ast.File]) -> tuple[Program, list[Diagnostic]]:
    """Check ``files`` together; the program is meaningful only when no diagnostic is an error."""
    program = Program(
        files=tuple(files), schemas={}, webhooks={}, pipelines={}, connectors={}, tests={}
    )
    return program, []

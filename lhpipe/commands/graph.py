"""`lhpipe graph`: compile the program and draw its execution graph."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import BinaryIO, TextIO

from lhpipe.check.formats import (
    LintReport,
    describe_os_error,
    describe_read_error,
    format_text,
    wants_color,
)
from lhpipe.check.outcome import ExitCode, graph_exit

GRAPH_FORMATS = ("dot", "mermaid", "svg", "png", "json")
_IMAGE_FORMATS = ("svg", "png")


def draw_graph(paths: Sequence[str], output_format: str, stderr: TextIO) -> bytes | None:
    """Load ``paths``, print their diagnostics to ``stderr``, and return the drawing (``None``
    when an error stops the program from compiling). Raises ``OSError`` for a bad path and
    :class:`~lhpipe.graph.render.RenderError` when Graphviz fails."""
    from lhpipe.graph import render as draw
    from lhpipe.kinds import compile_program, load

    result = load(paths)
    if result.diagnostics:
        report = LintReport(result.diagnostics, result.sources, len(result.sources))
        stderr.write(format_text(report, color=wants_color(stderr)))
    if result.program is None or graph_exit(result.diagnostics) is not ExitCode.OK:
        return None
    compiled = compile_program(result.program)
    if output_format == "json":
        text = json.dumps(compiled.to_json(), indent=2, ensure_ascii=False) + "\n"
        return text.encode("utf-8")
    if output_format == "dot":
        return draw.to_dot(compiled.graph).encode("utf-8")
    if output_format == "mermaid":
        return draw.to_mermaid(compiled.graph).encode("utf-8")
    if output_format == "svg":
        return draw.to_svg(compiled.graph)
    return draw.to_png(compiled.graph)


def run_graph(
    paths: Sequence[str],
    *,
    output_format: str = "dot",
    output: str | None = None,
    stdout: BinaryIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Draw the graph of ``paths`` to ``output`` (a file) or ``stdout``; return the exit code."""
    from lhpipe.graph.render import RenderError

    err = stderr or sys.stderr
    out = stdout or sys.stdout.buffer
    if output is None and output_format == "png" and sys.stdout.isatty() and stdout is None:
        print("lhpipe graph: not writing PNG bytes to a terminal; use -o FILE", file=err)
        return ExitCode.USAGE
    try:
        drawing = draw_graph(paths, output_format, err)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"lhpipe graph: {describe_read_error(exc)}", file=err)
        return ExitCode.USAGE
    except RenderError as exc:
        print(f"lhpipe graph: {exc}", file=err)
        return ExitCode.USAGE
    if drawing is None:
        return ExitCode.FINDINGS
    if output is None:
        out.write(drawing)
        out.flush()
        return ExitCode.OK
    try:
        with open(output, "wb") as handle:
            handle.write(drawing)
    except OSError as exc:
        print(f"lhpipe graph: cannot write {output}: {describe_os_error(exc)}", file=err)
        return ExitCode.USAGE
    return ExitCode.OK

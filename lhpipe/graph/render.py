"""Drawing an execution :class:`~lhpipe.graph.model.Graph`: Graphviz dot, Mermaid, and SVG or
PNG through Graphviz's own `dot` program.

Nodes that belong to a pipeline are grouped in one box per pipeline; shared things (webhooks,
topics, LittleHorse objects, dead-letter topics) sit between the boxes, which is what shows how
pipelines feed each other.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

from lhpipe.graph.model import Graph, Node, NodeKind


class RenderError(Exception):
    """The graph could not be drawn (Graphviz missing or failing)."""


# (shape, style, fill colour) per kind for dot.
_DOT_STYLE: dict[NodeKind, tuple[str, str, str]] = {
    NodeKind.WEBHOOK: ("cds", "filled", "#dbeafe"),
    NodeKind.TOPIC: ("cylinder", "filled", "#fef3c7"),
    NodeKind.SOURCE: ("box", "rounded,filled", "#e0f2fe"),
    NodeKind.STEP: ("box", "filled", "#f3f4f6"),
    NodeKind.TARGET: ("box", "rounded,filled,bold", "#dcfce7"),
    NodeKind.DEAD_LETTER: ("cylinder", "filled", "#fee2e2"),
    NodeKind.LITTLEHORSE: ("component", "filled", "#ede9fe"),
    NodeKind.EXTERNAL: ("note", "filled", "#fafafa"),
}

# (opening, closing) brackets per kind for mermaid.
_MERMAID_SHAPE: dict[NodeKind, tuple[str, str]] = {
    NodeKind.WEBHOOK: (">", "]"),
    NodeKind.TOPIC: ("[(", ")]"),
    NodeKind.SOURCE: ("([", "])"),
    NodeKind.STEP: ("[", "]"),
    NodeKind.TARGET: ("[[", "]]"),
    NodeKind.DEAD_LETTER: ("[(", ")]"),
    NodeKind.LITTLEHORSE: ("{{", "}}"),
    NodeKind.EXTERNAL: ("[/", "/]"),
}


def _pipelines(graph: Graph) -> dict[str, list[Node]]:
    groups: dict[str, list[Node]] = {}
    for node in graph.nodes:
        if node.pipeline is not None:
            groups.setdefault(node.pipeline, []).append(node)
    return groups


# ---------------------------------------------------------------------------------------------
# dot
# ---------------------------------------------------------------------------------------------


def _dot_quote(text: str) -> str:
    # In a quoted dot string only `"` and `\` are special; newlines become dot's centred breaks.
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\r", "").replace("\n", "\\n") + '"'


def _dot_node(node: Node, indent: str) -> str:
    shape, style, fill = _DOT_STYLE[node.kind]
    return (
        f"{indent}{_dot_quote(node.id)} [label={_dot_quote(node.label)}, shape={shape}, "
        f'style="{style}", fillcolor="{fill}"];'
    )


def _dot_lines(graph: Graph) -> Iterator[str]:
    yield "digraph lhpipe {"
    yield "  rankdir=LR;"
    yield '  graph [fontname="Helvetica", fontsize=11];'
    yield '  node [fontname="Helvetica", fontsize=10];'
    yield '  edge [fontname="Helvetica", fontsize=9];'
    for node in graph.nodes:
        if node.pipeline is None:
            yield _dot_node(node, "  ")
    for index, (pipeline, nodes) in enumerate(_pipelines(graph).items()):
        # Graphviz draws a subgraph as a box only when its name starts with "cluster".
        yield f"  subgraph cluster_{index} {{"
        yield f"    label={_dot_quote('pipeline ' + pipeline)};"
        yield '    style="rounded"; color="#9ca3af";'
        for node in nodes:
            yield _dot_node(node, "    ")
        yield "  }"
    for edge in graph.edges:
        attrs = ""
        if edge.label is not None:
            attrs = f' [label={_dot_quote(edge.label)}, style=dashed, color="#b91c1c"]'
        yield f"  {_dot_quote(edge.src)} -> {_dot_quote(edge.dst)}{attrs};"
    yield "}"


def to_dot(graph: Graph) -> str:
    """The graph as Graphviz dot text."""
    return "\n".join(_dot_lines(graph)) + "\n"


# ---------------------------------------------------------------------------------------------
# mermaid
# ---------------------------------------------------------------------------------------------


def _mermaid_text(text: str) -> str:
    # Mermaid reads `#name;` as an entity and `<...>` as HTML, even inside quotes.
    escaped = (
        text.replace("#", "#35;")
        .replace('"', "#quot;")
        .replace("<", "#lt;")
        .replace(">", "#gt;")
        .replace("\r", "")
        .replace("\n", "<br/>")
    )
    return f'"{escaped}"'


def _mermaid_lines(graph: Graph) -> Iterator[str]:
    # Graph ids hold `:` and `/`, which mermaid does not accept in ids: number the nodes.
    ids = {node.id: f"n{i}" for i, node in enumerate(graph.nodes)}

    def node_line(node: Node, indent: str) -> str:
        opening, closing = _MERMAID_SHAPE[node.kind]
        return f"{indent}{ids[node.id]}{opening}{_mermaid_text(node.label)}{closing}"

    yield "flowchart LR"
    for node in graph.nodes:
        if node.pipeline is None:
            yield node_line(node, "  ")
    for index, (pipeline, nodes) in enumerate(_pipelines(graph).items()):
        yield f"  subgraph p{index}[{_mermaid_text('pipeline ' + pipeline)}]"
        for node in nodes:
            yield node_line(node, "    ")
        yield "  end"
    for edge in graph.edges:
        src, dst = ids[edge.src], ids[edge.dst]
        if edge.label is None:
            yield f"  {src} --> {dst}"
        else:
            yield f"  {src} -.->|{_mermaid_text(edge.label)}| {dst}"
    for kind in NodeKind:
        members = [ids[n.id] for n in graph.nodes if n.kind is kind]
        if members:
            yield f"  class {','.join(members)} {kind.value}"
    for kind, (_, _, fill) in _DOT_STYLE.items():
        yield f"  classDef {kind.value} fill:{fill},stroke:#6b7280"


def to_mermaid(graph: Graph) -> str:
    """The graph as a Mermaid flowchart (renders in GitHub and GitLab Markdown)."""
    return "\n".join(_mermaid_lines(graph)) + "\n"


# ---------------------------------------------------------------------------------------------
# svg / png through Graphviz
# ---------------------------------------------------------------------------------------------


def graphviz(dot_text: str, image_format: str) -> bytes:
    """Run Graphviz's `dot -T<image_format>` over ``dot_text`` and return the image bytes."""
    executable = shutil.which("dot")
    if executable is None:
        raise RenderError(
            "Graphviz's `dot` program is not installed (needed for svg and png): install the "
            "`graphviz` package (`make graphviz` does it on Debian), or use --format dot or "
            "--format mermaid"
        )
    completed = subprocess.run(
        [executable, f"-T{image_format}"],
        input=dot_text.encode("utf-8"),
        capture_output=True,
        check=False,
    )
    if completed.returncode != 0:
        detail = completed.stderr.decode("utf-8", "replace").strip()
        raise RenderError(f"Graphviz `dot -T{image_format}` failed: {detail}")
    return completed.stdout


def to_svg(graph: Graph) -> bytes:
    """The graph as an SVG image (UTF-8 bytes)."""
    return graphviz(to_dot(graph), "svg")


def to_png(graph: Graph) -> bytes:
    """The graph as a PNG image."""
    return graphviz(to_dot(graph), "png")

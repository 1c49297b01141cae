"""Drawing graphs: dot that Graphviz accepts, mermaid, svg and png through Graphviz."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from lhpipe.graph import render
from lhpipe.graph.model import Edge, Graph, Node, NodeKind

GRAPH = Graph(
    nodes=(
        Node("webhook:intake", NodeKind.WEBHOOK, "webhook intake\nPOST /hooks/kyc"),
        Node("topic:kyc-applicants", NodeKind.TOPIC, "topic kyc-applicants"),
        Node("pipeline:p/source", NodeKind.SOURCE, 'from topic "kyc-applicants"', "p"),
        Node("pipeline:p/step:0", NodeKind.STEP, 'let s = "${value.name} <x> \\"q\\" #1"', "p"),
        Node("pipeline:p/target:0", NodeKind.TARGET, 'run_wf "kyc"', "p"),
        Node("lh:wf_spec:kyc", NodeKind.LITTLEHORSE, "WfSpec kyc"),
        Node("topic:kyc-dlq", NodeKind.DEAD_LETTER, "topic kyc-dlq"),
        Node("external:http:https://x", NodeKind.EXTERNAL, "POST https://x"),
    ),
    edges=(
        Edge("webhook:intake", "topic:kyc-applicants"),
        Edge("topic:kyc-applicants", "pipeline:p/source"),
        Edge("pipeline:p/source", "pipeline:p/step:0"),
        Edge("pipeline:p/step:0", "pipeline:p/target:0"),
        Edge("pipeline:p/target:0", "lh:wf_spec:kyc"),
        Edge("pipeline:p/source", "topic:kyc-dlq", "on error"),
    ),
)

needs_graphviz = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz not installed")


@needs_graphviz
def test_dot_is_accepted_by_graphviz_with_every_node_and_edge() -> None:
    dot = render.to_dot(GRAPH)
    completed = subprocess.run(
        ["dot", "-Tplain"], input=dot.encode(), capture_output=True, check=False
    )
    assert completed.returncode == 0, completed.stderr.decode()
    plain = completed.stdout.decode().splitlines()
    assert sum(1 for line in plain if line.startswith("node ")) == len(GRAPH.nodes)
    assert sum(1 for line in plain if line.startswith("edge ")) == len(GRAPH.edges)


def test_dot_groups_pipeline_nodes_in_a_cluster_and_labels_error_edges() -> None:
    dot = render.to_dot(GRAPH)
    assert dot.startswith("digraph lhpipe {\n")
    cluster = dot.split("subgraph cluster_0 {", 1)[1].split("  }", 1)[0]
    assert '"pipeline:p/source"' in cluster
    assert '"webhook:intake"' not in cluster
    assert '"pipeline:p/source" -> "topic:kyc-dlq" [label="on error"' in dot
    assert r'label="let s = \"${value.name} <x> \\\"q\\\" #1\""' in dot


def test_mermaid_flowchart_with_safe_ids_and_escaped_labels() -> None:
    mermaid = render.to_mermaid(GRAPH)
    lines = mermaid.splitlines()
    assert lines[0] == "flowchart LR"
    assert '  n0>"webhook intake<br/>POST /hooks/kyc"]' in lines
    assert '  subgraph p0["pipeline p"]' in lines
    assert '    n3["let s = #quot;${value.name} #lt;x#gt; \\#quot;q\\#quot; #35;1#quot;"]' in lines
    assert '  n2 -.->|"on error"| n6' in lines
    assert "  n0 --> n1" in lines


@needs_graphviz
def test_svg_and_png_come_from_graphviz() -> None:
    assert b"<svg" in render.to_svg(GRAPH)
    assert render.to_png(GRAPH).startswith(b"\x89PNG\r\n\x1a\n")


def test_missing_graphviz_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.raises(render.RenderError, match="Graphviz's `dot` program is not installed"):
        render.to_svg(GRAPH)

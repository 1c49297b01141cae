"""The execution graph as plain data: nodes, edges, and the specs the engine runs.

`lhpipe.graph.compile` builds a :class:`Graph` from a checked program; `lhpipe.graph.render`
draws it (dot, mermaid, svg, png); :meth:`Graph.to_json` is its stable serialised form.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

JSONValue = Any  # a value json.dumps accepts


class NodeKind(StrEnum):
    WEBHOOK = "webhook"  # an HTTP route
    TOPIC = "topic"  # a Kafka topic (read or written)
    SOURCE = "source"  # a pipeline's source (topic consumer, lh_output, poll, connector, webhook)
    STEP = "step"  # where / let
    TARGET = "target"  # run_wf, post_event, correlate, to topic/http/file/log
    DEAD_LETTER = "dead_letter"  # a dead-letter topic
    LITTLEHORSE = "littlehorse"  # LittleHorse objects a target touches (WfSpec, ExternalEventDef)
    EXTERNAL = "external"  # HTTP endpoints, files, Kafka Connect connectors, polled URLs


@dataclass(frozen=True, slots=True)
class Node:
    """One vertex. ``id`` is unique in the graph and stable across compiles of the same text
    (for example ``pipeline:start_kyc/target:0``); ``pipeline`` names the owning pipeline,
    if any; ``attrs`` holds kind-specific plain data (topic names, ids, expressions as text)."""

    id: str
    kind: NodeKind
    label: str
    pipeline: str | None = None
    attrs: Mapping[str, JSONValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Edge:
    """A directed edge ``src -> dst``; ``label`` is optional text such as ``on error``."""

    src: str
    dst: str
    label: str | None = None


@dataclass(frozen=True, slots=True)
class Graph:
    """Nodes and edges of every pipeline and webhook of one program."""

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "nodes": [
                {
                    "id": n.id,
                    "kind": n.kind.value,
                    "label": n.label,
                    "pipeline": n.pipeline,
                    "attrs": dict(n.attrs),
                }
                for n in self.nodes
            ],
            "edges": [{"src": e.src, "dst": e.dst, "label": e.label} for e in self.edges],
        }

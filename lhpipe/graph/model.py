"""The execution graph as plain data: nodes, edges, and the specs the engine runs.

`lhpipe.graph.compile` builds a :class:`Graph` from a checked program; `lhpipe.graph.render`
draws it (dot, mermaid, svg, png); :meth:`Graph.to_json` is its stable serialised form.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lhpipe.check.program import PipelineInfo, WebhookInfo

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


# ---------------------------------------------------------------------------------------------
# Specs: what the engine runs, one per pipeline and one per webhook route
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PipelineSpec:
    """One pipeline as the engine runs it.

    ``pipeline`` is the checked declaration (expressions as AST nodes, typed by the program);
    ``schemas`` names every schema it depends on (its value schema and the schemas that one
    refers to); ``settings`` names every setting and environment variable it reads;
    ``description`` is the same as plain JSON. ``fingerprint`` is a hash of all of that, layout
    and comments aside: hot reload restarts a pipeline exactly when its fingerprint changes.
    """

    name: str
    fingerprint: str
    schemas: tuple[str, ...]
    settings: tuple[str, ...]
    description: Mapping[str, JSONValue]
    pipeline: PipelineInfo = field(compare=False, repr=False)

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "schemas": list(self.schemas),
            "settings": list(self.settings),
            **self.description,
        }


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """One webhook route as the engine serves it.

    ``topic`` is ``None`` in direct mode, where ``direct_pipeline`` runs inside the request
    (its fingerprint is part of the route's). Otherwise as :class:`PipelineSpec`.
    """

    name: str
    path: str
    methods: tuple[str, ...]
    topic: str | None
    direct_pipeline: str | None
    fingerprint: str
    schemas: tuple[str, ...]
    settings: tuple[str, ...]
    description: Mapping[str, JSONValue]
    webhook: WebhookInfo = field(compare=False, repr=False)

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "name": self.name,
            "path": self.path,
            "methods": list(self.methods),
            "topic": self.topic,
            "direct_pipeline": self.direct_pipeline,
            "fingerprint": self.fingerprint,
            "schemas": list(self.schemas),
            "settings": list(self.settings),
            **self.description,
        }


@dataclass(frozen=True, slots=True)
class CompiledProgram:
    """A program compiled for running and drawing: the graph, the specs by name, and each
    ``connector`` declaration's fingerprint by name."""

    graph: Graph
    pipelines: Mapping[str, PipelineSpec]
    routes: Mapping[str, RouteSpec]
    connectors: Mapping[str, str] = field(default_factory=dict)

    def program_hash(self) -> str:
        """A short hash of every pipeline's, webhook's and connector's name and fingerprint:
        two compiles that hot reload would treat as the same program have the same hash
        (``/readyz``)."""
        parts = sorted(
            [("pipeline", name, spec.fingerprint) for name, spec in self.pipelines.items()]
            + [("webhook", name, spec.fingerprint) for name, spec in self.routes.items()]
            + [("connector", name, fingerprint) for name, fingerprint in self.connectors.items()]
        )
        return hashlib.sha256(repr(parts).encode("utf-8")).hexdigest()[:16]

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "graph": self.graph.to_json(),
            "pipelines": {name: spec.to_json() for name, spec in self.pipelines.items()},
            "routes": {name: spec.to_json() for name, spec in self.routes.items()},
        }

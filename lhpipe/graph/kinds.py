"""What the compiler asks of each source and target kind: how it is drawn, what it reads.

The compiler (:mod:`lhpipe.graph.compile`) draws every source and target as a node of its
pipeline and asks the kind for the rest: the node upstream of a source (the topic it reads, the
webhook, the polled URL...) and the node a target feeds (the WfSpec, the topic, the URL...),
each made through a :class:`GraphBuilder` so that shared things are one node; and the
connection settings the kind reads, which take part in the pipeline's fingerprint (a changed
value restarts exactly what reads it). The kinds live in ``lhpipe/sources/`` and
``lhpipe/targets/``; the registry (:mod:`lhpipe.kinds`) hands their graph parts to
:func:`lhpipe.graph.compile.compile_program` as a :class:`KindGraphs`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from lhpipe.check.program import Program, SourceInfo, TargetInfo, Text, WebhookInfo
from lhpipe.graph.model import Node
from lhpipe.syntax import ast

# Connection settings, by what needs them (names as in language.md and LittleHorse's client).
KAFKA_SETTINGS = ("KAFKA_BOOTSTRAP_SERVERS",)
REGISTRY_SETTINGS = ("LHPIPE_REGISTRY_URL",)
LITTLEHORSE_SETTINGS = (
    "LHC_API_HOST",
    "LHC_API_PORT",
    "LHC_API_PROTOCOL",
    "LHC_TENANT_ID",
    "LHC_OAUTH_ACCESS_TOKEN_URL",
    "LHC_OAUTH_CLIENT_ID",
    "LHC_OAUTH_CLIENT_SECRET",
    "LHC_CA_CERT",
    "LHC_CLIENT_CERT",
    "LHC_CLIENT_KEY",
)
# The Kafka Connect REST endpoint that connectors are deployed through.
CONNECT_SETTINGS = ("LHPIPE_CONNECT_URL",)


class GraphBuilder(Protocol):
    """The compiler, as a kind sees it: nodes made once per id, edges once per pair."""

    program: Program

    def node(self, node: Node) -> str: ...

    def edge(self, src: str, dst: str, label: str | None = None) -> None: ...

    def topic(self, name: Text) -> str: ...

    def wf_spec(self, name: str) -> str: ...

    def external_event_def(self, name: str) -> str: ...

    def webhook_node(self, webhook: WebhookInfo) -> str: ...

    def connector(self, name: str) -> str: ...


def _reads_nothing(source: SourceInfo, program: Program) -> object:
    return None


@dataclass(frozen=True, slots=True)
class SourceGraph:
    """A source kind's part of the compiler. ``label`` is its node's text; ``upstream`` makes
    what feeds it and returns that node's id (``None``: nothing is drawn before it);
    ``settings`` are the connection settings its pipeline reads because of it; ``reads`` is
    what it reads of other declarations (a webhook's topic and body), for the fingerprint."""

    label: Callable[[SourceInfo], str]
    upstream: Callable[[GraphBuilder, SourceInfo], str | None]
    settings: Callable[[SourceInfo, Program], Iterable[str]]
    reads: Callable[[SourceInfo, Program], object] = _reads_nothing


def _target_reads_nothing(target: TargetInfo, program: Program) -> object:
    return None


@dataclass(frozen=True, slots=True)
class TargetGraph:
    """A target kind's part of the compiler. ``feeds`` makes the node the target writes to and
    returns its id (``None``: nothing is drawn after it); ``settings`` are the connection
    settings its pipeline reads because of it; ``reads`` is what it reads of other
    declarations (a connector's topic), for the fingerprint."""

    feeds: Callable[[GraphBuilder, TargetInfo], str | None]
    settings: Callable[[TargetInfo, Program], Iterable[str]]
    reads: Callable[[TargetInfo, Program], object] = _target_reads_nothing


@dataclass(frozen=True, slots=True)
class KindGraphs:
    """The graph part of every kind, by kind (the registry gives it)."""

    sources: Mapping[ast.SourceKind, SourceGraph]
    targets: Mapping[ast.TargetKind, TargetGraph]

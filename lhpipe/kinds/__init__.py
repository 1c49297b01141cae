"""The registry of source and target kinds, and the front doors that use it.

One line per kind module: the grammar (:mod:`lhpipe.syntax.kinds`) is the list of kinds, and
building the registry fails (:class:`RegistryError`) when a kind of the grammar has no module
here, a module names a kind the grammar does not have, or a kind lacks a part. Adding a kind
is a grammar alternative, its module under ``lhpipe/sources/`` or ``lhpipe/targets/``, and its
line below (docs/architecture.md, "Adding a target").

:func:`load`, :func:`load_texts` and :func:`compile_program` are the checker's and the
compiler's entry points with the kinds' parts given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from lhpipe.check import load as _load
from lhpipe.check.kinds import KindChecks
from lhpipe.check.program import PipelineInfo, Program, TargetInfo
from lhpipe.core.planning import Planner
from lhpipe.graph import compile as _compile
from lhpipe.graph.kinds import KindGraphs
from lhpipe.graph.model import CompiledProgram
from lhpipe.kinds.registry import RegistryError, registry
from lhpipe.runtime.kind import SourceDef, TargetDef
from lhpipe.runtime.kind import compile_planner as _compile_planner
from lhpipe.sources import connector, lh_output, poll, topic, webhook
from lhpipe.syntax import ast
from lhpipe.syntax.kinds import source_kinds, target_kinds
from lhpipe.targets import (
    correlate,
    post_event,
    run_wf,
    to_connector,
    to_file,
    to_http,
    to_log,
    to_topic,
)

__all__ = [
    "CHECKS",
    "GRAPHS",
    "SOURCES",
    "TARGETS",
    "RegistryError",
    "compile_planner",
    "compile_program",
    "load",
    "load_texts",
]

SOURCES: Mapping[ast.SourceKind, SourceDef] = registry(
    "source",
    source_kinds(),
    [
        topic.SOURCE,
        webhook.SOURCE,
        lh_output.SOURCE,
        poll.SOURCE,
        connector.SOURCE,
    ],
)

TARGETS: Mapping[ast.TargetKind, TargetDef] = registry(
    "target",
    target_kinds(),
    [
        run_wf.TARGET,
        post_event.TARGET,
        correlate.TARGET,
        to_topic.TARGET,
        to_http.TARGET,
        to_file.TARGET,
        to_log.TARGET,
        to_connector.TARGET,
    ],
)

CHECKS = KindChecks(
    sources={kind: d.check for kind, d in SOURCES.items()},
    targets={kind: d.check for kind, d in TARGETS.items()},
)
GRAPHS = KindGraphs(
    sources={kind: d.graph for kind, d in SOURCES.items()},
    targets={kind: d.graph for kind, d in TARGETS.items()},
)


def compile_planner(target: TargetInfo, pipeline: PipelineInfo, program: Program) -> Planner:
    """``target`` compiled into its kind's planner (what ``lhpipe test`` and the builder run)."""
    return _compile_planner(TARGETS[target.kind], target, pipeline, program)


def load(paths: Sequence[str | Path]) -> _load.LoadResult:
    """:func:`lhpipe.check.load.load` with every kind's check."""
    return _load.load(paths, CHECKS)


def load_texts(sources: Mapping[str, str]) -> _load.LoadResult:
    """:func:`lhpipe.check.load.load_texts` with every kind's check."""
    return _load.load_texts(sources, CHECKS)


def compile_program(program: Program, settings: Mapping[str, str] | None = None) -> CompiledProgram:
    """:func:`lhpipe.graph.compile.compile_program` with every kind's graph part."""
    return _compile.compile_program(program, GRAPHS, settings)

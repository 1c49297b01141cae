"""`from poll` sources (not built yet: the pipeline is reported failed with the reason)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lhpipe.engine.sources import PipelineNotRunnable

if TYPE_CHECKING:
    from lhpipe.check.program import Program
    from lhpipe.engine.sources import Clients, SourceParts
    from lhpipe.graph.model import PipelineSpec
    from lhpipe.settings import Settings


def source_parts(
    spec: PipelineSpec, program: Program, settings: Settings, clients: Clients
) -> SourceParts:
    raise PipelineNotRunnable("`from poll` sources are not supported yet by `lhpipe run`")

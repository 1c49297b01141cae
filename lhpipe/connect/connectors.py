"""``connector NAME { class config topic }``: Kafka Connect source connectors (not built yet:
each declared connector is reported failed with the reason)."""

from __future__ import annotations

from collections.abc import Mapping

from lhpipe.check.program import ConnectorInfo
from lhpipe.engine.status import PipelineStatus, State
from lhpipe.settings import Settings


class ConnectorManager:
    """Keeps the Connect cluster's connectors in line with the declarations."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._declared: dict[str, ConnectorInfo] = {}

    async def sync(self, connectors: Mapping[str, ConnectorInfo]) -> None:
        """Create, update or remove connectors so that the cluster has exactly these."""
        self._declared = dict(connectors)

    def statuses(self) -> list[PipelineStatus]:
        """One status per declared connector, as ``connector:<name>``."""
        return [
            PipelineStatus(
                name=f"connector:{name}",
                state=State.FAILED,
                source_connected=False,
                detail="connectors are not supported yet by `lhpipe run`",
            )
            for name in self._declared
        ]

    async def close(self) -> None:
        """Release the HTTP client (the connectors keep running on the cluster)."""

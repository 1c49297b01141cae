"""What a running pipeline or route reports about itself, for ``/readyz`` and the status page."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class State(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"  # a paused-class error (credentials, missing parent): retrying slowly
    DRAINING = "draining"  # shutdown or reload: finishing in-flight records
    STOPPED = "stopped"  # `permanent = stop` hit, or drained for good
    FAILED = "failed"  # could not start (bad settings, unreachable service at start-up)
    STANDBY = "standby"  # a singleton (poll, connectors) another process of the group owns now


@dataclass(frozen=True, slots=True)
class PipelineStatus:
    """One pipeline's health. ``ready`` is true when its source and every target are connected
    and it is running; ``detail`` says why not, in words."""

    name: str
    state: State
    source_connected: bool
    targets: dict[str, bool] = field(default_factory=dict)
    detail: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    #: Partitions that read nothing although they have records and lhpipe has not paused them.
    stalled: tuple[str, ...] = ()

    @property
    def ready(self) -> bool:
        if self.state is State.STANDBY:
            return True  # another process of the group runs it; this one is ready to take over
        return (
            self.state is State.RUNNING
            and self.source_connected
            and all(self.targets.values())
            and not self.stalled
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ready": self.ready,
            "state": self.state.value,
            "source_connected": self.source_connected,
            "targets": dict(self.targets),
            "detail": self.detail,
            **({"stats": dict(self.stats)} if self.stats else {}),
            **({"stalled": list(self.stalled)} if self.stalled else {}),
        }

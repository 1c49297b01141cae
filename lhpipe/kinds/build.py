"""The one pipeline builder: a pipeline's steps, targets (planner, sender and delivery policy
each) and dead letters, for a runner (:func:`build_runner`, which adds the source kind's parts)
and for a direct-mode webhook route alike (the Gateway wraps :func:`build_delivery`'s
:class:`Built` in a :class:`~lhpipe.gateway.route.DirectPipeline`). Start, reload and the
Gateway all build through here; nothing here names a kind."""

from __future__ import annotations

from dataclasses import dataclass

from lhpipe.check.program import PipelineInfo, Program
from lhpipe.core import metrics
from lhpipe.core.steps import Steps, compile_steps
from lhpipe.graph.model import PipelineSpec
from lhpipe.kinds import SOURCES, TARGETS
from lhpipe.runtime.delivery import DeadLetterWriter, Delivery, FailurePolicy, TargetStage
from lhpipe.runtime.kind import Clients, compile_planner, resolve_text
from lhpipe.runtime.runner import PipelineLogic, PipelineRunner
from lhpipe.settings import Settings


@dataclass(frozen=True, slots=True)
class Built:
    """What every pipeline runs a decoded record through."""

    steps: Steps
    targets: list[TargetStage]
    dead_letters: DeadLetterWriter | None


def build_delivery(
    info: PipelineInfo, program: Program, settings: Settings, clients: Clients
) -> Built:
    """The steps (with the source kind's own filter), one stage per target (its kind's
    planner, the shared sender of its kind, the ``on_error`` retries), and the dead-letter
    writer of ``dead_letter`` (read from the settings now:
    :class:`~lhpipe.runtime.kind.PipelineNotRunnable` when unset)."""
    policy = info.on_error
    targets = []
    for target in info.targets:
        label = metrics.target_label(target.kind.value, target.name)
        delivery = Delivery(
            pipeline=info.name,
            target=label,
            sender=clients.sender(target.kind),
            retry=policy.retry,
            backoff=policy.backoff_ms / 1000,
        )
        planner = compile_planner(TARGETS[target.kind], target, info, program)
        targets.append(TargetStage(label, planner, delivery))
    dead_letters = None
    if policy.dead_letter is not None:
        topic = resolve_text(policy.dead_letter, settings, f"pipeline {info.name}: dead_letter")
        produce = clients.kafka_producer().produce
        dead_letters = DeadLetterWriter(pipeline=info.name, topic=topic, produce=produce)
    source_filter = SOURCES[info.source.kind].filter(info.source)
    return Built(compile_steps(info, program, source_filter), targets, dead_letters)


def build_runner(
    spec: PipelineSpec,
    program: Program,
    settings: Settings,
    clients: Clients,
    *,
    max_in_flight: int,
) -> PipelineRunner:
    """A runner of ``spec``: its source kind's parts and :func:`build_delivery`."""
    info = spec.pipeline
    parts = SOURCES[info.source.kind].parts(spec, program, settings, clients)
    built = build_delivery(info, program, settings, clients)
    logic = PipelineLogic(
        decoder=parts.decoder,
        initial_env=parts.initial_env,
        steps=built.steps,
        targets=built.targets,
        schema_id_of=parts.schema_id_of,
        schemas=clients.schema_registry() if parts.decoder.is_avro else None,
    )
    failures = FailurePolicy(
        pipeline=spec.name, dead_letters=built.dead_letters, permanent=info.on_error.permanent
    )
    return PipelineRunner(
        spec.name, logic, failures, parts.make_source, max_in_flight=max_in_flight
    )

"""The partitions of the topics lhpipe creates: webhook topics and dead-letter topics.

At start (and for what a hot reload adds), lhpipe creates the topic of each topic-mode webhook
and the dead-letter topic of each pipeline when they do not exist
(:func:`lhpipe.clients.kafka.admin.ensure_topics`). How many partitions such a topic gets:

1. the ``partitions`` written for it: a webhook's ``partitions`` for its ``topic``, an
   ``on_error``'s for its ``dead_letter``;
2. else the setting ``LHPIPE_TOPIC_PARTITIONS`` (environment or ``lhpipe.toml``);
3. else :data:`DEFAULT_PARTITIONS` (6).

A topic is read by one process of a consumer group per partition, so a topic lhpipe makes with
one partition (the broker's usual ``num.partitions``) could never be shared by the processes of
a scaled-out ``lhpipe run``; 6 lets up to six share it and costs a single broker nothing
noticeable. Replication stays the broker's default (``default.replication.factor``): it is the
cluster's business, not a pipeline's.

An existing topic is never altered, whatever its partitions: adding partitions to a topic moves
keys to other partitions (and so breaks per-key order for the records already there), which is
the operator's decision. ``ensure_topics`` logs a topic that has fewer partitions than asked,
and ``lhpipe lint --online`` reports it (``LHP911``).

The checker makes the counts written for one literal topic agree (``LHP412``). A dead-letter
topic that comes from ``env()`` is only known at run time; when it names a topic that is given
another count elsewhere, the largest count wins.

This module is imported by the engine, ``lint --online`` and the demo; it loads no Kafka client.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from lhpipe.check.rules import MAX_PARTITIONS
from lhpipe.settings import Settings, SettingsError, resolve_text

if TYPE_CHECKING:
    from lhpipe.check.program import Program

PARTITIONS_SETTING = "LHPIPE_TOPIC_PARTITIONS"
DEFAULT_PARTITIONS = 6


def default_partitions(settings: Settings) -> int:
    """``LHPIPE_TOPIC_PARTITIONS`` (1 to ``MAX_PARTITIONS``), else :data:`DEFAULT_PARTITIONS`;
    raises :class:`~lhpipe.settings.SettingsError` for a value that is not such a number."""
    count = settings.integer(PARTITIONS_SETTING, DEFAULT_PARTITIONS, minimum=1)
    if count > MAX_PARTITIONS:
        raise SettingsError(f"{PARTITIONS_SETTING} must be at most {MAX_PARTITIONS}, not {count}")
    return count


def declared_partitions(program: Program, settings: Settings) -> dict[str, int]:
    """The topics ``program`` writes a ``partitions`` for, with that count (the largest, for a
    topic written in several places). A dead-letter topic from an ``env()`` that is not set is
    left out: its pipeline cannot run anyway, and says so."""
    counts: dict[str, int] = {}
    for webhook in program.webhooks.values():
        if webhook.topic and webhook.partitions is not None:
            counts[webhook.topic] = max(counts.get(webhook.topic, 0), webhook.partitions)
    for pipeline in program.pipelines.values():
        policy = pipeline.on_error
        if policy.dead_letter is None or policy.partitions is None:
            continue
        try:
            topic = resolve_text(policy.dead_letter, settings, "dead_letter")
        except SettingsError:
            continue
        counts[topic] = max(counts.get(topic, 0), policy.partitions)
    return counts


def partitions_for(topics: Iterable[str], program: Program, settings: Settings) -> dict[str, int]:
    """Each of ``topics`` (topics lhpipe creates for ``program``) with the partitions it is
    created with; raises :class:`~lhpipe.settings.SettingsError` for a bad
    ``LHPIPE_TOPIC_PARTITIONS``."""
    declared = declared_partitions(program, settings)
    default = default_partitions(settings)
    return {topic: declared.get(topic, default) for topic in topics}

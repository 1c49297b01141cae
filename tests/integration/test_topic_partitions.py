"""The partitions of the topics `lhpipe run` creates (lhpipe/clients/kafka/topics.py), on the real
Kafka: a topic-mode webhook's topic and a dead-letter topic get their `partitions`, the others
LHPIPE_TOPIC_PARTITIONS, else 6; a topic that exists is left as it is, and logged."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from engine_run import LhpipeRun, create_topic, unique, wait_until, write_pipelines

from lhpipe.stack.addresses import StackAddresses

pytestmark = pytest.mark.integration

SECRET = {"GITHUB_SECRET": "it-partitions-secret"}


def partition_counts(stack: StackAddresses, topics: list[str]) -> dict[str, int]:
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    found = admin.list_topics(timeout=10).topics
    return {t: len(found[t].partitions) for t in topics if t in found}


def program(tag: str) -> str:
    return f"""
webhook sized {{
  path = "/hooks/sized"
  auth = hmac {{ preset = github  secret = env("GITHUB_SECRET") }}
  topic = "{tag}-sized"
  partitions = 4
}}

webhook plain {{
  path = "/hooks/plain"
  auth = hmac {{ preset = github  secret = env("GITHUB_SECRET") }}
  topic = "{tag}-plain"
}}

webhook existing {{
  path = "/hooks/existing"
  auth = hmac {{ preset = github  secret = env("GITHUB_SECRET") }}
  topic = "{tag}-existing"
  partitions = 5
}}

webhook direct {{
  path = "/hooks/direct"
  auth = hmac {{ preset = github  secret = env("GITHUB_SECRET") }}
}}

pipeline from_sized {{
  from webhook sized
  to log
  on_error {{ dead_letter = "{tag}-sized-dlq"  partitions = 2 }}
}}

pipeline from_plain {{
  from webhook plain
  to log
  on_error {{ dead_letter = "{tag}-plain-dlq" }}
}}

pipeline from_existing {{
  from webhook existing
  to log
}}

pipeline in_the_request {{
  from webhook direct
  to log
  on_error {{ dead_letter = "{tag}-direct-dlq"  partitions = 3 }}
}}
"""


def run_and_count(stack: StackAddresses, folder: Path, tag: str, **env: str) -> dict[str, int]:
    topics = [
        f"{tag}-{name}"
        for name in ("sized", "plain", "existing", "sized-dlq", "plain-dlq", "direct-dlq")
    ]
    with LhpipeRun(folder, env={**SECRET, **env}) as run:
        run.wait_ready()

        def all_there() -> dict[str, int] | None:
            counts = partition_counts(stack, topics)
            return counts if len(counts) == len(topics) else None

        # Created before /readyz says 200; polled all the same, for a slow metadata refresh.
        counts: dict[str, int] = wait_until(all_there, 30, "every topic to exist")
        assert run.terminate() == 0
        log = run.log()
    assert f"topic '{tag}-existing' exists with 1 partition(s), fewer than the 5 asked" in log
    return counts


def test_written_partitions_then_six_and_an_existing_topic_is_left_alone(
    stack: StackAddresses, tmp_path: Path
) -> None:
    tag = unique("itp")
    create_topic(stack, f"{tag}-existing", partitions=1)
    folder = write_pipelines(tmp_path / "lhp", program(tag))

    counts = run_and_count(stack, folder, tag)

    assert counts == {
        f"{tag}-sized": 4,
        f"{tag}-plain": 6,
        f"{tag}-existing": 1,
        f"{tag}-sized-dlq": 2,
        f"{tag}-plain-dlq": 6,
        f"{tag}-direct-dlq": 3,
    }


def test_the_setting_gives_the_count_where_none_is_written(
    stack: StackAddresses, tmp_path: Path
) -> None:
    tag = unique("itp")
    create_topic(stack, f"{tag}-existing", partitions=1)
    folder = write_pipelines(tmp_path / "lhp", program(tag))
    (folder / "lhpipe.toml").write_text("LHPIPE_TOPIC_PARTITIONS = 3\n", encoding="utf-8")

    counts = run_and_count(stack, folder, tag)

    assert counts == {
        f"{tag}-sized": 4,
        f"{tag}-plain": 3,
        f"{tag}-existing": 1,
        f"{tag}-sized-dlq": 2,
        f"{tag}-plain-dlq": 3,
        f"{tag}-direct-dlq": 3,
    }

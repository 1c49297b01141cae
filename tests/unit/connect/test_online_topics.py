"""`lint --online`'s partition checks on partition counts given by the test (the real Kafka is
tests/integration/test_online_lint.py): LHP910 for the topics read by fewer partitions than the
declared processes, LHP911 for a `partitions` that an existing topic does not have."""

from __future__ import annotations

import pytest

from lhpipe.check.program import Program
from lhpipe.kinds import load_texts
from lhpipe.online.topics import (
    declared_processes,
    needs_kafka,
    partition_diagnostics,
)
from lhpipe.settings import Settings, SettingsError

TEXT = """\
webhook sized {
  path = "/hooks/sized"
  auth = hmac { preset = github  secret = env("GITHUB_SECRET") }
  topic = "sized"
  partitions = 2
}

webhook plain {
  path = "/hooks/plain"
  auth = hmac { preset = github  secret = env("GITHUB_SECRET") }
  topic = "plain"
}

connector crm {
  class = "FileStreamSource"
  topic = "crm"
  config { file = "/tmp/crm.txt" }
}

pipeline one {
  from topic "one-partition"
  to log
}

pipeline six {
  from topic "six-partitions"
  to log
}

pipeline missing {
  from topic "not-there"
  to log
}

pipeline sized_a {
  from webhook sized
  to log
}

pipeline sized_b {
  from webhook sized
  to log
  on_error { dead_letter = "sized-dlq"  partitions = 8 }
}

pipeline plain_reader {
  from webhook plain
  to log
}

pipeline from_crm {
  from connector crm
  to log
}

pipeline exports {
  from lh_output { kinds = [wf_run] }
  to log
}
"""

COUNTS = {
    "one-partition": 1,
    "six-partitions": 6,
    "crm": 1,
    "lhpipe_default_execution": 12,
    "sized-dlq": 3,
}


@pytest.fixture(scope="module")
def program() -> Program:
    result = load_texts({"p.lhp": TEXT})
    assert result.diagnostics == ()
    assert result.program is not None
    return result.program


def found(
    program: Program, processes: int | None, counts: dict[str, int], **environ: str
) -> list[tuple[str, int, int, str, str | None]]:
    diagnostics = partition_diagnostics(program, Settings(environ=environ), processes, counts)
    return sorted(
        (d.code, d.span.line, d.span.col, d.message, d.hint)
        for d in diagnostics
        if d.span.file == "p.lhp"
    )


def test_topics_read_by_fewer_partitions_than_processes_are_warned_about_at_their_names(
    program: Program,
) -> None:
    assert found(program, 3, COUNTS) == [
        (
            "LHP910",
            4,
            11,
            'topic "sized" does not exist yet and lhpipe will create it with 2 partitions: '
            "only 2 of the 3 processes will get records from it",
            "write `partitions = 3` in webhook `sized`",
        ),
        (
            "LHP910",
            16,
            11,
            'topic "crm" has 1 partition: only 1 of the 3 processes will get records from it',
            "Kafka gives each partition to one process of a consumer group: add partitions "
            "(kafka-topics.sh --alter --topic crm --partitions 3; lhpipe never changes an "
            "existing topic), or run at most 1",
        ),
        (
            "LHP910",
            21,
            14,
            'topic "one-partition" has 1 partition: only 1 of the 3 processes will get '
            "records from it",
            "Kafka gives each partition to one process of a consumer group: add partitions "
            "(kafka-topics.sh --alter --topic one-partition --partitions 3; lhpipe never "
            "changes an existing topic), or run at most 1",
        ),
        (
            "LHP911",
            43,
            54,
            'topic "sized-dlq" exists with 3 partitions, fewer than `partitions = 8`: lhpipe '
            "never changes an existing topic",
            "add partitions with Kafka's tools (kafka-topics.sh --alter --topic sized-dlq "
            "--partitions 8), or write `partitions = 3`",
        ),
    ]


def test_the_default_count_judges_a_webhook_topic_lhpipe_will_create(program: Program) -> None:
    # `plain` has no `partitions`: 6 by default, 2 with the setting.
    assert [f[3] for f in found(program, 6, COUNTS) if '"plain"' in f[3]] == []
    low = [f for f in found(program, 6, COUNTS, LHPIPE_TOPIC_PARTITIONS="2") if '"plain"' in f[3]]
    assert low == [
        (
            "LHP910",
            11,
            11,
            'topic "plain" does not exist yet and lhpipe will create it with 2 partitions: '
            "only 2 of the 6 processes will get records from it",
            "write `partitions = 6` in webhook `plain`, or set LHPIPE_TOPIC_PARTITIONS",
        )
    ]


def test_lh_output_is_judged_by_the_output_topic_at_the_pipelines_name(program: Program) -> None:
    warned = [f for f in found(program, 13, COUNTS) if "execution" in f[3]]
    assert [(code, line, col) for code, line, col, _, _ in warned] == [("LHP910", 56, 10)]
    assert warned[0][3].startswith('topic "lhpipe_default_execution" has 12 partitions')


def test_enough_partitions_or_one_process_give_nothing_but_the_partitions_check(
    program: Program,
) -> None:
    assert [f[0] for f in found(program, 1, COUNTS)] == ["LHP911"]
    assert [f[0] for f in found(program, None, COUNTS)] == ["LHP911"]
    assert found(program, None, {**COUNTS, "sized-dlq": 8}) == []


def test_kafka_is_asked_only_when_processes_are_declared_or_partitions_written(
    program: Program,
) -> None:
    plain = load_texts({"q.lhp": 'pipeline p {\n  from topic "x"\n  to log\n}\n'}).program
    assert plain is not None
    assert needs_kafka(plain, None) is False
    assert needs_kafka(plain, 2) is True
    assert needs_kafka(program, None) is True


def test_processes_come_from_the_flag_else_the_setting() -> None:
    assert declared_processes(Settings(environ={}), None) is None
    assert declared_processes(Settings(environ={"LHPIPE_PROCESSES": "4"}), None) == 4
    assert declared_processes(Settings(environ={"LHPIPE_PROCESSES": "4"}), 2) == 2
    with pytest.raises(SettingsError, match="LHPIPE_PROCESSES"):
        declared_processes(Settings(environ={"LHPIPE_PROCESSES": "0"}), None)

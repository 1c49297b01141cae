"""`partitions` of a webhook's topic and of a dead-letter topic: what the checker keeps, what the
engine creates the topics with (lhpipe/clients/kafka/topics.py), what the formatter and the graph
show. The diagnostics are in tests/data/lint/topics_partitions.lhp."""

from __future__ import annotations

import pytest

from lhpipe.check.program import Program
from lhpipe.clients.kafka.topics import (
    DEFAULT_PARTITIONS,
    declared_partitions,
    default_partitions,
    partitions_for,
)
from lhpipe.kinds import compile_program, load_texts
from lhpipe.settings import Settings, SettingsError
from lhpipe.syntax import parse
from lhpipe.syntax.formatter import format_file

TEXT = """\
webhook orders {
  path = "/hooks/orders"
  auth = hmac { preset = github  secret = env("GITHUB_SECRET") }
  topic = "orders"
  partitions = 12
}

webhook refunds {
  path = "/hooks/refunds"
  auth = hmac { preset = github  secret = env("GITHUB_SECRET") }
  topic = "refunds"
}

pipeline take_orders {
  from webhook orders
  to log
  on_error { dead_letter = "orders-dlq"  partitions = 3 }
}

pipeline take_refunds {
  from webhook refunds
  to log
  on_error { dead_letter = "refunds-dlq" }
}

pipeline from_env {
  from topic "payments"
  to log
  on_error { dead_letter = env("PAYMENTS_DLQ")  partitions = 9 }
}
"""


def program(text: str = TEXT) -> Program:
    result = load_texts({"p.lhp": text})
    assert result.diagnostics == ()
    assert result.program is not None
    return result.program


def test_the_program_keeps_the_written_partitions_and_none_where_none_is_written() -> None:
    checked = program()
    assert checked.webhooks["orders"].partitions == 12
    assert checked.webhooks["refunds"].partitions is None
    assert checked.pipelines["take_orders"].on_error.partitions == 3
    assert checked.pipelines["take_refunds"].on_error.partitions is None
    assert checked.pipelines["from_env"].on_error.partitions == 9


def test_written_partitions_win_then_the_setting_then_six() -> None:
    checked = program()
    topics = ["orders", "refunds", "orders-dlq", "refunds-dlq", "payments-dlq"]
    settings = Settings(environ={"PAYMENTS_DLQ": "payments-dlq"})
    assert partitions_for(topics, checked, settings) == {
        "orders": 12,
        "refunds": DEFAULT_PARTITIONS,
        "orders-dlq": 3,
        "refunds-dlq": DEFAULT_PARTITIONS,
        "payments-dlq": 9,
    }
    assert DEFAULT_PARTITIONS == 6
    from_file = Settings(environ={}, file_values={"LHPIPE_TOPIC_PARTITIONS": "2"})
    assert partitions_for(["refunds", "orders"], checked, from_file) == {
        "refunds": 2,
        "orders": 12,
    }


def test_a_dead_letter_topic_from_an_unset_variable_is_left_out() -> None:
    assert declared_partitions(program(), Settings(environ={})) == {"orders": 12, "orders-dlq": 3}


def test_a_topic_written_twice_through_env_takes_the_largest_count() -> None:
    settings = Settings(environ={"PAYMENTS_DLQ": "orders-dlq"})
    assert declared_partitions(program(), settings)["orders-dlq"] == 9


@pytest.mark.parametrize("value", ["0", "-1", "six", "10001", "1.5"])
def test_a_bad_topic_partitions_setting_is_an_error_naming_it(value: str) -> None:
    with pytest.raises(SettingsError, match="LHPIPE_TOPIC_PARTITIONS"):
        default_partitions(Settings(environ={"LHPIPE_TOPIC_PARTITIONS": value}))


def test_the_setting_takes_one_to_ten_thousand() -> None:
    for value in (1, 10_000):
        settings = Settings(environ={"LHPIPE_TOPIC_PARTITIONS": str(value)})
        assert default_partitions(settings) == value


def test_the_formatter_keeps_partitions() -> None:
    text = (
        'webhook w { path = "/w"  auth = none  topic = "t"  partitions = 4 }\n'
        'pipeline p { from webhook w  to log  on_error { dead_letter = "d"  partitions = 2 } }\n'
    )
    formatted = format_file(parse(text, "p.lhp").file, text)
    assert "  partitions = 4\n" in formatted
    assert 'on_error { dead_letter = "d"  partitions = 2 }' in formatted


def test_graph_json_shows_the_written_partitions() -> None:
    compiled = compile_program(program()).to_json()
    assert compiled["routes"]["orders"]["partitions"] == 12
    assert compiled["routes"]["refunds"]["partitions"] is None
    assert compiled["pipelines"]["take_orders"]["on_error"]["partitions"] == 3
    assert compiled["pipelines"]["take_refunds"]["on_error"]["partitions"] is None

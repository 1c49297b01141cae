"""`lhpipe test` with timestamps given as ISO-8601 text or epoch milliseconds: the pipeline
sees timestamps, whether the record comes from Kafka (Avro) or a direct-mode webhook."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import pytest

from lhpipe.commands.test import run_test

SCHEMA = """\
schema Reading {
  id: string
  at: timestamp
  seen: timestamp?
  history: [timestamp] = []
}
"""

# `value.at == value.seen` and `<` only hold between timestamps: text left as text would make
# the comparison false (or an ordering error).
TARGET = """\
  to log {
    value = {
      at = value.at
      same = value.at == value.seen
      before = value.history[0] < value.at
    }
  }
"""

GIVEN = """\
  given {
    value = {
      id = "r-1"
      at = "2024-05-01T14:30:00+02:00"
      seen = 1714566600000
      history = ["2024-05-01T12:29:59.5"]
    }
  }
"""


def run_program(tmp_path: Path, text: str) -> tuple[int, str]:
    path = tmp_path / "t.lhp"
    path.write_text(text, encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    code = run_test([str(path)], stdout=out, stderr=err)
    assert err.getvalue() == ""
    return code, out.getvalue()


SOURCES = {
    "kafka": ('from topic "readings" { value = Reading }', ""),
    "direct webhook": (
        "from webhook reading_hook",
        """\
webhook reading_hook {
  path = "/hooks/readings"
  auth = hmac { preset = github  secret = env("GITHUB_SECRET") }
  body = Reading
}
""",
    ),
}


@pytest.mark.parametrize("source", SOURCES)
def test_a_given_timestamp_is_a_timestamp_in_the_pipeline(tmp_path: Path, source: str) -> None:
    from_clause, webhook = SOURCES[source]
    expect = 'expect to log { value = { at = "2024-05-01T12:30:00Z", same = true, before = true } }'
    text = (
        f"{SCHEMA}{webhook}pipeline readings {{\n  {from_clause}\n{TARGET}}}\n"
        f'test "reading" {{\n  pipeline = readings\n{GIVEN}  {expect}\n}}\n'
    )
    code, out = run_program(tmp_path, text)
    assert out.splitlines()[-1] == "1 passed, 0 failed", out
    assert code == 0


def test_a_wrong_expectation_shows_the_timestamp_in_utc(tmp_path: Path) -> None:
    text = textwrap.dedent(
        """\
        schema Reading {
          at: timestamp
        }
        pipeline readings {
          from topic "readings" { value = Reading }
          to log
        }
        test "reading" {
          pipeline = readings
          given { value = { at = "2024-05-01T14:30:00+02:00" } }
          expect to log { value = { at = "2024-05-01T12:31:00Z" } }
        }
        """
    )
    code, out = run_program(tmp_path, text)
    assert code == 1
    assert (
        'to log: value.at: expected "2024-05-01T12:31:00Z" but got "2024-05-01T12:30:00.000Z"'
        in out
    )

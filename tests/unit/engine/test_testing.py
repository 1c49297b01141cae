"""`lhpipe test`: the report a user reads, its exit codes, and the record path a test takes."""

from __future__ import annotations

import io
import re
import textwrap
from pathlib import Path

import pytest

from lhpipe.cli import main
from lhpipe.commands.test import run_test

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data" / "engine"


def run(paths: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_test(paths, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def run_text(tmp_path: Path, text: str) -> tuple[int, str, str]:
    path = tmp_path / "t.lhp"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return run([str(path)])


def test_examples_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, out, _ = run(["pipelines/"])
    lines = out.splitlines()
    assert code == 0
    assert lines[-1] == "6 passed, 0 failed"
    assert all(line.startswith("PASS ") for line in lines[:-2])
    assert "PASS settled payments complete their order" in lines  # the Avro (.avsc) path


def test_cli_runs_the_test_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["test"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "6 passed, 0 failed"


def test_wrong_expectations_fail_with_a_diff_per_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, out, _ = run(["tests/data/engine/wrong_expectations.lhp"])
    assert code == 1
    file = "tests/data/engine/wrong_expectations.lhp"
    missing = "value.order_id: `value` has no field `order_id` (its fields: amount)"
    assert out == textwrap.dedent(
        f"""\
        PASS right expectation
        FAIL wrong variable  ({file}:38)
            run_wf "know-your-customer": variables.full_name: expected "Ann" but got "Ann <ann@x>"
            run_wf "know-your-customer": variables.country: expected "DE" but it is not set
        FAIL generated id  ({file}:49)
            run_wf "know-your-customer": id: expected "bo-2" but got "start-kyc-kyc-applicants-0-0"
        FAIL dropped but expected  ({file}:55)
            the record was dropped by `where value.age >= 18`
        FAIL kept but expected nothing  ({file}:61)
            expected nothing, but the record was kept: it would go to run_wf "know-your-customer"
        FAIL nested content  ({file}:67)
            correlate "payment-received": content.amount.cents: expected 2000 but got 1999
        FAIL missing field  ({file}:76)
            permanent error (EXPRESSION): {missing}

        1 passed, 6 failed
        """
    )


def test_files_with_errors_are_reported_like_lint(tmp_path: Path) -> None:
    code, out, err = run_text(
        tmp_path,
        """\
        pipeline p {
          from topic "t"
          run_wf "w" { id = valeu.id }
        }
        """,
    )
    assert code == 1
    assert "error[LHP102] unknown name `valeu`" in out
    assert "no test was run" in err


def test_warnings_do_not_stop_the_tests(tmp_path: Path) -> None:
    code, out, _ = run_text(
        tmp_path,
        """\
        webhook open_door {
          path = "/hooks/open"
          auth = none
          topic = "doors"
        }
        pipeline p {
          from webhook open_door
          to log
        }
        test "passes" {
          pipeline = p
          given { value = { n = 1 } }
          expect to log { value = { n = 1 } }
        }
        """,
    )
    assert code == 0
    assert out == "PASS passes\n\n1 passed, 0 failed\n"


def test_missing_path_is_a_usage_error() -> None:
    code, _, err = run(["does/not/exist.lhp"])
    assert code == 2
    assert "does/not/exist.lhp" in err


def test_no_tests_pass_with_a_note(tmp_path: Path) -> None:
    code, out, err = run_text(tmp_path, 'pipeline p { from topic "t"  to log }\n')
    assert code == 0
    assert out == "0 passed, 0 failed\n"
    assert "no `test` blocks" in err


def test_headers_and_defaults_of_an_inline_schema(tmp_path: Path) -> None:
    # The Avro writer fills in `source`'s default and the null `note`; `extra` is a json
    # field written as JSON text and parsed back; the wfRunId header gives the id.
    code, out, _ = run_text(
        tmp_path,
        """\
        schema Signup { email: string  source: string = "web"  note: string?  extra: json }
        pipeline signups {
          from topic "signups" { value = Signup }
          run_wf "signup" {
            variables { source = value.source  note = value.note ?? "-"  plan = value.extra.plan }
          }
        }
        test "defaults" {
          pipeline = signups
          given {
            value = { email = "a@x", extra = { plan = "pro" } }
            headers { wfRunId = "signup-7" }
          }
          expect run_wf "signup" {
            id = "signup-7"
            variables { source = "web"  note = "-"  plan = "pro" }
          }
        }
        """,
    )
    assert (code, out.splitlines()[-1]) == (0, "1 passed, 0 failed"), out


def test_record_coordinates_and_json_keys(tmp_path: Path) -> None:
    code, out, _ = run_text(
        tmp_path,
        """\
        pipeline forward {
          from topic "in.events" { key = json }
          to topic "out" {
            key = str(key.id)
            headers { origin = "${record.topic}/${record.partition}/${record.offset}" }
          }
        }
        test "forwarded" {
          pipeline = forward
          given { key = { id = 5 }  value = { a = 1 } }
          expect to topic "out" {
            key = "5"
            value = { a = 1 }
            headers { origin = "in.events/0/0" }
          }
        }
        """,
    )
    assert (code, out.splitlines()[-1]) == (0, "1 passed, 0 failed"), out


def test_lh_output_tests_see_the_value_as_the_event(tmp_path: Path) -> None:
    code, out, _ = run_text(
        tmp_path,
        """\
        pipeline done {
          from lh_output { kinds = [wf_run] }
          where event.status == "COMPLETED"
          to log { value = event.wf_run_id }
        }
        test "completed" {
          pipeline = done
          given { value = { wf_run_id = "w-1", status = "COMPLETED" } }
          expect to log { value = "w-1" }
        }
        test "running" {
          pipeline = done
          given { value = { wf_run_id = "w-2", status = "RUNNING" } }
          expect nothing
        }
        """,
    )
    assert (code, out.splitlines()[-1]) == (0, "2 passed, 0 failed"), out


def test_an_lh_output_test_without_a_key_has_the_wf_run_id_as_key(tmp_path: Path) -> None:
    code, out, _ = run_text(
        tmp_path,
        """\
        pipeline done {
          from lh_output { kinds = [wf_run] }
          to topic "done" { value = event.status }
        }
        test "keyed" {
          pipeline = done
          given { value = { kind = "wf_run", wf_run_id = "ann-1", status = "COMPLETED" } }
          expect to topic "done" { key = "ann-1"  value = "COMPLETED" }
        }
        """,
    )
    assert (code, out.splitlines()[-1]) == (0, "1 passed, 0 failed"), out


def test_a_bad_id_fails_the_test(tmp_path: Path) -> None:
    code, out, _ = run_text(
        tmp_path,
        """\
        pipeline p { from topic "t"  run_wf "w" }
        test "underscore key" {
          pipeline = p
          given { key = "ann_1"  value = { a = 1 } }
          expect run_wf "w" { variables { a = 1 } }
        }
        """,
    )
    assert code == 1
    assert 'permanent error (BAD_ID): run_wf "w": the record key "ann_1"' in out


def test_the_example_of_docs_testing_runs_as_shown(tmp_path: Path) -> None:
    page = (ROOT / "docs" / "testing.md").read_text(encoding="utf-8")
    example = re.findall(r"^```lhp\n(.*?)^```", page, re.M | re.S)[0]
    shown = re.findall(r"^\$ lhpipe test onboarding\.lhp\n(.*?)^```", page, re.M | re.S)[0]
    (tmp_path / "onboarding.lhp").write_text(example, encoding="utf-8")
    code, out, _ = run([str(tmp_path / "onboarding.lhp")])
    assert (code, out) == (0, shown)


def test_the_failing_report_of_docs_testing_is_current(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    page = (ROOT / "docs" / "testing.md").read_text(encoding="utf-8")
    command = "$ lhpipe test tests/data/engine/wrong_expectations.lhp\n"
    shown = page.split(command, 1)[1].split("```", 1)[0]
    _, out, _ = run(["tests/data/engine/wrong_expectations.lhp"])
    assert out == shown


# The comparison rules of docs/testing.md, each with the exact line a user reads.
COMPARED = """\
schema Stamp { at: timestamp  n: int }
pipeline echo {
  from topic "in"
  to topic "out" { value = value  headers { n = "3" } }
}
pipeline stamped {
  from topic "stamps" { value = Stamp }
  run_wf "w" { variables { at = value.at  n = value.n } }
}
"""


def compare(tmp_path: Path, given: str, expect: str) -> list[str]:
    """The report of one test of ``COMPARED`` (of `stamped` for a run_wf expect), without
    its closing lines: its outcome, then its differences."""
    pipeline = "stamped" if expect.startswith("expect run_wf") else "echo"
    test = f'test "t" {{\n  pipeline = {pipeline}\n  given {{ {given} }}\n  {expect}\n}}\n'
    code, out, _ = run_text(tmp_path, COMPARED + test)
    lines = out.splitlines()
    assert lines[-2:] == ["", "1 passed, 0 failed" if code == 0 else "0 passed, 1 failed"], out
    return lines[:-2]


@pytest.mark.parametrize(
    ("given", "expect", "differences"),
    [
        pytest.param(
            "value = { a = 1, b = { c = [1] } }",
            'expect to topic "out" { value = { a = 1 } }',
            ['to topic "out": value.b: not expected, but got { c = [1] }'],
            id="an extra field fails",
        ),
        pytest.param(
            "value = { a = 1 }",
            'expect to topic "out" { value = { a = 1, b = "x" } }',
            ['to topic "out": value.b: expected "x" but it is not set'],
            id="a missing field fails",
        ),
        pytest.param(
            "value = { a = 1, b = { c = [1, 2, 3] } }",
            'expect to topic "out" { value = { a = 1, b = { c = [1, 2, 4] } } }',
            ['to topic "out": value.b.c[2]: expected 4 but got 3'],
            id="a nested difference names its path",
        ),
        pytest.param(
            "value = { a = [{ b = 1 }, { b = 2 }] }",
            'expect to topic "out" { value = { a = [{ b = 1 }, { b = 2, c = 3 }] } }',
            ['to topic "out": value.a[1].c: expected 3 but it is not set'],
            id="a map inside a list is compared field by field",
        ),
        pytest.param(
            "value = { a = [1, 2, 3] }",
            'expect to topic "out" { value = { a = [1, 2] } }',
            ['to topic "out": value.a: expected [1, 2] but got [1, 2, 3]'],
            id="lists of another length differ as a whole",
        ),
        pytest.param(
            'value = { a = 1, b = true, c = "2", d = null }',
            'expect to topic "out" { value = { a = "1", b = 1, c = 2, d = false } }',
            [
                'to topic "out": value.a: expected "1" but got 1',
                'to topic "out": value.b: expected 1 but got true',
                'to topic "out": value.c: expected 2 but got "2"',
                'to topic "out": value.d: expected false but got null',
            ],
            id="values of another type differ",
        ),
        pytest.param(
            "value = { a = 1 }",
            'expect to topic "out" { headers { n = 4  m = "x" } }',
            [
                'to topic "out": headers.n: expected "4" but got "3"',
                'to topic "out": headers.m: expected "x" but it is not set',
            ],
            id="headers are a whole map of text",
        ),
        pytest.param(
            'value = { at = "2024-05-01T12:30:00Z", n = 1 }',
            'expect run_wf "w" { variables { at = "2024-05-01T12:31:00Z" } }',
            [
                'run_wf "w": variables.at: expected "2024-05-01T12:31:00Z" but got'
                ' "2024-05-01T12:30:00.000Z"',
                'run_wf "w": variables.n: not expected, but got 1',
            ],
            id="another variable fails and timestamps compare by instant",
        ),
        pytest.param(
            'value = { at = "2024-05-01T12:30:00Z", n = 1 }',
            'expect run_wf "w" { variables { at = "yesterday"  n = 1 } }',
            ['run_wf "w": variables.at: expected "yesterday" but got "2024-05-01T12:30:00.000Z"'],
            id="text that is not ISO-8601 is not a timestamp",
        ),
    ],
)
def test_differences_fail_with_one_line_each(
    tmp_path: Path, given: str, expect: str, differences: list[str]
) -> None:
    head = f"FAIL t  ({tmp_path / 't.lhp'}:10)"
    assert compare(tmp_path, given, expect) == [head, *(f"    {d}" for d in differences)]


@pytest.mark.parametrize(
    ("given", "expect"),
    [
        pytest.param(
            "value = { a = 2, b = [1.5, { c = 3 }] }",
            'expect to topic "out" { value = { a = 2.0, b = [1.5, { c = 3.0 }] } }',
            id="numbers compare by value",
        ),
        pytest.param(
            'key = "k-1"  value = { a = 1 }',
            'expect to topic "out" { headers { n = 3 } }',
            id="only the settings written are compared and headers may be numbers",
        ),
        pytest.param(
            'value = { at = "2024-05-01T12:30:00Z", n = 1 }',
            'expect run_wf "w" { variables { at = "2024-05-01T14:30:00+02:00"  n = 1 } }',
            id="a timestamp may be ISO-8601 text",
        ),
        pytest.param(
            "value = { at = 1714566600000, n = 1 }",
            'expect run_wf "w" { variables { at = "2024-05-01T12:30:00"  n = 1 } }',
            id="ISO-8601 text without an offset is UTC",
        ),
    ],
)
def test_equal_values_pass(tmp_path: Path, given: str, expect: str) -> None:
    assert compare(tmp_path, given, expect) == ["PASS t"]

"""The four output formats of `lhpipe lint`, over hand-built diagnostics."""

from __future__ import annotations

import io
import json

import pytest

from lhpipe.check.formats import (
    LintReport,
    caret_line,
    format_github,
    format_json,
    format_sarif,
    format_text,
    summary_line,
    wants_color,
)
from lhpipe.diagnostics import CODES, Diagnostic, Severity, Span, make

SOURCE = 'pipeline p {\n  from topic "t" { value = json }\n\twhere value.agee >= 18\n}\n'
PATH = "pipelines/p.lhp"

UNKNOWN_FIELD = Diagnostic(
    "LHP202",
    Severity.ERROR,
    Span(PATH, 3, 8, 3, 18),
    "unknown field `agee` of Applicant",
    "did you mean `age`?",
)
NONE_AUTH = make("LHP302", Span(PATH, 1, 1, 1, 9), "webhook `w` has `auth = none`")
REPORT = LintReport([UNKNOWN_FIELD, NONE_AUTH], {PATH: SOURCE}, 3)


def test_text_shows_location_source_caret_hint_and_summary() -> None:
    assert format_text(REPORT) == (
        "pipelines/p.lhp:3:8: error[LHP202] unknown field `agee` of Applicant\n"
        "  3 | \twhere value.agee >= 18\n"
        "    | \t      ^~~~~~~~~~\n"
        "  hint: did you mean `age`?\n"
        "\n"
        "pipelines/p.lhp:1:1: warning[LHP302] webhook `w` has `auth = none`\n"
        "  1 | pipeline p {\n"
        "    | ^~~~~~~~\n"
        "\n"
        "1 error, 1 warning in 3 files\n"
    )


def test_text_has_no_escape_codes_without_color_and_some_with_it() -> None:
    assert "\033[" not in format_text(REPORT, color=False)
    assert "\033[1;31merror[LHP202]" in format_text(REPORT, color=True)


def test_text_without_source_skips_the_excerpt() -> None:
    report = LintReport([UNKNOWN_FIELD], {}, 1)
    assert format_text(report).splitlines()[:2] == [
        "pipelines/p.lhp:3:8: error[LHP202] unknown field `agee` of Applicant",
        "  hint: did you mean `age`?",
    ]


def test_caret_runs_to_end_of_line_for_multiline_span_and_is_never_empty() -> None:
    assert caret_line("abc def", Span("f", 1, 5, 3, 2)) == "    ^~~"
    assert caret_line("abc", Span("f", 1, 4, 1, 4)) == "   ^"


def test_summary_counts_and_plurals() -> None:
    assert summary_line([], 1) == "no problems in 1 file"
    assert summary_line([UNKNOWN_FIELD, UNKNOWN_FIELD], 2) == "2 errors, 0 warnings in 2 files"


def test_json_is_an_array_of_flat_objects_with_null_hint() -> None:
    records = json.loads(format_json(REPORT))
    assert records == [
        {
            "file": PATH,
            "line": 3,
            "col": 8,
            "end_line": 3,
            "end_col": 18,
            "severity": "error",
            "code": "LHP202",
            "message": "unknown field `agee` of Applicant",
            "hint": "did you mean `age`?",
        },
        {
            "file": PATH,
            "line": 1,
            "col": 1,
            "end_line": 1,
            "end_col": 9,
            "severity": "warning",
            "code": "LHP302",
            "message": "webhook `w` has `auth = none`",
            "hint": None,
        },
    ]
    assert list(records[0]) == [
        "file", "line", "col", "end_line", "end_col", "severity", "code", "message", "hint"
    ]  # fmt: skip


def test_json_of_a_clean_run_is_an_empty_array() -> None:
    assert json.loads(format_json(LintReport([], {}, 4))) == []


def test_github_annotations() -> None:
    assert format_github(REPORT) == (
        "::error file=pipelines/p.lhp,line=3,col=8,endLine=3,endColumn=18,title=LHP202"
        "::unknown field `agee` of Applicant\n"
        "::warning file=pipelines/p.lhp,line=1,col=1,endLine=1,endColumn=9,title=LHP302"
        "::webhook `w` has `auth = none`\n"
    )


def test_github_escapes_data_and_properties() -> None:
    odd = Diagnostic("LHP001", Severity.ERROR, Span("a,b:c%.lhp", 2, 1, 2, 2), "100% bad\r\nreally")
    line = format_github(LintReport([odd], {}, 1))
    assert line == (
        "::error file=a%2Cb%3Ac%25.lhp,line=2,col=1,endLine=2,endColumn=2,title=LHP001"
        "::100%25 bad%0D%0Areally\n"
    )


def test_github_writes_every_property_for_a_multiline_span_too() -> None:
    multi = make("LHP003", Span(PATH, 2, 5, 4, 1), "unexpected end of file")
    assert format_github(LintReport([multi], {}, 1)) == (
        "::error file=pipelines/p.lhp,line=2,col=5,endLine=4,endColumn=1,title=LHP003"
        "::unexpected end of file\n"
    )


def test_sarif_log_shape() -> None:
    log = json.loads(format_sarif(REPORT))
    assert log["version"] == "2.1.0"
    assert log["$schema"].endswith("sarif-2.1.0.json")
    (run,) = log["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "lhpipe"
    assert [rule["id"] for rule in driver["rules"]] == sorted(CODES)
    assert driver["rules"][0]["shortDescription"]["text"] == CODES[sorted(CODES)[0]].summary
    first, second = run["results"]
    assert first["ruleId"] == "LHP202"
    assert driver["rules"][first["ruleIndex"]]["id"] == "LHP202"
    assert first["level"] == "error"
    assert second["level"] == "warning"
    assert (
        first["message"]["text"] == "unknown field `agee` of Applicant\nhint: did you mean `age`?"
    )
    (location,) = first["locations"]
    assert location["physicalLocation"] == {
        "artifactLocation": {"uri": PATH},
        "region": {"startLine": 3, "startColumn": 8, "endLine": 3, "endColumn": 18},
    }


def test_sarif_uris_are_encoded_and_absolute_paths_are_file_uris() -> None:
    diagnostic = make("LHP001", Span("/tmp/my pipes/a.lhp", 1, 1, 1, 2), "x")
    log = json.loads(format_sarif(LintReport([diagnostic], {}, 1)))
    uri = log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert uri == {"uri": "file:///tmp/my%20pipes/a.lhp"}


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal_without_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert wants_color(_Terminal())
    assert not wants_color(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not wants_color(_Terminal())

"""The loader API the CLI uses: discovery, sorting, program only without errors, no raising."""

from __future__ import annotations

from pathlib import Path

import pytest

from lhpipe.check import types as t
from lhpipe.check.load import discover
from lhpipe.kinds import load, load_texts
from lhpipe.syntax import ast

DATA = Path(__file__).parent.parent.parent / "data"


def test_every_example_of_the_language_spec_checks_clean() -> None:
    result = load([DATA / "check_ok"])
    assert result.diagnostics == ()
    program = result.program
    assert program is not None
    assert set(program.pipelines) == {"start_kyc", "verdicts", "payments", "crm_export"}
    assert set(program.webhooks) == {"kyc_intake", "verdicts_in"}
    assert set(program.tests) == {"adults start KYC", "minors are dropped"}
    verdicts = program.pipelines["verdicts"]
    assert verdicts.source.topic == "kyc-verdicts"
    assert str(verdicts.source.value_type) == "Verdict"


def test_the_program_records_expression_types() -> None:
    result = load([DATA / "check_ok"])
    assert result.program is not None
    start = result.program.pipelines["start_kyc"]
    where = start.steps[0]
    assert isinstance(where, ast.Where)
    assert result.program.type_of(where.condition) == t.BOOLEAN
    assert start.scope["full_name"] == t.STRING
    assert "event" in result.program.pipelines["crm_export"].scope


def test_discover_finds_lhp_files_in_folders_sorted(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.lhp").write_text("")
    (tmp_path / "a.lhp").write_text("")
    (tmp_path / "notes.txt").write_text("")
    assert discover([tmp_path]) == [tmp_path / "a.lhp", tmp_path / "b" / "z.lhp"]
    assert discover([tmp_path / "a.lhp", tmp_path]) == [
        tmp_path / "a.lhp",
        tmp_path / "b" / "z.lhp",
    ]


def test_a_missing_path_raises_for_the_cli(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load([tmp_path / "missing.lhp"])


def test_names_resolve_across_files_and_diagnostics_are_sorted() -> None:
    result = load_texts(
        {
            "b.lhp": "pipeline p { from webhook hook  where value.nope > 1  to log }\n",
            "a.lhp": (
                "schema S { x: int }\n"
                'webhook hook { path = "/h"  auth = none  body = S  topic = "t" }\n'
                'pipeline p { from topic "t"  to log }\n'
            ),
        }
    )
    assert result.program is None
    found = [(d.span.file, d.span.line, d.code) for d in result.diagnostics]
    # b.lhp is checked first (the order given), so the `p` of a.lhp is the duplicate.
    assert found == [("a.lhp", 2, "LHP302"), ("a.lhp", 3, "LHP101"), ("b.lhp", 1, "LHP202")]


def test_warnings_alone_keep_the_program() -> None:
    result = load_texts({"w.lhp": 'webhook open { path = "/open"  auth = none  topic = "open" }\n'})
    assert [d.code for d in result.diagnostics] == ["LHP302"]
    assert result.program is not None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "pipeline {",
        'schema A { x: A }\npipeline p { from topic "t" { value = A } where value.x.x.x to log }',
        "webhook w { auth = hmac { } }",
        'test "t" { expect run_wf "x" { variables = 3 } }',
        "pipeline p { from webhook nope to log }\npipeline p { from connector nope to log }",
        'schema S from "/dev/null/nope.avsc"',
    ],
)
def test_bad_content_never_raises(text: str) -> None:
    result = load_texts({"bad.lhp": text})
    assert result.program is None or not any(d.is_error for d in result.diagnostics)


def test_a_declaration_with_a_syntax_error_is_not_unknown_in_other_files() -> None:
    result = load_texts(
        {
            "schemas.lhp": "schema Order {\n  id: strin g\n}\n",
            "hooks.lhp": 'webhook orders {\n  path = "/o" auth = none topic = "o" body = Order }\n',
            "flows.lhp": (
                "pipeline p {\n  from webhook orders\n  where value.total > 1\n  to log\n}\n"
                'test "t" {\n  pipeline = p\n  given { value = { id = "1" } }\n  expect to log\n}\n'
            ),
        }
    )
    assert [(d.span.file, d.code) for d in result.diagnostics] == [
        ("hooks.lhp", "LHP302"),  # `auth = none`: a warning of its own
        ("schemas.lhp", "LHP001"),
    ]
    assert result.program is None


def test_a_reference_of_the_wrong_kind_to_a_broken_declaration_is_still_reported() -> None:
    result = load_texts(
        {"a.lhp": "schema Order { id: }\npipeline p {\n  from webhook Order\n  to log\n}\n"}
    )
    assert [(d.code, d.message) for d in result.diagnostics] == [
        ("LHP001", "unexpected `}`: expected a type after `:`"),
        ("LHP104", "`Order` is a schema, not a webhook"),
    ]


def test_a_file_linked_from_a_hidden_folder_is_named_by_its_visible_path(tmp_path: Path) -> None:
    # How the kubelet mounts a ConfigMap: data in a timestamped hidden folder, linked twice.
    data = tmp_path / "..2026_12_07_16_00_00.123"
    data.mkdir()
    (data / "kyc.lhp").write_text("# kyc\n", encoding="utf-8")
    (tmp_path / "..data").symlink_to(data.name)
    (tmp_path / "kyc.lhp").symlink_to(Path("..data") / "kyc.lhp")
    assert discover([tmp_path]) == [tmp_path / "kyc.lhp"]

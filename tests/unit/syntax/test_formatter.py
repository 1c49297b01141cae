"""format_file / format_expr: one canonical layout, comments kept, idempotent, same AST."""

from __future__ import annotations

from pathlib import Path

import pytest

from lhpipe.syntax import ast, format_expr, format_file, parse
from lhpipe.syntax.canonical import structure

DATA = Path(__file__).parents[2] / "data"
# Every valid file we have: the formatter cases, and the lint goldens that are not syntax errors
# (those are written by the checker's engineer and globbed at test time).
VALID_FILES = sorted((DATA / "fmt").glob("*.lhp")) + sorted(
    p for p in (DATA / "lint").glob("*.lhp") if not p.name.startswith("syntax_")
)


def _file(text: str) -> ast.File:
    result = parse(text, "f.lhp")
    assert result.diagnostics == (), result.diagnostics
    assert result.file is not None
    return result.file


def fmt(text: str) -> str:
    return format_file(_file(text), text)


@pytest.mark.parametrize("path", VALID_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_round_trip_keeps_the_ast_and_the_comments_and_is_idempotent(path: Path) -> None:
    text = path.read_text()
    result = parse(text, str(path))
    if result.diagnostics and any(d.code.startswith("LHP0") for d in result.diagnostics):
        pytest.fail(f"{path.name} does not parse: {result.diagnostics}")
    assert result.file is not None
    once = format_file(result.file, text)
    again = _file(once)
    assert structure(again.decls) == structure(result.file.decls)
    assert [c.text for c in again.comments] == [c.text for c in result.file.comments]
    assert format_file(again, once) == once


def test_layout_of_a_messy_file() -> None:
    text = (
        '\n\n// intake\nwebhook   w{path="/w"   auth=hmac{preset=github secret=env("S")}\n'
        'topic="t"}\n\n\n\npipeline p{from webhook w\nwhere value.a>1&&\n'
    ).replace("&&\n", '\nrun_wf "x"{variables{a=value.a}}}\n')
    assert fmt(text) == (
        "// intake\n"
        "webhook w {\n"
        '  path = "/w"\n'
        '  auth = hmac { preset = github  secret = env("S") }\n'
        '  topic = "t"\n'
        "}\n"
        "\n"
        "pipeline p {\n"
        "  from webhook w\n"
        "  where value.a > 1\n"
        '  run_wf "x" {\n'
        "    variables { a = value.a }\n"
        "  }\n"
        "}\n"
    )


def test_short_blocks_stay_inline_and_long_ones_break() -> None:
    text = (
        'pipeline p {\n  from topic "t" {\n    value = json\n  }\n'
        '  to http "https://example.com" { method = "PUT"  body = value  headers = { a = "1" } }\n'
        '  run_wf "w" { id = key  major_version = 1  revision = 2  parent = "x" }\n'
        '  run_wf "e" {}\n}\n'
    )
    assert fmt(text) == (
        "pipeline p {\n"
        '  from topic "t" { value = json }\n'
        '  to http "https://example.com" {\n'
        '    method = "PUT"\n'
        "    body = value\n"
        '    headers = { a = "1" }\n'
        "  }\n"
        '  run_wf "w" {\n'
        "    id = key\n"
        "    major_version = 1\n"
        "    revision = 2\n"
        '    parent = "x"\n'
        "  }\n"
        '  run_wf "e" {}\n'
        "}\n"
    )


def test_comments_stay_in_place_in_both_styles() -> None:
    text = (
        "# file header\n\n"
        "schema A {   // trailing on the header\n"
        "  # own line, inside\n"
        "  a: int      # trailing, hash\n"
        "\n\n"
        "  b: string?  // trailing, slashes\n"
        "  // before the closing brace\n"
        "}  // after the closing brace\n"
        "// between declarations\n"
        'schema B from "b.avsc"\n'
        "\n"
        "// at the end\n"
    )
    assert fmt(text) == (
        "# file header\n"
        "\n"
        "schema A {  // trailing on the header\n"
        "  # own line, inside\n"
        "  a: int  # trailing, hash\n"
        "\n"
        "  b: string?  // trailing, slashes\n"
        "  // before the closing brace\n"
        "}  // after the closing brace\n"
        "\n"
        "// between declarations\n"
        'schema B from "b.avsc"\n'
        "\n"
        "// at the end\n"
    )


def test_a_comment_inside_a_block_keeps_it_multiline() -> None:
    text = 'pipeline p {\n  from topic "t" {\n    value = json  // typed later\n  }\n  to log\n}\n'
    assert fmt(text) == text


def test_long_objects_and_lists_break_one_item_per_line() -> None:
    items = ", ".join(f'"item-number-{i}"' for i in range(8))
    text = f'test "t" {{\n  given {{ value = {{ tags = [{items}] }} }}\n  expect nothing\n}}\n'
    out = fmt(text)
    assert out == (
        'test "t" {\n'
        "  given {\n"
        "    value = {\n"
        "      tags = [\n"
        + "".join(f'        "item-number-{i}",\n' for i in range(8))
        + "      ]\n"
        "    }\n"
        "  }\n"
        "  expect nothing\n"
        "}\n"
    )
    assert fmt(out) == out


@pytest.mark.parametrize(
    ("source", "canonical"),
    [
        ("a  or b and c", "a or b and c"),
        ("(a or b) and c", "(a or b) and c"),
        ("not (a and b)", "not (a and b)"),
        ("(not a) and b", "not a and b"),
        ("a - (b - c)", "a - (b - c)"),
        ("(a - b) - c", "a - b - c"),
        ("a ?? (b ?? c)", "a ?? b ?? c"),
        ("(a ?? b) ?? c", "(a ?? b) ?? c"),
        ("(a == b) == c", "(a == b) == c"),
        ("-(a + b)", "-(a + b)"),
        ("(a + b).c[0]", "(a + b).c[0]"),
        ("x in [1,2,]", "x in [1, 2]"),
        ("f( a ,b )", "f(a, b)"),
        ("{a=1 b={}}", "{ a = 1, b = {} }"),
        ('{"a"=1 "b-c"=2 "d\\"e"=3}', '{ a = 1, "b-c" = 2, "d\\"e" = 3 }'),
        ('"q\\"\\\\\\t\\u{41}\\u{1}"', '"q\\"\\\\\\tA\\u{1}"'),
        ('"${ lower( value.name ) }!"', '"${lower(value.name)}!"'),
        ('"\\${not interpolated}"', '"\\${not interpolated}"'),
        ("1.50", "1.50"),
        ("250ms + 1MiB", "250ms + 1MiB"),
    ],
)
def test_format_expr_is_canonical_and_reparses_to_the_same_tree(
    source: str, canonical: str
) -> None:
    expr = _let_value(source)
    assert format_expr(expr) == canonical
    assert structure(_let_value(canonical)) == structure(expr)


def _let_value(expr: str) -> ast.Expr:
    decl = _file(f'pipeline p {{\n  from topic "t"\n  let x = {expr}\n  to log\n}}\n').decls[0]
    assert isinstance(decl, ast.PipelineDecl) and isinstance(decl.steps[0], ast.Let)
    return decl.steps[0].value


def test_empty_file_formats_to_empty_text() -> None:
    assert fmt("\n\n  \n") == ""
    assert fmt("// only a comment\n\n\n") == "// only a comment\n"


def test_keys_are_bare_when_they_are_names_and_quoted_otherwise() -> None:
    text = (
        'webhook w { "path" = "/w"  auth = none  "topic" = "w" }\n'
        "connector c {\n"
        '  class = "x.Y"  topic = "c"\n'
        '  config { "tasks.max" = 1  "weird\\u{41}\\tkey" = 2  "2fast" = 3  _ok = 4 }\n'
        "}\n"
    )
    assert fmt(text) == (
        "webhook w {\n"
        '  path = "/w"\n'
        "  auth = none\n"
        '  topic = "w"\n'
        "}\n"
        "\n"
        "connector c {\n"
        '  class = "x.Y"\n'
        '  topic = "c"\n'
        "  config {\n"
        '    "tasks.max" = 1\n'
        '    "weirdA\\tkey" = 2\n'
        '    "2fast" = 3\n'
        "    _ok = 4\n"
        "  }\n"
        "}\n"
    )


def test_a_test_key_named_expect_stays_quoted_where_a_bare_one_would_start_an_expect() -> None:
    text = 'test "t" {\n  "expect" = 1\n  given { expect = 2 }\n  expect nothing\n}\n'
    assert fmt(text) == text
    test = _file(text).decls[0]
    assert isinstance(test, ast.TestDecl)
    assert [i.key.name for i in test.items if not isinstance(i, ast.Expect)] == ["expect", "given"]

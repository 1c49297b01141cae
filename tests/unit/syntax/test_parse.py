"""parse(): the whole v0 language becomes the AST, with exact spans."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lhpipe.diagnostics import Span
from lhpipe.syntax import ast, parse

REPO = Path(__file__).resolve().parents[3]
SPEC = REPO.parent / "shared" / "spec" / "language.md"
FMT_CASES = sorted((REPO / "tests" / "data" / "fmt").glob("*.lhp"))


def _clean(text: str, path: str = "t.lhp") -> ast.File:
    result = parse(text, path)
    assert result.diagnostics == (), result.diagnostics
    assert result.file is not None
    return result.file


def _pipeline(body: str) -> ast.PipelineDecl:
    decl = _clean(f"pipeline p {{\n{body}\n}}\n").decls[0]
    assert isinstance(decl, ast.PipelineDecl)
    return decl


def _value(expr: str) -> ast.Expr:
    """The AST of one expression, as the value of a `let`."""
    step = _pipeline(f'from topic "t"\nlet x = {expr}\nto log').steps[0]
    assert isinstance(step, ast.Let)
    return step.value


@pytest.mark.skipif(
    not SPEC.exists(),
    reason=f"../shared/spec is missing beside the clone (no {SPEC}): its examples are not checked",
)
@pytest.mark.parametrize("index", range(2))
def test_every_example_of_the_language_spec_parses_and_is_kept_in_tests_data(index: int) -> None:
    examples = re.findall(r"```\n(.*?)```", SPEC.read_text(), re.S)
    assert len(examples) == 2
    _clean(examples[index])
    copies = {path.read_text() for path in FMT_CASES}
    assert examples[index] in copies, "copy the example into tests/data/fmt/"


@pytest.mark.parametrize("path", FMT_CASES, ids=lambda p: p.name)
def test_formatter_cases_parse_clean(path: Path) -> None:
    _clean(path.read_text(), str(path))


def test_complete_file_has_every_declaration_kind_with_spans() -> None:
    file = _clean((REPO / "tests/data/fmt/spec_complete_file.lhp").read_text(), "kyc.lhp")
    kinds = [type(d).__name__ for d in file.decls]
    assert (
        kinds == ["SchemaDecl", "SchemaDecl", "WebhookDecl", "WebhookDecl"] + ["PipelineDecl"] * 4
    )
    applicant = file.decls[0]
    assert isinstance(applicant, ast.SchemaDecl) and applicant.fields is not None
    note = applicant.fields[5]
    assert note.name.name == "note"
    assert note.type == ast.OptionalType(
        ast.NamedType("string", Span("kyc.lhp", 10, 9, 10, 15)), Span("kyc.lhp", 10, 9, 10, 16)
    )
    meta = applicant.fields[7].type
    assert isinstance(meta, ast.OptionalType) and isinstance(meta.inner, ast.MapType)
    verdict = file.decls[1]
    assert isinstance(verdict, ast.SchemaDecl)
    assert verdict.file is not None and verdict.file.text == "schemas/verdict.avsc"
    assert file.comments[0] == ast.Comment("// pipelines/kyc.lhp", Span("kyc.lhp", 1, 1, 1, 21))
    assert file.comments[1].text == "# both comment styles work"
    assert file.span.line == 1 and file.span.col == 1


def test_contextual_keywords_are_plain_keys_inside_blocks() -> None:
    file = _clean(
        'webhook w {\n  topic = "kyc"\n  key = body.id\n  file = 1 http = 2 log = 3\n'
        "  schema = 4 pipeline = 5 from = 6 to = 7 where = 8 test = 9\n}\n"
    )
    webhook = file.decls[0]
    assert isinstance(webhook, ast.WebhookDecl)
    keys = [entry.key.name for entry in webhook.body.entries]
    assert keys[:5] == ["topic", "key", "file", "http", "log"]
    assert keys[5:] == ["schema", "pipeline", "from", "to", "where", "test"]
    key = webhook.body.get("key")
    assert isinstance(key, ast.Setting)
    assert isinstance(key.value, ast.Attribute) and key.value.name.name == "id"


def test_tagged_block_and_bare_name_as_auth() -> None:
    file = _clean('webhook a { auth = oauth { issuer = env("I") } }\nwebhook b { auth = none }\n')
    first, second = file.decls
    assert isinstance(first, ast.WebhookDecl) and isinstance(second, ast.WebhookDecl)
    auth = first.body.get("auth")
    assert isinstance(auth, ast.Setting) and isinstance(auth.value, ast.Tagged)
    assert auth.value.tag.name == "oauth"
    assert auth.value.span == Span("t.lhp", 1, 20, 1, 47)
    none = second.body.get("auth")
    assert isinstance(none, ast.Setting) and none.value == ast.Name(
        "none", Span("t.lhp", 2, 20, 2, 24)
    )


def test_every_source_kind() -> None:
    sources = [
        ('from topic "t" { value = json }', "topic", ast.StringLit, True),
        ("from webhook hook", "webhook", ast.Ident, False),
        ('from lh_output { kinds = [wf_run] wf_spec = "w" }', "lh_output", None, True),
        ('from poll "http://x" { every = 5s }', "poll", ast.StringLit, True),
        ("from connector c", "connector", ast.Ident, False),
    ]
    for text, kind, arg_type, has_block in sources:
        source = _pipeline(f"{text}\nto log").source
        assert source.kind == kind
        assert (source.arg is None) if arg_type is None else isinstance(source.arg, arg_type)
        assert (source.block is not None) is has_block


def test_every_target_kind_with_and_without_block() -> None:
    pipeline = _pipeline(
        'from topic "t"\n'
        'run_wf "a"\nrun_wf "b" {}\nrun_wf "c" { id = key }\n'
        'post_event "e" { wf_run_id = key }\ncorrelate "e" { key = value.k }\n'
        'to topic "o"\nto http "https://x" { method = "PUT" }\nto file "out.jsonl"\nto log\n'
        'on_error { retry = 3 backoff = 250ms dead_letter = "dlq" }'
    )
    kinds = [t.kind for t in pipeline.targets]
    assert kinds == [
        "run_wf",
        "run_wf",
        "run_wf",
        "post_event",
        "correlate",
        "to_topic",
        "to_http",
        "to_file",
        "to_log",
    ]
    assert pipeline.targets[0].block is None
    assert pipeline.targets[1].block is not None and pipeline.targets[1].block.entries == ()
    assert pipeline.targets[-1].arg is None
    assert pipeline.on_error is not None
    backoff = pipeline.on_error.get("backoff")
    assert isinstance(backoff, ast.Setting)
    assert isinstance(backoff.value, ast.DurationLit) and backoff.value.millis == 250


def test_test_declaration_items() -> None:
    file = _clean(
        'test "t" {\n  pipeline = p\n  given { value = { a = 1, b = [1, 2,] } }\n'
        '  expect to topic "x" { value = 1 }\n  expect nothing\n}\n'
    )
    test = file.decls[0]
    assert isinstance(test, ast.TestDecl)
    assert test.title.text == "t"
    setting, given, expect, nothing = test.items
    assert isinstance(setting, ast.Setting) and setting.key.name == "pipeline"
    assert isinstance(given, ast.NestedBlock)
    assert isinstance(expect, ast.Expect) and expect.target is not None
    assert expect.target.kind == "to_topic"
    assert isinstance(nothing, ast.Expect) and nothing.target is None


def test_schema_from_file_and_registry_and_defaults() -> None:
    file = _clean(
        'schema A from "a.avsc"\nschema B from registry "b-value"\n'
        "schema C { n: int = 3  tags: [map<string?>]  ref: A? }\n"
    )
    a, b, c = file.decls
    assert isinstance(a, ast.SchemaDecl) and a.file is not None and a.fields is None
    assert isinstance(b, ast.SchemaDecl) and b.registry is not None and b.registry.text == "b-value"
    assert isinstance(c, ast.SchemaDecl) and c.fields is not None
    assert c.fields[0].default == ast.IntLit(3, Span("t.lhp", 3, 21, 3, 22))
    tags = c.fields[1].type
    assert isinstance(tags, ast.ArrayType) and isinstance(tags.item, ast.MapType)
    assert isinstance(tags.item.values, ast.OptionalType)


@pytest.mark.parametrize(
    ("text", "shape"),
    [
        ("a or b and c", ("or", "a", ("and", "b", "c"))),
        ("not a and b", ("and", ("not", "a"), "b")),
        ("not a == b", ("not", ("==", "a", "b"))),
        ("a == b ?? c", ("==", "a", ("??", "b", "c"))),
        ("a ?? b ?? c", ("??", "a", ("??", "b", "c"))),
        ("a ?? b + c", ("??", "a", ("+", "b", "c"))),
        ("a + b * c - d", ("-", ("+", "a", ("*", "b", "c")), "d")),
        ("-a * b", ("*", ("-", "a"), "b")),
        ("-a.b[c]", ("-", ("[]", (".", "a", "b"), "c"))),
        ("(a + b) * c", ("*", ("+", "a", "b"), "c")),
        ("x in [1, 2] and y", ("and", ("in", "x", "[]"), "y")),
        ("a % b / c", ("/", ("%", "a", "b"), "c")),
    ],
)
def test_operator_precedence(text: str, shape: object) -> None:
    assert _shape(_value(text)) == shape


def _shape(expr: ast.Expr) -> object:
    if isinstance(expr, ast.Name):
        return expr.name
    if isinstance(expr, ast.Binary):
        return (expr.op.value, _shape(expr.left), _shape(expr.right))
    if isinstance(expr, ast.Unary):
        return (expr.op.value, _shape(expr.operand))
    if isinstance(expr, ast.Attribute):
        return (".", _shape(expr.obj), expr.name.name)
    if isinstance(expr, ast.Index):
        return ("[]", _shape(expr.obj), _shape(expr.index))
    if isinstance(expr, ast.ListLit):
        return "[]"
    return type(expr).__name__


def test_parenthesised_expression_span_covers_the_parentheses() -> None:
    expr = _value("(a + b) * c")
    assert isinstance(expr, ast.Binary)
    assert expr.left.span == Span("t.lhp", 3, 9, 3, 16)
    assert expr.span == Span("t.lhp", 3, 9, 3, 20)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("42", ast.IntLit(42, Span("t.lhp", 3, 9, 3, 11))),
        ("4.5", ast.FloatLit(4.5, "4.5", Span("t.lhp", 3, 9, 3, 12))),
        ("1e3", ast.FloatLit(1000.0, "1e3", Span("t.lhp", 3, 9, 3, 12))),
        ("250ms", ast.DurationLit(250, "250ms", Span("t.lhp", 3, 9, 3, 14))),
        ("2m", ast.DurationLit(120_000, "2m", Span("t.lhp", 3, 9, 3, 11))),
        ("1h", ast.DurationLit(3_600_000, "1h", Span("t.lhp", 3, 9, 3, 11))),
        ("512KiB", ast.SizeLit(524_288, "512KiB", Span("t.lhp", 3, 9, 3, 15))),
        ("1MiB", ast.SizeLit(1_048_576, "1MiB", Span("t.lhp", 3, 9, 3, 13))),
        ("true", ast.BoolLit(True, Span("t.lhp", 3, 9, 3, 13))),
        ("null", ast.NullLit(Span("t.lhp", 3, 9, 3, 13))),
    ],
)
def test_literals(text: str, expected: ast.Expr) -> None:
    assert _value(text) == expected


def test_string_escapes_are_decoded() -> None:
    expr = _value(r'"a\"b\\c\nd\te\u{1F600}\${x}"')
    assert isinstance(expr, ast.StringLit)
    assert expr.parts == ('a"b\\c\nd\te\U0001f600${x}',)


def test_interpolations_hold_expressions_with_their_own_spans() -> None:
    expr = _value('"${lower(value.name)} <${concat(value.email, "!")}>"')
    assert isinstance(expr, ast.StringLit)
    lower, middle, concat, end = expr.parts
    assert isinstance(lower, ast.Call) and lower.func.name == "lower"
    assert lower.span == Span("t.lhp", 3, 12, 3, 29)
    assert middle == " <"
    assert isinstance(concat, ast.Call) and concat.args[1] == ast.StringLit(
        ("!",), Span("t.lhp", 3, 54, 3, 57)
    )
    assert end == ">"


def test_objects_take_optional_commas_and_lists_a_trailing_one() -> None:
    expr = _value("{ a = 1, b = [x, y,] c = { d = 2 } }")
    assert isinstance(expr, ast.ObjectLit)
    assert [entry.key.name for entry in expr.entries] == ["a", "b", "c"]
    b = expr.entries[1].value
    assert isinstance(b, ast.ListLit) and len(b.items) == 2


def test_both_comment_styles_are_kept_with_spans_and_strings_may_contain_markers() -> None:
    file = _clean('# one\nwebhook w { // two\n  path = "/a#b//c" # three\n}\n')
    assert [c.text for c in file.comments] == ["# one", "// two", "# three"]
    assert file.comments[2].span == Span("t.lhp", 3, 20, 3, 27)


def test_span_file_is_the_path_argument() -> None:
    file = _clean("schema A { a: int }", "dir/a.lhp")
    assert file.decls[0].span == Span("dir/a.lhp", 1, 1, 1, 20)


def test_a_quoted_key_is_an_ident_holding_its_text_with_a_span_over_the_quotes() -> None:
    text = 'connector c {\n  config { "tasks.max" = 1  "a\\u{2D}b" { x = 1 } }\n}\n'
    decl = _clean(text).decls[0]
    assert isinstance(decl, ast.ConnectorDecl)
    config = decl.body.entries[0]
    assert isinstance(config, ast.NestedBlock)
    first, second = config.block.entries
    assert first.key == ast.Ident("tasks.max", Span("t.lhp", 2, 12, 2, 23))
    assert isinstance(second, ast.NestedBlock)
    assert second.key == ast.Ident("a-b", Span("t.lhp", 2, 29, 2, 39))


def test_quoted_keys_in_object_literals() -> None:
    value = _value('{ "order-id" = 1, "X-Api-Key" = "k" }')
    assert isinstance(value, ast.ObjectLit)
    assert [e.key.name for e in value.entries] == ["order-id", "X-Api-Key"]

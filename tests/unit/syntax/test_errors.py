"""Syntax errors as a user sees them: the code, where it points, and the words."""

from __future__ import annotations

from lhpipe.diagnostics import Diagnostic
from lhpipe.syntax import ast, parse


def _errors(text: str) -> list[tuple[str, int, int, str]]:
    result = parse(text, "e.lhp")
    return [(d.code, d.span.line, d.span.col, d.message) for d in result.diagnostics]


def _only(text: str) -> Diagnostic:
    result = parse(text, "e.lhp")
    assert len(result.diagnostics) == 1, result.diagnostics
    return result.diagnostics[0]


HOOK = 'webhook w {\n  path = "/w"\n  topic = "t"\n}\n'


def test_missing_equals_names_the_key_and_the_rest_of_the_file_is_still_read() -> None:
    result = parse('webhook w {\n  path "/w"\n  topic = "t" grp\n}\n' + HOOK, "e.lhp")
    assert [(d.code, d.span.line, d.span.col, d.message) for d in result.diagnostics] == [
        ("LHP008", 2, 8, "missing `=` after `path`"),
        ("LHP001", 4, 1, "unexpected `}`: expected `=` or `{` after `grp`"),
    ]
    assert result.diagnostics[0].hint == 'write `path = "/w"`'
    assert result.file is not None
    assert [d.span.line for d in result.file.decls] == [5]  # the broken webhook is left out


def test_unclosed_brace_at_end_of_file_names_where_it_was_opened() -> None:
    diagnostic = _only('pipeline p {\n  from topic "t"\n  to log\n')
    assert diagnostic.code == "LHP003"
    assert diagnostic.message == "unexpected end of file: unclosed `{` opened at 1:12"
    assert (diagnostic.span.line, diagnostic.span.col) == (3, 9)


def test_missing_closing_brace_before_next_declaration_keeps_that_declaration() -> None:
    result = parse('webhook a {\n  path = "/a"\n' + HOOK, "e.lhp")
    assert [(d.code, d.span.line, d.span.col) for d in result.diagnostics] == [("LHP001", 3, 1)]
    assert result.diagnostics[0].message == (
        "expected `}` to close the `{` opened at 1:11 before the next declaration"
    )
    assert result.file is not None and len(result.file.decls) == 1


def test_pipeline_without_target() -> None:
    diagnostic = _only('pipeline p {\n  from topic "t"\n  where value.ok\n}\n')
    assert diagnostic.message == "unexpected `}`: a pipeline needs at least one target"
    assert (diagnostic.span.line, diagnostic.span.col) == (4, 1)


def test_unknown_declaration_suggests_the_nearest_keyword() -> None:
    diagnostic = _only('webhok w { path = "/w" }\n')
    assert diagnostic.message.startswith("unknown declaration `webhok`")
    assert diagnostic.hint == "did you mean `webhook`?"


def test_expected_value_in_words() -> None:
    assert _errors("webhook w {\n  topic =\n}\n") == [
        ("LHP001", 3, 1, "unexpected `}`: expected a value after `=`")
    ]


def test_lexical_errors_each_reported_and_parsing_goes_on() -> None:
    text = (
        'pipeline p {\n  from topic "t" { value = json };\n'
        '  let a = "x\\q"\n  let b = 5xs\n  let c = "${}"\n  let d = "open\n  to log\n}\n'
    )
    assert [(code, line, col) for code, line, col, _ in _errors(text)] == [
        ("LHP002", 2, 34),
        ("LHP005", 3, 13),
        ("LHP006", 4, 11),
        ("LHP007", 5, 12),
        ("LHP004", 6, 11),
    ]


def test_run_of_stray_characters_is_one_diagnostic() -> None:
    diagnostic = _only('webhook w {\n  path = "/w" @@@\n}\n')
    assert diagnostic.code == "LHP002"
    assert (diagnostic.span.col, diagnostic.span.end_col) == (15, 18)


def test_comma_between_block_entries_is_reported_and_skipped() -> None:
    result = parse('webhook w {\n  path = "/w",\n  topic = "t"\n}\n', "e.lhp")
    assert [d.message for d in result.diagnostics] == [
        "unexpected `,`: entries in a block are not separated by commas"
    ]


def test_clean_declarations_around_errors_are_kept() -> None:
    text = 'schema A { a: int }\npipeline p {\n  from topic "t"\n  to nowhere\n}\n' + HOOK
    result = parse(text, "e.lhp")
    assert result.file is not None
    assert [type(d) for d in result.file.decls] == [ast.SchemaDecl, ast.WebhookDecl]
    assert [d.message for d in result.diagnostics] == [
        "unexpected `nowhere`: expected `topic`, `http`, `file`, `log` or `connector` after `to`"
    ]


def test_parse_never_raises_on_odd_input() -> None:
    for text in ["", "\ufeff", "}", "{", '"', "${", "pipeline", "\x00\x01", "schema A from", "é"]:
        result = parse(text, "e.lhp")
        assert result.file is not None
        assert all(not d.message.startswith("internal") for d in result.diagnostics)


def test_unterminated_string_where_no_string_can_stand_is_reported_and_parsing_goes_on() -> None:
    result = parse(
        'webhook w"\n  auth = none\n}\n\npipeline p { from topic "t" to log }\n', "e.lhp"
    )
    assert _errors('webhook w"\n  auth = none\n}\n') == [
        ("LHP004", 1, 10, 'unterminated string: expected `"` before the end of the line'),
        ("LHP001", 2, 3, "unexpected `auth`: expected `{` after `w`"),
    ]
    assert result.file is not None
    assert [d.span.line for d in result.file.decls] == [5]


def test_quoted_keys_missing_equals_and_unterminated() -> None:
    assert _errors('connector c { config { "tasks.max" 1 } }\n') == [
        ("LHP008", 1, 36, 'missing `=` after `"tasks.max"`'),
    ]
    # The unterminated key is one error, not also an empty key.
    assert [e[0] for e in _errors('connector c {\n  config { "tasks.max = 1 }\n}\n')][:1] == [
        "LHP004"
    ]
    assert "LHP009" not in [e[0] for e in _errors('connector c {\n  config { "a = 1\n}\n')]


def test_the_names_of_declarations_left_out_by_a_syntax_error_are_given() -> None:
    text = (
        "schema A { x: }\n"  # abandoned by recovery
        'webhook w {\n  path "/w"\n}\n'  # repaired (`=` put back), still left out
        'pipeline p ( from topic "t" to log }\n'  # error right after the name
        "pipeline { }\n"  # no name: nothing to give
        'test "t" { pipeline = p  expect nothing x }\n'  # tests have titles, not names
        'connector c {\n  class = "x"\n'  # unclosed at the end of the file
    )
    result = parse(text, "e.lhp")
    assert result.file is not None and result.file.decls == ()
    assert [(d.kind, d.name.name, d.name.span.line, d.name.span.col) for d in result.dropped] == [
        ("schema", "A", 1, 8),
        ("webhook", "w", 2, 9),
        ("pipeline", "p", 5, 10),
        ("connector", "c", 8, 11),
    ]


def test_a_file_without_errors_drops_nothing() -> None:
    assert parse(HOOK, "e.lhp").dropped == ()

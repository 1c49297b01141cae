"""structure(): two trees compare equal exactly when they mean the same, whatever the layout."""

from __future__ import annotations

from lhpipe.syntax import ast, parse
from lhpipe.syntax.canonical import structure


def _decls(text: str) -> tuple[ast.Decl, ...]:
    result = parse(text, "f.lhp")
    assert result.diagnostics == ()
    assert result.file is not None
    return result.file.decls


def test_layout_comments_and_spelling_of_numbers_do_not_count() -> None:
    first = _decls('pipeline p { from topic "t" { value = json } where 1.50 > 1 to log }')
    second = _decls(
        "// a comment\n"
        "pipeline p {\n"
        '  from topic "t" {\n'
        "    value = json\n"
        "  }\n"
        "  where 1.5 > 1\n"
        "  to log\n"
        "}\n"
    )
    assert structure(first) == structure(second)


def test_durations_and_sizes_compare_by_value() -> None:
    assert structure(_decls("webhook w { leeway = 60s }")) == structure(
        _decls("webhook w { leeway = 1m }")
    )
    assert structure(_decls("webhook w { max_body = 1024KiB }")) == structure(
        _decls("webhook w { max_body = 1MiB }")
    )


def test_a_different_value_or_operator_is_a_different_meaning() -> None:
    base = structure(_decls('pipeline p { from topic "t" where value.a > 1 to log }'))
    assert base != structure(_decls('pipeline p { from topic "t" where value.a >= 1 to log }'))
    assert base != structure(_decls('pipeline p { from topic "t" where value.b > 1 to log }'))
    assert base != structure(_decls('pipeline p { from topic "t" where value.a > 2 to log }'))

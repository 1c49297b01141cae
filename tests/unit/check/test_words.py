"""Messages put "a" or "an" before a word as it is said."""

from __future__ import annotations

import pytest

from lhpipe.check.words import a, article
from lhpipe.kinds import load_texts


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("`int`", "an"),
        ("`string`", "a"),
        ("`long`", "a"),
        ("`Applicant`", "an"),
        ("`Verdict`", "a"),
        ("`[string]`", "an"),
        ("`{city: string}`", "an"),
        ("`map<int>`", "a"),
        ("ExternalEventDef name", "an"),
        ("WfSpec name", "a"),
        ("`uuid`", "a"),
        ("`union`", "a"),
        ("`HTTP` header", "an"),
        ("`URL`", "a"),
        ("`JSON` body", "a"),
        ("`poll`", "a"),
        ("`lh_output`", "a"),
        ("`event`", "an"),
        ("direct-mode webhook", "a"),
    ],
)
def test_article_follows_how_the_word_is_said(text: str, expected: str) -> None:
    assert article(text) == expected
    assert a(text) == f"{expected} {text}"


def _messages(text: str) -> list[str]:
    return [d.message for d in load_texts({"p.lhp": text}).diagnostics]


def test_never_null_warning_about_an_int() -> None:
    messages = _messages(
        "schema S { n: int }\n"
        'pipeline p { from topic "t" { value = S } where value.n != null to log }\n'
    )
    assert messages == ["an `int` is never null: this comparison is always true"]


def test_external_event_def_name_that_is_not_a_literal() -> None:
    messages = _messages('pipeline p { from topic "t" post_event "${value.x}" to log }\n')
    assert "expected an ExternalEventDef name as a literal string" in messages


def test_reference_to_a_declaration_of_another_kind() -> None:
    messages = _messages("schema Order { id: string }\npipeline p { from webhook Order to log }\n")
    assert messages == ["`Order` is a schema, not a webhook"]

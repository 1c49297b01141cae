"""LHP413: a credential written in a `to http` or `from poll` URL (issue 12, item 3)."""

from __future__ import annotations

from lhpipe.check.rules import url_credentials
from lhpipe.kinds import load_texts


def lint_codes(text: str) -> list[tuple[str, int, int, str]]:
    result = load_texts({"p.lhp": text})
    return [
        (d.code, d.span.line, d.span.col, d.message)
        for d in result.diagnostics
        if d.code == "LHP413"
    ]


def test_a_credential_written_in_a_url_is_a_warning_at_its_place() -> None:
    text = (
        "pipeline p {\n"
        '  from topic "in"\n'
        '  to http "https://crm:pw@crm.test/c?api_key=K&page=${value.page}&token=${value.t}"\n'
        "}\n"
    )
    assert lint_codes(text) == [
        ("LHP413", 3, 24, "a credential is written in the URL: the password of user `crm`"),
        ("LHP413", 3, 46, "a credential is written in the URL: query parameter `api_key`"),
    ]


def test_urls_without_literal_credentials_pass() -> None:
    assert url_credentials("https://h/items?after=${...}&page=2&token=${...}") == []
    assert url_credentials("https://user@h/x") == []  # a user name alone is not a secret
    assert url_credentials("https://h/x?Client-Secret=s")[0][2] == "query parameter `Client-Secret`"

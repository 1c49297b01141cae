"""The RFC 9457 answers of the Gateway: status, extra headers and the document a caller reads."""

from __future__ import annotations

import json

import pytest

from lhpipe.gateway import problems
from lhpipe.gateway.problems import FieldProblem, Problem


@pytest.mark.parametrize(
    ("problem", "status", "title", "headers"),
    [
        (
            problems.unauthorized('Bearer realm="lhpipe"', "d"),
            401,
            "Unauthorized",
            {b"www-authenticate": b'Bearer realm="lhpipe"'},
        ),
        (
            problems.forbidden('Bearer error="insufficient_scope"', "d"),
            403,
            "Forbidden",
            {b"www-authenticate": b'Bearer error="insufficient_scope"'},
        ),
        (problems.not_found("/hooks/x"), 404, "Not Found", {}),
        (
            problems.method_not_allowed("GET", ("POST", "PUT")),
            405,
            "Method Not Allowed",
            {b"allow": b"POST, PUT"},
        ),
        (problems.payload_too_large(1024), 413, "Content Too Large", {}),
        (problems.unsupported_media_type("d"), 415, "Unsupported Media Type", {}),
        (problems.bad_request("d"), 400, "Bad Request", {}),
        (problems.unavailable("d", 5), 503, "Service Unavailable", {b"retry-after": b"5"}),
    ],
)
def test_each_answer_has_its_status_title_and_headers(
    problem: Problem, status: int, title: str, headers: dict[bytes, bytes]
) -> None:
    document = json.loads(problem.body())

    assert (problem.status, dict(problem.headers)) == (status, headers)
    assert document["type"] == "about:blank"
    assert (document["status"], document["title"]) == (status, title)
    assert "field" not in document and "errors" not in document


def test_the_answers_say_what_is_wrong() -> None:
    assert problems.not_found("/hooks/x").detail == "nothing is served at /hooks/x"
    assert problems.payload_too_large(1024).detail == (
        "the body is larger than the limit of 1024 bytes"
    )
    assert (
        problems.method_not_allowed("GET", ("POST",)).detail == "GET is not allowed here; use POST"
    )


def test_field_problems_name_the_first_field_and_list_all() -> None:
    found = (FieldProblem("age", "expected an int"), FieldProblem("", "x"))

    document = json.loads(problems.bad_request("d", found).body())

    assert document["field"] == "age"
    assert document["errors"] == [
        {"field": "age", "message": "expected an int"},
        {"field": "", "message": "x"},
    ]
    assert [str(p) for p in found] == ["age: expected an int", "x"]

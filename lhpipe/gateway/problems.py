"""RFC 9457 problem documents: what a webhook caller reads when a request is refused.

Every refusal of the Gateway is one :class:`Problem`: an HTTP status, the headers that status
needs (``WWW-Authenticate`` on 401 and 403, ``Retry-After`` on 503, ``Allow`` on 405) and an
``application/problem+json`` body::

    {"type": "about:blank", "title": "Bad Request", "status": 400,
     "detail": "age: expected an int, got \\"x\\"",
     "field": "age", "errors": [{"field": "age", "message": "expected an int, got \\"x\\""}]}

``type`` is always ``about:blank`` (the engine's own listener does the same), so ``title`` is the
status phrase and ``detail`` says what is wrong in words. A body that does not match its schema
adds two members: ``errors``, every problem found (each with the ``field`` path, ``""`` for the
body as a whole, and a ``message``), and ``field``, the path of the first one.

A problem never says more than the caller may know: authentication failures name no secret,
no expected signature and no reason beyond the RFC 6750 error code.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import orjson

PROBLEM_CONTENT_TYPE = b"application/problem+json"

#: RFC 9110's names where Python's differ by version (3.13 renamed 413 and 422).
_TITLES = {413: "Content Too Large", 422: "Unprocessable Content"}


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One reason a body does not match its schema: the field's path (``address.city``,
    ``tags[2]``; ``""`` for the body itself) and what is wrong there."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


@dataclass(frozen=True, slots=True)
class Problem:
    """A refused request: status, extra response headers and the problem document."""

    status: int
    detail: str
    headers: tuple[tuple[bytes, bytes], ...] = ()
    errors: tuple[FieldProblem, ...] = ()

    @property
    def title(self) -> str:
        """The status phrase (``about:blank`` problems use it as their title)."""
        return _TITLES.get(self.status) or HTTPStatus(self.status).phrase

    def to_json(self) -> dict[str, Any]:
        """The problem document as plain data."""
        document: dict[str, Any] = {
            "type": "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            document["field"] = self.errors[0].field
            document["errors"] = [{"field": e.field, "message": e.message} for e in self.errors]
        return document

    def body(self) -> bytes:
        """The ``application/problem+json`` body."""
        return orjson.dumps(self.to_json())


def unauthorized(challenge: str, detail: str) -> Problem:
    """401 with ``WWW-Authenticate: <challenge>``: no credentials, or bad ones."""
    return Problem(401, detail, headers=((b"www-authenticate", challenge.encode("latin-1")),))


def forbidden(challenge: str, detail: str) -> Problem:
    """403: valid credentials that do not allow this request (a missing scope)."""
    return Problem(403, detail, headers=((b"www-authenticate", challenge.encode("latin-1")),))


def unavailable(detail: str, retry_after_s: int) -> Problem:
    """503 with ``Retry-After``: nothing was done, the caller may safely try again."""
    return Problem(503, detail, headers=((b"retry-after", str(retry_after_s).encode("ascii")),))


def unsupported_media_type(detail: str) -> Problem:
    """415: the ``Content-Type`` is not one the webhook's ``body`` accepts."""
    return Problem(415, detail)


def bad_request(detail: str, errors: tuple[FieldProblem, ...] = ()) -> Problem:
    """400: a body that is not JSON, or does not match the webhook's schema."""
    return Problem(400, detail, errors=errors)


def payload_too_large(limit: int) -> Problem:
    """413: the body is longer than the webhook's ``max_body``."""
    return Problem(413, f"the body is larger than the limit of {limit} bytes")


def not_found(path: str) -> Problem:
    """404: no webhook at this path."""
    return Problem(404, f"nothing is served at {path}")


def method_not_allowed(method: str, allowed: tuple[str, ...]) -> Problem:
    """405 with ``Allow``: the path exists, the method is not one of the webhook's."""
    allow = ", ".join(allowed).encode("ascii")
    return Problem(
        405, f"{method} is not allowed here; use {', '.join(allowed)}", headers=((b"allow", allow),)
    )

"""URLs as lhpipe shows them: credentials out (docs/webhooks.md, "What is redacted where").

A URL written in a ``to http`` target or a ``from poll`` source may carry a password
(``https://user:pw@host/``) or a key in its query (``?api_key=...``). Wherever lhpipe shows
such a URL to someone else than the author of the ``.lhp`` file (``/metrics`` labels, ``/readyz``,
the status page, log lines, error messages, dead-letter envelopes), it shows
:func:`redact_url`'s form: scheme, host, port and path kept; the userinfo becomes ``***@``;
every query (and fragment) value becomes ``***``, its name kept. ``lhpipe graph`` shows the
file's own text and is not redacted: it is the author's file.

:func:`redact_text` does the same to every URL inside a free-text message (an HTTP client's
exception, the excerpt of an endpoint's answer).
"""

from __future__ import annotations

import re
from typing import Final

#: What replaces a userinfo or a query value.
MASK: Final = "***"

# A URL inside free text: a scheme, ``://``, then anything up to white space or a quote.
_URL_IN_TEXT: Final = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>`]+")


def redact_url(url: str) -> str:
    """``url`` without its credentials: ``http://***@host:8080/ok?api_key=***&page=***``.

    Text that is not an absolute URL (no ``scheme://``) is returned with only its query
    values masked. Interpolations written as ``${...}`` are kept as they are (they are not
    values yet)."""
    scheme_end = url.find("://")
    if scheme_end > 0 and _is_scheme(url[:scheme_end]):
        start = scheme_end + 3
        end = _authority_end(url, start)
        authority = url[start:end]
        at = authority.rfind("@")
        if at >= 0:
            authority = f"{MASK}@{authority[at + 1 :]}"
        head, rest = url[:start] + authority, url[end:]
    else:
        head, rest = "", url
    fragment = ""
    hash_at = rest.find("#")
    if hash_at >= 0:
        rest, fragment = rest[:hash_at], "#" + _mask_values(rest[hash_at + 1 :])
    query_at = rest.find("?")
    if query_at >= 0:
        rest = rest[: query_at + 1] + _mask_values(rest[query_at + 1 :])
    return head + rest + fragment


def redact_text(text: str) -> str:
    """``text`` with every ``scheme://...`` URL in it redacted as :func:`redact_url` does."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda match: redact_url(match.group(0)), text)


def _is_scheme(text: str) -> bool:
    return re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", text) is not None


def _authority_end(url: str, start: int) -> int:
    """Where the authority that begins at ``start`` ends: the first ``/``, ``?`` or ``#``
    (an ``@`` after the first ``/`` belongs to the path)."""
    end = len(url)
    for stop in "/?#":
        found = url.find(stop, start)
        if 0 <= found < end:
            end = found
    return end


def _mask_values(query: str) -> str:
    """``a=1&b=2`` → ``a=***&b=***``; a part without ``=`` is a name and is kept; an
    interpolation (``${...}``) is not split at the ``&`` or ``=`` inside it."""
    parts = []
    for part in _split_query(query):
        equals = part.find("=")
        parts.append(part if equals < 0 else part[: equals + 1] + MASK)
    return "".join(parts)


def _split_query(query: str) -> list[str]:
    """The query's parameters, separators (``&`` or ``;``) kept as parts of their own."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    i = 0
    while i < len(query):
        char = query[i]
        if query.startswith("${", i):
            depth += 1
            current.append("${")
            i += 2
            continue
        if char == "}" and depth:
            depth -= 1
        elif char in "&;" and not depth:
            parts.append("".join(current))
            parts.append(char)
            current = []
            i += 1
            continue
        current.append(char)
        i += 1
    parts.append("".join(current))
    return parts

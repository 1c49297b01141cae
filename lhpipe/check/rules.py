"""Rules for literal names and ids: LittleHorse ids and names, Kafka topics, HTTP.

* A WfRun id (``run_wf`` ``id``, ``parent``, ``post_event`` ``wf_run_id``, ``guid``) follows
  LittleHorse 1.x: ``[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?``. In ``wf_run_id`` and
  ``parent``, ``_`` separates a parent's id from its child's (``a_b``: child ``b`` of ``a``),
  so each ``_``-separated part must follow the rule.
* A WfSpec or ExternalEventDef name follows LittleHorse's ``isValidLHName``:
  ``[a-z0-9]([-a-z0-9]*[a-z0-9])?`` (lower case, digits, inner hyphens).
* A Kafka topic name is 1 to 249 of ``[A-Za-z0-9._-]``, and not ``.`` or ``..``.
* A partition count (``partitions`` of a webhook or of ``on_error``, and the setting
  ``LHPIPE_TOPIC_PARTITIONS``) is a whole number from 1 to :data:`MAX_PARTITIONS`. Kafka sets
  no upper bound, but far fewer partitions than that already strain a cluster (each is files
  and a leader on a broker); a larger number is a typo.
* An HTTP header name is a token of RFC 9110: letters, digits and ``!#$%&'*+-.^_`|~``.
* A webhook path may not be one the engine's listener serves itself (cli.md): ``/healthz``,
  ``/readyz``, ``/metrics`` and the status page ``/``. The listener answers those before it
  looks at the webhook table, so such a webhook would never receive a request.
* A Kafka Connect connector class is a Java class name, fully qualified
  (``io.debezium.connector.postgresql.PostgresConnector``) or an alias (``FileStreamSource``):
  Java identifiers separated by dots.
* A URL (``to http``, ``from poll``) should hold no credential written out: a password in its
  userinfo (``https://user:pw@host/``), or a literal value of a query parameter whose name
  says it is one (``api_key``, ``token``, ``sig``...: :data:`SECRET_QUERY_NAMES`; also names
  ending in ``_key``, ``_token``, ``_secret``, ``_password``, ``_signature`` or ``_sig``, with
  ``-`` read as ``_``). lhpipe shows URLs redacted, but the file holds them in clear
  (:func:`url_credentials`, LHP413). A value that is only an interpolation (``${cursor}``) is
  not a literal and is not reported.
* A ``correlate`` key is any string (LittleHorse does not restrict correlation keys, and they
  are often e-mail addresses or order numbers), so it is not checked.

For a string with interpolations (``"order-${value.id}"``) only the literal parts can be
checked: their characters, and the first and last character when the string starts or ends
with literal text.
"""

from __future__ import annotations

import re
from typing import Final

from lhpipe.syntax import ast

WF_RUN_ID: Final = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?")
LH_NAME: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
TOPIC: Final = re.compile(r"[A-Za-z0-9._-]{1,249}")
MAX_PARTITIONS: Final = 10_000
HTTP_METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
#: The listener's own paths and what it serves there.
ENGINE_PATHS: Final = {
    "/": "status page",
    "/healthz": "health check",
    "/readyz": "readiness check",
    "/metrics": "Prometheus metrics",
}
HTTP_HEADER: Final = re.compile(r"[-!#$%&'*+.^_`|~A-Za-z0-9]+")
JAVA_CLASS: Final = re.compile(r"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*", re.ASCII)
#: Query parameter names that say their value is a credential (lower case, ``-`` as ``_``).
SECRET_QUERY_NAMES: Final = frozenset(
    {
        "key",
        "apikey",
        "api_key",
        "token",
        "access_token",
        "auth",
        "auth_token",
        "authorization",
        "secret",
        "client_secret",
        "password",
        "passwd",
        "pwd",
        "sig",
        "signature",
        "sessionid",
        "private_key",
    }
)
_SECRET_QUERY_SUFFIXES: Final = ("_key", "_token", "_secret", "_password", "_signature", "_sig")


def valid_wf_run_id(text: str, *, allow_parent: bool = False) -> bool:
    """Whether ``text`` is a WfRun id (``parent_child`` allowed with ``allow_parent``)."""
    parts = text.split("_") if allow_parent else [text]
    return all(WF_RUN_ID.fullmatch(part) for part in parts)


def valid_lh_name(text: str) -> bool:
    """Whether ``text`` is a valid WfSpec / ExternalEventDef name."""
    return LH_NAME.fullmatch(text) is not None


def valid_topic(text: str) -> bool:
    """Whether ``text`` is a legal Kafka topic name."""
    return TOPIC.fullmatch(text) is not None and text not in (".", "..")


def valid_http_header(text: str) -> bool:
    """Whether ``text`` can be the name of an HTTP header."""
    return HTTP_HEADER.fullmatch(text) is not None


def valid_java_class(text: str) -> bool:
    """Whether ``text`` is a Java class name (qualified or not)."""
    return JAVA_CLASS.fullmatch(text) is not None


def is_sink_class(connector_class: str) -> bool:
    """Whether a Kafka Connect connector class is a sink (it reads topics and writes elsewhere),
    by Kafka Connect's naming: the simple class name ends in ``Sink`` or ``SinkConnector``
    (``FileStreamSink``, ``io.confluent.connect.jdbc.JdbcSinkConnector``,
    ``io.littlehorse.connect.WfRunSinkConnector``)."""
    simple = connector_class.rsplit(".", 1)[-1]
    return simple.endswith(("Sink", "SinkConnector"))


def template_fits(literal: ast.StringLit, inner: str, edge: str = "A-Za-z0-9") -> bool:
    """Whether the literal parts of an interpolated string can be part of a valid value:
    every literal character is in ``[inner]``, and a leading or trailing literal character
    in ``[edge]``."""
    inner_re = re.compile(f"[{inner}]*")
    edge_re = re.compile(f"[{edge}]")
    parts = literal.parts
    if not parts:
        return False
    for part in parts:
        if isinstance(part, str) and not inner_re.fullmatch(part):
            return False
    first, last = parts[0], parts[-1]
    if isinstance(first, str) and first and not edge_re.fullmatch(first[0]):
        return False
    return not (isinstance(last, str) and last and not edge_re.fullmatch(last[-1]))


def url_credentials(url: str) -> list[tuple[int, int, str]]:
    """The credentials written out in ``url`` (text with interpolations as ``${...}``), as
    ``(start, end, what)``: offsets of the secret value in ``url`` and words for the message
    (``the password of user `crm```, ``query parameter `api_key```)."""
    found: list[tuple[int, int, str]] = []
    scheme_end = url.find("://")
    if scheme_end < 0:
        return found
    start = scheme_end + 3
    end = len(url)
    for stop in "/?#":
        at = url.find(stop, start)
        if 0 <= at < end:
            end = at
    authority = url[start:end]
    at_sign = authority.rfind("@")
    if at_sign >= 0:
        userinfo = authority[:at_sign]
        colon = userinfo.find(":")
        if colon >= 0 and _literal(userinfo[colon + 1 :]):
            user = userinfo[:colon]
            found.append((start + colon + 1, start + at_sign, f"the password of user `{user}`"))
    query_at = url.find("?", end)
    if query_at < 0:
        return found
    query_end = url.find("#", query_at)
    query_end = len(url) if query_end < 0 else query_end
    offset = query_at + 1
    for part in re.split(r"([&;])", url[offset:query_end]):
        equals = part.find("=")
        if equals > 0 and _secret_name(part[:equals]) and _literal(part[equals + 1 :]):
            found.append(
                (offset + equals + 1, offset + len(part), f"query parameter `{part[:equals]}`")
            )
        offset += len(part)
    return found


def _secret_name(name: str) -> bool:
    name = name.lower().replace("-", "_")
    return name in SECRET_QUERY_NAMES or name.endswith(_SECRET_QUERY_SUFFIXES)


def _literal(value: str) -> bool:
    """Whether a value has literal text (not empty, not only interpolations)."""
    return bool(re.sub(r"\$\{[^}]*\}", "", value))

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

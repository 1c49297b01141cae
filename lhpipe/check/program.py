"""The checked program: every declaration of one run, resolved and typed.

A :class:`Program` exists only when the checker found no error, so everything in it is known
to be consistent: names resolve, expressions are well typed, literal ids and names are valid.
The graph compiler and the engine read it; they never look at text again.

Settings that may come from the environment (``secret = env("S")``) are kept as
:class:`EnvRef` values and read when the program runs, never at check time, so a program can
be checked on a machine that does not have the secrets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lhpipe.check.types import Type
from lhpipe.syntax import ast

JSONValue = Any  # a value json.dumps accepts


@dataclass(frozen=True, slots=True)
class EnvRef:
    """``env("NAME")`` or ``env("NAME", "default")`` in a value position: read at run time."""

    name: str
    default: str | None = None


#: A setting that is a literal string or read from the environment.
Text = str | EnvRef


@dataclass(frozen=True, slots=True)
class SchemaInfo:
    """One ``schema`` declaration.

    ``avro`` is the Avro JSON (a record) that ``fastavro.parse_schema`` accepts: compiled from
    an inline schema (namespace ``lhpipe``) or read from the ``.avsc`` file; ``None`` for a
    registry schema, which is fetched at run time. ``type`` is the static type the checker
    derived from it (:class:`~lhpipe.check.types.RecordType`, or dynamic for a registry
    schema).
    """

    name: str
    decl: ast.SchemaDecl
    origin: Literal["inline", "file", "registry"]
    type: Type
    avro: Mapping[str, JSONValue] | None
    file: Path | None = None
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class OAuthAuth:
    """``auth = oauth { issuer audience scopes? leeway? }``; ``leeway_ms`` defaults to 30 s."""

    issuer: Text
    audience: Text
    scopes: tuple[str, ...] = ()
    leeway_ms: int = 30_000


@dataclass(frozen=True, slots=True)
class HmacAuth:
    """``auth = hmac { ... }``: a preset (``github``, ``stripe``, ``standard_webhooks``) or the
    custom form with ``header``, ``algorithm``, ``encoding`` and ``prefix``."""

    secret: Text
    preset: str | None = None
    header: str | None = None
    algorithm: Literal["sha256", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""


@dataclass(frozen=True, slots=True)
class NoAuth:
    """``auth = none``: the webhook accepts anyone (the checker warns)."""


Auth = OAuthAuth | HmacAuth | NoAuth


@dataclass(frozen=True, slots=True)
class WebhookInfo:
    """One ``webhook`` declaration.

    ``body_type`` is the schema's record type, ``json`` or ``bytes`` (default ``json``);
    ``topic`` is ``None`` in direct mode; ``key`` is the key expression (``None``: the webhook
    id); ``scope`` are the names its expressions see; ``partitions`` is the partition count
    its topic is created with when missing (``None``: ``LHPIPE_TOPIC_PARTITIONS``'s).
    """

    name: str
    decl: ast.WebhookDecl
    path: str
    methods: tuple[str, ...]
    auth: Auth
    body: str  # a schema name, "json" or "bytes"
    body_type: Type
    topic: str | None
    key: ast.Expr | None
    max_body: int
    scope: Mapping[str, Type]
    partitions: int | None = None

    @property
    def direct(self) -> bool:
        """Direct mode: no topic, the one pipeline reading it runs inside the request."""
        return self.topic is None


def default_group(pipeline: str) -> str:
    """The consumer group of a pipeline that reads Kafka and writes no ``group``."""
    return f"lhpipe-{pipeline}"


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """A pipeline's source, resolved.

    ``topic`` is the Kafka topic read: written for ``from topic``, the webhook's topic for
    ``from webhook`` (``None`` in direct mode), the connector's topic for ``from connector``.
    ``group`` is the consumer group of a source that reads Kafka (``None`` for the others), as
    written (``env(...)`` is read when the pipeline runs) or :func:`default_group`.
    ``value``/``key`` say how records decode (``value`` is a schema name, ``json``, ``string``
    or ``bytes``); ``value_type`` and ``key_type`` are their static types. ``settings`` are
    the block's ``key = expr`` entries; ``headers`` the request headers of ``from poll``.
    """

    kind: ast.SourceKind
    decl: ast.Source
    topic: str | None
    group: Text | None
    value: str
    value_type: Type
    key: str
    key_type: Type
    webhook: str | None = None
    connector: str | None = None
    url: str | None = None
    every_ms: int | None = None
    kinds: tuple[str, ...] = ()
    wf_spec: str | None = None
    settings: Mapping[str, ast.Expr] = field(default_factory=dict)
    headers: Mapping[str, ast.Expr] | None = None


@dataclass(frozen=True, slots=True)
class TargetInfo:
    """One target. ``name`` is its argument: the WfSpec, ExternalEventDef, topic, URL or file
    path (``None`` for ``to log``). ``settings`` are the block's ``key = expr`` entries;
    ``variables`` the ``variables { }`` block of ``run_wf`` (``None`` when not written: each
    top-level field of ``value`` becomes a variable); ``headers`` the ``headers`` of
    ``to http``; ``schema`` the declared schema a ``to topic`` writes its value with (Avro in
    the registry wire format; ``None``: JSON). ``schema`` is not among ``settings``."""

    kind: ast.TargetKind
    decl: ast.Target
    name: str | None
    settings: Mapping[str, ast.Expr]
    variables: Mapping[str, ast.Expr] | None = None
    headers: Mapping[str, ast.Expr] | None = None
    schema: str | None = None


@dataclass(frozen=True, slots=True)
class ErrorPolicy:
    """``on_error``: ``retry`` bounds transient retries (``None``: unbounded), ``backoff_ms``
    is the first delay (default 100 ms, doubling to 30 s), ``dead_letter`` the topic for
    permanent errors, else ``permanent`` (``stop`` by default); ``partitions`` is the
    dead-letter topic's partition count when lhpipe creates it (``None``:
    ``LHPIPE_TOPIC_PARTITIONS``'s)."""

    retry: int | None = None
    backoff_ms: int = 100
    dead_letter: Text | None = None
    permanent: Literal["stop", "skip"] = "stop"
    partitions: int | None = None


@dataclass(frozen=True, slots=True)
class PipelineInfo:
    """One ``pipeline`` declaration; ``scope`` maps every name its targets see (``value``,
    ``key``, ``headers``, ``record``, ``event``, the ``let`` names) to its type."""

    name: str
    decl: ast.PipelineDecl
    source: SourceInfo
    steps: tuple[ast.Step, ...]
    targets: tuple[TargetInfo, ...]
    on_error: ErrorPolicy
    scope: Mapping[str, Type]


@dataclass(frozen=True, slots=True)
class ConnectorInfo:
    """``connector NAME { class config topic }``: a Kafka Connect connector lhpipe deploys. A
    source connector writes ``topic`` (``from connector`` reads it); a sink connector
    (``sink``, :func:`lhpipe.check.rules.is_sink_class`) reads it (``to connector`` writes
    it)."""

    name: str
    decl: ast.ConnectorDecl
    connector_class: str
    config: Mapping[str, str | int | float | bool | EnvRef]
    topic: str
    sink: bool = False


@dataclass(frozen=True, slots=True)
class TestInfo:
    """``test "title" { pipeline given expect }``; ``given`` holds the ``key``, ``value`` and
    ``headers`` expressions, ``expects`` is empty for ``expect nothing``."""

    __test__ = False  # not a pytest test class

    title: str
    decl: ast.TestDecl
    pipeline: str
    given: Mapping[str, ast.Expr]
    expects: tuple[ast.Target, ...]


@dataclass(frozen=True)
class Program:
    """All declarations of one run, checked.

    :meth:`type_of` gives the static type of any expression the checker typed (every
    expression in ``where``, ``let``, targets, webhook ``key`` and tests).
    """

    files: tuple[ast.File, ...]
    schemas: Mapping[str, SchemaInfo]
    webhooks: Mapping[str, WebhookInfo]
    pipelines: Mapping[str, PipelineInfo]
    connectors: Mapping[str, ConnectorInfo]
    tests: Mapping[str, TestInfo]
    expr_types: Mapping[int, Type] = field(default_factory=dict, repr=False)

    def type_of(self, expr: ast.Expr) -> Type | None:
        """The static type of ``expr`` (an expression node of :attr:`files`), if typed."""
        return self.expr_types.get(id(expr))

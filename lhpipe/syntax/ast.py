"""The `.lhp` abstract syntax tree: frozen dataclasses, every node with its exact source span.

The tree is deliberately generic where the language is: a declaration body is a :class:`Block`
of entries (``key = value``, ``key { ... }``, ``key = tag { ... }``), and sources and targets
carry their kind, their optional argument and their optional block. The checker (`lhpipe.check`)
gives those entries their meaning; the formatter prints them back. Comments are not nodes: they
are kept beside the tree in :attr:`File.comments` with their spans.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from lhpipe.diagnostics import Span

# ---------------------------------------------------------------------------------------------
# Expressions
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ident:
    """An identifier as written: a declaration's name, a block key, a let name."""

    name: str
    span: Span


@dataclass(frozen=True, slots=True)
class StringLit:
    """A string literal. ``parts`` are decoded text (escapes applied) and interpolated
    expressions, in order; a plain string has one ``str`` part (or none when empty)."""

    parts: tuple[str | Expr, ...]
    span: Span

    @property
    def is_plain(self) -> bool:
        return all(isinstance(p, str) for p in self.parts)

    @property
    def text(self) -> str:
        """The decoded text of a plain string (interpolations are rendered as ``${...}``)."""
        return "".join(p if isinstance(p, str) else "${...}" for p in self.parts)


@dataclass(frozen=True, slots=True)
class IntLit:
    value: int
    span: Span


@dataclass(frozen=True, slots=True)
class FloatLit:
    value: float
    text: str
    span: Span


@dataclass(frozen=True, slots=True)
class BoolLit:
    value: bool
    span: Span


@dataclass(frozen=True, slots=True)
class NullLit:
    span: Span


@dataclass(frozen=True, slots=True)
class DurationLit:
    """``250ms 5s 2m 1h``: ``millis`` is the value in milliseconds, ``text`` as written."""

    millis: int
    text: str
    span: Span


@dataclass(frozen=True, slots=True)
class SizeLit:
    """``512KiB 1MiB`` (also ``B``, ``KB``, ``MB``, ``GiB``...): ``size`` in bytes."""

    size: int
    text: str
    span: Span


@dataclass(frozen=True, slots=True)
class ListLit:
    items: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class ObjectEntry:
    key: Ident
    value: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class ObjectLit:
    """``{ k = v, k2 = v2 }`` in an expression position (commas optional)."""

    entries: tuple[ObjectEntry, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Name:
    """A bare identifier in an expression: ``value``, ``key``, a let name, ``json``,
    ``standard_webhooks``, ``wf_run``, a schema name in ``value = Applicant``..."""

    name: str
    span: Span


@dataclass(frozen=True, slots=True)
class Attribute:
    """``obj.name``"""

    obj: Expr
    name: Ident
    span: Span


@dataclass(frozen=True, slots=True)
class Index:
    """``obj[index]``"""

    obj: Expr
    index: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Call:
    """``func(args...)``; functions are plain names (``lower``, ``env``, ...)."""

    func: Ident
    args: tuple[Expr, ...]
    span: Span


class UnaryOp(StrEnum):
    NOT = "not"
    NEG = "-"


@dataclass(frozen=True, slots=True)
class Unary:
    op: UnaryOp
    operand: Expr
    span: Span


class BinaryOp(StrEnum):
    OR = "or"
    AND = "and"
    EQ = "=="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    IN = "in"
    ADD = "+"
    SUB = "-"
    MUL = "*"
    DIV = "/"
    MOD = "%"
    COALESCE = "??"


@dataclass(frozen=True, slots=True)
class Binary:
    op: BinaryOp
    left: Expr
    right: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Tagged:
    """A value that is a named block: ``auth = oauth { ... }``, ``auth = hmac { ... }``."""

    tag: Ident
    block: Block
    span: Span


Expr = (
    StringLit
    | IntLit
    | FloatLit
    | BoolLit
    | NullLit
    | DurationLit
    | SizeLit
    | ListLit
    | ObjectLit
    | Name
    | Attribute
    | Index
    | Call
    | Unary
    | Binary
    | Tagged
)

# ---------------------------------------------------------------------------------------------
# Blocks: the bodies of declarations, sources, targets and on_error
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Setting:
    """``key = value`` inside a block."""

    key: Ident
    value: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class NestedBlock:
    """``key { ... }`` inside a block (``variables { ... }``, ``given { ... }``)."""

    key: Ident
    block: Block
    span: Span


Entry = Setting | NestedBlock


@dataclass(frozen=True, slots=True)
class Block:
    """``{ entry* }``; the span covers both braces."""

    entries: tuple[Entry, ...]
    span: Span

    def get(self, key: str) -> Entry | None:
        """The first entry with this key, if any."""
        for entry in self.entries:
            if entry.key.name == key:
                return entry
        return None


# ---------------------------------------------------------------------------------------------
# Schemas
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NamedType:
    """``string``, ``int``, ..., ``json``, or a schema name."""

    name: str
    span: Span


@dataclass(frozen=True, slots=True)
class ArrayType:
    """``[T]``"""

    item: TypeExpr
    span: Span


@dataclass(frozen=True, slots=True)
class MapType:
    """``map<T>``"""

    values: TypeExpr
    span: Span


@dataclass(frozen=True, slots=True)
class OptionalType:
    """``T?``"""

    inner: TypeExpr
    span: Span


TypeExpr = NamedType | ArrayType | MapType | OptionalType


@dataclass(frozen=True, slots=True)
class Field:
    """``name: type`` (optionally ``= default``) in an inline schema."""

    name: Ident
    type: TypeExpr
    default: Expr | None
    span: Span


# ---------------------------------------------------------------------------------------------
# Pipelines
# ---------------------------------------------------------------------------------------------


class SourceKind(str):
    """A source kind as the grammar names it: ``topic`` (``from topic "name"``), ``webhook``,
    ``lh_output``, ``poll``, ``connector``... The grammar is the list of kinds
    (:mod:`lhpipe.syntax.kinds`); each has its module under ``lhpipe/sources/``."""

    __slots__ = ()

    @property
    def value(self) -> str:
        return str(self)


@dataclass(frozen=True, slots=True)
class Source:
    """``from KIND [arg] [{ ... }]``: ``arg`` is a string (topic, url) or a name (webhook,
    connector); ``block`` is ``None`` when no braces were written."""

    kind: SourceKind
    arg: StringLit | Ident | None
    block: Block | None
    span: Span


@dataclass(frozen=True, slots=True)
class Where:
    condition: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Let:
    name: Ident
    value: Expr
    span: Span


Step = Where | Let


class TargetKind(str):
    """A target kind as the grammar names it, its leading words joined by ``_``: ``run_wf``,
    ``post_event``, ``correlate``, ``to_topic`` (``to topic "name"``), ``to_http``... The
    grammar is the list of kinds (:mod:`lhpipe.syntax.kinds`); each has its module under
    ``lhpipe/targets/``."""

    __slots__ = ()

    @property
    def value(self) -> str:
        return str(self)


@dataclass(frozen=True, slots=True)
class Target:
    """A target; ``arg`` is its argument as the grammar has it for the kind (a string such as
    ``run_wf``'s WfSpec, a name, or none for ``to log``), ``block`` is ``None`` when no braces
    were written (``run_wf "x"``) and empty for ``run_wf "x" {}``."""

    kind: TargetKind
    arg: StringLit | Ident | None
    block: Block | None
    span: Span

    @property
    def arg_text(self) -> str | None:
        """The argument as written: a string's text, a name, or ``None``."""
        if isinstance(self.arg, Ident):
            return self.arg.name
        return self.arg.text if self.arg is not None else None


# ---------------------------------------------------------------------------------------------
# Declarations
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SchemaDecl:
    """Exactly one of ``fields`` (inline), ``file`` (``from "x.avsc"``) and ``registry``
    (``from registry "subject"``) is set."""

    name: Ident
    fields: tuple[Field, ...] | None
    file: StringLit | None
    registry: StringLit | None
    span: Span


@dataclass(frozen=True, slots=True)
class WebhookDecl:
    name: Ident
    body: Block
    span: Span


@dataclass(frozen=True, slots=True)
class PipelineDecl:
    name: Ident
    source: Source
    steps: tuple[Step, ...]
    targets: tuple[Target, ...]
    on_error: Block | None
    span: Span


@dataclass(frozen=True, slots=True)
class ConnectorDecl:
    name: Ident
    body: Block
    span: Span


@dataclass(frozen=True, slots=True)
class Expect:
    """``expect TARGET`` or ``expect nothing`` (``target`` is ``None``)."""

    target: Target | None
    span: Span


TestItem = Setting | NestedBlock | Expect


@dataclass(frozen=True, slots=True)
class TestDecl:
    title: StringLit
    items: tuple[TestItem, ...]
    span: Span


Decl = SchemaDecl | WebhookDecl | PipelineDecl | ConnectorDecl | TestDecl


@dataclass(frozen=True, slots=True)
class Comment:
    """``// text`` or ``# text`` as written (marker included), with its span."""

    text: str
    span: Span


@dataclass(frozen=True, slots=True)
class File:
    """One parsed `.lhp` file. ``path`` is as given to the parser (used in every span)."""

    path: str
    decls: tuple[Decl, ...]
    comments: tuple[Comment, ...]
    span: Span

"""The one diagnostic type that the parser and the checker report, and its code registry.

Every problem found in `.lhp` text is a :class:`Diagnostic`: a stable code (``LHP`` and three
digits, registered in :data:`CODES`), a severity, the span of the offending text, a one-line
message that names the offending thing, and an optional hint. Compile problems are always
diagnostics, never exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True, slots=True, order=True)
class Span:
    """A region of one source file; lines and columns are 1-based, ``end_col`` is exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class CodeInfo:
    """One registered diagnostic code: its default severity and what it means."""

    code: str
    severity: Severity
    summary: str


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem found in `.lhp` text."""

    code: str
    severity: Severity
    span: Span
    message: str
    hint: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR


def _registry(*infos: CodeInfo) -> dict[str, CodeInfo]:
    table: dict[str, CodeInfo] = {}
    for info in infos:
        if info.code in table:
            raise ValueError(f"diagnostic code {info.code} registered twice")
        table[info.code] = info
    return table


_E = Severity.ERROR
_W = Severity.WARNING

# Ranges: LHP0xx syntax (lhpipe.syntax), LHP1xx names and declarations, LHP2xx types and
# expressions, LHP3xx webhooks and auth, LHP4xx pipelines, sources, targets and ids,
# LHP5xx tests, LHP6xx connectors and settings, LHP9xx online checks.
CODES: dict[str, CodeInfo] = _registry(
    # --- syntax (owned by lhpipe.syntax) ---
    CodeInfo("LHP001", _E, "unexpected token"),
    CodeInfo("LHP002", _E, "unexpected character"),
    CodeInfo("LHP003", _E, "unexpected end of file (an unclosed brace, bracket or string)"),
    CodeInfo("LHP004", _E, "unterminated string"),
    CodeInfo("LHP005", _E, "invalid escape sequence in a string"),
    CodeInfo("LHP006", _E, "invalid literal (number, duration or size)"),
    CodeInfo("LHP007", _E, "invalid string interpolation"),
    CodeInfo("LHP008", _E, "missing `=` between a key and its value"),
    CodeInfo("LHP009", _E, "invalid quoted key (empty, or with an interpolation)"),
    CodeInfo("LHP010", _E, "too deeply nested (more than the limit of levels)"),
    # --- names and declarations (owned by lhpipe.check) ---
    CodeInfo("LHP101", _E, "duplicate declaration name"),
    CodeInfo("LHP102", _E, "unknown name"),
    CodeInfo("LHP103", _E, "unknown schema"),
    CodeInfo("LHP104", _E, "unknown webhook"),
    CodeInfo("LHP105", _E, "unknown pipeline"),
    CodeInfo("LHP106", _E, "unknown connector"),
    CodeInfo("LHP107", _E, "unknown key in a block"),
    CodeInfo("LHP108", _E, "missing required key"),
    CodeInfo("LHP109", _E, "key given twice in one block"),
    CodeInfo("LHP110", _E, "duplicate field in a schema"),
    CodeInfo("LHP111", _E, "schema file cannot be read or is not valid Avro"),
    CodeInfo("LHP112", _E, "`let` redefines a name"),
    CodeInfo("LHP113", _E, "a declaration uses a reserved name (a built-in type)"),
    CodeInfo("LHP114", _E, "a block where a value is expected, or a value where a block is"),
    CodeInfo("LHP115", _E, "an inline schema uses a registry schema (unknown until run time)"),
    # --- types and expressions ---
    CodeInfo("LHP201", _E, "type mismatch"),
    CodeInfo("LHP202", _E, "unknown field"),
    CodeInfo("LHP203", _E, "unknown function"),
    CodeInfo("LHP204", _E, "wrong number of arguments"),
    CodeInfo("LHP205", _E, "`env()` outside a value position"),
    CodeInfo("LHP206", _E, "operator not defined for these types"),
    CodeInfo("LHP207", _E, "`where` condition is not boolean"),
    CodeInfo("LHP208", _E, "unknown type"),
    CodeInfo("LHP209", _E, "expected a literal value"),
    CodeInfo("LHP210", _W, "comparison is always true or always false"),
    # --- webhooks and auth ---
    CodeInfo("LHP301", _E, "webhook without `auth`"),
    CodeInfo("LHP302", _W, "`auth = none`: the webhook accepts anyone"),
    CodeInfo("LHP303", _W, "literal secret in source: use env()"),
    CodeInfo("LHP304", _E, "duplicate webhook path"),
    CodeInfo("LHP305", _E, "invalid auth block"),
    CodeInfo("LHP306", _E, "invalid webhook path or method"),
    CodeInfo("LHP307", _E, "`claims` used without oauth"),
    # --- pipelines, sources, targets, ids ---
    CodeInfo("LHP401", _E, "invalid LittleHorse id literal"),
    CodeInfo("LHP402", _E, "WfRun id is not a string"),
    CodeInfo("LHP403", _E, "invalid LittleHorse name"),
    CodeInfo("LHP404", _E, "invalid error policy"),
    CodeInfo("LHP405", _E, "name not available to this source"),
    CodeInfo("LHP406", _E, "invalid topic name"),
    CodeInfo("LHP407", _W, "webhook in direct mode has no pipeline reading it"),
    CodeInfo("LHP408", _E, "two pipelines read one direct-mode webhook"),
    CodeInfo("LHP409", _E, "value not allowed for this setting"),
    CodeInfo("LHP410", _E, "`partitions` is not a whole number from 1 to 10000"),
    CodeInfo("LHP411", _E, "`partitions` where lhpipe creates no topic"),
    CodeInfo("LHP412", _E, "one topic is given different `partitions`"),
    CodeInfo("LHP413", _W, "a credential written in a URL: use a header with env()"),
    # --- tests ---
    CodeInfo("LHP501", _E, "invalid test block"),
    # --- connectors and settings ---
    CodeInfo("LHP601", _E, "invalid connector block"),
    # --- online checks (owned by lhpipe.online.lint and .online_topics: `lint --online`) ---
    CodeInfo("LHP901", _E, "WfSpec does not exist in LittleHorse"),
    CodeInfo("LHP902", _E, "WfSpec version does not exist in LittleHorse"),
    CodeInfo("LHP903", _E, "variable is not an input variable of the WfSpec"),
    CodeInfo("LHP904", _E, "a required input variable of the WfSpec is not given"),
    CodeInfo("LHP905", _E, "value type cannot become the type LittleHorse declares"),
    CodeInfo("LHP906", _W, "value type becomes the type LittleHorse declares only for some values"),
    CodeInfo("LHP907", _E, "ExternalEventDef does not exist in LittleHorse"),
    CodeInfo("LHP908", _E, "`correlate` to an ExternalEventDef without correlated events"),
    CodeInfo("LHP909", _E, "registry subject does not exist"),
    CodeInfo("LHP910", _W, "a topic has fewer partitions than the processes that read it"),
    CodeInfo("LHP911", _W, "an existing topic has fewer partitions than its `partitions`"),
)


def describe(code: str) -> CodeInfo:
    """The registry entry of ``code``; raises ``KeyError`` for an unregistered code."""
    return CODES[code]


def make(code: str, span: Span, message: str, hint: str | None = None) -> Diagnostic:
    """A diagnostic with the registered default severity of ``code``."""
    return Diagnostic(code, CODES[code].severity, span, message, hint)

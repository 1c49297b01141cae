"""``lhpipe lint --online``: the checked program against the live LittleHorse and registry.

After the offline checks pass, every name the program leaves to run time is looked up:

* ``run_wf``: the WfSpec exists (at the ``major_version``/``revision`` written as literals),
  every variable written in ``variables { }`` (or, without it, every top-level field of the
  value's schema) is an input variable of the WfSpec, with a static type that can become the
  declared type, and no required input variable is left out;
* ``post_event`` / ``correlate``: the ExternalEventDef exists, takes correlated events for
  ``correlate``, and the content's static type can become its declared content type;
* ``schema X from registry "subject"``: the subject exists; its latest schema then types the
  value of the pipelines reading it, for the checks above;
* Kafka, when processes are declared (``--processes N``, ``LHPIPE_PROCESSES``) or a
  ``partitions`` is written: the partitions of the topics the pipelines read and of the topics
  lhpipe creates (:mod:`lhpipe.online.topics`).

A static type *fits* a declared type when every value converts (:mod:`lhpipe.clients.lh_values`),
*may fit* when only some do (a ``string`` into an INT converts when it holds digits: a
warning), and *does not fit* when none can (an error). ``json`` and other dynamic values are
not judged. Problems are diagnostics (``LHP9xx``) at the span of the offending name; a server
that cannot be reached is :class:`OnlineUnavailable`, which ``lint`` reports with exit code 2.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import IntEnum

from confluent_kafka import KafkaError, KafkaException

from lhpipe.check import types as t
from lhpipe.check.blocks import map_entries
from lhpipe.check.names import did_you_mean
from lhpipe.check.program import PipelineInfo, Program, TargetInfo
from lhpipe.check.schemas import type_from_avro
from lhpipe.clients.lh_values import EventDefShape, LHType, WfSpecShape
from lhpipe.clients.littlehorse import LittleHorseClient
from lhpipe.clients.registry import SchemaRegistry
from lhpipe.core.errors import PausedError, PermanentError, TransientError
from lhpipe.diagnostics import Diagnostic, Span, make
from lhpipe.settings import Settings
from lhpipe.syntax import ast

NAME_LIST_LIMIT = 1000


class OnlineUnavailable(Exception):
    """LittleHorse or the registry cannot be asked (unreachable, or refusing credentials)."""


class Fit(IntEnum):
    """How a static type relates to a declared LittleHorse type; worse is greater."""

    YES = 0
    MAYBE = 1
    NO = 2


@dataclass(frozen=True, slots=True)
class Verdict:
    fit: Fit
    reason: str = ""


_YES = Verdict(Fit.YES)

# Static primitive type names that convert always / for some values, per declared kind.
_PRIMITIVE_FITS: Mapping[str, tuple[frozenset[str], frozenset[str]]] = {
    "STR": (
        frozenset({"string", "int", "long", "float", "double", "boolean", "timestamp"}),
        frozenset(),
    ),
    "INT": (frozenset({"int", "long"}), frozenset({"string", "float", "double"})),
    "DOUBLE": (frozenset({"int", "long", "float", "double"}), frozenset({"string"})),
    "BOOL": (frozenset({"boolean"}), frozenset({"string"})),
    "BYTES": (frozenset({"bytes", "string"}), frozenset()),
    "TIMESTAMP": (frozenset({"timestamp", "int", "long"}), frozenset({"string"})),
    "JSON_OBJ": (frozenset(), frozenset({"string"})),
    "JSON_ARR": (frozenset(), frozenset({"string"})),
    "WF_RUN_ID": (frozenset({"string"}), frozenset()),
}

_MAYBE_REASONS: Mapping[str, str] = {
    "INT": "it converts only when the text is a whole number",
    "DOUBLE": "it converts only when the text is a number",
    "BOOL": 'it converts only when the text is "true" or "false"',
    "TIMESTAMP": "it converts only when the text is an ISO-8601 date-time",
    "JSON_OBJ": "it converts only when the text is a JSON object",
    "JSON_ARR": "it converts only when the text is a JSON array",
}


def fits(static: t.Type, declared: LHType) -> Verdict:
    """Whether values of the static type ``static`` can become ``declared``."""
    if isinstance(static, t.Dynamic):
        return _YES
    if isinstance(static, t.OptionalType):
        return fits(static.inner, declared)
    if static == t.NULL:
        return _YES
    kind = declared.kind
    if kind not in _PRIMITIVE_FITS and kind != "STRUCT":
        return Verdict(Fit.NO, f"lhpipe cannot write LittleHorse {kind} values")
    if isinstance(static, t.Primitive):
        if kind == "STRUCT":
            return Verdict(Fit.NO)
        always, sometimes = _PRIMITIVE_FITS[kind]
        if static.name in always:
            return _YES
        if static.name in sometimes:
            if static.name == "string":
                return Verdict(Fit.MAYBE, _MAYBE_REASONS[kind])
            return Verdict(Fit.MAYBE, "it converts only when the number has no fraction")
        return Verdict(Fit.NO)
    if isinstance(static, t.ArrayType):
        return _YES if kind == "JSON_ARR" else Verdict(Fit.NO)
    if isinstance(static, t.MapType):
        if kind == "JSON_OBJ":
            return _YES
        if kind == "STRUCT":
            return Verdict(Fit.MAYBE, "its keys must be the StructDef's fields")
        return Verdict(Fit.NO)
    if kind == "JSON_OBJ":
        return _YES
    if kind == "STRUCT":
        return _record_fits_struct(static, declared)
    return Verdict(Fit.NO)


def _record_fits_struct(record: t.RecordType, declared: LHType) -> Verdict:
    shape = declared.struct
    if shape is None:
        return Verdict(Fit.NO)
    extra = sorted(set(record.fields) - set(shape.fields))
    if extra:
        return Verdict(Fit.NO, f"StructDef {shape.name} has no field {', '.join(extra)}")
    missing = sorted(
        name for name, f in shape.fields.items() if not f.optional and name not in record.fields
    )
    if missing:
        return Verdict(Fit.NO, f"StructDef {shape.name} requires {', '.join(missing)}")
    worst = _YES
    for name, field in shape.fields.items():
        static = record.fields.get(name)
        if static is None:
            continue
        verdict = fits(static, field.type)
        if verdict.fit == Fit.YES and isinstance(static, t.OptionalType) and not field.optional:
            verdict = Verdict(Fit.MAYBE, f"field {name} may be null but the StructDef requires it")
        elif verdict.fit != Fit.YES:
            why = f": {verdict.reason}" if verdict.reason else ""
            verdict = Verdict(verdict.fit, f"field {name} is {static}, not {field.type}{why}")
        if verdict.fit > worst.fit:
            worst = verdict
    return worst


# ---------------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Written:
    """One value written to LittleHorse: a variable or a content, its type and where."""

    name: str
    type: t.Type
    span: Span
    origin: str  # how the message names it


class OnlineChecker:
    """Checks one program against one LittleHorse and one registry."""

    def __init__(
        self, program: Program, littlehorse: LittleHorseClient, registry: SchemaRegistry
    ) -> None:
        self.program = program
        self.littlehorse = littlehorse
        self.registry = registry
        self.diagnostics: list[Diagnostic] = []
        self._registry_types: dict[str, t.Type] = {}
        self._names: dict[str, list[str]] = {}

    async def check(self) -> list[Diagnostic]:
        """Every diagnostic; raises :class:`OnlineUnavailable`."""
        try:
            await self._check_registry_subjects()
        except (TransientError, PausedError) as exc:
            raise OnlineUnavailable(
                f"cannot ask the schema registry at {self.registry.url}: {exc.message}"
            ) from exc
        try:
            for pipeline in self.program.pipelines.values():
                for target in pipeline.targets:
                    await self._check_target(pipeline, target)
        except (TransientError, PausedError) as exc:
            raise OnlineUnavailable(
                f"cannot ask LittleHorse at {self.littlehorse.connection.target}: {exc.message}"
            ) from exc
        return self.diagnostics

    # -- registry ----------------------------------------------------------------------------

    async def _check_registry_subjects(self) -> None:
        for schema in self.program.schemas.values():
            if schema.origin != "registry" or schema.subject is None:
                continue
            registry_arg = schema.decl.registry
            span = registry_arg.span if registry_arg is not None else schema.decl.name.span
            try:
                latest = await self.registry.latest(schema.subject)
            except PermanentError as exc:
                if exc.code != "SUBJECT_NOT_FOUND":
                    raise
                hint = did_you_mean(schema.subject, await self.registry.subjects())
                self._report(
                    "LHP909",
                    span,
                    f"registry subject `{schema.subject}` does not exist at {self.registry.url}",
                    hint,
                )
                continue
            self._registry_types[schema.name] = type_from_avro(latest.avro, {}, None)

    # -- targets -----------------------------------------------------------------------------

    async def _check_target(self, pipeline: PipelineInfo, target: TargetInfo) -> None:
        if target.name is None or target.decl.arg is None:
            return
        if target.kind == "run_wf":
            await self._check_run_wf(pipeline, target, target.name, target.decl.arg.span)
        elif target.kind in ("post_event", "correlate"):
            await self._check_event(pipeline, target, target.name, target.decl.arg.span)

    async def _check_run_wf(
        self, pipeline: PipelineInfo, target: TargetInfo, name: str, span: Span
    ) -> None:
        major, major_span = _literal_int(target, "major_version")
        revision, revision_span = _literal_int(target, "revision")
        try:
            shape = await self.littlehorse.metadata.wf_spec(name, major, revision)
        except PermanentError as exc:
            if exc.code != "NOT_FOUND":
                raise
            await self._report_missing_wf_spec(
                name, major, revision, span, major_span, revision_span
            )
            return
        written = list(self._run_wf_variables(pipeline, target, span))
        given = {w.name for w in written}
        for variable in written:
            declared = shape.variables.get(variable.name)
            if declared is None:
                self._report_undeclared(shape, variable)
                continue
            self._judge(variable, declared, f"variable `{variable.name}` of WfSpec `{name}`")
        if target.variables is not None or self._value_type(pipeline) is not None:
            for required in sorted(shape.required - given):
                self._report(
                    "LHP904",
                    span,
                    f"WfSpec `{name}` requires input variable `{required}` "
                    f"({shape.variables[required]}), which this target does not give",
                    None if target.variables is None else "add it to `variables { }`",
                )

    async def _report_missing_wf_spec(
        self,
        name: str,
        major: int | None,
        revision: int | None,
        span: Span,
        major_span: Span | None,
        revision_span: Span | None,
    ) -> None:
        if major is not None:
            try:
                latest = await self.littlehorse.metadata.wf_spec(name)
            except PermanentError:
                latest = None
            if latest is not None:
                version = f"{major}" if revision is None else f"{major}.{revision}"
                self._report(
                    "LHP902",
                    revision_span if revision is not None and revision_span else major_span or span,
                    f"WfSpec `{name}` has no version {version}",
                    f"its latest version is {latest.major_version}.{latest.revision}",
                )
                return
        names = await self._list_names("wf_spec")
        self._report(
            "LHP901",
            span,
            f"WfSpec `{name}` does not exist in LittleHorse",
            did_you_mean(name, names),
        )

    def _run_wf_variables(
        self, pipeline: PipelineInfo, target: TargetInfo, span: Span
    ) -> Iterator[_Written]:
        if target.variables is not None:
            block = target.decl.block
            entry = block.get("variables") if block is not None else None
            pairs = map_entries(entry, []) if entry is not None else None
            for pair in pairs or []:
                static = self.program.type_of(pair.value) or t.JSON
                yield _Written(pair.key.name, static, pair.key.span, f"`{pair.key.name}`")
            return
        value_type = self._value_type(pipeline)
        if isinstance(value_type, t.RecordType):
            for field_name, static in value_type.fields.items():
                yield _Written(field_name, static, span, f"value field `{field_name}`")

    def _value_type(self, pipeline: PipelineInfo) -> t.Type | None:
        """The static type of ``value``, with registry schemas typed by their latest version;
        ``None`` when it is dynamic."""
        value_type = self._registry_types.get(pipeline.source.value, pipeline.source.value_type)
        return None if isinstance(value_type, t.Dynamic) else value_type

    def _report_undeclared(self, shape: WfSpecShape, variable: _Written) -> None:
        where = f"WfSpec `{shape.name}` (v{shape.major_version}.{shape.revision})"
        if variable.name in shape.inherited:
            message = f"variable `{variable.name}` is inherited from the parent WfRun in {where}"
            self._report("LHP903", variable.span, message, "leave it out: RunWf cannot set it")
            return
        hint = did_you_mean(variable.name, shape.variables)
        if hint is None:
            known = ", ".join(f"`{n}`" for n in sorted(shape.variables)) or "none"
            hint = f"its input variables: {known}"
        self._report(
            "LHP903",
            variable.span,
            f"{variable.origin} is not an input variable of {where}",
            hint,
        )

    async def _check_event(
        self, pipeline: PipelineInfo, target: TargetInfo, name: str, span: Span
    ) -> None:
        try:
            shape = await self.littlehorse.metadata.event_def(name)
        except PermanentError as exc:
            if exc.code != "NOT_FOUND":
                raise
            self._report(
                "LHP907",
                span,
                f"ExternalEventDef `{name}` does not exist in LittleHorse",
                did_you_mean(name, await self._list_names("external_event_def")),
            )
            return
        if target.kind == "correlate" and not shape.correlated:
            self._report(
                "LHP908",
                span,
                f"ExternalEventDef `{name}` does not take correlated events",
                "register it with a CorrelatedEventConfig, or use `post_event`",
            )
        content = self._content(pipeline, target, span)
        if content is not None and shape.content is not None:
            self._judge(content, shape.content, _content_of(shape))

    def _content(self, pipeline: PipelineInfo, target: TargetInfo, span: Span) -> _Written | None:
        expr = target.settings.get("content")
        if expr is not None:
            static = self.program.type_of(expr) or t.JSON
            return _Written("content", static, expr.span, "`content`")
        value_type = self._value_type(pipeline)
        if value_type is None:
            return None
        return _Written("content", value_type, span, "the content (`value`)")

    # -- reporting ---------------------------------------------------------------------------

    def _judge(self, written: _Written, declared: LHType, what: str) -> None:
        verdict = fits(written.type, declared)
        if verdict.fit == Fit.YES:
            return
        code = "LHP905" if verdict.fit == Fit.NO else "LHP906"
        message = f"{written.origin} is {written.type}, but {what} is {declared}"
        self._report(code, written.span, message, verdict.reason or None)

    def _report(self, code: str, span: Span, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(make(code, span, message, hint))

    async def _list_names(self, kind: str) -> list[str]:
        """WfSpec or ExternalEventDef names, for "did you mean" hints (one page)."""
        if kind not in self._names:
            if kind == "wf_spec":
                names = await self.littlehorse.wf_spec_names(NAME_LIST_LIMIT)
            else:
                names = await self.littlehorse.external_event_def_names(NAME_LIST_LIMIT)
            self._names[kind] = names
        return self._names[kind]


def _content_of(shape: EventDefShape) -> str:
    return f"the content of ExternalEventDef `{shape.name}`"


def _literal_int(target: TargetInfo, key: str) -> tuple[int | None, Span | None]:
    expr = target.settings.get(key)
    if isinstance(expr, ast.IntLit):
        return expr.value, expr.span
    return None, None


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def check_online(
    program: Program, settings: Settings, processes: int | None = None
) -> list[Diagnostic]:
    """Run the online checks of ``program`` (its own event loop); ``processes`` is how many
    ``lhpipe run`` processes the user runs (``None``: ``LHPIPE_PROCESSES``, else not judged).
    Raises :class:`OnlineUnavailable` and :class:`~lhpipe.settings.SettingsError`."""
    return asyncio.run(_check(program, settings, processes))


async def _check(
    program: Program, settings: Settings, processes: int | None = None
) -> list[Diagnostic]:
    from lhpipe.clients.kafka.topics import default_partitions
    from lhpipe.online import topics as online_topics

    declared = online_topics.declared_processes(settings, processes)
    default_partitions(settings)  # a bad LHPIPE_TOPIC_PARTITIONS is said here, not at run time
    littlehorse = LittleHorseClient.from_settings(settings)
    registry = SchemaRegistry.from_settings(settings)
    try:
        diagnostics = await OnlineChecker(program, littlehorse, registry).check()
    finally:
        await littlehorse.close()
        await registry.close()
    if online_topics.needs_kafka(program, declared):
        try:
            counts = await asyncio.to_thread(online_topics.partition_counts, settings)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else exc
            why = error.str() if isinstance(error, KafkaError) else str(error)
            raise OnlineUnavailable(
                f"cannot ask Kafka at {settings.kafka_bootstrap_servers}: {why}"
            ) from exc
        diagnostics += online_topics.partition_diagnostics(program, settings, declared, counts)
    return diagnostics

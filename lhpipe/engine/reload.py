"""Hot reload: a new program replaces the running one, spec by spec, while traffic flows.

A reload (:meth:`Reloader.reload`) goes in three steps (delivery.md, "Hot reload"):

1. **Load in isolation.** The files are read, parsed, checked and compiled again, and the
   settings re-read (``lhpipe.toml`` may have changed), in a worker thread so that the event
   loop keeps serving. Nothing running is touched. If anything fails (an error diagnostic, an
   unreadable file, a bad ``lhpipe.toml``, no ``.lhp`` file left), the diagnostics are printed
   to stderr in ``lhpipe lint``'s text format and the reload ends as ``failed``: the running
   program stays exactly as it was.
2. **Diff.** :func:`diff_programs` compares the new specs with the running ones by
   fingerprint, per pipeline and per webhook: added, removed, changed, unchanged.
3. **Apply.** :meth:`~lhpipe.engine.supervisor.Supervisor.reload` swaps the webhook routes in
   one assignment, drains and commits the removed and changed pipelines, and starts the
   changed (from their committed offsets) and the added ones. Unchanged pipelines keep their
   runner and consumer; unchanged webhooks keep their route object.

Reloads run one at a time (a lock); changes saved while one runs make the next one. Every
reload is logged (one line, with ``event = "reload"`` and its fields in the JSON log) and
counted in :mod:`lhpipe.core.metrics`; the running program's hash is in ``/readyz``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, TextIO

from lhpipe.core import heap, metrics

if TYPE_CHECKING:
    from lhpipe.check.program import Program
    from lhpipe.gateway.server import EngineApp
    from lhpipe.graph.model import CompiledProgram
    from lhpipe.settings import Settings

log = logging.getLogger(__name__)

#: How long after a successful reload the collector gets the replaced program's objects
#: (:func:`lhpipe.core.heap.settle`: a full collection, tens of milliseconds).
SETTLE_DELAY_SECONDS = 1.0

Change = Literal["added", "removed", "changed", "unchanged"]
CHANGES: tuple[Change, ...] = ("added", "removed", "changed", "unchanged")


class _Fingerprinted(Protocol):
    @property
    def fingerprint(self) -> str: ...


@dataclass(frozen=True, slots=True)
class SpecDiff:
    """Names of one kind of spec (pipelines or webhooks) by what a reload does to them, each
    in the order of the program that has them (the new one; the old one for ``removed``)."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()

    def names(self, change: Change) -> tuple[str, ...]:
        result: tuple[str, ...] = getattr(self, change)
        return result

    def to_json(self) -> dict[str, list[str]]:
        return {change: list(self.names(change)) for change in CHANGES}

    def describe(self) -> str:
        """``added [a], changed [b]`` (empty groups left out; ``nothing`` when all are)."""
        parts = [
            f"{change} [{', '.join(self.names(change))}]"
            for change in CHANGES
            if self.names(change)
        ]
        return ", ".join(parts) or "nothing"


def diff_specs(
    before: Mapping[str, _Fingerprinted], after: Mapping[str, _Fingerprinted]
) -> SpecDiff:
    """Compare two sets of specs by name and fingerprint."""
    return SpecDiff(
        added=tuple(name for name in after if name not in before),
        removed=tuple(name for name in before if name not in after),
        changed=tuple(
            name
            for name, spec in after.items()
            if name in before and before[name].fingerprint != spec.fingerprint
        ),
        unchanged=tuple(
            name
            for name, spec in after.items()
            if name in before and before[name].fingerprint == spec.fingerprint
        ),
    )


@dataclass(frozen=True, slots=True)
class ProgramDiff:
    """What a reload changes: per pipeline and per webhook."""

    pipelines: SpecDiff
    webhooks: SpecDiff

    @property
    def changes_anything(self) -> bool:
        return any(
            kind.names(change)
            for kind in (self.pipelines, self.webhooks)
            for change in ("added", "removed", "changed")
        )

    def to_json(self) -> dict[str, dict[str, list[str]]]:
        return {"pipelines": self.pipelines.to_json(), "webhooks": self.webhooks.to_json()}


def diff_programs(before: CompiledProgram, after: CompiledProgram) -> ProgramDiff:
    """The per-pipeline and per-webhook diff of two compiled programs."""
    return ProgramDiff(
        pipelines=diff_specs(before.pipelines, after.pipelines),
        webhooks=diff_specs(before.routes, after.routes),
    )


# -- loading ------------------------------------------------------------------------------------


class ProgramRejected(Exception):
    """The files do not make a program that can run; ``report`` is what to print (lint's text
    format for diagnostics, one line for anything else); ``exit_code`` is what ``lhpipe run``
    exits with when this happens at start (1 for findings, 2 for anything else);
    ``schema_files`` are the ``.avsc`` files the rejected files name (a save that named a file
    not written yet: ``--watch`` watches its folder, so that writing it is noticed)."""

    def __init__(
        self, reason: str, report: str, exit_code: int, schema_files: Sequence[Path] = ()
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.report = report
        self.exit_code = exit_code
        self.schema_files = tuple(schema_files)


@dataclass(frozen=True, slots=True)
class LoadedProgram:
    """A program checked and compiled from the files, with the settings it was compiled with.
    ``warnings`` is the lint text of its warnings (empty when there are none)."""

    compiled: CompiledProgram
    program: Program
    settings: Settings
    warnings: str = ""


def load_program(paths: Sequence[str], *, color: bool = False) -> LoadedProgram:
    """Read, check and compile ``paths`` and read the settings beside them; raises
    :class:`ProgramRejected` when they do not make a program that can run. Touches nothing
    that runs, so it may run in a worker thread."""
    from lhpipe.check.formats import LintReport, describe_os_error, format_text
    from lhpipe.check.outcome import ExitCode, lint_exit
    from lhpipe.kinds import compile_program, load
    from lhpipe.settings import SettingsError, load_settings

    try:
        result = load(paths)
    except OSError as exc:
        reason = describe_os_error(exc)
        raise ProgramRejected(reason, f"lhpipe run: {reason}\n", ExitCode.USAGE) from exc
    except UnicodeDecodeError as exc:
        reason = f"a file is not UTF-8 text: {exc}"
        raise ProgramRejected(reason, f"lhpipe run: {reason}\n", ExitCode.USAGE) from exc
    if not result.sources:
        reason = f"no .lhp files found in {', '.join(paths)}"
        raise ProgramRejected(reason, f"lhpipe run: {reason}\n", ExitCode.USAGE)
    report = ""
    if result.diagnostics:
        lint = LintReport(result.diagnostics, result.sources, len(result.sources))
        report = format_text(lint, color=color)
    if result.program is None or lint_exit(result.diagnostics, strict=False) is not ExitCode.OK:
        errors = sum(1 for d in result.diagnostics if d.is_error)
        raise ProgramRejected(
            f"{errors} error(s) in the files", report, ExitCode.FINDINGS, result.schema_files
        )
    try:
        settings = load_settings([Path(p) for p in paths])
    except SettingsError as exc:
        # The warnings too: nothing else prints them when the settings are refused.
        raise ProgramRejected(str(exc), f"{report}lhpipe run: {exc}\n", ExitCode.USAGE) from exc
    compiled = compile_program(result.program, {**settings.file_values, **settings.environ})
    return LoadedProgram(compiled, result.program, settings, report)


# -- reloading ----------------------------------------------------------------------------------


class Reloadable(Protocol):
    """What the reloader drives (the :class:`~lhpipe.engine.supervisor.Supervisor`)."""

    compiled: CompiledProgram
    program: Program
    settings: Settings

    async def reload(
        self, compiled: CompiledProgram, program: Program, settings: Settings
    ) -> ProgramDiff: ...


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """One reload: ``ok`` with the diff and the new program's hash, or ``failed`` with the
    reason (the running program was left alone)."""

    outcome: Literal["ok", "failed"]
    duration_s: float
    program: str
    diff: ProgramDiff | None = None
    reason: str | None = None
    files: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, object]:
        """The reload event's fields, as logged."""
        event: dict[str, object] = {
            "event": "reload",
            "outcome": self.outcome,
            "duration_ms": round(self.duration_s * 1000, 1),
            "program": self.program,
        }
        if self.files:
            event["files"] = list(self.files)
        if self.diff is not None:
            event.update(self.diff.to_json())
        if self.reason is not None:
            event["reason"] = self.reason
        return event


def publish_program(app: EngineApp | None, compiled: CompiledProgram) -> str:
    """Show ``compiled``'s hash in ``/readyz`` and ``lhpipe_program_info``; returns it."""
    program_hash = compiled.program_hash()
    metrics.PROGRAM_INFO.clear()
    metrics.PROGRAM_INFO.labels(program_hash).set(1)
    if app is not None:
        app.program_hash = program_hash
    return program_hash


class Reloader:
    """Reloads ``paths`` into ``target`` on request, one reload at a time (see the module
    docstring). ``stderr`` gets the diagnostics of a rejected program; ``app`` shows the
    running program's hash; ``loader`` replaces :func:`load_program` (tests)."""

    def __init__(
        self,
        paths: Sequence[str],
        target: Reloadable,
        *,
        app: EngineApp | None = None,
        stderr: TextIO,
        color: bool = False,
        loader: Callable[..., LoadedProgram] = load_program,
    ) -> None:
        self.paths = list(paths)
        self.target = target
        self.app = app
        self.stderr = stderr
        self.color = color
        self.loader = loader
        self.program_hash = publish_program(app, target.compiled)
        self.last: ReloadOutcome | None = None
        #: The ``.avsc`` files named by the files as last saved, when they were rejected.
        self.rejected_schema_files: tuple[Path, ...] = ()
        self._lock = asyncio.Lock()
        self._warnings = ""

    async def reload(self, files: Collection[str] = ()) -> ReloadOutcome:
        """Load the files again and apply the difference; never raises (a failure is logged,
        counted and returned). ``files`` are the changed paths that triggered it (logged)."""
        async with self._lock:
            started = time.perf_counter()
            try:
                loaded = await asyncio.to_thread(self.loader, self.paths, color=self.color)
            except ProgramRejected as exc:
                self._print(exc.report)
                self.rejected_schema_files = exc.schema_files
                return self._finish(
                    "failed", started, files, reason=f"the program was rejected: {exc.reason}"
                )
            except Exception as exc:  # a defect in loading must not end the engine
                log.exception("reload: loading the program failed")
                return self._finish("failed", started, files, reason=f"loading failed: {exc}")
            if loaded.warnings != self._warnings:
                self._print(loaded.warnings)  # new warnings only: not the same text every save
            self._warnings = loaded.warnings
            try:
                diff = await self.target.reload(loaded.compiled, loaded.program, loaded.settings)
            except Exception as exc:
                log.exception("reload: applying the new program failed")
                return self._finish("failed", started, files, reason=f"applying failed: {exc}")
            self.program_hash = publish_program(self.app, loaded.compiled)
            self.rejected_schema_files = ()
            for kind, specs in (("pipeline", diff.pipelines), ("webhook", diff.webhooks)):
                for change in CHANGES:
                    count = len(specs.names(change))
                    if count:
                        metrics.RELOAD_CHANGES.labels(kind, change).inc(count)
            # The replaced program's objects were frozen at start-up (engine/heap.py): let the
            # collector have them, a little after the new routes and runners took traffic.
            asyncio.get_running_loop().call_later(SETTLE_DELAY_SECONDS, heap.settle)
            return self._finish("ok", started, files, diff=diff)

    def _print(self, text: str) -> None:
        if text:
            self.stderr.write(text if text.endswith("\n") else text + "\n")
            self.stderr.flush()

    def _finish(
        self,
        outcome: Literal["ok", "failed"],
        started: float,
        files: Collection[str],
        *,
        diff: ProgramDiff | None = None,
        reason: str | None = None,
    ) -> ReloadOutcome:
        duration = time.perf_counter() - started
        result = ReloadOutcome(
            outcome, duration, self.program_hash, diff, reason, tuple(sorted(files))
        )
        metrics.RELOADS.labels(outcome).inc()
        metrics.RELOAD_DURATION.observe(duration)
        self.last = result
        ms = duration * 1000
        if diff is not None:
            log.info(
                "reload ok in %.0f ms (program %s): pipelines %s; webhooks %s",
                ms,
                result.program,
                diff.pipelines.describe(),
                diff.webhooks.describe(),
                extra={"event": result.to_json()},
            )
        else:
            log.error(
                "reload failed in %.0f ms: %s; still running program %s",
                ms,
                reason,
                result.program,
                extra={"event": result.to_json()},
            )
        return result

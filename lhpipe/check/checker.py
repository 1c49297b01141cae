"""The checker: resolves names and types across all files of one run.

It is one class made of parts, one module per declaration: :mod:`.schema_decls`,
:mod:`.connectors`, :mod:`.webhooks`, :mod:`.pipelines` and :mod:`.tests`, on the shared state
and helpers of :mod:`.context`. What a source or target of each kind accepts is the kind's own
check (``lhpipe/sources/``, ``lhpipe/targets/``), given as :class:`~lhpipe.check.kinds.KindChecks`.

Decisions where the spec leaves room:

* Schemas, webhooks, pipelines and connectors share one namespace: a name means one thing in a
  run (``LHP101`` for the second declaration, wherever it is). Test titles are unique among
  tests. A schema may not take the name of a built-in type (``LHP113``).
* A duplicate declaration is still checked on its own, so its other problems are reported too;
  references resolve to the first one.
* ``from topic`` decodes ``value`` as ``json`` and ``key`` as ``string`` unless told otherwise;
  a webhook's ``body`` is ``json`` unless told otherwise.
* A name that cannot be resolved (an unknown schema, webhook...) makes what depends on it
  dynamic, so one mistake gives one diagnostic.
* Settings that take text (``issuer``, ``secret``, ``group``, ``config`` values, target
  settings...) may be ``env("NAME")`` as their whole value; ``LHP303`` warns about a
  literal ``secret``.
* ``on_error``: ``dead_letter`` and ``permanent`` together are contradictory (``LHP404``):
  with a dead-letter topic nothing is stopped or skipped.
* ``partitions`` (a webhook's, or ``on_error``'s for its dead-letter topic) is a literal whole
  number from 1 to 10000 (``LHP410``): it decides the topic lhpipe creates, so it is known
  before anything runs, like a topic name. It needs a topic to apply to (``LHP411``: a
  direct-mode webhook, an ``on_error`` without ``dead_letter``), and a topic written in
  several places has one count (``LHP412``); a place that leaves it out takes the others'.
* A declaration with a syntax error inside is not in the AST, but the parser gives its kind and
  name (:class:`lhpipe.syntax.DroppedDecl`). It exists, unread: a reference to it is dynamic
  and not reported (no "unknown schema" after a typo in that schema, the syntax error is the one
  diagnostic), a reference of the wrong kind is still reported, and no direct-mode webhook is
  said to have no reader while a pipeline could not be read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lhpipe.check import types as t
from lhpipe.check.connectors import ConnectorChecks
from lhpipe.check.context import KIND_NAMES
from lhpipe.check.kinds import KindChecks
from lhpipe.check.pipelines import PipelineChecks
from lhpipe.check.program import Program
from lhpipe.check.schema_decls import SchemaChecks
from lhpipe.check.tests import TestChecks
from lhpipe.check.webhooks import WebhookChecks
from lhpipe.diagnostics import Diagnostic
from lhpipe.syntax import DroppedDecl, ast


def check(
    files: Sequence[ast.File], kinds: KindChecks, unreadable: Sequence[DroppedDecl] = ()
) -> tuple[Program, list[Diagnostic]]:
    """Check ``files`` together, each source and target by its kind's check in ``kinds``;
    ``unreadable`` are the declarations the parser left out because of a syntax error. The
    program is meaningful only when no diagnostic is an error (:func:`lhpipe.check.load.load`
    drops it then)."""
    return _Checker(files, unreadable, kinds).run()


class _Checker(SchemaChecks, ConnectorChecks, WebhookChecks, PipelineChecks, TestChecks):
    def __init__(
        self, files: Sequence[ast.File], unreadable: Sequence[DroppedDecl], kinds: KindChecks
    ) -> None:
        super().__init__(files, unreadable)
        self.kinds = kinds

    def run(self) -> tuple[Program, list[Diagnostic]]:
        self._declare()
        decls = [d for f in self.files for d in f.decls]
        self._schemas([d for d in decls if isinstance(d, ast.SchemaDecl)])
        for decl in decls:
            if isinstance(decl, ast.ConnectorDecl):
                self._connector(decl)
        for decl in decls:
            if isinstance(decl, ast.WebhookDecl):
                self._webhook(decl)
        for decl in decls:
            if isinstance(decl, ast.PipelineDecl):
                self._pipeline(decl)
        self._direct_mode()
        for decl in decls:
            if isinstance(decl, ast.TestDecl):
                self._test(decl)
        program = Program(
            files=self.files,
            schemas=self.schemas,
            webhooks=self.webhooks,
            pipelines=self.pipelines,
            connectors=self.connectors,
            tests=self.tests,
            expr_types=self.types,
        )
        return program, self.diagnostics

    # --- declarations -------------------------------------------------------------------

    def _declare(self) -> None:
        titles: dict[str, ast.TestDecl] = {}
        for file in self.files:
            folder = Path(file.path).parent
            for decl in file.decls:
                self.folder[id(decl)] = folder
                if isinstance(decl, ast.TestDecl):
                    title = decl.title.text
                    if title in titles:
                        self.report(
                            "LHP101",
                            decl.title.span,
                            f'test "{title}" is declared twice',
                            f"first declared at {titles[title].title.span}",
                        )
                    else:
                        titles[title] = decl
                    continue
                name = decl.name.name
                first = self.declared.get(name)
                if first is not None:
                    self.report(
                        "LHP101",
                        decl.name.span,
                        f"`{name}` is already declared ({KIND_NAMES[type(first)]} at "
                        f"{first.name.span})",
                        "names of schemas, webhooks, pipelines and connectors are unique "
                        "across all files of a run",
                    )
                    continue
                if isinstance(decl, ast.SchemaDecl) and name in t.PRIMITIVE_TYPES:
                    self.report("LHP113", decl.name.span, f"`{name}` is a built-in type name")
                self.declared[name] = decl

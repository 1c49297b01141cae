"""The registry of kinds: exhaustive against the grammar, every part given, and the generic
stages never naming a kind."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from lhpipe import kinds
from lhpipe.check.blocks import BlockSpec
from lhpipe.kinds.registry import RegistryError, registry
from lhpipe.runtime.kind import SourceDef, TargetDef
from lhpipe.syntax.kinds import source_kinds, target_kinds

ROOT = Path(__file__).resolve().parents[3]


def _parts(definition: object) -> dict[str, object]:
    return {f.name: getattr(definition, f.name) for f in dataclasses.fields(definition)}  # type: ignore[arg-type]


def test_every_source_kind_of_the_grammar_has_a_module_with_every_part() -> None:
    assert list(kinds.SOURCES) == list(source_kinds())
    for kind, definition in kinds.SOURCES.items():
        assert isinstance(definition, SourceDef)
        assert definition.kind == kind
        assert isinstance(definition.check.block, BlockSpec)
        for part in (definition.check.check, definition.check.has_record):
            assert callable(part), (kind, part)
        for name in ("label", "upstream", "settings", "reads"):
            assert callable(getattr(definition.graph, name)), (kind, name)
        for name in ("parts", "given", "filter"):
            assert callable(getattr(definition, name)), (kind, name)


def test_every_target_kind_of_the_grammar_has_a_module_with_every_part() -> None:
    assert list(kinds.TARGETS) == list(target_kinds())
    for kind, definition in kinds.TARGETS.items():
        assert isinstance(definition, TargetDef)
        assert definition.kind == kind
        assert isinstance(definition.check.block, BlockSpec)
        assert callable(definition.check.check)
        expect = definition.check.expect or definition.check.block
        # What an `expect` block may write is what `lhpipe test` compares, and the reverse.
        assert set(definition.compares) == set(expect.keys), kind
        for name in ("feeds", "settings"):
            assert callable(getattr(definition.graph, name)), (kind, name)
        for name in ("planner", "sender", "verify"):
            assert callable(getattr(definition, name)), (kind, name)


def test_the_grammar_lists_the_kinds_the_docs_know() -> None:
    assert source_kinds() == ("topic", "webhook", "lh_output", "poll", "connector")
    assert target_kinds()[:7] == (
        "run_wf",
        "post_event",
        "correlate",
        "to_topic",
        "to_http",
        "to_file",
        "to_log",
    )


def test_a_kind_of_the_grammar_without_a_module_is_an_error_when_the_registry_is_built() -> None:
    with pytest.raises(RegistryError, match=r"`to_nowhere` has no module in the registry"):
        registry("target", (*target_kinds(), "to_nowhere"), kinds.TARGETS.values())
    missing_topic = [d for d in kinds.SOURCES.values() if d.kind != "topic"]
    with pytest.raises(RegistryError, match=r"source kind `topic` has no module"):
        registry("source", source_kinds(), missing_topic)


def test_a_module_of_a_kind_the_grammar_lacks_is_an_error() -> None:
    stray = dataclasses.replace(kinds.TARGETS["to_log"], kind="to_nowhere")
    with pytest.raises(RegistryError, match=r"`to_nowhere` is registered but the grammar"):
        registry("target", target_kinds(), [*kinds.TARGETS.values(), stray])


def test_a_kind_registered_twice_is_an_error() -> None:
    twice = [*kinds.TARGETS.values(), kinds.TARGETS["to_log"]]
    with pytest.raises(RegistryError, match=r"`to_log` is registered twice"):
        registry("target", target_kinds(), twice)


@pytest.mark.parametrize("part", ["check", "graph", "planner", "compares", "sender", "verify"])
def test_a_target_kind_missing_a_part_is_an_error(part: str) -> None:
    broken = dataclasses.replace(kinds.TARGETS["to_file"], **{part: None})
    others = [d for d in kinds.TARGETS.values() if d.kind != "to_file"]
    with pytest.raises(RegistryError, match=rf"`to_file` lacks {part}"):
        registry("target", target_kinds(), [*others, broken])


@pytest.mark.parametrize("part", ["check", "graph", "parts", "given", "filter"])
def test_a_source_kind_missing_a_part_is_an_error(part: str) -> None:
    broken = dataclasses.replace(kinds.SOURCES["poll"], **{part: None})
    others = [d for d in kinds.SOURCES.values() if d.kind != "poll"]
    with pytest.raises(RegistryError, match=rf"`poll` lacks {part}"):
        registry("source", source_kinds(), [*others, broken])


#: The stages that loop over the registry: none may name a kind in its code.
GENERIC = [
    "lhpipe/check/checker.py",
    "lhpipe/check/context.py",
    "lhpipe/check/pipelines.py",
    "lhpipe/check/tests.py",
    "lhpipe/check/blocks.py",
    "lhpipe/graph/compile.py",
    "lhpipe/kinds/build.py",
    "lhpipe/engine/testing.py",
    "lhpipe/engine/supervisor.py",
    "lhpipe/gateway/gateway.py",
]


def _code_without_docs(text: str) -> str:
    text = re.sub(r'"""[\s\S]*?"""', "", text)
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


#: Dispatching on a kind: comparing a kind, or naming a member of the kind types.
_NAMES_A_KIND = re.compile(
    r"""\bkind\s*(==|!=|\bis\b|\bin\b)\s*[(\[{]?\s*["']|(Source|Target)Kind\s*[.(]"""
)


@pytest.mark.parametrize("path", GENERIC)
def test_a_generic_stage_never_names_a_kind(path: str) -> None:
    code = _code_without_docs((ROOT / path).read_text(encoding="utf-8"))
    assert [m.group(0) for m in _NAMES_A_KIND.finditer(code)] == []


def test_the_check_for_naming_a_kind_finds_one() -> None:
    old = "if source.kind is ast.SourceKind.LH_OUTPUT:\n    pass\n"
    assert _NAMES_A_KIND.search(_code_without_docs(old)) is not None
    assert _NAMES_A_KIND.search('if target.kind == "to_topic": pass') is not None

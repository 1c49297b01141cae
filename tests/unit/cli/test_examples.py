"""The example pipelines and the documentation's examples lint clean and cover the language."""

from __future__ import annotations

import re
from pathlib import Path

from lhpipe.check.program import HmacAuth, OAuthAuth
from lhpipe.kinds import load, load_texts
from lhpipe.syntax.kinds import source_kinds, target_kinds

ROOT = Path(__file__).resolve().parents[3]
PIPELINES = ROOT / "pipelines"


def test_example_pipelines_lint_clean_without_warnings() -> None:
    result = load([PIPELINES])
    assert [f"{d.span}: {d.code} {d.message}" for d in result.diagnostics] == []


def test_example_pipelines_cover_every_source_target_and_auth() -> None:
    program = load([PIPELINES]).program
    assert program is not None
    sources = {p.source.kind for p in program.pipelines.values()}
    assert sources == set(source_kinds())
    assert any(p.source.value in program.schemas for p in program.pipelines.values()
               if p.source.kind == "topic")  # fmt: skip
    assert any(p.source.value == "json" for p in program.pipelines.values()
               if p.source.kind == "topic")  # fmt: skip
    webhooks = program.webhooks.values()
    assert any(w.direct for w in webhooks) and any(not w.direct for w in webhooks)

    targets = [t for p in program.pipelines.values() for t in p.targets]
    assert {t.kind for t in targets} == set(target_kinds())
    run_wfs = [t for t in targets if t.kind == "run_wf"]
    assert any(t.variables is None for t in run_wfs)
    assert any(t.variables is not None for t in run_wfs)
    assert any("parent" in t.settings for t in run_wfs)

    auths = [w.auth for w in webhooks]
    assert any(isinstance(a, OAuthAuth) for a in auths)
    presets = {a.preset for a in auths if isinstance(a, HmacAuth)}
    assert presets == {"github", "stripe", "standard_webhooks", None}

    policies = [p.on_error for p in program.pipelines.values()]
    assert any(p.dead_letter for p in policies)
    assert any(p.permanent == "skip" for p in policies)
    assert any(p.retry is not None for p in policies)
    assert any(s.origin == "file" for s in program.schemas.values())
    assert any(s.origin == "inline" for s in program.schemas.values())
    assert len(program.tests) >= 3


def lhp_blocks(page: Path) -> list[str]:
    return re.findall(r"^```lhp\n(.*?)^```", page.read_text(encoding="utf-8"), re.M | re.S)


def test_complete_examples_in_the_language_reference_lint_clean() -> None:
    blocks = lhp_blocks(ROOT / "docs" / "language.md")
    assert blocks
    for index, text in enumerate(blocks):
        result = load_texts({f"docs/language.md#example-{index}": text})
        assert [f"{d.span}: {d.code} {d.message}" for d in result.diagnostics] == []


def test_example_pipelines_are_in_canonical_layout() -> None:
    from lhpipe.commands.fmt import FileOutcome, format_text

    for path in sorted(PIPELINES.rglob("*.lhp")):
        outcome = format_text(path.read_text(encoding="utf-8"), str(path)).outcome
        assert outcome is FileOutcome.UNCHANGED, f"run `lhpipe fmt {path}`"

"""Hostile `.lhp` files: nesting far past any real program, files that are not regular, bytes
that are not UTF-8. Each gives a diagnostic or a named refusal, never a RecursionError
traceback or a hang (docs/language.md, "Limits"; docs/cli.md)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from lhpipe.check.files import NotARegularFile
from lhpipe.check.load import discover
from lhpipe.kinds import load, load_texts
from lhpipe.syntax import parse
from lhpipe.syntax._builder import MAX_NESTING

PIPELINE = 'pipeline p {{\n  from topic "t"\n{steps}\n  to log\n}}\n'


def _pipeline(steps: str) -> str:
    return PIPELINE.format(steps=steps)


# Each: the text, and the (line, col) where the nesting goes past the limit.
HOSTILE: dict[str, tuple[str, tuple[int, int]]] = {
    # 500 `and`s: `true and true` is level 1, the 101st `and` (column 14 + 100 * 9) level 101.
    "500 ands": (_pipeline("  where " + " and ".join(["true"] * 501)), (3, 14 + 100 * 9)),
    "a .a chain 100,000 long": (_pipeline("  where value" + ".a" * 100_000 + " == 1"), (3, 214)),
    "map< 20,000 deep": (
        "schema S {\n  f: " + "map<" * 20_000 + "string" + ">" * 20_000 + "\n}\n",
        None,
    ),
    "[T] 1,000 deep": ("schema S {\n  f: " + "[" * 1000 + "string" + "]" * 1000 + "\n}\n", None),
    "not 1,000 times": (_pipeline("  where " + "not " * 1000 + "true"), (3, 9 + 100 * 4)),
    "?? 1,000 times": (_pipeline("  let x = " + " ?? ".join(["value.a"] * 1001)), None),
    "- 1,000 times": (_pipeline("  let x = " + "- " * 1000 + "1"), None),
    "objects 1,000 deep": (
        'pipeline p {\n  from topic "t"\n  to log { value = '
        + "{ a = " * 1000
        + "1"
        + " }" * 1000
        + " }\n}\n",
        None,
    ),
    "lists 1,000 deep": (_pipeline("  let x = " + "[" * 1000 + "1" + "]" * 1000), None),
    "calls 1,000 deep": (_pipeline("  let x = " + "lower(" * 1000 + '"a"' + ")" * 1000), None),
    "index 1,000 long": (_pipeline("  let x = value" + "[0]" * 1000), None),
    "blocks 1,000 deep": (
        'connector c {\n  class = "x"\n  topic = "t"\n  config '
        + "{ a " * 1000
        + "{ b = 1 }"
        + " }" * 1000
        + "\n}\n",
        None,
    ),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_nesting_past_the_limit_is_one_lhp010_with_its_position(name: str) -> None:
    text, where = HOSTILE[name]
    result = load_texts({"deep.lhp": text})
    codes = [d.code for d in result.diagnostics]
    assert codes == ["LHP010"], result.diagnostics
    diagnostic = result.diagnostics[0]
    assert f"more than {MAX_NESTING} levels" in diagnostic.message
    if where is not None:
        assert (diagnostic.span.line, diagnostic.span.col) == where
    assert result.program is None


def test_a_deep_declaration_is_left_out_and_the_others_are_checked() -> None:
    deep = _pipeline("  where " + " and ".join(["true"] * 300))
    other = 'pipeline q {\n  from topic "t"\n  where value.x +\n  to log\n}\n'
    also = 'pipeline r {\n  from topic "t"\n  where nope\n  to log\n}\n'
    result = load_texts({"a.lhp": deep + other.replace("+\n", "\n") + also})
    assert [d.code for d in result.diagnostics] == ["LHP010", "LHP102"]


def test_the_deepest_accepted_nesting_goes_through_every_step() -> None:
    # Exactly at the limit: `or` 99 times over `value.x == 1`.
    condition = " or ".join(["value.x"] * 100)
    deep_list = "[" * MAX_NESTING + "1" + "]" * MAX_NESTING
    text = _pipeline(f"  where {condition}\n  let l = {deep_list}").replace(
        "  to log", "  to log { value = l }"
    )
    result = load_texts({"limit.lhp": text})
    assert [d.code for d in result.diagnostics] == []
    assert result.program is not None

    from lhpipe.core.evaluate import compile_expr
    from lhpipe.syntax.formatter import format_file

    pipeline = result.program.files[0].decls[0]
    where, let = pipeline.steps  # type: ignore[union-attr]
    assert compile_expr(where.condition, result.program)({"value": {"x": True}}) is True
    assert compile_expr(let.value, result.program)({"value": {}}) is not None
    parsed = parse(text, "limit.lhp")
    assert parsed.file is not None
    assert format_file(parsed.file, text)


def _chain(count: int, name: str = "S") -> str:
    schemas = "".join(f"schema {name}{i} {{\n  next: {name}{i + 1}?\n}}\n" for i in range(count))
    return schemas + f"schema {name}{count} {{\n  x: string\n}}\n"


def test_schemas_nested_1000_deep_through_each_other_are_one_lhp010() -> None:
    text = _chain(1000) + 'pipeline p {\n  from topic "t" { value = S0 }\n  to log\n}\n'
    result = load_texts({"chain.lhp": text})
    assert [d.code for d in result.diagnostics] == ["LHP010"]
    diagnostic = result.diagnostics[0]
    assert "schema `S0`" in diagnostic.message
    # S0 is level 1, its `?` level 2...: S49's `S50?` holds levels 100 and 101.
    assert (diagnostic.span.line, diagnostic.span.col) == (149, 9)


def test_schemas_at_the_limit_and_recursive_schemas_are_fine() -> None:
    # 49 schemas of a record and an optional each, and the last record: 99 levels.
    text = _chain(49) + "schema Tree {\n  children: [Tree]\n  parent: Tree?\n}\n"
    result = load_texts({"ok.lhp": text})
    assert result.diagnostics == ()
    assert result.program is not None
    assert result.program.schemas["S0"].avro is not None


def test_an_avsc_file_nested_too_deeply_is_lhp111(tmp_path: Path) -> None:
    (tmp_path / "deep.avsc").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    nested: object = "string"
    for _ in range(150):
        nested = {"type": "array", "items": nested}
    record = {"type": "record", "name": "R", "fields": [{"name": "f", "type": nested}]}
    (tmp_path / "arrays.avsc").write_text(json.dumps(record), encoding="utf-8")
    lhp = tmp_path / "s.lhp"
    lhp.write_text('schema A from "deep.avsc"\nschema B from "arrays.avsc"\n', encoding="utf-8")
    result = load([lhp])
    assert [(d.code, d.span.line) for d in result.diagnostics] == [("LHP111", 1), ("LHP111", 2)]
    assert all("nested too deeply" in d.message for d in result.diagnostics)


def test_a_deep_file_is_rejected_by_run_and_reload_with_the_diagnostic(tmp_path: Path) -> None:
    from lhpipe.engine.reload import ProgramRejected, load_program

    path = tmp_path / "deep.lhp"
    path.write_text(HOSTILE["500 ands"][0], encoding="utf-8")
    with pytest.raises(ProgramRejected) as rejected:
        load_program([str(path)])
    assert "LHP010" in rejected.value.report
    assert rejected.value.exit_code == 1


def _bounded(call: Callable[[], object], seconds: float = 10.0) -> object:
    """``call()`` on a thread, failing the test if it does not return in time."""
    outcome: list[object] = []

    def target() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"still waiting after {seconds} s")
    return outcome[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_given_by_path_is_refused_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.lhp"
    os.mkfifo(fifo)
    outcome = _bounded(lambda: load([fifo]))
    assert isinstance(outcome, NotARegularFile)
    assert outcome.filename == str(fifo)
    assert "a FIFO" in str(outcome.strerror)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_in_a_folder_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "a.lhp").write_text(_pipeline("  where true"), encoding="utf-8")
    os.mkfifo(tmp_path / "b.lhp")
    outcome = _bounded(lambda: discover([tmp_path]))
    assert isinstance(outcome, NotARegularFile)
    assert outcome.filename == str(tmp_path / "b.lhp")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_named_as_an_avsc_file_is_lhp111(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "s.avsc")
    lhp = tmp_path / "s.lhp"
    lhp.write_text('schema S from "s.avsc"\n', encoding="utf-8")
    outcome = _bounded(lambda: load([lhp]))
    assert [d.code for d in outcome.diagnostics] == ["LHP111"]  # type: ignore[attr-defined]
    assert "not a regular file" in outcome.diagnostics[0].message  # type: ignore[attr-defined]


def test_a_file_that_is_not_utf8_is_named_with_where(tmp_path: Path) -> None:
    path = tmp_path / "bad.lhp"
    path.write_bytes(
        b'pipeline p {\n  from topic "t"\n  where "\xc3\xa9\xff" == "a"\n  to log\n}\n'
    )
    with pytest.raises(UnicodeDecodeError) as raised:
        load([path])
    text = str(raised.value)
    assert f"{path}:3:11:" in text
    assert "byte 0xff at offset 41" in text


def test_the_checker_running_out_of_stack_is_a_diagnostic(monkeypatch: pytest.MonkeyPatch) -> None:
    # A backstop past the limits: whatever recursion is left becomes LHP010, not a traceback.
    import lhpipe.check.checker as checker

    def exhausted(*_: object) -> object:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(checker, "check", exhausted)
    result = load_texts({"x.lhp": _pipeline("  where true")})
    assert [d.code for d in result.diagnostics] == ["LHP010"]
    assert result.program is None

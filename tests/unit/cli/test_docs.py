"""The documentation pages that are derived from the code stay in step with it."""

from __future__ import annotations

import runpy
from pathlib import Path

from lhpipe.diagnostics import CODES

DOCS = Path(__file__).resolve().parents[3] / "docs"


def test_diagnostics_page_tables_match_the_registry() -> None:
    # Only the tables must match exactly: the examples follow the checker's wording, which
    # may be polished without a documentation change.
    generator = runpy.run_path(str(DOCS / "gen_diagnostics.py"))
    expected = generator["table_rows"](generator["render"]())
    page = (DOCS / "diagnostics.md").read_text(encoding="utf-8")
    assert generator["table_rows"](page) == expected, (
        "docs/diagnostics.md is stale: run .venv/bin/python docs/gen_diagnostics.py"
    )


def test_diagnostics_page_lists_every_code_with_its_summary() -> None:
    page = (DOCS / "diagnostics.md").read_text(encoding="utf-8")
    for code, info in CODES.items():
        row = f"| `{code}` | {info.severity.value} | {info.summary.replace('|', chr(92) + '|')} |"
        assert row in page, code

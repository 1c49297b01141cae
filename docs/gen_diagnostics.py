"""Writes docs/diagnostics.md from the code registry, `lhpipe.diagnostics.CODES`.

Run `.venv/bin/python docs/gen_diagnostics.py` after adding a code; a unit test fails while the
page and the registry disagree.
"""

from __future__ import annotations

from pathlib import Path

from lhpipe.diagnostics import CODES

PAGE = Path(__file__).with_name("diagnostics.md")

# The ranges of lhpipe/diagnostics.py, in order.
SECTIONS = (
    ("LHP0", "Syntax", "The text does not parse as `.lhp`."),
    ("LHP1", "Names and declarations", "Declarations, references between them, block keys."),
    ("LHP2", "Types and expressions", "Static types of fields, operators and functions."),
    ("LHP3", "Webhooks and auth", "Routes, methods, authentication."),
    ("LHP4", "Pipelines, sources, targets and ids", "LittleHorse ids and names, topics."),
    ("LHP5", "Tests", "`test` blocks."),
    ("LHP6", "Connectors and settings", "`connector` blocks and settings."),
    ("LHP9", "Online checks", "`lhpipe lint --online` (not built yet)."),
)

HEADER = """\
# Diagnostics

Every problem `lhpipe lint` finds (and `lhpipe run` before it starts anything) is one diagnostic:
a stable code, a severity, the file with the line and column where the offending text starts and
ends, a one-line message naming the offending thing, and often a hint.

```
pipelines/kyc.lhp:40:9: error[LHP202] unknown field `agee` of Applicant
  40 |   where value.agee >= 18
     |         ^~~~~~~~~~
  hint: did you mean `age`?
```

Errors make `lhpipe lint` exit 1; warnings do so only with `--strict`. Codes never change
meaning and are never reused; new ones are added at the end of their range.

This page is generated from the registry in `lhpipe/diagnostics.py` by `docs/gen_diagnostics.py`.
"""


def render() -> str:
    """The whole page."""
    parts = [HEADER]
    for prefix, title, blurb in SECTIONS:
        codes = sorted(code for code in CODES if code.startswith(prefix))
        if not codes:
            continue
        parts.append(f"\n## {title} ({prefix}xx)\n\n{blurb}\n\n")
        parts.append("| code | severity | meaning |\n| --- | --- | --- |\n")
        for code in codes:
            info = CODES[code]
            summary = info.summary.replace("|", "\\|")
            parts.append(f"| `{code}` | {info.severity.value} | {summary} |\n")
    return "".join(parts)


if __name__ == "__main__":
    PAGE.write_text(render(), encoding="utf-8")
    print(f"wrote {PAGE}")

"""Every diagnostic the parser and the checker can report is shown by at least one golden file
(tests/data/lint), so each one has been seen firing, at the right place, in a whole file."""

from __future__ import annotations

import re
from pathlib import Path

from lhpipe.diagnostics import CODES

LINT_DIR = Path(__file__).parents[2] / "data" / "lint"
_COMMENT = re.compile(r"(//|#)\s*expect\b.*$")
_CODE = re.compile(r"expect\s+(LHP\d{3})\b")

# Codes no offline golden can produce, with the reason. `lint --online` codes (LHP9xx) compare
# the files with a running LittleHorse and schema registry: tests/integration/test_online_lint.py
# shows them.
NOT_OFFLINE = {code for code in CODES if code.startswith("LHP9")}


def _expected_codes() -> set[str]:
    codes: set[str] = set()
    for path in LINT_DIR.glob("*.lhp"):
        for line in path.read_text(encoding="utf-8").splitlines():
            comment = _COMMENT.search(line)
            if comment is not None:
                codes.update(_CODE.findall(comment.group(0)))
    return codes


def test_every_offline_code_has_a_golden_file() -> None:
    missing = set(CODES) - NOT_OFFLINE - _expected_codes()
    assert not missing, f"no golden file in tests/data/lint expects {sorted(missing)}"


def test_goldens_expect_only_registered_offline_codes() -> None:
    assert _expected_codes() <= set(CODES) - NOT_OFFLINE


def test_there_are_enough_golden_files() -> None:
    assert len(list(LINT_DIR.glob("*.lhp"))) >= 60

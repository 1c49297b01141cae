"""`lhpipe stack up` refuses at once, with a clear message, when it cannot download.

These need no running services: they point the stack at an empty cache of their own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def stack_up(cache: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lhpipe.cli", "stack", "up"],
        env={**os.environ, "LHPIPE_CACHE_DIR": str(cache), "CI": "true", **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_up_without_maven_on_path_says_maven_is_missing(tmp_path: Path) -> None:
    done = stack_up(tmp_path, PATH="")

    assert done.returncode == 1
    assert "Maven (mvn) is not on PATH" in done.stderr
    assert not (tmp_path / "run" / "stack.json").exists()


def test_up_without_maven_central_says_it_is_unreachable(tmp_path: Path) -> None:
    done = stack_up(tmp_path, LHPIPE_MAVEN_CENTRAL_URL="http://127.0.0.1:9/maven2/")

    assert done.returncode == 1
    assert "Maven Central (http://127.0.0.1:9/maven2/) is not reachable" in done.stderr
    assert not any((tmp_path / "stack").glob("*/.lhpipe-complete"))

"""``lhpipe lint --online`` against the secure stack (docs/security.md): the same findings as
against the open one, and a refused credential gives one line naming the service and exit 2,
within seconds, never a traceback or a secret."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from engine_run import LHPIPE, unique, write_pipelines

from lhpipe.stack.certs import StackCerts
from lhpipe.stack.env import secure_settings

pytestmark = pytest.mark.integration

WRONG = "wrong-secret-55"


def lint(folder: Path, settings: dict[str, str]) -> tuple[int, str, float]:
    started = time.monotonic()
    done = subprocess.run(
        [LHPIPE, "lint", "--online", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", **settings},
        stdin=subprocess.DEVNULL,
    )
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


@pytest.mark.parametrize("kafka_auth", ["scram", "oauth"])
def test_lint_online_over_secured_services_finds_what_it_finds_on_open_ones(
    secure_stack: StackCerts, tmp_path: Path, kafka_auth: str
) -> None:
    missing = unique("no-such-wf")
    folder = write_pipelines(
        tmp_path,
        f"""
pipeline p {{
  from topic "{unique("never-made")}"
  run_wf "{missing}"
}}
""",
    )
    settings = secure_settings(secure_stack, kafka_auth)

    code, output, _ = lint(folder, settings)

    assert code == 1, output
    assert f"WfSpec `{missing}` does not exist in LittleHorse" in output
    assert "Traceback" not in output


@pytest.mark.parametrize(
    "setting",
    ["LHC_OAUTH_CLIENT_SECRET", "LHPIPE_REGISTRY_BEARER_AUTH_CLIENT_SECRET"],
)
def test_a_refused_secret_gives_one_line_and_exit_2_without_the_secret(
    secure_stack: StackCerts, tmp_path: Path, setting: str
) -> None:
    folder = write_pipelines(
        tmp_path,
        f"""
schema Remote from registry "{unique("subject")}"

pipeline p {{
  from topic "{unique("t")}" {{ value = Remote }}
  run_wf "{unique("wf")}"
}}
""",
    )
    settings = {**secure_settings(secure_stack), setting: WRONG}

    code, output, seconds = lint(folder, settings)

    assert code == 2, output
    assert "Traceback" not in output and WRONG not in output
    lines = [line for line in output.splitlines() if line.startswith("lhpipe lint: --online")]
    assert len(lines) == 1, output
    assert "refused" in lines[0] or "no OAuth token" in lines[0], lines[0]
    assert seconds < 60

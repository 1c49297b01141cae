"""`lhpipe graph` (and `lint`, which reads paths the same way) on a path it cannot read: exit 2
and one line naming the path, never a traceback, and never an empty graph drawn as if the
folder held no pipelines.

The commands run as a user runs them: the console script in a subprocess. File modes do not
bind root, and the suite runs as root in CI; there, the command runs under ``setpriv`` with
``CAP_DAC_OVERRIDE`` and ``CAP_DAC_READ_SEARCH`` taken out of its bounding set, so the kernel
refuses it a ``chmod 000`` file or folder exactly as it refuses any user (the uid stays 0, so the
venv and the work tree stay readable). A probe with ``cat`` first makes sure the modes do bind;
where they cannot be made to, the tests that need them are skipped, saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

LHPIPE = Path(sys.executable).with_name("lhpipe")
COMMANDS = ("graph", "lint")
PIPELINE = 'pipeline p {\n  from topic "t"\n  to log\n}\n'


def _unprivileged_prefix() -> list[str]:
    """The command prefix under which this process's file modes bind."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: file modes cannot be made to bind")
    return [setpriv, "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", "--"]


@pytest.fixture
def modes_bind(tmp_path: Path) -> Iterator[list[str]]:
    """The prefix to run a command under so that ``chmod 000`` keeps it out; skips where that
    cannot be had. Gives every mode back afterwards, so the folder can be cleaned up."""
    prefix = _unprivileged_prefix()
    probe = tmp_path / "probe"
    probe.write_text("x", encoding="utf-8")
    probe.chmod(0)
    done = subprocess.run([*prefix, "cat", str(probe)], capture_output=True, check=False)
    probe.unlink()
    if done.returncode == 0:
        pytest.skip("a chmod 000 file is still readable here: file modes do not bind")
    yield prefix
    for folder, folders, files in os.walk(tmp_path):
        for name in folders:
            Path(folder, name).chmod(0o755)
        for name in files:
            Path(folder, name).chmod(0o644)


def _run(prefix: list[str], command: str, path: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, str(LHPIPE), command, path],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )


def _assert_refused(done: subprocess.CompletedProcess[str], command: str, reason: str) -> None:
    assert "Traceback" not in done.stderr
    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"lhpipe {command}: {reason}\n")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_missing_path(command: str, tmp_path: Path) -> None:
    done = _run([], command, "nowhere.lhp", tmp_path)
    _assert_refused(done, command, "no such file or directory: nowhere.lhp")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_link_that_leads_nowhere(command: str, tmp_path: Path) -> None:
    (tmp_path / "dangling.lhp").symlink_to(tmp_path / "gone.lhp")
    done = _run([], command, "dangling.lhp", tmp_path)
    _assert_refused(done, command, "no such file or directory: dangling.lhp")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_file_without_read_permission(
    command: str, tmp_path: Path, modes_bind: list[str]
) -> None:
    secret = tmp_path / "secret.lhp"
    secret.write_text(PIPELINE, encoding="utf-8")
    secret.chmod(0)
    done = _run(modes_bind, command, "secret.lhp", tmp_path)
    _assert_refused(done, command, "Permission denied: secret.lhp")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_folder_without_read_permission(
    command: str, tmp_path: Path, modes_bind: list[str]
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "a.lhp").write_text(PIPELINE, encoding="utf-8")
    locked.chmod(0)
    done = _run(modes_bind, command, "locked", tmp_path)
    _assert_refused(done, command, "Permission denied: locked")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_folder_under_the_given_one_without_read_permission(
    command: str, tmp_path: Path, modes_bind: list[str]
) -> None:
    pipelines = tmp_path / "pipelines"
    (pipelines / "more").mkdir(parents=True)
    (pipelines / "a.lhp").write_text(PIPELINE, encoding="utf-8")
    (pipelines / "more" / "b.lhp").write_text(PIPELINE.replace("p {", "q {"), encoding="utf-8")
    (pipelines / "more").chmod(0)
    done = _run(modes_bind, command, "pipelines", tmp_path)
    _assert_refused(done, command, "Permission denied: pipelines/more")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_folder_that_can_be_listed_but_not_entered(
    command: str, tmp_path: Path, modes_bind: list[str]
) -> None:
    listed = tmp_path / "listed"
    listed.mkdir()
    (listed / "a.lhp").write_text(PIPELINE, encoding="utf-8")
    listed.chmod(0o444)
    done = _run(modes_bind, command, "listed", tmp_path)
    _assert_refused(done, command, "Permission denied: listed/a.lhp")

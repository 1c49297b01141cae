"""Starting the services as background processes, recording their PIDs, and stopping them.

Each service runs in its own session (process group), so it outlives `lhpipe stack up` and a
terminal's Ctrl-C does not reach it; `down` signals that group, because a launcher script
(Keycloak's `kc.sh`) may stand between the recorded PID and the JVM. A PID is only trusted while
the process it names still has the start time recorded with it: a PID reused by an unrelated
process after a reboot is never signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

STATE_FILE = "stack.json"
LOG_TAIL_LINES = 40


@dataclass(frozen=True)
class ServiceProcess:
    """A started service: its PID, the PID's start time (in clock ticks) and its log."""

    service: str
    pid: int
    start_ticks: int
    log: str

    @property
    def log_path(self) -> Path:
        return Path(self.log)


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """The (state, start time) of a live PID from /proc, or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def is_running(process: ServiceProcess) -> bool:
    """True while the recorded process exists, is not a zombie and is the one we started."""
    stat = _proc_stat(process.pid)
    return stat is not None and stat[0] != "Z" and stat[1] == process.start_ticks


def _reap(pid: int) -> None:
    """Collect the exit status of a child started by this process, so it leaves no zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def launch(
    service: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path, log: Path
) -> ServiceProcess:
    """Start `argv` detached, output appended to `log`, and return its record."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        child = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stat = _proc_stat(child.pid)
    return ServiceProcess(service, child.pid, stat[1] if stat else -1, str(log))


def stop(process: ServiceProcess, grace_seconds: float) -> str:
    """TERM the service's process group, wait up to `grace_seconds`, then KILL it."""
    if not is_running(process):
        _reap(process.pid)
        return "was not running"
    started = time.monotonic()
    _signal_group(process.pid, signal.SIGTERM)
    while time.monotonic() - started < grace_seconds:
        _reap(process.pid)
        if not is_running(process):
            return f"stopped in {time.monotonic() - started:.1f} s"
        time.sleep(0.2)
    _signal_group(process.pid, signal.SIGKILL)
    while is_running(process) and time.monotonic() - started < grace_seconds + 10:
        _reap(process.pid)
        time.sleep(0.1)
    return f"killed after {grace_seconds:.0f} s"


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def log_tail(process: ServiceProcess, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of the service's log, for failure messages."""
    try:
        text = process.log_path.read_text(errors="replace")
    except OSError:
        return f"(no log at {process.log})"
    return "\n".join(text.splitlines()[-lines:])


def rss_kib(process: ServiceProcess) -> int:
    """Resident memory of the service: its process group's JVMs and launcher scripts together."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != process.pid:
                continue
            status = (entry / "status").read_text()
        except (OSError, ProcessLookupError):
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def read_state(run_dir: Path) -> dict[str, ServiceProcess]:
    """The processes the last `up` recorded, by service name (empty if none)."""
    try:
        raw = json.loads((run_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {name: ServiceProcess(**fields) for name, fields in raw.get("services", {}).items()}


def write_state(run_dir: Path, processes: Mapping[str, ServiceProcess]) -> None:
    """Record the started processes; written after every start so a failed `up` can be undone."""
    run_dir.mkdir(parents=True, exist_ok=True)
    target = run_dir / STATE_FILE
    scratch = target.with_suffix(".tmp")
    scratch.write_text(json.dumps({"services": {n: asdict(p) for n, p in processes.items()}}))
    scratch.replace(target)


def clear_state(run_dir: Path) -> None:
    (run_dir / STATE_FILE).unlink(missing_ok=True)

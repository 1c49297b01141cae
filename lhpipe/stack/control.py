"""`up`, `down` and `status` of the local stack, for the CLI and the test fixtures alike.

`up` is idempotent: when every requested service it recorded is still running and ready it
returns at once; when a recorded stack is only partly alive it stops it and starts afresh, with
new data directories. Kafka starts first; the others start together once it answers, since
LittleHorse needs Kafka and Keycloak's start-up is the slowest.

`up(secure=True)` (``lhpipe stack up --secure``, docs/security.md) starts the same services with
their secured listeners beside the open ones, after making the local CA and certificates
(:mod:`lhpipe.stack.certs`). Keycloak then starts first: Kafka's token validator reads the
realm's keys when the broker starts. A running open stack is stopped and started again secured;
a running secure stack also serves every open use.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from lhpipe.stack.addresses import StackAddresses
from lhpipe.stack.certs import StackCerts, certs_in, ensure_certs
from lhpipe.stack.errors import StackError
from lhpipe.stack.java import Jdk, require_jdk
from lhpipe.stack.paths import downloads_dir, run_dir
from lhpipe.stack.pins import SECURE_SERVICES, SERVICE_ORDER, Pins, load_pins
from lhpipe.stack.process import (
    ServiceProcess,
    clear_state,
    is_running,
    launch,
    log_tail,
    read_state,
    rss_kib,
    stop,
    write_state,
)
from lhpipe.stack.resolve import cached_home, check_free_disk, check_maven_available, resolve
from lhpipe.stack.services import SERVICES, describe_ready, port_open

POLL_SECONDS = 0.5


@dataclass(frozen=True)
class ServiceStatus:
    """What `status` reports for one recorded service."""

    name: str
    pid: int
    running: bool
    ready: bool
    rss_mib: float


class _NotReady(Exception):
    def __init__(self, name: str, reason: str, process: ServiceProcess) -> None:
        super().__init__(f"{name} {reason}")
        self.name = name
        self.reason = reason
        self.process = process


class _Abandoned(Exception):
    """Waiting stopped because another service of the same group failed."""


def _ordered(names: Sequence[str]) -> list[str]:
    unknown = sorted(set(names) - set(SERVICE_ORDER))
    if unknown:
        raise StackError(f"unknown service(s): {', '.join(unknown)}")
    return [name for name in SERVICE_ORDER if name in names]


def _check_ports_free(names: list[str]) -> None:
    for name in names:
        for port in SERVICES[name].ports:
            if port_open(port):
                raise StackError(
                    f"port {port} ({name}) is already in use by a process this stack did not "
                    "start; stop it (for example `ss -ltnp | grep :" + str(port) + "`) and retry."
                )


def _ensure_downloads(pins: Pins, names: list[str]) -> dict[str, Path]:
    homes: dict[str, Path] = {}
    missing = []
    for name in names:
        home = cached_home(pins.services[SERVICES[name].pin])
        if home is None:
            missing.append(name)
        else:
            homes[name] = home
    if not missing:
        return homes
    maven_jdk = require_jdk(17, "Maven")
    check_free_disk(downloads_dir())
    mvn = check_maven_available(maven_jdk)
    started = time.monotonic()
    for name in missing:
        homes[name] = resolve(pins.services[SERVICES[name].pin], pins, mvn, maven_jdk)
    print(f"downloads done in {time.monotonic() - started:.1f} s", flush=True)
    return homes


#: Present in the run directory while the recorded stack runs secured.
SECURE_MARKER = "secure-stack"


def is_secure(root: Path | None = None) -> bool:
    """The recorded stack was started with its secured listeners."""
    return ((root or run_dir()) / SECURE_MARKER).is_file()


def _secure_certs(root: Path) -> StackCerts | None:
    return certs_in(root) if is_secure(root) else None


def _start(
    name: str, home: Path, jdk: Jdk, root: Path, secure: StackCerts | None = None
) -> ServiceProcess:
    workdir = root / name
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    spec = SERVICES[name].launch(home, jdk, workdir, secure)
    env = {**_base_env(), **spec.env}
    return launch(name, spec.argv, env, spec.cwd, workdir / f"{name}.log")


def _base_env() -> dict[str, str]:
    # The services inherit the environment minus Java settings meant for other programs.
    return {k: v for k, v in os.environ.items() if k not in ("JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS")}


def _await_ready(
    name: str, process: ServiceProcess, stack: StackAddresses, abort: threading.Event
) -> float:
    service = SERVICES[name]
    started = time.monotonic()
    deadline = started + service.ready_timeout_seconds
    while True:
        if abort.is_set():
            raise _Abandoned(name)
        if not is_running(process):
            raise _NotReady(name, "exited before becoming ready", process)
        if service.is_ready(stack):
            break
        if time.monotonic() > deadline:
            raise _NotReady(
                name, f"did not become ready within {service.ready_timeout_seconds:.0f} s", process
            )
        time.sleep(POLL_SECONDS)
    try:
        service.after_ready(stack)
    except StackError as exc:
        raise _NotReady(name, str(exc), process) from exc
    elapsed = time.monotonic() - started
    print(f"{name} ready in {elapsed:.1f} s: {describe_ready(stack, name)}", flush=True)
    return elapsed


def _report(failures: list[_NotReady]) -> StackError:
    parts = []
    for failure in failures:
        parts.append(
            f"{failure.name} {failure.reason}. Last lines of {failure.process.log}:\n"
            f"{log_tail(failure.process)}"
        )
    names = ", ".join(f.name for f in failures)
    return StackError("\n\n".join([*parts, f"the stack did not come up ({names})"]))


def up(names: Sequence[str], *, secure: bool = False) -> StackAddresses:
    """Bring the named services up (resolving them first if needed) and return their addresses;
    ``secure``: with their secured listeners too (the module docstring).

    Services already recorded, running and ready are kept; only the missing ones start.
    """
    wanted = _ordered([*names, *SECURE_SERVICES] if secure else names)
    stack = StackAddresses()
    root = run_dir()
    recorded = read_state(root)
    healthy = {
        name: process
        for name, process in recorded.items()
        if is_running(process) and SERVICES[name].is_ready(stack)
    }
    if len(healthy) < len(recorded):
        print("a previous stack is not fully up; stopping it first", flush=True)
        down()
        healthy = {}
    elif secure and healthy and not is_secure(root):
        print("the running stack is not secured; stopping it first", flush=True)
        down()
        healthy = {}
    certs: StackCerts | None = None
    if secure or is_secure(root):
        certs = ensure_certs(root)
        print(f"certificate authority of the secure stack: {certs.ca}", flush=True)
    missing = [name for name in wanted if name not in healthy]
    if not missing:
        print("the stack is already up (`lhpipe stack down` stops it)", flush=True)
        return stack
    pins = load_pins()
    jdks = {name: require_jdk(pins.services[SERVICES[name].pin].java, name) for name in missing}
    homes = _ensure_downloads(pins, missing)
    _check_ports_free(missing)

    started_at = time.monotonic()
    processes = dict(healthy)
    if certs is not None:
        (root / SECURE_MARKER).write_text("")
    # Kafka first: the others (LittleHorse, Connect) need it; then the rest together. Secured,
    # Keycloak before Kafka: the broker's token validator fetches the realm's keys at start.
    first = ["keycloak"] if certs is not None and "keycloak" in missing else []
    groups = (
        first,
        [n for n in missing if n == "kafka"],
        [n for n in missing if n not in first and n != "kafka"],
    )
    try:
        for group in groups:
            if group:
                _start_group(group, homes, jdks, processes, stack, root, certs)
    except BaseException:
        print("stopping what was started", flush=True)
        _stop_services(processes, [name for name in processes if name not in healthy])
        write_state(root, healthy)
        if not healthy:
            (root / SECURE_MARKER).unlink(missing_ok=True)
        raise
    print(
        f"stack up in {time.monotonic() - started_at:.1f} s (logs under {root}; "
        "`lhpipe stack down` stops it)",
        flush=True,
    )
    return stack


def _start_group(
    group: list[str],
    homes: dict[str, Path],
    jdks: dict[str, Jdk],
    processes: dict[str, ServiceProcess],
    stack: StackAddresses,
    root: Path,
    certs: StackCerts | None,
) -> None:
    """Start `group` at once, recording each PID, and wait until all are ready."""
    for name in group:
        processes[name] = _start(name, homes[name], jdks[name], root, certs)
        write_state(root, processes)
    abort = threading.Event()
    with ThreadPoolExecutor(max_workers=len(group)) as pool:
        futures = [pool.submit(_await_ready, n, processes[n], stack, abort) for n in group]
        # The first failure ends the wait for the others: no point in waiting on them.
        for future in as_completed(futures):
            if future.exception() is not None:
                abort.set()
    errors = [exc for f in futures if (exc := f.exception()) is not None]
    failures = [exc for exc in errors if isinstance(exc, _NotReady)]
    unexpected = [exc for exc in errors if not isinstance(exc, _NotReady | _Abandoned)]
    if unexpected:
        raise unexpected[0]
    if failures:
        raise _report(failures)


def _stop_services(processes: dict[str, ServiceProcess], names: Sequence[str]) -> list[str]:
    """Stop the named services, last started first; one line per service."""
    lines = []
    for name in reversed(SERVICE_ORDER):
        process = processes.get(name)
        if process is None or name not in names:
            continue
        outcome = stop(process, SERVICES[name].stop_grace_seconds)
        lines.append(f"{name} (pid {process.pid}) {outcome}")
        print(lines[-1], flush=True)
    for name in names:
        busy = [port for port in SERVICES[name].ports if port_open(port)]
        if busy:
            print(f"warning: port(s) {busy} of {name} still answer after stopping it", flush=True)
    return lines


def down() -> list[str]:
    """Stop every recorded service, last started first; returns one line per service."""
    root = run_dir()
    recorded = read_state(root)
    lines = _stop_services(recorded, list(recorded))
    clear_state(root)
    (root / SECURE_MARKER).unlink(missing_ok=True)
    return lines


def status() -> list[ServiceStatus]:
    """The recorded services, whether each runs and answers its readiness check, and its RSS."""
    stack = StackAddresses()
    result = []
    for name, process in read_state(run_dir()).items():
        running = is_running(process)
        result.append(
            ServiceStatus(
                name=name,
                pid=process.pid,
                running=running,
                ready=running and SERVICES[name].is_ready(stack),
                rss_mib=rss_kib(process) / 1024 if running else 0.0,
            )
        )
    return result


def stop_service(name: str) -> str:
    """Stop one recorded service and drop it from the record, leaving the others running
    (for outage tests). A later `up` starts it afresh; :func:`start_service` restarts it with
    its data."""
    root = run_dir()
    recorded = read_state(root)
    if name not in SERVICES:
        raise StackError(f"unknown service: {name}")
    process = recorded.pop(name, None)
    if process is None:
        return f"{name} is not recorded as running"
    outcome = stop(process, SERVICES[name].stop_grace_seconds)
    write_state(root, recorded)
    return f"{name} (pid {process.pid}) {outcome}"


def start_service(name: str) -> str:
    """Start one service again in its existing work directory (its data kept, as a restart
    after a crash would), wait until it is ready, and record it. Kafka is not restartable this
    way: its launch formats fresh storage."""
    if name not in SERVICES:
        raise StackError(f"unknown service: {name}")
    if name == "kafka":
        raise StackError("kafka cannot be restarted alone; use `lhpipe stack up`")
    root = run_dir()
    recorded = read_state(root)
    current = recorded.get(name)
    if current is not None and is_running(current):
        return f"{name} is already running (pid {current.pid})"
    pins = load_pins()
    jdk = require_jdk(pins.services[SERVICES[name].pin].java, name)
    home = _ensure_downloads(pins, [name])[name]
    _check_ports_free([name])
    workdir = root / name
    workdir.mkdir(parents=True, exist_ok=True)
    spec = SERVICES[name].launch(home, jdk, workdir, _secure_certs(root))
    process = launch(
        name, spec.argv, {**_base_env(), **spec.env}, spec.cwd, workdir / f"{name}.log"
    )
    recorded[name] = process
    write_state(root, recorded)
    try:
        elapsed = _await_ready(name, process, StackAddresses(), threading.Event())
    except _NotReady as exc:
        raise _report([exc]) from exc
    return f"{name} (pid {process.pid}) ready in {elapsed:.1f} s"

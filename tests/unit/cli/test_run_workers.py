"""`lhpipe run --workers N`: the flag, the worker's identity (environment, `/readyz`, status
page, log lines), the shared port, the parent's restart policy, and real workers on webhooks
that need no service (direct mode, `to log`): connections spread over both, a killed worker
restarted, SIGTERM draining them all."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from free_ports import free_port
from waiting import wait_for

import lhpipe.commands.run
import lhpipe.commands.workers
from lhpipe.cli import main
from lhpipe.commands.workers import WorkerParent, exit_status, run_workers, worker_command
from lhpipe.core.logs import JsonLineFormatter
from lhpipe.core.worker import Worker, WorkerEnvironmentError, this_worker
from lhpipe.gateway.server import EngineApp, listening_socket, render_status_page

LHPIPE = str(Path(sys.executable).with_name("lhpipe"))

WEBHOOK = (
    'webhook hook_a {\n  path = "/hooks/a"\n  auth = none\n}\n\n'
    "pipeline hook_a_run {\n  from webhook hook_a\n  to log\n}\n"
)


# --- the flag ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_workers_below_one_or_not_a_number_is_a_usage_error(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "here/", "--workers", value]) == 2
    assert "argument --workers: must be a whole number of at least 1" in capsys.readouterr().err


def test_workers_need_a_fixed_port(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "here/", "--workers", "2", "--port", "0"]) == 2
    assert "--workers: needs a fixed --port" in capsys.readouterr().err


def test_one_worker_is_the_plain_run_and_more_start_the_parent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine: list[tuple[list[str], dict[str, object]]] = []
    parent: list[tuple[list[str], dict[str, object]]] = []

    def fake_run_engine(paths: list[str], **options: object) -> int:
        engine.append((list(paths), options))
        return 0

    def fake_run_workers(paths: list[str], **options: object) -> int:
        parent.append((list(paths), options))
        return 0

    monkeypatch.setattr(lhpipe.commands.run, "run_engine", fake_run_engine)
    monkeypatch.setattr(lhpipe.commands.workers, "run_workers", fake_run_workers)
    assert main(["run", "here/", "--workers", "1", "--port", "9000"]) == 0
    assert main(["run", "here/", "--workers", "3", "--port", "9000", "--watch"]) == 0
    assert engine == [(["here/"], {"port": 9000, "watch": False})]
    assert parent == [(["here/"], {"port": 9000, "watch": True, "workers": 3})]


def test_a_worker_runs_lhpipe_run_without_workers() -> None:
    command = worker_command(["a/", "b.lhp"], port=9000, watch=True)
    assert command[:4] == [sys.executable, "-m", "lhpipe", "run"]
    assert command[4:] == ["a/", "b.lhp", "--port", "9000", "--watch"]
    assert "--workers" not in worker_command(["a/"], port=9000, watch=False)


def test_errors_in_the_program_exit_1_before_any_worker_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "bad.lhp"
    source.write_text('pipeline p {\n  from topic "t" { value = json }\n  to log\n  wher\n}\n')

    def no_worker(self: WorkerParent) -> int:
        raise AssertionError("a worker was started")

    monkeypatch.setattr(WorkerParent, "run", no_worker)
    err = io.StringIO()
    assert run_workers([str(source)], port=9000, workers=2, stderr=err) == 1
    assert err.getvalue().startswith(f"{source}:4:")


# --- which worker this is ---------------------------------------------------------------------


def test_a_process_without_the_variables_is_worker_0_of_1() -> None:
    assert this_worker({}) == Worker(0, 1, os.getpid())
    assert not this_worker({}).one_of_many


def test_the_parent_names_each_worker_in_the_environment() -> None:
    worker = this_worker({"LHPIPE_WORKER_INDEX": "2", "LHPIPE_WORKERS": "4"})
    assert worker == Worker(2, 4, os.getpid())
    assert worker.one_of_many
    assert worker.to_json() == {"index": 2, "count": 4, "pid": os.getpid()}
    assert worker.describe() == f"worker 2 of 4 (pid {os.getpid()})"


@pytest.mark.parametrize(
    "environ",
    [
        {"LHPIPE_WORKER_INDEX": "4", "LHPIPE_WORKERS": "4"},
        {"LHPIPE_WORKER_INDEX": "-1", "LHPIPE_WORKERS": "4"},
        {"LHPIPE_WORKER_INDEX": "0", "LHPIPE_WORKERS": "0"},
        {"LHPIPE_WORKER_INDEX": "one", "LHPIPE_WORKERS": "2"},
        {"LHPIPE_WORKER_INDEX": "1"},
    ],
)
def test_variables_that_name_no_worker_are_refused(environ: dict[str, str]) -> None:
    with pytest.raises(WorkerEnvironmentError):
        this_worker(environ)


def test_lhpipe_run_refuses_a_bad_worker_environment_as_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "a.lhp"
    source.write_text(WEBHOOK)
    monkeypatch.setenv("LHPIPE_WORKERS", "2")
    monkeypatch.setenv("LHPIPE_WORKER_INDEX", "7")
    err = io.StringIO()
    assert lhpipe.commands.run.run_engine([str(source)], stderr=err) == 2
    assert "LHPIPE_WORKER_INDEX=7" in err.getvalue()


def test_readyz_and_the_status_page_name_the_worker() -> None:
    worker = Worker(1, 3, 4242)
    app = EngineApp(lambda: [], worker=worker)

    async def get(path: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lhpipe") as client:
            return await client.get(path)

    body = asyncio.run(get("/readyz")).json()
    assert body["worker"] == {"index": 1, "count": 3, "pid": 4242}
    assert set(body) == {"ready", "starting", "not_ready", "pipelines", "worker"}
    assert "worker 1 of 3 (pid 4242)" in asyncio.run(get("/")).text
    assert "worker" not in render_status_page([], {})  # no worker given: no line


def test_a_worker_of_several_tags_its_json_log_lines() -> None:
    record = logging.LogRecord("lhpipe.run", logging.INFO, __file__, 1, "hello", None, None)
    tagged = json.loads(JsonLineFormatter(worker=3).format(record))
    assert tagged["worker"] == 3 and tagged["message"] == "hello"
    assert "worker" not in json.loads(JsonLineFormatter().format(record))


# --- the shared port --------------------------------------------------------------------------


def test_workers_share_a_port_and_a_plain_process_does_not() -> None:
    port = free_port()
    first = listening_socket("127.0.0.1", port, reuse_port=True)
    try:
        second = listening_socket("127.0.0.1", port, reuse_port=True)
        second.close()
        # A plain `lhpipe run` on a port the workers hold: "address in use".
        with pytest.raises(OSError) as refused:
            listening_socket("127.0.0.1", port).close()
        assert refused.value.errno == errno.EADDRINUSE
    finally:
        first.close()


def test_two_plain_listeners_on_one_port_still_fail() -> None:
    port = free_port()
    first = listening_socket("127.0.0.1", port)
    try:
        with pytest.raises(OSError) as refused:
            listening_socket("127.0.0.1", port).close()
        assert refused.value.errno == errno.EADDRINUSE
        # Nor does a worker get into a port a plain process holds.
        with pytest.raises(OSError):
            listening_socket("127.0.0.1", port, reuse_port=True).close()
    finally:
        first.close()


# --- the parent, with stand-in workers --------------------------------------------------------

# A stand-in worker: notes its start, then does what the test's `behaviour-<index>` file says
# (`serve`, the default: wait for SIGTERM and exit 0; `exit N`: once every other worker is up,
# exit N; `crash-once`: the first process of the index kills itself with SIGKILL, later ones
# serve).
STAND_IN = """
import os, signal, sys, time
from pathlib import Path
folder = Path(sys.argv[1])
index = int(os.environ["LHPIPE_WORKER_INDEX"])
count = int(os.environ["LHPIPE_WORKERS"])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
runs = len(list(folder.glob(f"start-{index}-*")))
(folder / f"start-{index}-{os.getpid()}").write_text(str(count))
wanted = folder / f"behaviour-{index}"
behaviour = wanted.read_text() if wanted.exists() else "serve"
if behaviour.startswith("exit "):
    others = [i for i in range(count) if i != index]
    while not all(list(folder.glob(f"up-{i}-*")) for i in others):
        time.sleep(0.01)
    sys.exit(int(behaviour.split()[1]))
if behaviour == "crash-once" and runs == 0:
    os.kill(os.getpid(), signal.SIGKILL)
(folder / f"up-{index}-{os.getpid()}").touch()
time.sleep(60)
sys.exit(5)
"""


def starts(folder: Path, index: int) -> list[Path]:
    return sorted(folder.glob(f"start-{index}-*"))


@pytest.fixture
def fast_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lhpipe.commands.workers, "FIRST_BACKOFF_SECONDS", 0.05)
    monkeypatch.setattr(lhpipe.commands.workers, "MAX_BACKOFF_SECONDS", 0.1)


def stand_in_parent(folder: Path, count: int) -> WorkerParent:
    script = folder / "stand_in.py"
    script.write_text(STAND_IN)
    return WorkerParent([sys.executable, str(script), str(folder)], count)


def test_the_parent_restarts_a_crashed_worker_and_stops_all_on_sigterm(
    tmp_path: Path, fast_restarts: None
) -> None:
    (tmp_path / "behaviour-1").write_text("crash-once")
    parent = stand_in_parent(tmp_path, 2)

    def stop_when_both_are_up() -> None:
        wait_for(lambda: len(list(tmp_path.glob("up-*"))) == 2, "both workers up")
        os.kill(os.getpid(), signal.SIGTERM)

    stopper = threading.Thread(target=stop_when_both_are_up, daemon=True)
    stopper.start()
    assert parent.run() == 0
    assert len(starts(tmp_path, 0)) == 1
    assert len(starts(tmp_path, 1)) == 2  # killed once, restarted once
    assert {p.read_text() for p in tmp_path.glob("start-*")} == {"2"}


def test_a_crash_loop_stops_every_worker_after_the_bounded_restarts(
    tmp_path: Path, fast_restarts: None
) -> None:
    (tmp_path / "behaviour-1").write_text("exit 3")
    parent = stand_in_parent(tmp_path, 2)
    assert parent.run() == 3
    assert len(starts(tmp_path, 1)) == lhpipe.commands.workers.MAX_RESTARTS + 1
    assert len(starts(tmp_path, 0)) == 1  # stopped with SIGTERM, exit 0


def test_a_worker_that_exits_2_is_not_restarted(tmp_path: Path, fast_restarts: None) -> None:
    (tmp_path / "behaviour-0").write_text("exit 2")
    parent = stand_in_parent(tmp_path, 2)
    assert parent.run() == 2
    assert len(starts(tmp_path, 0)) == 1


def test_exit_status_reports_a_signal_as_a_shell_does() -> None:
    assert exit_status(0) == 0
    assert exit_status(1) == 1
    assert exit_status(-signal.SIGKILL) == 137


# --- real workers -----------------------------------------------------------------------------


class Workers:
    """`lhpipe run --workers N` as a real process, its log in a file."""

    def __init__(self, folder: Path, count: int, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log_path = folder.parent / "lhpipe.log"
        self._log = self.log_path.open("wb")
        self.pids: set[int] = set()  # every worker pid seen
        self.process = subprocess.Popen(
            [LHPIPE, "run", str(folder), "--workers", str(count), "--port", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1"},
        )

    def readyz(self) -> dict[str, Any] | None:
        """`/readyz` on a new connection (the kernel picks the worker per connection)."""
        try:
            response = httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=10)
        except httpx.TransportError:
            return None
        body: dict[str, Any] = response.json()
        self.pids.add(body["worker"]["pid"])
        return body

    def ready_workers(self, requests: int) -> dict[int, int]:
        """index -> pid of the ready workers that answered ``requests`` new connections."""
        seen: dict[int, int] = {}
        for _ in range(requests):
            body = self.readyz()
            if body is not None and body["ready"]:
                seen[body["worker"]["index"]] = body["worker"]["pid"]
        return seen

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()  # the workers get SIGTERM from the kernel (PR_SET_PDEATHSIG)
            self.process.wait(30)
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._log.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "a.lhp").write_text(WEBHOOK, encoding="utf-8")
    running = Workers(folder, 2)
    try:
        wait_for(lambda: len(running.ready_workers(10)) == 2, "both workers to be ready", 60)
        yield running
    finally:
        running.close()


def test_two_workers_share_the_port_and_sigterm_drains_them_all(workers: Workers) -> None:
    seen = workers.ready_workers(50)
    assert sorted(seen) == [0, 1] and len(set(seen.values())) == 2
    assert workers.process.pid not in seen.values()  # the parent serves nothing
    body = workers.readyz()
    assert body is not None and body["worker"]["count"] == 2
    assert body["pipelines"]["hook_a_run"]["ready"] is True  # the fields of one process too
    assert httpx.post(f"http://127.0.0.1:{workers.port}/hooks/a", json={"x": 1}).status_code == 202
    page = httpx.get(f"http://127.0.0.1:{workers.port}/").text
    assert any(f"worker {i} of 2 (pid {pid})" in page for i, pid in seen.items())

    workers.process.send_signal(signal.SIGTERM)
    assert workers.process.wait(45) == 0
    assert not any(alive(pid) for pid in seen.values())
    lines = [json.loads(line) for line in workers.log().splitlines() if line.startswith("{")]
    stopped = [
        line["worker"] for line in lines if line.get("message") == "stopped cleanly"
    ]  # each worker drained and said so, tagged with its index
    assert sorted(stopped) == [0, 1]
    # The program's warning (auth = none) is printed once, by worker 0.
    assert workers.log().count("warning[LHP302]") == 1


def test_a_killed_worker_is_restarted_and_the_others_keep_serving(workers: Workers) -> None:
    before = workers.ready_workers(20)
    os.kill(before[0], signal.SIGKILL)
    after = wait_for(
        lambda: (seen := workers.ready_workers(10)).get(0) not in (None, before[0]) and seen,
        "worker 0 to be restarted",
        60,
    )
    assert after[0] != before[0]
    assert alive(before[1])  # the other worker was left alone
    assert f"worker 0 (pid {before[0]}) stopped unexpectedly with signal 9" in workers.log()
    workers.process.send_signal(signal.SIGTERM)
    assert workers.process.wait(45) == 0


def test_a_signal_to_every_process_at_once_is_one_stop(workers: Workers) -> None:
    # systemd's KillMode=control-group: the parent and each worker get SIGTERM together, and
    # the parent forwards its own: the workers must drain, not abandon the drain.
    seen = workers.ready_workers(20)
    for pid in (workers.process.pid, *seen.values()):
        os.kill(pid, signal.SIGTERM)
    assert workers.process.wait(45) == 0
    log = workers.log()
    # A worker that finished its drain before the parent's copy arrived never sees it: how
    # many say so depends on timing; none may abandon its drain.
    assert "abandoning the drain" not in log, log
    assert log.count("the same stop delivered twice") <= 2, log


def test_a_port_held_by_a_plain_process_stops_the_workers_with_exit_2(tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "a.lhp").write_text(WEBHOOK, encoding="utf-8")
    port = free_port()
    holder = socket.socket()
    holder.bind(("0.0.0.0", port))
    holder.listen()
    running = Workers(folder, 2, port=port)
    try:
        assert running.process.wait(60) == 2
        assert "cannot listen on port" in running.log()
    finally:
        running.close()
        holder.close()

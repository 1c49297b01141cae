"""`lhpipe run` as a real process: a `to http` URL with a password and a key shows redacted in
/metrics, /readyz, the status page and the log lines (issue 12, item 3), and `--host 127.0.0.1`
binds loopback only. No service is needed: a direct-mode webhook and a closed local port."""

from __future__ import annotations

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

LHPIPE = str(Path(sys.executable).with_name("lhpipe"))
PASSWORD = "PW5ecretXyz"
KEY = "K3ysecretXyz"


def closed_port() -> int:
    """A local port nothing listens on (bound and released: connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Engine:
    def __init__(self, folder: Path, *args: str) -> None:
        self.port = free_port()
        self.log_path = folder.parent / "lhpipe.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [LHPIPE, "run", str(folder), "--port", str(self.port), *args],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1"},
        )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

    def readyz(self) -> dict[str, Any] | None:
        try:
            body: dict[str, Any] = self.http.get("/readyz").json()
        except httpx.TransportError:
            return None
        return body

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)
        finally:
            self.http.close()
            self._log.close()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    url = f"http://crm:{PASSWORD}@127.0.0.1:{closed_port()}/ok?api_key={KEY}&page=2"
    (folder / "a.lhp").write_text(
        'webhook hook {\n  path = "/hooks/a"\n  auth = none\n}\n\n'
        f'pipeline hook_run {{\n  from webhook hook\n  to http "{url}"\n}}\n',
        encoding="utf-8",
    )
    running = Engine(folder, "--host", "127.0.0.1")
    try:
        wait_for(lambda: (running.readyz() or {}).get("ready"), "lhpipe to be ready")
        yield running
    finally:
        running.close()


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the sockets listening on ``port`` (from /proc/net/tcp*)."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if int(hex_port, 16) == port and fields[3] == "0A":  # LISTEN
                assert len(address) == width
                found.add(address)
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux's /proc/net/tcp")
def test_host_binds_loopback_only_and_the_urls_credentials_are_shown_nowhere(
    engine: Engine,
) -> None:
    # --host 127.0.0.1: one listening socket, on 127.0.0.1 (little-endian hex 0100007F).
    assert listening_addresses(engine.port) == {"0100007F"}

    # A request makes `to http` retry against the closed port while it waits (10 s at most).
    def send() -> None:
        with httpx.Client(timeout=15) as client:
            client.post(f"http://127.0.0.1:{engine.port}/hooks/a", json={"n": 1})

    caller = threading.Thread(target=send, daemon=True)
    caller.start()

    def retrying() -> str | None:
        body = engine.readyz() or {}
        pipeline = body.get("pipelines", {}).get("hook_run", {})
        detail = pipeline.get("detail")
        return detail if not pipeline.get("ready", True) and detail else None

    detail = wait_for(retrying, "the target to retry")
    readyz = engine.http.get("/readyz").text
    metrics = engine.http.get("/metrics").text
    page = engine.http.get("/").text
    wait_for(lambda: "HTTP_CONNECTION" in engine.log(), "the retry to be logged")
    caller.join(20)
    log_lines = "\n".join(line for line in engine.log().splitlines() if line.startswith("{"))

    shown = "to_http:http://***@127.0.0.1:"
    assert shown in detail and shown in readyz and shown in metrics
    assert "/ok?api_key=***&amp;page=***" in page  # HTML-escaped `&`
    assert "POST http://***@127.0.0.1:" in log_lines
    for where, text in {
        "readyz": readyz,
        "metrics": metrics,
        "page": page,
        "log": log_lines,
    }.items():
        assert PASSWORD not in text, where
        assert KEY not in text, where
        assert "crm:" not in text, where

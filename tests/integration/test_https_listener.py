"""``lhpipe run --tls-cert/--tls-key``: webhooks (and /readyz, /metrics) served over HTTPS
directly, for deployments without a terminating proxy (docs/security.md). The certificate is
the secure stack's (chained to its CA); Kafka is the open listener."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from engine_run import LHPIPE, LhpipeRun, read_all, unique, wait_until, write_pipelines

from lhpipe.stack.addresses import StackAddresses
from lhpipe.stack.certs import StackCerts

pytestmark = pytest.mark.integration


def https(port: int, path: str, ca: Path, body: bytes | None = None) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(ca))
    request = urllib.request.Request(
        f"https://127.0.0.1:{port}{path}",
        data=body,
        headers={"Content-Type": "application/json"} if body is not None else {},
    )
    with urllib.request.urlopen(request, timeout=10, context=context) as answer:
        return int(answer.status), answer.read()


def hooks(folder: Path, topic: str) -> Path:
    return write_pipelines(
        folder,
        f"""
webhook hello {{
  path = "/hooks/hello"
  auth = none
  body = json
  topic = "{topic}"
}}
""",
    )


def test_webhooks_are_served_over_https_and_plain_or_garbage_connections_change_nothing(
    stack: StackAddresses, secure_stack: StackCerts, tmp_path: Path
) -> None:
    topic = unique("https-hooks")
    folder = hooks(tmp_path, topic)
    args = ["--tls-cert", str(secure_stack.server_cert), "--tls-key", str(secure_stack.server_key)]

    with LhpipeRun(folder, args=args) as run:
        wait_until(lambda: _answers(run.port, secure_stack.ca), 60, "lhpipe to answer over HTTPS")
        accepted = [
            https(run.port, "/hooks/hello", secure_stack.ca, json.dumps({"n": n}).encode())[0]
            for n in range(20)
        ]
        # Plain HTTP and bytes that are no TLS at all: the connection ends, nothing else.
        for garbage in (b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\xff\xff" * 40):
            with socket.create_connection(("127.0.0.1", run.port), timeout=10) as sock:
                sock.sendall(garbage)
                sock.settimeout(10)  # the server ends the connection: never a hang
                with contextlib.suppress(ConnectionResetError):
                    assert not sock.recv(4096).startswith(b"HTTP/1.1 2")
        with pytest.raises(urllib.error.URLError):  # a client that does not trust the CA
            https(run.port, "/readyz", secure_stack.other_ca)
        status, _ = https(run.port, "/readyz", secure_stack.ca)
        assert run.terminate() == 0, run.log()

    assert accepted == [202] * 20
    assert status == 200
    assert sorted(json.loads(r.value())["n"] for r in read_all(stack, topic, 20)) == list(range(20))
    assert "Traceback" not in run.log()


def _answers(port: int, ca: Path) -> bool:
    try:
        return https(port, "/healthz", ca)[0] == 200
    except OSError:
        return False


@pytest.mark.parametrize("case", ["mismatched", "missing", "alone"])
def test_a_bad_certificate_pair_stops_the_start_with_one_line_and_no_key(
    secure_stack: StackCerts, tmp_path: Path, case: str
) -> None:
    folder = hooks(tmp_path, unique("https-bad"))
    key = secure_stack.client_key  # not the certificate's key
    args = {
        "mismatched": ["--tls-cert", str(secure_stack.server_cert), "--tls-key", str(key)],
        "missing": ["--tls-cert", str(tmp_path / "none.pem"), "--tls-key", str(key)],
        "alone": ["--tls-cert", str(secure_stack.server_cert)],
    }[case]

    done = subprocess.run(
        [LHPIPE, "run", str(folder), "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )

    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output
    assert "PRIVATE KEY" not in output and key.read_text().splitlines()[1] not in output
    assert ("--tls-cert and --tls-key go together" in output) == (case == "alone")

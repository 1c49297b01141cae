"""What the benchmarks against the local stack (``lhpipe stack up``) share: its addresses,
registering WfSpecs, and running ``lhpipe run`` beside them."""

from __future__ import annotations

import functools
import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import grpc
from littlehorse.config import LHConfig
from littlehorse.model import GetLatestWfSpecRequest
from littlehorse.workflow import Workflow, create_workflow_spec

KAFKA = "127.0.0.1:9092"
LH_HOST, LH_PORT = "127.0.0.1", 2023
LHPIPE = Path(sys.executable).with_name("lhpipe")

logging.getLogger("LHConfig").setLevel(logging.ERROR)


def register_wf_specs(workflows: Iterable[Workflow]) -> None:
    """Register the WfSpecs, then wait until the server shows each (registration is
    asynchronous: a RunWf right after it may not find the WfSpec yet)."""
    config = LHConfig()
    config.load({"LHC_API_HOST": LH_HOST, "LHC_API_PORT": str(LH_PORT)})
    names = []
    for workflow in workflows:
        create_workflow_spec(workflow, config)
        names.append(workflow.name)
    stub = config.stub()
    for name in names:
        request = GetLatestWfSpecRequest(name=name)
        wait_until_found(functools.partial(stub.GetLatestWfSpec, request))


def wait_until_found(fetch: Callable[[], object], seconds: float = 30) -> None:
    """Call ``fetch`` until LittleHorse stops answering NOT_FOUND (metadata is registered
    asynchronously), at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            fetch()
            return
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def free_port() -> int:
    """A TCP port nothing listens on now, for a listener of ``lhpipe run``."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop ``lhpipe run`` as an operator would (SIGTERM: it drains), killing it only when it
    has not stopped after 40 s."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=40)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()

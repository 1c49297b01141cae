"""`lhpipe demo` end to end, as a user follows its printout: start it on a free port, wait for
the guide and for `/readyz` to answer 200 with every example pipeline running (the CRM and the
partner API are the demo's loopback stand-ins); the stand-in partner API's applications become
know-your-customer WfRuns; apply over the KYC webhook with a Keycloak token, send the
verifier's verdict (for that applicant and for a partner application) signed with the demo-only
secret it printed, read the WfRuns back from LittleHorse with their variables, see both
completed WfRuns reach the CRM stand-in (through LittleHorse's output topic and `crm_export`),
then Ctrl-C (SIGINT): the demo drains and exits 0.

Signing here follows the Standard Webhooks documentation (gateway_support), independently of
`lhpipe demo send`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from engine_run import LHPIPE, free_port, unique, wait_until
from gateway_support import bearer, keycloak_token, standard_headers
from lh import lh_config, variable_value, wait_for_status
from littlehorse.config import LHConfig
from littlehorse.model import LHStatus, WfRunId

from lhpipe.demo.guide import READY_LINE
from lhpipe.demo.secrets import DEMO_SECRETS
from lhpipe.demo.standins import CRM_PORT, CUSTOMERS_PATH
from lhpipe.kinds import load
from lhpipe.stack.addresses import StackAddresses

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "pipelines"
#: Registration, topic creation and the engine's start; the demo prints its guide after that.
START_TIMEOUT_SECONDS = 120.0
WF_RUN_TIMEOUT_SECONDS = 90.0
#: Every example pipeline running: the lh_output sources replay the output topic first.
READY_TIMEOUT_SECONDS = 90.0
#: A completed WfRun: LittleHorse's output topic, then `crm_export`'s POST.
CRM_TIMEOUT_SECONDS = 60.0
CRM_URL = f"http://127.0.0.1:{CRM_PORT}{CUSTOMERS_PATH}"
EXIT_TIMEOUT_SECONDS = 60.0


@dataclass
class Demo:
    process: subprocess.Popen[bytes]
    port: int
    out: Path
    err: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def printed(self) -> str:
        return self.out.read_text(errors="replace")

    def logs(self) -> str:
        return f"stdout:\n{self.printed()}\nstderr (end):\n{self.err.read_text()[-4000:]}"


@pytest.fixture(params=["open", "secure"])
def demo(stack: StackAddresses, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Demo]:
    """The demo as `make demo` runs it, and with ``--secure`` through the secure stack's
    listeners (Kafka SASL_SSL, LittleHorse TLS + OAuth, the secured registry; the test checks
    LittleHorse on the open listener, which sees the same data)."""
    del stack  # the demo finds the stack itself; the fixture makes sure it is up
    secure = request.param == "secure"
    if secure:
        request.getfixturevalue("secure_stack")
    port = free_port()
    out, err = tmp_path / "demo.out", tmp_path / "demo.err"
    # The user has set none of the secrets: the demo's own values are what it must use.
    env = {k: v for k, v in os.environ.items() if k not in DEMO_SECRETS}
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [LHPIPE, "demo", str(EXAMPLES), "--port", str(port), *(["--secure"] if secure else [])],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=env,
            cwd=tmp_path,
        )
    running = Demo(process, port, out, err)
    try:
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)


def test_the_printed_instructions_run_a_kyc_wf_run_to_completion(
    demo: Demo, stack: StackAddresses
) -> None:
    def guide_printed() -> bool:
        if demo.process.poll() is not None:
            raise AssertionError(
                f"lhpipe demo exited with {demo.process.returncode}\n{demo.logs()}"
            )
        return READY_LINE in demo.printed()

    wait_until(guide_printed, START_TIMEOUT_SECONDS, "the demo's guide")
    printed = demo.printed()
    for path in ("/", "/readyz", "/metrics"):
        assert f"{demo.url}{path}\n" in printed
    assert "scope=kyc:write" in printed
    secret = re.search(r"VERIFIER_SECRET=(whsec_\S+)", printed)
    assert secret is not None, printed
    assert "stand-in cannot listen" not in demo.err.read_text(), demo.logs()
    readyz = wait_until(lambda: _ready(demo), READY_TIMEOUT_SECONDS, "/readyz to answer 200")
    program = load([str(EXAMPLES)]).program
    assert program is not None
    for pipeline in program.pipelines:
        assert readyz["pipelines"][pipeline]["state"] == "running", readyz
    assert "partner_applications" in readyz["pipelines"] and "crm_export" in readyz["pipelines"]
    assert "Not running in the demo" not in printed

    # The partner API stand-in's applications, polled by partner_applications: one
    # know-your-customer WfRun each, under the application's id, waiting for a verdict.
    config = lh_config(stack)
    listed = next(line for line in printed.splitlines() if "demo wfruns pa-" in line)
    applications = re.findall(r"pa-[0-9a-f]{6}-[0-9]+", listed)
    assert len(applications) == 3, listed
    for application in applications:
        wait_until(
            lambda wf_run_id=application: _status(config, wf_run_id) == LHStatus.RUNNING,
            WF_RUN_TIMEOUT_SECONDS,
            f"WfRun {application} of the partner application to run",
        )
    first = applications[0]
    assert variable_value(config, first, "email") == "bo.berg@example.com"
    assert variable_value(config, first, "full_name") == "Bo Berg <Bo.Berg@example.com>"
    assert variable_value(config, first, "country") == "SE"

    applicant_id = unique("it-demo")
    applicant = {
        "applicant_id": applicant_id,
        "email": "Ann@Example.com",
        "name": "Ann",
        "country": "DE",
        "age": 30,
        "tags": [],
    }
    answer = httpx.post(
        f"{demo.url}/hooks/kyc",
        headers=bearer(keycloak_token(stack, scope="kyc:write")),
        content=json.dumps(applicant),
        timeout=30,
    )
    assert answer.status_code == 202, answer.text

    wait_until(
        lambda: _status(config, applicant_id) == LHStatus.RUNNING,
        WF_RUN_TIMEOUT_SECONDS,
        f"WfRun {applicant_id} to run",
    )
    assert variable_value(config, applicant_id, "full_name") == "Ann <Ann@Example.com>"
    assert variable_value(config, applicant_id, "email") == "ann@example.com"
    assert variable_value(config, applicant_id, "country") == "DE"

    key = base64.b64decode(secret.group(1).removeprefix("whsec_"))
    for wf_run_id in (applicant_id, first):
        verdict = json.dumps({"applicant_id": wf_run_id, "approved": True, "score": 0.93})
        answer = httpx.post(
            f"{demo.url}/hooks/verdict",
            headers=standard_headers(verdict.encode(), unique("msg"), key=key),
            content=verdict.encode(),
            timeout=30,
        )
        assert answer.status_code == 202, answer.text

    for wf_run_id in (applicant_id, first):
        wait_for_status(config, wf_run_id, LHStatus.COMPLETED)
        assert variable_value(config, wf_run_id, "approved") is True

    # crm_export posted both completed WfRuns to the CRM stand-in, which records them.
    def at_the_crm() -> dict[str, Any]:
        customers = httpx.get(CRM_URL, timeout=30).json()["customers"]
        found = {c["wf_run_id"]: c["body"] for c in customers}
        return found if {applicant_id, first} <= set(found) else {}

    found = wait_until(at_the_crm, CRM_TIMEOUT_SECONDS, "the completed WfRuns at the CRM")
    for wf_run_id in (applicant_id, first):
        assert found[wf_run_id]["status"] == "COMPLETED"
        assert found[wf_run_id]["wf_spec"]["name"] == "know-your-customer"

    demo.process.send_signal(signal.SIGINT)
    assert demo.process.wait(EXIT_TIMEOUT_SECONDS) == 0, demo.logs()


def _ready(demo: Demo) -> dict[str, Any] | None:
    """``/readyz``'s body once it answers 200."""
    if demo.process.poll() is not None:
        raise AssertionError(f"lhpipe demo exited with {demo.process.returncode}\n{demo.logs()}")
    try:
        answer = httpx.get(f"{demo.url}/readyz", timeout=10)
    except httpx.TransportError:  # not listening yet, or slow: asked again
        return None
    if answer.status_code != 200:
        return None
    body: dict[str, Any] = answer.json()
    return body


def _status(config: LHConfig, wf_run_id: str) -> int | None:
    try:
        status: int = config.stub().GetWfRun(WfRunId(id=wf_run_id)).status
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.NOT_FOUND:
            raise
        return None
    return status

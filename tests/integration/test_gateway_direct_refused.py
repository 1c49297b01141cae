"""A direct-mode webhook (no `topic`: its pipeline runs inside the request) that refuses a
request never runs its pipeline for it: no LittleHorse call, no WfRun. Then one good request is
accepted, and the workflow has exactly that one WfRun.

No pause stands for "nothing happened": in direct mode a request's WfRun, if it made one,
exists before its answer is sent, so each refusal is itself the later event after which the
WfRun it would have made is looked for. Every request carries a delivery id of its own, which
would be its WfRun's id (the default key is the webhook id, and `run_wf` names the WfRun by it).

Each refused request would be accepted but for the one thing it is refused for: the rest is a
good request, and what is wrong with a body (a field missing or unknown, its media type, its
size) is nothing the pipeline reads. A check that were skipped would start a WfRun.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from engine_run import LhpipeRun, unique, wait_until, wf_run_ids, write_pipelines
from gateway_support import GITHUB_SECRET, github_headers
from lh import lh_config, register_wf_spec
from littlehorse.config import LHConfig
from littlehorse.model import WfRunId
from littlehorse.workflow import Workflow, WorkflowThread

from lhpipe.stack.addresses import StackAddresses

pytestmark = pytest.mark.integration

# Generous for a loaded machine: the 202 waits for LittleHorse's RunWf.
HTTP_TIMEOUT_SECONDS = 30.0
# LittleHorse indexes WfRuns for search asynchronously: on a busy server, minutes behind.
SEARCH_TIMEOUT_SECONDS = 240.0
SIGNATURE = "x-hub-signature-256"

Headers = list[tuple[str, str]]


@dataclass(frozen=True)
class Refusal:
    what: str
    status: int
    body: bytes
    headers: Headers
    delivery: str
    method: str = "POST"


def refusals() -> list[Refusal]:
    """One request per way to be refused, each with a delivery id of its own."""
    good = json.dumps({"applicant_id": "ok", "age": 30}).encode()
    other = json.dumps({"applicant_id": "other", "age": 30}).encode()
    missing = json.dumps({"applicant_id": "ok"}).encode()
    unknown = json.dumps({"applicant_id": "ok", "age": 30, "nte": "x"}).encode()
    large = json.dumps({"applicant_id": "ok", "age": 30, "note": "n" * 1024}).encode()

    def unsigned(headers: Headers, delivery: str) -> Headers:
        return [(k, v) for k, v in headers if k != SIGNATURE]

    def as_text(headers: Headers, delivery: str) -> Headers:
        return [(k, "text/plain" if k == "content-type" else v) for k, v in headers]

    def a_wrong_signature_first(headers: Headers, delivery: str) -> Headers:
        # A route that read only the last one would let the request in.
        return [(SIGNATURE, github_headers(other, delivery)[SIGNATURE]), *headers]

    def case(
        what: str,
        status: int,
        body: bytes,
        *,
        signed: bytes | None = None,
        secret: str = GITHUB_SECRET,
        change: Callable[[Headers, str], Headers] | None = None,
        method: str = "POST",
    ) -> Refusal:
        """``body`` with the headers of GitHub's signature over ``signed`` (by default the
        body) with ``secret``, then ``change``d."""
        delivery = str(uuid.uuid4())
        headers = list(github_headers(signed or body, delivery, secret).items())
        if change is not None:
            headers = change(headers, delivery)
        return Refusal(what, status, body, headers, delivery, method)

    return [
        case("no signature", 401, good, change=unsigned),
        case("signed with another secret", 401, good, secret="not-the-secret"),
        case("the signature of another body", 401, good, signed=other),
        case("the signature header twice", 400, good, change=a_wrong_signature_first),
        case("a media type the body does not take", 415, good, change=as_text),
        case("a required field missing", 400, missing),
        case("an unknown field", 400, unknown),
        case("a body over max_body", 413, large),
        case("a method the webhook does not take", 405, good, method="PUT"),
    ]


def wf_run_exists(config: LHConfig, wf_run_id: str) -> bool:
    try:
        config.stub().GetWfRun(WfRunId(id=wf_run_id))
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return False
        raise
    return True


def test_a_refused_request_to_a_direct_mode_webhook_starts_no_wf_run(
    stack: StackAddresses, tmp_path: Path
) -> None:
    config = lh_config(stack)
    flow = unique("g2-direct-refused")

    def applicant(wf: WorkflowThread) -> None:
        wf.declare_str("applicant_id")

    register_wf_spec(config, Workflow(flow, applicant))
    folder = write_pipelines(
        tmp_path / "pipelines",
        f"""
schema Applicant {{ applicant_id: string  age: int  note: string? }}

webhook intake {{
  path = "/hooks/direct"
  auth = hmac {{ preset = github  secret = env("GITHUB_SECRET") }}
  body = Applicant
  max_body = 1KiB
}}

pipeline direct_start {{
  from webhook intake
  run_wf "{flow}" {{ variables {{ applicant_id = value.applicant_id }} }}
}}
""",
    )
    cases = refusals()
    with LhpipeRun(folder, env={"GITHUB_SECRET": GITHUB_SECRET}) as run:
        run.wait_ready()
        url = f"http://127.0.0.1:{run.port}/hooks/direct"

        def send(method: str, headers: Headers, body: bytes) -> httpx.Response:
            # A client per request: a 405 and a 413 close their connection.
            return httpx.request(
                method, url, headers=headers, content=body, timeout=HTTP_TIMEOUT_SECONDS
            )

        statuses = {c.what: send(c.method, c.headers, c.body).status_code for c in cases}
        assert statuses == {c.what: c.status for c in cases}
        # The route answered each (not the listener before it), and none reached the pipeline.
        counted = {
            status: run.metric("lhpipe_http_requests_total", route="intake", status=status)
            for status in ("202", "400", "401", "405", "413", "415")
        }
        assert counted == {
            "202": 0,
            **{str(s): float(n) for s, n in Counter(c.status for c in cases).items()},
        }
        assert run.metric("lhpipe_records_in_total", pipeline="direct_start") == 0
        # A WfRun a request started exists before its answer came: none of these has one.
        assert [c.what for c in cases if wf_run_exists(config, c.delivery)] == []

        delivery = str(uuid.uuid4())
        body = json.dumps({"applicant_id": "ok", "age": 30}).encode()
        accepted = send("POST", list(github_headers(body, delivery).items()), body)
        assert accepted.status_code == 202 and accepted.json() == {"id": delivery}
        assert wf_run_exists(config, delivery)
        assert run.metric("lhpipe_records_in_total", pipeline="direct_start") == 1
        assert run.terminate() == 0, run.log()

    # Once the search index shows the accepted WfRun, the workflow has that one and no other.
    found = wait_until(
        lambda: delivery in (ids := wf_run_ids(config, flow)) and ids,
        SEARCH_TIMEOUT_SECONDS,
        "the accepted WfRun in LittleHorse's search index",
        every=1.0,
    )
    assert found == {delivery}

"""`lhpipe demo` without the stack: the requests it signs pass the example webhooks' own checks,
its WfSpecs declare what the example pipelines send, its secrets never override the user's, its
stand-ins answer at the addresses the examples call and as their pipelines read them, its
guide's commands are what they say, and it refuses to start without the stack or on a busy port.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import shlex
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lhpipe import cli
from lhpipe.check.program import Program
from lhpipe.demo import cli as demo_cli
from lhpipe.demo import requests
from lhpipe.demo.guide import READY_LINE, guide_text, not_running
from lhpipe.demo.secrets import DEMO_SECRETS, apply_demo_secrets, secret
from lhpipe.demo.standins import (
    DEMO_APPLICANTS,
    PAGE_SIZE,
    CrmStandIn,
    PartnerApiStandIn,
    StandIns,
)
from lhpipe.demo.wfruns import _id_text, _parse_id
from lhpipe.demo.workflows import (
    EVENT_DEFS,
    PARTNER_REFERRAL,
    PARTNER_REFERRAL_VERSIONS,
    WF_SPECS,
    Workflow,
    partner_referral,
)
from lhpipe.engine.testing import run_tests
from lhpipe.gateway.auth import build_authenticator
from lhpipe.gateway.oauth import IssuerDirectory
from lhpipe.gateway.outcome import Authenticated, Refused
from lhpipe.kinds import load
from lhpipe.settings import Settings
from lhpipe.sources.poll_items import PollRequests
from lhpipe.stack.addresses import StackAddresses

EXAMPLES = Path(__file__).resolve().parents[2] / "pipelines"
BASE = "http://127.0.0.1:8080"


@pytest.fixture(scope="module")
def program() -> Program:
    result = load([str(EXAMPLES)])
    assert result.program is not None
    return result.program


# -- signed requests against the examples' webhooks ---------------------------------------------


def signed(kind: str, body: bytes, settings: Settings) -> requests.WebhookRequest:
    if kind == "verdict":
        return requests.verdict_request(BASE, body, secret("VERIFIER_SECRET", settings))
    if kind == "github":
        return requests.github_request(BASE, body, secret("GITHUB_WEBHOOK_SECRET", settings))
    return requests.referral_request(BASE, body, secret("PARTNER_SECRET", settings), "acme")


@pytest.mark.parametrize(
    ("kind", "webhook", "sample"),
    [
        ("verdict", "verdicts_in", requests.verdict("ann-1")),
        ("github", "github_releases", requests.release()),
        ("referral", "partner_referrals", requests.referral()),
    ],
)
def test_signed_requests_pass_the_example_webhooks_signature_check(
    program: Program, kind: str, webhook: str, sample: object
) -> None:
    settings = Settings(environ=dict(DEMO_SECRETS))
    info = program.webhooks[webhook]
    body = requests.encode(sample)
    request = signed(kind, body, settings)
    assert request.url == f"{BASE}{info.path}"

    async def outcomes() -> tuple[object, object]:
        issuers = IssuerDirectory()
        try:
            authenticator = build_authenticator(webhook, info.auth, settings, issuers)
            accepted = await authenticator.authenticate(request.headers, body)
            tampered = await authenticator.authenticate(request.headers, body + b" ")
        finally:
            await issuers.aclose()
        return accepted, tampered

    accepted, tampered = asyncio.run(outcomes())
    assert isinstance(accepted, Authenticated)
    assert isinstance(tampered, Refused)


def test_send_signs_with_the_users_secret_when_set(program: Program) -> None:
    mine = "whsec_" + base64.b64encode(b"my own verifier key, 32 bytes!!!").decode()
    settings = Settings(environ={**DEMO_SECRETS, "VERIFIER_SECRET": mine})
    body = requests.encode(requests.verdict("ann-1"))
    request = signed("verdict", body, settings)
    info = program.webhooks["verdicts_in"]

    async def outcome(secrets: Settings) -> object:
        issuers = IssuerDirectory()
        try:
            authenticator = build_authenticator("verdicts_in", info.auth, secrets, issuers)
            return await authenticator.authenticate(request.headers, body)
        finally:
            await issuers.aclose()

    assert isinstance(asyncio.run(outcome(settings)), Authenticated)
    assert isinstance(asyncio.run(outcome(Settings(environ=dict(DEMO_SECRETS)))), Refused)


def test_curl_sends_the_signed_bytes_unchanged() -> None:
    body = requests.encode({"applicant_id": "o'neil-1", "approved": True})
    request = requests.verdict_request(BASE, body, DEMO_SECRETS["VERIFIER_SECRET"])
    words = shlex.split(request.curl())
    assert words[words.index("--data-binary") + 1].encode() == body
    assert f"webhook-id: {request.headers['webhook-id']}" in words


# -- secrets ------------------------------------------------------------------------------------


def test_demo_secrets_fill_in_only_what_the_user_has_not_set() -> None:
    settings = Settings(
        environ={"GITHUB_WEBHOOK_SECRET": "mine"}, file_values={"PARTNER_SECRET": "from-toml"}
    )
    environ: dict[str, str] = {}
    applied = apply_demo_secrets(settings, environ)
    assert "GITHUB_WEBHOOK_SECRET" not in environ
    assert "PARTNER_SECRET" not in environ
    assert environ == applied
    assert set(applied) == set(DEMO_SECRETS) - {"GITHUB_WEBHOOK_SECRET", "PARTNER_SECRET"}


def test_the_verifier_secret_is_a_standard_webhooks_secret() -> None:
    value = DEMO_SECRETS["VERIFIER_SECRET"]
    assert value.startswith("whsec_")
    assert len(base64.b64decode(value.removeprefix("whsec_"), validate=True)) >= 24


def test_every_env_without_default_in_the_examples_has_a_demo_value() -> None:
    text = "\n".join(path.read_text() for path in EXAMPLES.glob("*.lhp"))
    without_default = set(re.findall(r'env\("([A-Z0-9_]+)"\)', text))
    assert without_default
    assert without_default <= set(DEMO_SECRETS)


# -- metadata matches the examples --------------------------------------------------------------


def declared(workflow: Workflow) -> dict[str, bool]:
    """Variable name → required, of the WfSpec's entrypoint thread."""
    spec = workflow.compile()
    thread = spec.thread_specs[spec.entrypoint_thread_name]
    return {v.var_def.name: v.required for v in thread.variable_defs}


def test_the_wf_specs_declare_every_variable_the_examples_send(program: Program) -> None:
    specs = {w.name: w for w in WF_SPECS}
    events = {e.name for e in EVENT_DEFS}
    run_wf = 0
    for pipeline in program.pipelines.values():
        for target in pipeline.targets:
            if target.kind in ("post_event", "correlate"):
                assert target.name in events, pipeline.name
            if target.kind != "run_wf" or target.variables is None:
                continue
            run_wf += 1
            variables = declared(specs[str(target.name)])
            assert set(target.variables) <= set(variables), pipeline.name
            required = {name for name, needed in variables.items() if needed}
            assert required <= set(target.variables), pipeline.name
    assert run_wf == 4  # start_kyc, deploy_release, refunds, partner_applications


def test_partner_referral_version_2_takes_the_sample_referral(program: Program) -> None:
    target = next(t for t in program.pipelines["referrals"].targets if t.kind == "run_wf")
    assert target.name == PARTNER_REFERRAL
    assert target.variables is None  # the referral's top-level fields are the variables
    versions = [
        declared(Workflow(PARTNER_REFERRAL, partner_referral(required)))
        for required in PARTNER_REFERRAL_VERSIONS
    ]
    # A new set of required variables is what makes LittleHorse start a new major version.
    required_sets = [frozenset(n for n, needed in v.items() if needed) for v in versions]
    assert len(set(required_sets)) == 3
    assert set(requests.referral()) == set(versions[2]) == required_sets[2]


# -- the guide ----------------------------------------------------------------------------------


def test_the_guide_commands_send_what_they_say() -> None:
    text = guide_text(
        port=18080,
        applicant_id="ann-123abc",
        paths=["pipelines/"],
        not_running={"wf_audit": "`from lh_output` sources are not supported yet"},
        stack=StackAddresses(),
    )
    assert text.startswith(f"{READY_LINE} on http://127.0.0.1:18080")
    for url in ("/readyz", "/metrics"):
        assert f"http://127.0.0.1:18080{url}" in text
    lines = text.splitlines()
    token = next(line for line in lines if "TOKEN=$(" in line)
    assert "scope=kyc:write" in token
    assert StackAddresses().keycloak_token_url in token
    start = next(i for i, line in enumerate(lines) if "/hooks/kyc" in line)
    command = shlex.split((lines[start].rstrip("\\") + lines[start + 1]).strip())
    assert command[command.index("-d") + 1] == json.dumps(requests.applicant("ann-123abc"))
    assert "demo send verdict" in text and "--port 18080" in text
    assert "demo wfruns ann-123abc" in text
    assert "wf_audit: `from lh_output` sources are not supported yet" in text


def test_not_running_lists_the_failed_pipelines_of_readyz() -> None:
    readyz = {
        "ready": False,
        "pipelines": {
            "start_kyc": {"state": "running", "detail": None},
            "wf_audit": {"state": "failed", "detail": "`from lh_output` not supported"},
        },
    }
    assert not_running(readyz) == {"wf_audit": "`from lh_output` not supported"}


def test_wf_run_ids_of_children_read_as_parent_underscore_child() -> None:
    assert _id_text(_parse_id("order-7_refund-1")) == "order-7_refund-1"
    assert _parse_id("order-7_refund-1").parent_wf_run_id.id == "order-7"


# -- refusals -----------------------------------------------------------------------------------


def test_demo_points_at_stack_up_when_the_stack_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo_cli, "services_not_ready", lambda stack: ["littlehorse", "keycloak"])
    err = io.StringIO()
    code = demo_cli.main([str(EXAMPLES)], out=io.StringIO(), err=err)
    assert code == 1
    assert "littlehorse, keycloak not ready" in err.getvalue()
    assert "`lhpipe stack up`" in err.getvalue()


def test_demo_refuses_a_port_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo_cli, "services_not_ready", lambda stack: [])
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        err = io.StringIO()
        code = demo_cli.main([str(EXAMPLES), "--port", str(port)], out=io.StringIO(), err=err)
    assert code == 2
    assert f"port {port} is in use" in err.getvalue()


def test_lhpipe_demo_reaches_the_demo_command(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    monkeypatch.setattr(demo_cli, "main", lambda argv: seen.append(list(argv)) or 0)
    assert cli.main(["demo", "send", "verdict", "--id", "x"]) == 0
    assert seen == [["send", "verdict", "--id", "x"]]


def test_send_verdict_needs_a_body_or_an_id() -> None:
    err = io.StringIO()
    assert demo_cli.main(["send", "verdict"], out=io.StringIO(), err=err) == 2
    assert "--id" in err.getvalue()


# -- stand-ins ----------------------------------------------------------------------------------

CRM_TOKEN = DEMO_SECRETS["CRM_AUTHORIZATION"]
PARTNER_TOKEN = DEMO_SECRETS["PARTNER_API_TOKEN"]


@pytest.fixture
def crm() -> Iterator[CrmStandIn]:
    stand_in = CrmStandIn(CRM_TOKEN, port=0)
    stand_in.start()
    try:
        yield stand_in
    finally:
        stand_in.stop()


@pytest.fixture
def partner_api() -> Iterator[PartnerApiStandIn]:
    stand_in = PartnerApiStandIn(PARTNER_TOKEN, port=0, session="s0a1b2")
    stand_in.start()
    try:
        yield stand_in
    finally:
        stand_in.stop()


def test_the_examples_call_the_stand_ins_addresses(program: Program) -> None:
    stand_ins = StandIns(CRM_TOKEN, PARTNER_TOKEN)
    crm_export = program.pipelines["crm_export"]
    (http,) = [t for t in crm_export.targets if t.kind == "to_http"]
    assert http.name == stand_ins.crm.url
    poll = PollRequests(program.pipelines["partner_applications"], program)
    assert poll.url(None) == f"{stand_ins.partner_api.url}?after="


def test_the_crm_stand_in_records_what_the_pipeline_posts(crm: CrmStandIn) -> None:
    event = {"kind": "wf_run", "wf_run_id": "ann-1", "status": "COMPLETED"}
    refused = httpx.post(crm.url, json=event, headers={"authorization": "Bearer other"})
    assert refused.status_code == 401
    assert httpx.post(crm.url, content=b"not json", headers={"authorization": CRM_TOKEN}).is_error
    answer = httpx.post(crm.url, json=event, headers={"authorization": CRM_TOKEN})
    assert answer.status_code == 201
    listed = httpx.get(crm.url).json()["customers"]
    assert [(c["id"], c["wf_run_id"], c["body"]) for c in listed] == [("crm-1", "ann-1", event)]
    assert crm.received() == listed
    assert httpx.get(crm.base_url + "/other").status_code == 404


def test_the_partner_api_pages_as_the_example_pipeline_reads_it(
    program: Program, partner_api: PartnerApiStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARTNER_API_TOKEN", PARTNER_TOKEN)
    poll = PollRequests(program.pipelines["partner_applications"], program)
    base = poll.url(None).split("?")[0]

    def get(cursor: object) -> httpx.Response:
        # The pipeline's own URL and headers, at the port this test's stand-in has.
        url = poll.url(cursor).replace(base, partner_api.url)
        return httpx.get(url, headers=poll.headers())

    seen, cursor, pages = [], None, 0
    while True:
        page = poll.page(get(cursor).json())
        pages += 1
        seen += [poll.item(item, len(seen), "").id for item in page.items]
        if not page.items:
            break
        assert len(page.items) <= PAGE_SIZE
        cursor = page.cursor
    ids = [f"pa-s0a1b2-{n}" for n in range(1, len(DEMO_APPLICANTS) + 1)]
    assert seen == ids
    assert pages == 3  # 2 + 1 applications, then an empty page that keeps the cursor
    assert poll.page(get(cursor).json()).cursor == cursor

    added = httpx.post(
        partner_api.url, json={"name": "Eve", "email": "eve@example.com", "country": "FR"}
    )
    assert added.status_code == 201 and added.json()["id"] == "pa-s0a1b2-4"
    assert [item["id"] for item in poll.page(get(cursor).json()).items] == ["pa-s0a1b2-4"]
    # A cursor an earlier demo session left in the poll state starts from the first one.
    assert poll.page(get("a9b8c7-3").json()).items[0]["id"] == ids[0]
    assert httpx.get(partner_api.url + "?after=").status_code == 401
    bad = httpx.post(partner_api.url, json={"name": "Eve"})
    assert bad.status_code == 400 and "email" in bad.text


def test_a_partner_application_starts_know_your_customer(tmp_path: Path) -> None:
    # The example file with a test of its own beside it (the examples' test count stays).
    (tmp_path / "partners.lhp").write_text((EXAMPLES / "partners.lhp").read_text())
    (tmp_path / "applications_test.lhp").write_text(
        textwrap.dedent(
            """\
            test "applications start onboarding" {
              pipeline = partner_applications
              given {
                value = { id = "pa-s0a1b2-1", name = "Bo", email = "Bo@X.com", country = "SE" }
              }
              expect run_wf "know-your-customer" {
                id = "pa-s0a1b2-1"
                variables { full_name = "Bo <Bo@X.com>"  email = "bo@x.com"  country = "SE" }
              }
            }
            """
        )
    )
    result = load([str(tmp_path)])
    assert result.program is not None, result.diagnostics
    outcomes = {o.title: o.problems for o in run_tests(result.program)}
    assert outcomes["applications start onboarding"] == ()


def test_a_stand_in_whose_port_is_taken_is_reported_and_the_other_serves() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        stand_ins = StandIns(CRM_TOKEN, PARTNER_TOKEN)
        stand_ins.crm.port = busy.getsockname()[1]
        stand_ins.partner_api.port = 0
        try:
            problems = stand_ins.start()
            assert stand_ins.serving == [stand_ins.partner_api]
            assert httpx.get(stand_ins.partner_api.url, headers={"authorization": PARTNER_TOKEN})
        finally:
            stand_ins.stop()
    assert len(problems) == 1
    assert f"cannot listen on http://127.0.0.1:{stand_ins.crm.port}" in problems[0]


def guide_with(stand_ins: StandIns) -> str:
    """The guide of a demo on port 18080 where every example runs, with ``stand_ins``."""
    return guide_text(
        port=18080,
        applicant_id="ann-123abc",
        paths=["pipelines/"],
        not_running={},
        stack=StackAddresses(),
        stand_ins=stand_ins,
    )


def test_the_guide_shows_what_reached_the_stand_ins() -> None:
    stand_ins = StandIns(CRM_TOKEN, PARTNER_TOKEN)
    text = guide_with(stand_ins)
    ids = [a["id"] for a in stand_ins.partner_api.applications()]
    assert f"demo wfruns {' '.join(ids)}" in text
    assert f"curl -s {stand_ins.crm.url}\n" in text
    listing = next(line for line in text.splitlines() if "?after=" in line)
    words = shlex.split(listing)
    assert words[words.index("-H") + 1] == f"Authorization: {PARTNER_TOKEN}"
    add = next(line for line in text.splitlines() if f"curl -i {stand_ins.partner_api.url}" in line)
    assert set(json.loads(shlex.split(add)[-1])) == {"name", "email", "country"}
    assert f"--id {ids[0]} --port 18080" in text
    assert "Not running in the demo" not in text


def test_the_guide_does_not_print_the_users_own_partner_token() -> None:
    text = guide_with(StandIns(CRM_TOKEN, "Bearer my-real-token"))
    assert "my-real-token" not in text
    assert '"Authorization: $PARTNER_API_TOKEN"' in text

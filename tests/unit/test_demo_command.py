"""`lhpipe demo` without the stack: the requests it signs pass the example webhooks' own checks,
its WfSpecs declare what the example pipelines send, its secrets never override the user's, its
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
from pathlib import Path

import pytest

from lhpipe import cli
from lhpipe.check.load import load
from lhpipe.check.program import Program
from lhpipe.connect.webhooks.auth import build_authenticator
from lhpipe.connect.webhooks.oauth import IssuerDirectory
from lhpipe.connect.webhooks.outcome import Authenticated, Refused
from lhpipe.demo import cli as demo_cli
from lhpipe.demo import requests
from lhpipe.demo.guide import READY_LINE, guide_text, not_running
from lhpipe.demo.secrets import DEMO_SECRETS, apply_demo_secrets, secret
from lhpipe.demo.wfruns import _id_text, _parse_id
from lhpipe.demo.workflows import (
    EVENT_DEFS,
    PARTNER_REFERRAL,
    PARTNER_REFERRAL_VERSIONS,
    WF_SPECS,
    Workflow,
    partner_referral,
)
from lhpipe.settings import Settings
from lhpipe.stack.addresses import StackAddresses
from lhpipe.syntax import ast

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
            if target.kind in (ast.TargetKind.POST_EVENT, ast.TargetKind.CORRELATE):
                assert target.name in events, pipeline.name
            if target.kind is not ast.TargetKind.RUN_WF or target.variables is None:
                continue
            run_wf += 1
            variables = declared(specs[str(target.name)])
            assert set(target.variables) <= set(variables), pipeline.name
            required = {name for name, needed in variables.items() if needed}
            assert required <= set(target.variables), pipeline.name
    assert run_wf == 4  # start_kyc, deploy_release, refunds, partner_applications


def test_partner_referral_version_2_takes_the_sample_referral(program: Program) -> None:
    target = next(
        t for t in program.pipelines["referrals"].targets if t.kind is ast.TargetKind.RUN_WF
    )
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

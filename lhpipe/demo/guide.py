"""What the running demo prints once it serves: where to look and what to send.

The text is built from the demo's real values (port, an applicant id of this session, the
``lhpipe`` executable's path, the pipelines the engine reports it cannot run), so every command
in it can be copied and pasted as it is.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import httpx

from lhpipe.demo import requests
from lhpipe.demo.secrets import DEMO_SECRETS
from lhpipe.stack.addresses import StackAddresses

if TYPE_CHECKING:
    from lhpipe.demo.standins import StandIns

#: The first line of the guide; tests and scripts wait for it.
READY_LINE = "lhpipe demo: ready"
#: How long the guide waits for pipelines to leave ``starting`` before it prints anyway.
SETTLE_SECONDS = 30.0
POLL_SECONDS = 0.25


def lhpipe_command() -> str:
    """How to call ``lhpipe`` from the current folder: the virtualenv's script when it is the
    one running, else ``lhpipe`` from ``PATH``."""
    script = Path(sys.executable).with_name("lhpipe")
    if not script.exists():
        return "lhpipe"
    try:
        return os.path.relpath(script)
    except ValueError:  # another drive (Windows)
        return str(script)


def guide_text(
    *,
    port: int,
    applicant_id: str,
    paths: Sequence[str],
    not_running: Mapping[str, str],
    stack: StackAddresses,
    stand_ins: StandIns | None = None,
) -> str:
    """The instructions, for a demo listening on ``port`` (with the stand-ins' part when
    ``stand_ins`` are given)."""
    lhpipe = lhpipe_command()
    base = f"http://127.0.0.1:{port}"
    where = " ".join(shlex.quote(p) for p in paths)
    body = json.dumps(requests.applicant(applicant_id))
    verdict = json.dumps(requests.verdict(applicant_id))
    lines = [
        f"{READY_LINE} on {base} (Ctrl-C stops it)",
        "",
        f"  status page  {base}/",
        f"  readiness    {base}/readyz",
        f"  metrics      {base}/metrics",
        "",
        "1. Apply for an account: a Keycloak token with scope kyc:write, then the KYC webhook",
        "   (start_kyc starts WfRun " + applicant_id + " of know-your-customer, which asks for a",
        "   verification and waits for identity-verified):",
        "",
        "   " + requests.token_curl(stack),
        f'   curl -i {base}/hooks/kyc -H "Authorization: Bearer $TOKEN" \\',
        f"     -H 'Content-Type: application/json' -d {shlex.quote(body)}",
        "",
        f"   (or: {lhpipe} demo send kyc --id {applicant_id} --port {port})",
        "",
        "2. The identity verifier's verdict, signed as Standard Webhooks sign (the verdicts",
        "   pipeline posts identity-verified and the WfRun completes):",
        "",
        f"   {lhpipe} demo send verdict {shlex.quote(verdict)} --port {port}",
        "",
        "   (--curl prints the signed request as a curl command instead; valid for 5 minutes)",
        "",
        "3. Watch the WfRun in LittleHorse (status, the node it waits at, its variables):",
        "",
        f"   {lhpipe} demo wfruns {applicant_id}",
        f"   {lhpipe} demo wfruns            # the latest WfRuns of know-your-customer",
        "",
    ]
    if stand_ins is not None:
        lines += stand_in_lines(stand_ins, lhpipe, port)
    lines += [
        "More: a GitHub release (deploy-release) and a partner referral (partner-referral v2):",
        f"   {lhpipe} demo send github --port {port}",
        f"   {lhpipe} demo send referral --port {port}",
        "And on the example files:",
        f"   {lhpipe} lint {where}",
        f"   {lhpipe} test {where}",
        f"   {lhpipe} graph {where} --format svg -o graph.svg",
    ]
    if not_running:
        lines += [
            "",
            "Not running in the demo (they need what the local stack does not have; /readyz",
            "answers 503 because of them, the other pipelines run normally):",
        ]
        lines += [f"   {name}: {why}" for name, why in sorted(not_running.items())]
    return "\n".join(lines) + "\n"


def stand_in_lines(stand_ins: StandIns, lhpipe: str, port: int) -> list[str]:
    """Steps 4 and 5: the partner API's applications as WfRuns, and what reached the CRM."""
    partner = stand_ins.partner_api
    ids = [str(a["id"]) for a in partner.applications()]
    token = partner.authorization
    if token is None or token == DEMO_SECRETS["PARTNER_API_TOKEN"]:
        header = shlex.quote(f"Authorization: {token or ''}")
    else:  # the user's own token: not printed
        header = '"Authorization: $PARTNER_API_TOKEN"'
    new = json.dumps({"name": "Eve Ek", "email": "eve@example.com", "country": "FR"})
    first = ids[0] if ids else "pa-1"
    return [
        f"4. The partner API stand-in ({partner.url}) holds {len(ids)} applications;",
        "   partner_applications polls it and starts know-your-customer for each, with the",
        "   application's id as WfRun id:",
        "",
        f"   {lhpipe} demo wfruns {' '.join(ids)}",
        f"   curl -s -H {header} {shlex.quote(partner.url + '?after=')}",
        "",
        "   Add an application (the pipeline reads it at its next poll, `every` in partners.lhp):",
        f"   curl -i {partner.url} -H 'Content-Type: application/json' -d {shlex.quote(new)}",
        "",
        "5. crm_export posts every completed know-your-customer WfRun to the CRM stand-in: send",
        "   a partner application its verdict, then see what reached the CRM (the WfRun of step 2",
        "   too):",
        "",
        f"   {lhpipe} demo send verdict --id {first} --port {port}",
        f"   curl -s {stand_ins.crm.url}",
        "",
    ]


def not_running(readyz: Mapping[str, Any]) -> dict[str, str]:
    """The pipelines ``/readyz`` reports as failed, with why."""
    pipelines: Mapping[str, Any] = readyz.get("pipelines", {})
    return {
        name: str(status.get("detail") or "failed")
        for name, status in pipelines.items()
        if status.get("state") == "failed"
    }


class Guide:
    """Prints the guide once the engine on ``port`` answers ``/readyz`` and no pipeline is
    still starting (or after :data:`SETTLE_SECONDS`)."""

    def __init__(self, port: int, text: Callable[[Mapping[str, str]], str], out: TextIO) -> None:
        self.port = port
        self.text = text
        self.out = out
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lhpipe-demo-guide", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        answered_at: float | None = None
        while not self._stop.wait(POLL_SECONDS):
            readyz = self._readyz()
            if readyz is None:
                continue
            if readyz.get("starting"):
                continue  # the program is not built yet: no pipeline to report on
            answered_at = answered_at or time.monotonic()
            states = [p.get("state") for p in readyz.get("pipelines", {}).values()]
            if "starting" in states and time.monotonic() - answered_at < SETTLE_SECONDS:
                continue
            self.out.write(self.text(not_running(readyz)))
            self.out.flush()
            return

    def _readyz(self) -> dict[str, Any] | None:
        try:
            response = httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2)
            body: dict[str, Any] = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        return body

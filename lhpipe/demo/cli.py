"""``lhpipe demo``: the example pipelines, really running against the local stack.

    lhpipe demo [PATHS] [--port 8080] [--watch | --no-watch]
                                            register, start the task worker and the engine
    lhpipe demo send KIND [JSON] [...]      a correctly authenticated webhook request
    lhpipe demo wfruns [ID ...] [...]       WfRuns as LittleHorse holds them

The first form, in order: checks that the local stack answers (else points at ``lhpipe stack
up``) and that the port is free; fills in demo-only secrets the user has not set; registers the
LittleHorse metadata the examples need (:mod:`lhpipe.demo.workflows`) and creates the Kafka
topics they read; serves the loopback stand-ins of the CRM and the partner API the examples
call (:mod:`lhpipe.demo.standins`) and starts a task worker, each in a thread; then runs
``lhpipe run`` in this process until Ctrl-C, printing the guide (:mod:`lhpipe.demo.guide`) once
the engine serves. The engine
hot-reloads (``lhpipe run --watch``) unless ``--no-watch``: edit a file under PATHS and the
change is live at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from littlehorse.config import LHConfig

    from lhpipe.check.program import Program
    from lhpipe.settings import Settings
    from lhpipe.stack.addresses import StackAddresses

DEFAULT_PATHS = ["pipelines/"]
DEFAULT_PORT = 8080
SUBCOMMANDS = ("send", "wfruns")


def main(argv: Sequence[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``lhpipe demo ARGS``; returns the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    args = list(argv)
    try:
        if args and args[0] == "send":
            ns = _send_parser().parse_args(args[1:])
            return send(ns, out, err)
        if args and args[0] == "wfruns":
            ns = _wfruns_parser().parse_args(args[1:])
            return wf_runs(ns, out, err)
        ns = _demo_parser().parse_args(args)
        return run_demo(
            ns.paths or DEFAULT_PATHS,
            port=ns.port,
            watch=ns.watch,
            secure=ns.secure,
            out=out,
            err=err,
        )
    except SystemExit as exc:  # argparse: usage error or --help
        return exc.code if isinstance(exc.code, int) else 2
    except KeyboardInterrupt:  # Ctrl-C before the engine took over the signal
        return 130


# -- parsers ------------------------------------------------------------------------------------


def _demo_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lhpipe demo",
        description=(
            "Run the example pipelines against the local stack: register the WfSpecs, "
            "ExternalEventDefs and TaskDefs they need, run a task worker and the engine. "
            "`lhpipe demo send --help` and `lhpipe demo wfruns --help` for the helpers."
        ),
    )
    parser.add_argument("paths", nargs="*", metavar="PATHS", help="default: pipelines/")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"HTTP port (default: {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--watch",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="hot-reload the files on every save (default: on)",
    )
    parser.add_argument(
        "--secure",
        action="store_true",
        help="talk to the secure stack's secured listeners (`lhpipe stack up --secure`): Kafka "
        "over SASL_SSL, LittleHorse over TLS with OAuth, the secured registry",
    )
    return parser


def _send_parser() -> argparse.ArgumentParser:
    from lhpipe.demo.requests import KINDS

    parser = argparse.ArgumentParser(
        prog="lhpipe demo send",
        description=(
            "Send one webhook request to the running demo, authenticated as the example "
            "webhook requires: kyc (Keycloak token, scope kyc:write), verdict (Standard "
            "Webhooks signature), github (X-Hub-Signature-256), referral (the partner's "
            "sha512 signature). Secrets are the demo's unless set in the environment."
        ),
    )
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument(
        "json", nargs="?", help="the body (default: a sample; kyc and verdict use --id)"
    )
    parser.add_argument("--id", help="applicant id of the sample kyc or verdict body")
    parser.add_argument("--rejected", action="store_true", help="a verdict that refuses")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--curl", action="store_true", help="print the request as a curl command, send nothing"
    )
    return parser


def _wfruns_parser() -> argparse.ArgumentParser:
    from lhpipe.demo.workflows import KYC_WF_SPEC

    parser = argparse.ArgumentParser(
        prog="lhpipe demo wfruns",
        description="Print WfRuns (status, waiting node, variables) from LittleHorse.",
    )
    parser.add_argument("ids", nargs="*", metavar="ID", help="WfRun ids (parent_child for a child)")
    parser.add_argument(
        "--wf-spec", default=KYC_WF_SPEC, help=f"without ids: whose WfRuns (default {KYC_WF_SPEC})"
    )
    parser.add_argument("--limit", type=int, default=5, help="without ids: how many (default 5)")
    return parser


# -- lhpipe demo --------------------------------------------------------------------------------


def run_demo(
    paths: Sequence[str],
    *,
    port: int,
    out: TextIO,
    err: TextIO,
    watch: bool = True,
    secure: bool = False,
) -> int:
    """Register, start the task worker, run the engine until a signal; the engine's exit
    code."""
    import grpc
    from littlehorse.model import VariableType

    from lhpipe.commands.run import run_engine
    from lhpipe.demo.guide import Guide, guide_text
    from lhpipe.demo.requests import new_applicant_id
    from lhpipe.demo.secrets import apply_demo_secrets, secret
    from lhpipe.demo.standins import StandIns
    from lhpipe.demo.worker import TaskWorkers
    from lhpipe.demo.workflows import EVENT_DEFS, TASKS, register_all
    from lhpipe.settings import SettingsError, load_settings
    from lhpipe.stack.addresses import StackAddresses

    stack = StackAddresses()
    down = services_not_ready(stack)
    if down:
        print(
            f"lhpipe demo: the local stack is not up ({', '.join(down)} not ready). Start it "
            "with `lhpipe stack up` (`make demo` does that first), then run the demo again.",
            file=err,
        )
        return 1
    if not port_free(port):
        print(f"lhpipe demo: port {port} is in use; choose another with --port", file=err)
        return 2
    if secure:
        through = use_secure_stack()
        if through is None:
            print(
                "lhpipe demo: --secure needs the secure stack; start it with "
                "`lhpipe stack up --secure`",
                file=err,
            )
            return 1
        print(f"lhpipe demo: through the secure stack's listeners: {through}", file=out)
    try:
        settings = load_settings([Path(p) for p in paths])
    except SettingsError as exc:
        print(f"lhpipe demo: {exc}", file=err)
        return 2

    config = lh_config(settings)
    print(
        f"lhpipe demo: registering the examples' metadata in LittleHorse ({_lh(settings)})",
        file=out,
    )
    try:
        versions = register_all(config)
    except (grpc.RpcError, TimeoutError) as exc:
        why = exc.details() if isinstance(exc, grpc.RpcError) else str(exc)
        print(f"lhpipe demo: registering in LittleHorse failed: {why}", file=err)
        return 1
    events = ", ".join(
        f"{e.name} ({VariableType.Name(e.content)}{', correlated' if e.correlated else ''})"
        for e in EVENT_DEFS
    )
    print(f"  WfSpecs (name major.revision): {', '.join(versions)}", file=out)
    print(f"  ExternalEventDefs: {events}", file=out)
    print(f"  TaskDefs, run by this process's task worker: {', '.join(TASKS)}", file=out)
    created = create_topics(paths, settings)
    if created:
        print(f"  Kafka topics created: {', '.join(created)}", file=out)
    files = create_connector_files(paths, settings)
    if files:
        print(f"  Files the connectors stream (append lines): {', '.join(files)}", file=out)
    applied = apply_demo_secrets(settings)
    if applied:
        print(
            "lhpipe demo: DEMO-ONLY secrets (you have not set these; published values, "
            "for loopback use only):",
            file=out,
        )
        for name, value in applied.items():
            print(f"  {name}={value}", file=out)
    stand_ins = StandIns(
        crm_authorization=secret("CRM_AUTHORIZATION", settings),
        partner_token=secret("PARTNER_API_TOKEN", settings),
    )
    for problem in stand_ins.start():
        print(f"lhpipe demo: warning: {problem}", file=err)
    print(
        "lhpipe demo: stand-ins on loopback for the services the examples call: CRM "
        f"{stand_ins.crm.url}, partner API {stand_ins.partner_api.url} "
        f"({len(stand_ins.partner_api.applications())} applications)",
        file=out,
    )
    command = "lhpipe run --watch" if watch else "lhpipe run"
    print(f"lhpipe demo: starting the engine on port {port} (`{command}`)...", file=out)
    out.flush()

    applicant_id = new_applicant_id()

    def text(not_running: Mapping[str, str]) -> str:
        return guide_text(
            port=port,
            applicant_id=applicant_id,
            paths=paths,
            not_running=not_running,
            stack=stack,
            stand_ins=stand_ins,
        )

    workers = TaskWorkers(config, TASKS)
    guide = Guide(port, text, out)
    workers.start()
    guide.start()
    try:
        # Loopback unless LHPIPE_HOST says otherwise: the demo's secrets are public values.
        host = os.environ.get("LHPIPE_HOST") or "127.0.0.1"
        return run_engine(paths, port=port, host=host, watch=watch)
    finally:
        guide.stop()
        workers.stop()
        stand_ins.stop()


def services_not_ready(stack: StackAddresses) -> list[str]:
    """The local stack's services that do not answer their readiness check."""
    from lhpipe.stack.pins import DEFAULT_SERVICES
    from lhpipe.stack.services import SERVICES

    return [name for name in DEFAULT_SERVICES if not SERVICES[name].is_ready(stack)]


def port_free(port: int) -> bool:
    """Whether the engine can listen on ``port`` (it binds all interfaces)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As uvicorn does, so a port still in TIME_WAIT after a previous demo counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def use_secure_stack() -> str | None:
    """Point this process (the engine, the registrations, the task worker) at the secure
    stack's listeners, as ``lhpipe stack env --secure`` prints them; a one-line summary, or
    ``None`` when the secure stack is not up."""
    from lhpipe.stack import control
    from lhpipe.stack.certs import stack_certs
    from lhpipe.stack.env import secure_settings

    certs = stack_certs()
    if certs is None or not control.is_secure():
        return None
    os.environ.update(secure_settings(certs))
    return (
        f"Kafka SASL_SSL (SCRAM) at {os.environ['KAFKA_BOOTSTRAP_SERVERS']}, LittleHorse TLS + "
        f"OAuth at port {os.environ['LHC_API_PORT']}, registry {os.environ['LHPIPE_REGISTRY_URL']}"
        f" (CA {certs.ca})"
    )


def lh_config(settings: Settings) -> LHConfig:
    """A littlehorse client configuration from the ``LHC_*`` settings."""
    from littlehorse.config import LHConfig

    # The client warns about plain-text channels on every stub; on loopback that is intended.
    logging.getLogger("LHConfig").setLevel(logging.ERROR)
    config = LHConfig()
    config.load(settings.littlehorse())
    return config


def _program(paths: Sequence[str]) -> Program | None:
    """The checked program of ``paths``, or ``None`` when the files do not load (left for the
    engine to report)."""
    from lhpipe.kinds import load

    try:
        return load(paths).program
    except (OSError, UnicodeDecodeError):
        return None


def create_topics(paths: Sequence[str], settings: Settings) -> list[str]:
    """Create the topics the pipelines and webhooks of ``paths`` read or write first, so
    consumers find them at once; returns those created. A webhook's topic gets the partitions
    the engine would give it (lhpipe/clients/kafka/topics.py), the others the broker's default.
    Files that do not load, or a bad ``LHPIPE_TOPIC_PARTITIONS``, are left for the engine to
    report."""
    from lhpipe.clients.kafka.admin import ensure_topics
    from lhpipe.clients.kafka.topics import partitions_for
    from lhpipe.settings import SettingsError

    program = _program(paths)
    if program is None:
        return []
    topics = {p.source.topic for p in program.pipelines.values() if p.source.topic}
    webhook_topics = {w.topic for w in program.webhooks.values() if w.topic}
    try:
        partitions = partitions_for(topics & webhook_topics, program, settings)
    except SettingsError:
        return []
    return ensure_topics(settings, topics, partitions=partitions)


def create_connector_files(paths: Sequence[str], settings: Settings) -> list[str]:
    """Create (empty, with their folder) the files that the FileStreamSource connectors of
    ``paths`` read and that do not exist yet, so that lines appended to them flow at once;
    returns every such file."""
    from lhpipe.engine.connectors import FILE_STREAM_SOURCE, canonical_class
    from lhpipe.settings import SettingsError, resolve_text

    program = _program(paths)
    if program is None:
        return []
    files = []
    for info in program.connectors.values():
        setting = info.config.get("file")
        if canonical_class(info.connector_class) != FILE_STREAM_SOURCE:
            continue
        if setting is None or isinstance(setting, int | float):  # booleans included
            continue
        try:
            path = Path(resolve_text(setting, settings, "file"))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(exist_ok=True)
        except (SettingsError, OSError):
            continue  # the engine reports the connector
        files.append(str(path))
    return files


def _lh(settings: Settings) -> str:
    lhc = settings.littlehorse()
    return f"{lhc.get('LHC_API_HOST')}:{lhc.get('LHC_API_PORT')}"


# -- lhpipe demo send ---------------------------------------------------------------------------


def send(ns: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Build the request ``ns`` asks for; send it (exit 0 on a 2xx) or print it."""
    import json

    import httpx

    from lhpipe.demo import requests
    from lhpipe.demo.secrets import secret
    from lhpipe.settings import load_settings
    from lhpipe.stack.addresses import StackAddresses

    settings = load_settings([Path(p) for p in DEFAULT_PATHS])
    base = f"http://127.0.0.1:{ns.port}"
    if ns.json is not None:
        try:
            json.loads(ns.json)
        except ValueError as exc:
            print(f"lhpipe demo send: the body is not JSON: {exc}", file=err)
            return 2
        body = ns.json.encode()
    elif ns.kind == "verdict" and ns.id is None:
        print("lhpipe demo send verdict: give the verdict's JSON, or --id APPLICANT", file=err)
        return 2
    else:
        body = requests.encode(_sample(ns))

    if ns.kind == "kyc":
        # Also with --curl: the printed command carries a token fetched now, like the
        # signatures it is valid for minutes only.
        request = requests.kyc_request(base, body, requests.keycloak_token(StackAddresses()))
    elif ns.kind == "verdict":
        request = requests.verdict_request(base, body, secret("VERIFIER_SECRET", settings))
    elif ns.kind == "github":
        request = requests.github_request(base, body, secret("GITHUB_WEBHOOK_SECRET", settings))
    else:
        partner = str(json.loads(body).get("partner", "acme"))
        request = requests.referral_request(base, body, secret("PARTNER_SECRET", settings), partner)
    if ns.curl:
        print(request.curl(), file=out)
        return 0
    print(f"POST {request.url}  {body.decode()}", file=out)
    try:
        response = request.send()
    except httpx.HTTPError as exc:
        print(f"lhpipe demo send: {exc} (is `lhpipe demo --port {ns.port}` running?)", file=err)
        return 1
    print(f"{response.status_code} {response.reason_phrase}  {response.text}", file=out)
    return 0 if response.is_success else 1


def _sample(ns: argparse.Namespace) -> Any:
    from lhpipe.demo import requests

    if ns.kind == "kyc":
        return requests.applicant(ns.id or requests.new_applicant_id())
    if ns.kind == "verdict":
        return requests.verdict(ns.id, approved=not ns.rejected)
    if ns.kind == "github":
        return requests.release()
    return requests.referral()


# -- lhpipe demo wfruns -------------------------------------------------------------------------


def wf_runs(ns: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import grpc

    from lhpipe.demo.wfruns import print_wf_runs
    from lhpipe.settings import load_settings

    config = lh_config(load_settings([Path(p) for p in DEFAULT_PATHS]))
    try:
        return print_wf_runs(config, out, ns.ids, ns.wf_spec, ns.limit)
    except grpc.RpcError as exc:
        print(
            f"lhpipe demo wfruns: LittleHorse answered {exc.code().name}: {exc.details()}", file=err
        )
        return 1

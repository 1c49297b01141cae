"""`lhpipe stack up|down|status`: the local Kafka, LittleHorse, Apicurio and Keycloak."""

from __future__ import annotations

import argparse
import sys

from lhpipe.stack.errors import StackError
from lhpipe.stack.pins import DEFAULT_SERVICES, OPTIONAL_SERVICES, SERVICE_ORDER


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lhpipe stack",
        description="Run the real services lhpipe talks to on 127.0.0.1 (see docs/stack.md).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser(
        "up", help="resolve the services (first time), start them, wait until each is ready"
    )
    up.add_argument(
        "--with",
        dest="extra",
        action="append",
        choices=OPTIONAL_SERVICES,
        default=[],
        help="also start an optional service (Kafka Connect)",
    )
    up.add_argument(
        "--secure",
        action="store_true",
        help="also start each service's secured listeners (TLS, SASL, OAuth; docs/security.md)",
    )
    env = commands.add_parser(
        "env", help="print the settings that point lhpipe at the stack (shell exports)"
    )
    env.add_argument("--secure", action="store_true", help="the secured listeners' settings")
    env.add_argument(
        "--kafka-auth",
        choices=("scram", "oauth"),
        default="scram",
        help="with --secure: SCRAM-SHA-512 (default) or OAuth client credentials for Kafka",
    )
    env.add_argument(
        "--lh-auth",
        choices=("oauth", "mtls"),
        default="oauth",
        help="with --secure: OAuth over TLS (default) or a client certificate for LittleHorse",
    )
    env.add_argument(
        "--registry-auth",
        choices=("oauth", "basic"),
        default="oauth",
        help="with --secure: OAuth client credentials (default) or basic auth for the registry",
    )
    env.add_argument("--toml", action="store_true", help="print an lhpipe.toml instead")
    commands.add_parser("down", help="stop the services this stack started, by recorded PID")
    commands.add_parser("status", help="show each service, whether it is ready, and its memory")
    stop = commands.add_parser(
        "stop", help="stop one service, leaving the others running (outage tests)"
    )
    stop.add_argument("service", choices=SERVICE_ORDER)
    start = commands.add_parser(
        "start", help="start one stopped service again with its data (not kafka)"
    )
    start.add_argument("service", choices=SERVICE_ORDER)
    return parser


def main(argv: list[str]) -> int:
    """Run one stack command; 0 on success, 1 when the stack failed, 2 on bad usage."""
    args = _parser().parse_args(argv)
    from lhpipe.stack import control

    try:
        if args.command == "up":
            control.up([*DEFAULT_SERVICES, *args.extra], secure=args.secure)
            return 0
        if args.command == "env":
            return _print_env(
                args.secure, args.kafka_auth, args.lh_auth, args.registry_auth, args.toml
            )
        if args.command == "stop":
            print(control.stop_service(args.service))
            return 0
        if args.command == "start":
            print(control.start_service(args.service))
            return 0
        if args.command == "down":
            if not control.down():
                print("no stack is recorded as running")
            return 0
        statuses = control.status()
        if not statuses:
            print("the stack is down")
            return 1
        for s in statuses:
            state = "ready" if s.ready else ("running, not ready" if s.running else "not running")
            print(f"{s.name:<16} pid {s.pid:<8} {state:<20} rss {s.rss_mib:7.0f} MiB")
        return 0 if all(s.ready for s in statuses) else 1
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _print_env(secure: bool, kafka_auth: str, lh_auth: str, registry_auth: str, toml: bool) -> int:
    from lhpipe.stack import env
    from lhpipe.stack.certs import stack_certs

    if secure:
        certs = stack_certs()
        if certs is None:
            print(
                "error: the secure stack's certificates are not made yet; run "
                "`lhpipe stack up --secure` first",
                file=sys.stderr,
            )
            return 1
        settings = env.secure_settings(certs, kafka_auth, lh_auth, registry_auth)
    else:
        settings = env.open_settings()
    print(env.as_toml(settings) if toml else env.as_exports(settings), end="")
    return 0

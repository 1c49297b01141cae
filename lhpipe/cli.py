"""The `lhpipe` console script: one entry point, subcommands imported lazily (lint stays fast).

Only argparse and this module load at start-up; each command imports what it needs when it runs,
so `lhpipe lint` never imports Kafka, LittleHorse or Avro libraries.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

DEFAULT_PATHS = ["pipelines/"]
#: ``lhpipe run --host``'s default comes from here, else it is ``0.0.0.0`` (every interface);
#: ``--workers`` hands ``--host`` to its workers through it (lhpipe.commands.run reads it).
HOST_VARIABLE = "LHPIPE_HOST"
TLS_CERT_SETTING = "LHPIPE_TLS_CERT"  # as lhpipe.settings names them (not imported: start-up)
TLS_KEY_SETTING = "LHPIPE_TLS_KEY"


def _add_paths(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATHS",
        help="`.lhp` files or folders searched for `*.lhp` (default: pipelines/)",
    )


def _workers(text: str) -> int:
    """The value of ``run --workers``: a whole number of at least 1."""
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return count


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand except `stack` and `demo`, which are handed
    over before parsing."""
    parser = argparse.ArgumentParser(
        prog="lhpipe",
        description="Declarative pipelines into and out of LittleHorse.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    lint = commands.add_parser("lint", help="parse and check .lhp files")
    _add_paths(lint)
    lint.add_argument(
        "--format",
        choices=["text", "json", "github", "sarif"],
        default="text",
        help="output format (default: text)",
    )
    lint.add_argument("--strict", action="store_true", help="fail on warnings too")
    lint.add_argument(
        "--online",
        action="store_true",
        help="also ask LittleHorse and the registry that every WfSpec, ExternalEventDef, "
        "variable and registry subject exists and fits, and Kafka that topics have the "
        "partitions asked for",
    )
    lint.add_argument(
        "--processes",
        type=int,
        metavar="N",
        help="with --online: warn about each topic a pipeline reads that has fewer than N "
        "partitions, N being the lhpipe run processes you run (default: LHPIPE_PROCESSES)",
    )

    fmt = commands.add_parser("fmt", help="rewrite .lhp files in the canonical layout")
    _add_paths(fmt)
    fmt.add_argument(
        "--check",
        action="store_true",
        help="write nothing; list the files that would change and exit 1 if any",
    )

    graph = commands.add_parser("graph", help="draw the execution graph")
    _add_paths(graph)
    graph.add_argument(
        "--format",
        choices=["dot", "mermaid", "svg", "png", "json"],
        default="dot",
        help="output format (default: dot); svg and png need Graphviz's `dot`",
    )
    graph.add_argument("-o", "--output", metavar="FILE", help="write to FILE, not stdout")

    test = commands.add_parser("test", help="run the `test` blocks")
    _add_paths(test)

    run = commands.add_parser("run", help="run every pipeline and webhook")
    _add_paths(run)
    run.add_argument("--watch", action="store_true", help="hot-reload on file changes")
    run.add_argument("--port", type=int, default=8080, help="HTTP port (default: 8080)")
    run.add_argument(
        "--host",
        metavar="ADDRESS",
        help="the address the HTTP port is bound to: 127.0.0.1 keeps it on this machine, "
        f"`::` takes IPv6 too (default: ${HOST_VARIABLE}, else 0.0.0.0, every interface)",
    )
    run.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="serve HTTPS with this PEM certificate (chain); needs --tls-key "
        f"(default: ${TLS_CERT_SETTING})",
    )
    run.add_argument(
        "--tls-key",
        metavar="FILE",
        help=f"the PEM private key of --tls-cert (default: ${TLS_KEY_SETTING})",
    )
    run.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help="run N engine processes sharing the port and the consumer groups (default: 1)",
    )

    # Listed for --help only: main() hands these over before argparse sees them.
    commands.add_parser("stack", help="manage the local stack (Kafka, LittleHorse, ...)")
    commands.add_parser("demo", help="run the example pipelines against the local stack")
    return parser


def _run(ns: argparse.Namespace) -> int:
    paths: list[str] = ns.paths or DEFAULT_PATHS
    if ns.command == "lint":
        from lhpipe.commands.lint import run_lint

        if ns.processes is not None and (ns.processes < 1 or not ns.online):
            why = "needs --online" if ns.processes >= 1 else "must be at least 1"
            print(f"lhpipe lint: argument --processes: {why}", file=sys.stderr)
            return 2
        return run_lint(
            paths,
            output_format=ns.format,
            strict=ns.strict,
            online=ns.online,
            processes=ns.processes,
        )
    if ns.command == "fmt":
        from lhpipe.commands.fmt import run_fmt

        return run_fmt(paths, check=ns.check)
    if ns.command == "graph":
        from lhpipe.commands.graph import run_graph

        return run_graph(paths, output_format=ns.format, output=ns.output)
    if ns.command == "test":
        from lhpipe.commands.test import run_test

        return run_test(paths)
    if ns.command == "run" and (ns.tls_cert is not None or ns.tls_key is not None):
        # Read by every engine process (each worker too) as the settings of the same names.
        if ns.tls_cert is None or ns.tls_key is None:
            print("lhpipe run: --tls-cert and --tls-key go together", file=sys.stderr)
            return 2
        os.environ[TLS_CERT_SETTING] = ns.tls_cert
        os.environ[TLS_KEY_SETTING] = ns.tls_key
    if ns.workers > 1:
        from lhpipe.commands.workers import run_workers

        if ns.host is not None:
            # Each worker is `lhpipe run` without --host: it finds the address here.
            os.environ[HOST_VARIABLE] = ns.host
        return run_workers(paths, port=ns.port, watch=ns.watch, workers=ns.workers)
    from lhpipe.commands.run import run_engine

    # Without --host, run_engine takes $LHPIPE_HOST, else every interface.
    where = {} if ns.host is None else {"host": ns.host}
    return run_engine(paths, port=ns.port, watch=ns.watch, **where)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "stack":
        from lhpipe.stack.cli import main as stack_main

        return stack_main(args[1:])
    if args and args[0] == "demo":
        from lhpipe.demo.cli import main as demo_main

        return demo_main(args[1:])
    parser = build_parser()
    try:
        ns = parser.parse_args(args)
        if ns.command == "run" and ns.workers > 1 and ns.port == 0:
            # Each worker would pick a port of its own.
            parser.error("argument --workers: needs a fixed --port, not 0")
    except SystemExit as exc:
        # argparse exits 2 on a usage error and 0 after --help; in-process callers get it back.
        return exc.code if isinstance(exc.code, int) else 2
    return _run(ns)


if __name__ == "__main__":
    raise SystemExit(main())

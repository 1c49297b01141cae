"""Benchmark: the memory of an idle ``lhpipe run`` with 50 pipelines loaded (performance.md).

Against the running local stack (``lhpipe stack up``): creates 50 empty topics and a few
WfSpecs, writes 50 varied pipelines (``from topic`` with JSON, string and inline-schema values;
``where`` and ``let`` steps; ``run_wf`` with generated ids, ids from the value, explicit
variables; dead-letter topics on some), starts ``lhpipe run`` on them, waits until ``/readyz``
answers 200, lets the process settle, then reads its resident set size (``VmRSS`` of
``/proc/PID/status``) a few times and prints the largest against the goal (under 150 MiB).
The process is always stopped and the topics deleted.

Run: ``.venv/bin/python bench/idle_memory.py [--pipelines N] [--settle SECONDS]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import _stack
from _stack import KAFKA, LHPIPE, free_port, stop
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from littlehorse.workflow import Workflow, WorkflowThread

GOAL_MIB = 150
READY_TIMEOUT_SECONDS = 120.0
SAMPLES = 5


def register_wf_specs(prefix: str, count: int) -> list[str]:
    """``count`` WfSpecs with a few typed variables and no tasks."""

    def entrypoint(wf: WorkflowThread) -> None:
        wf.declare_str("name")
        wf.declare_int("amount")
        wf.declare_bool("vip")
        wf.declare_json_obj("details")

    names = [f"{prefix}-{i}" for i in range(count)]
    _stack.register_wf_specs(Workflow(name, entrypoint) for name in names)
    return names


def pipeline_text(i: int, topic: str, wf_spec: str, dead_letter: str) -> str:
    """One of five shapes, so the 50 pipelines are not all alike."""
    name = f"idle_{i}"
    shape = i % 5
    if shape == 0:
        return (
            f"pipeline {name} {{\n"
            f'  from topic "{topic}" {{ value = json }}\n'
            f'  run_wf "{wf_spec}"\n'
            "}\n"
        )
    if shape == 1:
        return (
            f"pipeline {name} {{\n"
            f'  from topic "{topic}" {{ value = json }}\n'
            "  where value.amount > 0\n"
            f'  run_wf "{wf_spec}" {{\n'
            "    id = value.order_id\n"
            "    variables {\n"
            "      name = value.name  amount = value.amount  vip = value.amount > 1000\n"
            "    }\n"
            "  }\n"
            f'  on_error {{ retry = 5  dead_letter = "{dead_letter}" }}\n'
            "}\n"
        )
    if shape == 2:
        return (
            f"schema Order{i} {{\n  order_id: string\n  name: string\n  amount: long\n}}\n\n"
            f"pipeline {name} {{\n"
            f'  from topic "{topic}" {{ value = Order{i} }}\n'
            '  let who = "${value.name} (${value.order_id})"\n'
            f'  run_wf "{wf_spec}" {{\n'
            "    id = value.order_id\n"
            "    variables { name = who  amount = value.amount }\n"
            "  }\n"
            "}\n"
        )
    if shape == 3:
        return (
            f"pipeline {name} {{\n"
            f'  from topic "{topic}" {{ value = string }}\n'
            f'  run_wf "{wf_spec}" {{ variables {{ name = value }} }}\n'
            f'  on_error {{ dead_letter = "{dead_letter}" }}\n'
            "}\n"
        )
    return (
        f"pipeline {name} {{\n"
        f'  from topic "{topic}" {{ value = json  key = string }}\n'
        '  where value.kind == "order"\n'
        f'  run_wf "{wf_spec}" {{ variables {{ name = key  details = value }} }}\n'
        "  on_error { permanent = skip }\n"
        "}\n"
    )


def readyz(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            status: int = answer.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS line")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipelines", type=int, default=50)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds after ready")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    count: int = args.pipelines

    run_id = uuid.uuid4().hex[:8]
    wf_specs = register_wf_specs(f"bench-idle-{run_id}", 5)
    topics = [f"bench-idle-{run_id}-{i}" for i in range(count)]
    dead_letters = [f"bench-idle-{run_id}-dlq-{i}" for i in range(count)]
    admin = AdminClient({"bootstrap.servers": KAFKA})
    for future in admin.create_topics(
        [NewTopic(t, num_partitions=1, replication_factor=1) for t in topics]
    ).values():
        future.result(timeout=30)
    print(f"{count} topics, {len(wf_specs)} WfSpecs")
    try:
        with tempfile.TemporaryDirectory(prefix="lhpipe-idle-") as tmp:
            folder = Path(tmp)
            for i, topic in enumerate(topics):
                text = pipeline_text(i, topic, wf_specs[i % len(wf_specs)], dead_letters[i])
                (folder / f"idle_{i}.lhp").write_text(text, encoding="utf-8")
            port = free_port()
            with (folder / "lhpipe.log").open("wb") as log_file:
                started = time.perf_counter()
                process = subprocess.Popen(
                    [str(LHPIPE), "run", str(folder), "--port", str(port)],
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    cwd=folder,
                )
                try:
                    while readyz(port) != 200:
                        if process.poll() is not None:
                            output = (folder / "lhpipe.log").read_text(errors="replace")
                            print(f"lhpipe run exited with {process.returncode}:\n{output[-3000:]}")
                            return 1
                        if time.perf_counter() - started > READY_TIMEOUT_SECONDS:
                            print(f"/readyz not 200 after {READY_TIMEOUT_SECONDS:.0f} s")
                            return 1
                        time.sleep(0.2)
                    ready_after = time.perf_counter() - started
                    print(f"ready after {ready_after:.1f} s; RSS {rss_mib(process.pid):.1f} MiB")
                    time.sleep(args.settle)
                    samples = []
                    for _ in range(SAMPLES):
                        samples.append(rss_mib(process.pid))
                        time.sleep(1.0)
                finally:
                    stop(process)
    finally:
        existing = set(admin.list_topics(timeout=10).topics)
        doomed = [t for t in (*topics, *dead_letters) if t in existing]
        for future in admin.delete_topics(doomed).values():
            future.result(timeout=30)
    rss = max(samples)
    print(f"idle RSS with {count} pipelines, {args.settle:.0f} s after ready: {rss:.1f} MiB")
    print(f"  (samples: {', '.join(f'{s:.1f}' for s in samples)})")
    print(f"goal < {GOAL_MIB} MiB: {'met' if rss < GOAL_MIB else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

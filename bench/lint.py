"""Benchmark: a cold `lhpipe lint` of 200 realistic files against `python -c pass`.

Generates 200 `.lhp` files of about 40 lines (schemas, webhooks, pipelines with `where`, `let`
and several targets) in a temporary folder, then times, in fresh processes, `lhpipe lint` of
that folder and `python -c pass`, alternating, five times each. Prints the medians, their
difference and the goal from shared/spec/performance.md (lint under 1.5 s).

Run: `make bench` or `.venv/bin/python bench/lint.py [--files N] [--repeat N]`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_SECONDS = 1.5

COUNTRIES = ["DE", "FR", "NL", "SE", "PL", "ES", "IT"]


def pipeline_file(i: int) -> str:
    """One file of about 40 lines; every name carries ``i`` so that 200 files check together."""
    country = COUNTRIES[i % len(COUNTRIES)]
    auth = (
        f'oauth {{\n    issuer = env("OIDC_ISSUER")\n    audience = "shop-{i}"\n'
        f'    scopes = ["orders:write"]\n  }}'
        if i % 2 == 0
        else f'hmac {{ preset = standard_webhooks  secret = env("HOOK_SECRET_{i}") }}'
    )
    extra_target = (
        f'  to topic "order-audit-{i}" {{ key = value.order_id  value = {{ id = who }} }}'
        if i % 3 == 0
        else "  to log"
    )
    return f"""// generated order pipeline {i}
schema Order{i} {{
  order_id: string
  customer_id: string
  email: string
  country: string
  amount_cents: long
  items: [string]
  note: string?
}}

webhook orders_{i} {{
  path = "/hooks/orders/{i}"
  auth = {auth}
  body = Order{i}
  topic = "orders-{i}"
  key = body.order_id
}}

pipeline order_flow_{i} {{
  from webhook orders_{i}
  where value.amount_cents > 0 and value.country == "{country}"
  let who = "${{lower(value.email)}} (${{value.customer_id}})"
  let big = value.amount_cents >= 100000
  run_wf "process-order" {{
    id = value.order_id
    variables {{ customer = who  amount_cents = value.amount_cents  big = big }}
  }}
  post_event "order-received" {{ wf_run_id = value.customer_id  content = value.order_id }}
{extra_target}
  on_error {{ retry = 5  backoff = 200ms  dead_letter = "orders-dlq-{i}" }}
}}

pipeline order_export_{i} {{
  from topic "orders-{i}" {{ value = Order{i} }}
  where len(value.items) > 0
  to http "https://erp.example.com/orders" {{ method = "PUT"  body = value }}
}}
"""


def timed(command: list[str]) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, check=False)
    return time.perf_counter() - start, completed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    lhpipe = Path(sys.executable).with_name("lhpipe")
    lint_command = (
        [str(lhpipe), "lint"] if lhpipe.exists() else [sys.executable, "-m", "lhpipe.cli", "lint"]
    )
    with tempfile.TemporaryDirectory(prefix="lhpipe-bench-") as tmp:
        folder = Path(tmp)
        lines = 0
        for i in range(args.files):
            text = pipeline_file(i)
            lines += text.count("\n")
            (folder / f"orders_{i:03}.lhp").write_text(text, encoding="utf-8")
        print(f"{args.files} files, {lines / args.files:.0f} lines each on average, in {folder}")

        _, check = timed([*lint_command, str(folder)])
        if check.returncode != 0:
            print(check.stdout.decode()[-2000:], check.stderr.decode()[-2000:], sep="\n")
            print(f"error: lint of the generated files exited {check.returncode}, expected 0")
            return 1

        lint_times: list[float] = []
        baseline_times: list[float] = []
        for _ in range(args.repeat):
            baseline_times.append(timed([sys.executable, "-c", "pass"])[0])
            lint_times.append(timed([*lint_command, str(folder)])[0])

    lint = statistics.median(lint_times)
    baseline = statistics.median(baseline_times)
    print(
        f"lhpipe lint    median {lint:.3f} s  (runs: {', '.join(f'{t:.3f}' for t in lint_times)})"
    )
    print(
        f"python -c pass median {baseline:.3f} s  "
        f"(runs: {', '.join(f'{t:.3f}' for t in baseline_times)})"
    )
    print(f"difference     {lint - baseline:.3f} s")
    verdict = "met" if lint < GOAL_SECONDS else "MISSED"
    print(f"goal: lint < {GOAL_SECONDS} s: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

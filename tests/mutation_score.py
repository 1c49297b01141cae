"""The score of a mutation run (`make mutation`): per mutated module, the share of mutants the
unit tests killed. A mutant that made the tests time out counts as killed (the tests did not
pass); one that no test reaches counts as a survivor. Exits 1 when a module is under the goal.

Run after `mutmut run`, from the folder that holds `mutants/`."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

GOAL = 0.90
KILLED = {"killed", "timeout"}


def module_of(mutant: str) -> str:
    # lhpipe.runtime.commit.xǁPartitionOffsetsǁmark_done__mutmut_2 -> lhpipe.runtime.commit
    # lhpipe.runtime.delivery.x_classify__mutmut_3                   -> lhpipe.runtime.delivery
    head = mutant.split("__mutmut_")[0]
    return head.rsplit(".", 1)[0]


def main() -> int:
    mutmut = Path(sys.executable).with_name("mutmut")
    listing = subprocess.run(
        [str(mutmut), "results", "--all", "true"], capture_output=True, text=True, check=True
    ).stdout
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    survivors: dict[str, list[str]] = defaultdict(list)
    for line in listing.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if not sep or "__mutmut_" not in name:
            continue
        if status == "not checked":  # outside this run (`make mutation MUTANTS=...`)
            continue
        module = module_of(name)
        counts[module][status] += 1
        if status not in KILLED:
            survivors[module].append(f"{name} ({status})")
    if not counts:
        print("no mutation results: run `mutmut run` first", file=sys.stderr)
        return 2
    below = []
    print(f"{'module':45} {'killed':>7} {'total':>6} {'score':>7}")
    for module in sorted(counts):
        total = sum(counts[module].values())
        killed = sum(n for status, n in counts[module].items() if status in KILLED)
        score = killed / total
        mark = "" if score >= GOAL else "  < goal"
        print(f"{module:45} {killed:7} {total:6} {score:7.1%}{mark}")
        if score < GOAL:
            below.append(module)
    print()
    for module in sorted(survivors):
        print(f"survivors in {module}:")
        for name in survivors[module]:
            print(f"  {name}")
    if below:
        print(f"\nunder {GOAL:.0%}: {', '.join(below)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

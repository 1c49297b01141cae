"""The `lhpipe` console script: one entry point, subcommands imported lazily (lint stays fast)."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "stack":
        from lhpipe.stack.cli import main as stack_main

        return stack_main(args[1:])
    if args and args[0] == "demo":
        print(
            "lhpipe demo: the local stack is up; the engine (`lhpipe run --watch`) is not built "
            "yet, so no pipelines run. Try `lhpipe lint pipelines/` and `lhpipe graph pipelines/`."
        )
        return 0
    print("usage: lhpipe {lint,fmt,graph,test,run,stack} ...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())

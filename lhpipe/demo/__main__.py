"""``python -m lhpipe.demo ARGS`` is ``lhpipe demo ARGS``."""

import sys

from lhpipe.demo.cli import main

raise SystemExit(main(sys.argv[1:]))

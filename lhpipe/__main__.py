"""``python -m lhpipe``: the ``lhpipe`` console script (the workers of ``lhpipe run --workers N``
are started this way, with the parent's own interpreter)."""

from lhpipe.cli import main

raise SystemExit(main())

"""Where the stack keeps its downloads and its running state: outside the clone, in the cache."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """`$LHPIPE_CACHE_DIR`, else `$XDG_CACHE_HOME/lhpipe`, else `~/.cache/lhpipe`."""
    explicit = os.environ.get("LHPIPE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "lhpipe"


def downloads_dir() -> Path:
    """Resolved services, one `<service>-<version>/` directory each."""
    return cache_root() / "stack"


def run_dir() -> Path:
    """Data, logs, configuration and PIDs of the running stack; data is recreated on every `up`."""
    explicit = os.environ.get("LHPIPE_RUN_DIR")
    return Path(explicit).expanduser() if explicit else cache_root() / "run"

"""The one exception the stack raises: a message meant for the person at the terminal."""

from __future__ import annotations


class StackError(Exception):
    """Bringing the stack up or down failed; `str()` says why and, where possible, what to do."""

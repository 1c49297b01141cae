"""Waiting for something a test started in another thread or process: poll with a deadline,
never a fixed sleep."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


def wait_for(
    condition: Callable[[], Any], what: str, timeout: float = 30.0, every: float = 0.05
) -> Any:
    """Poll ``condition`` every ``every`` seconds until it returns something truthy, and return
    that; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


async def until(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> None:
    """:func:`wait_for` for a test on the event loop: polls without blocking the loop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.01)

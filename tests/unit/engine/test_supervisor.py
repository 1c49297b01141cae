"""The Supervisor reports pipelines it cannot run instead of failing the process."""

from __future__ import annotations

import asyncio

import pytest

from lhpipe.engine.supervisor import Supervisor
from lhpipe.kinds import compile_program, load_texts
from lhpipe.runtime.status import PipelineStatus, State
from lhpipe.settings import Settings, SettingsError

PROGRAM = """
webhook direct_hook {
  path = "/hooks/direct"
  auth = none
}

pipeline direct {
  from webhook direct_hook
  to log
}

pipeline orders {
  from topic "orders" { value = json }
  to log
  on_error { dead_letter = env("ORDERS_DLQ") }
}
"""


def _statuses(environ: dict[str, str]) -> list[PipelineStatus]:
    result = load_texts({"p.lhp": PROGRAM})
    assert result.program is not None, result.diagnostics
    compiled = compile_program(result.program)
    supervisor = Supervisor(compiled, result.program, Settings(environ=environ))

    async def scenario() -> list[PipelineStatus]:
        await supervisor.start()
        statuses = supervisor.statuses()
        await supervisor.stop(deadline=1)
        return statuses

    return asyncio.run(scenario())


def test_pipelines_that_cannot_run_are_failed_with_the_reason_in_declaration_order() -> None:
    statuses = _statuses({})
    assert [s.name for s in statuses] == ["direct", "orders"]
    direct, orders = statuses
    assert orders.state is State.FAILED and not orders.ready
    assert "dead_letter: env('ORDERS_DLQ') is not set" in (orders.detail or "")
    # A direct-mode webhook's pipeline runs inside the Gateway's requests.
    assert direct.state is State.RUNNING and direct.ready


def test_a_bad_in_flight_setting_is_refused() -> None:
    result = load_texts({"p.lhp": PROGRAM})
    assert result.program is not None
    compiled = compile_program(result.program)
    with pytest.raises(SettingsError, match="LHPIPE_MAX_IN_FLIGHT must be at least 1"):
        Supervisor(compiled, result.program, Settings(environ={"LHPIPE_MAX_IN_FLIGHT": "0"}))

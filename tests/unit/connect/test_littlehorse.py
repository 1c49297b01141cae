"""The LittleHorse client against an in-process gRPC server speaking LittleHorse's service:
requests as LittleHorse receives them, ALREADY_EXISTS as success, error classes, deadlines,
the tenant header, fresh metadata after a type mismatch; and the LHC_* settings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
from littlehorse.model import (
    CorrelatedEvent,
    ExternalEvent,
    ExternalEventDef,
    ExternalEventDefId,
    LittleHorseServicer,
    LittleHorseVersion,
    ReturnType,
    ThreadSpec,
    ThreadVarDef,
    TypeDefinition,
    VariableDef,
    VariableType,
    WfRun,
    WfRunId,
    WfSpec,
    WfSpecId,
    add_LittleHorseServicer_to_server,
)

from lhpipe.clients.lh_values import UndeclaredVariableError
from lhpipe.clients.littlehorse import (
    LittleHorseClient,
    LittleHorseConnection,
    LittleHorsePausedError,
    LittleHorsePermanentError,
    LittleHorseTransientError,
    classify,
)
from lhpipe.core.errors import PausedError, PermanentError, TransientError
from lhpipe.core.plans import CorrelatePlan, PostEventPlan, RunWfPlan, TopicPlan
from lhpipe.core.senders import ALREADY_EXISTS
from lhpipe.settings import Settings, SettingsError

S = grpc.StatusCode


def spec(revision: int, **variables: VariableType) -> WfSpec:
    thread = ThreadSpec(
        variable_defs=[
            ThreadVarDef(var_def=VariableDef(name=n, type_def=TypeDefinition(primitive_type=t)))
            for n, t in variables.items()
        ]
    )
    return WfSpec(
        id=WfSpecId(name="kyc", major_version=0, revision=revision),
        entrypoint_thread_name="entrypoint",
        thread_specs={"entrypoint": thread},
    )


class FakeLittleHorse(LittleHorseServicer):  # type: ignore[misc]
    """Records what it receives; answers as configured."""

    def __init__(self) -> None:
        self.wf_spec = spec(0, age=VariableType.INT)
        self.event_content = VariableType.DOUBLE
        self.received: list[tuple[str, Any]] = []
        self.tenants: list[str | None] = []
        self.answers: list[tuple[grpc.StatusCode, str]] = []  # next failures of writes
        self.delay = 0.0

    async def _write(self, name: str, request: Any, context: Any) -> None:
        self.tenants.append(dict(context.invocation_metadata()).get("tenantid"))
        self.received.append((name, request))
        await asyncio.sleep(self.delay)
        if self.answers:
            code, details = self.answers.pop(0)
            await context.abort(code, details)

    async def RunWf(self, request: Any, context: Any) -> WfRun:
        await self._write("RunWf", request, context)
        return WfRun()

    async def PutExternalEvent(self, request: Any, context: Any) -> ExternalEvent:
        await self._write("PutExternalEvent", request, context)
        return ExternalEvent()

    async def PutCorrelatedEvent(self, request: Any, context: Any) -> CorrelatedEvent:
        await self._write("PutCorrelatedEvent", request, context)
        return CorrelatedEvent()

    async def GetLatestWfSpec(self, request: Any, context: Any) -> WfSpec:
        self.received.append(("GetLatestWfSpec", request))
        if request.name != "kyc":
            await context.abort(S.NOT_FOUND, "Couldn't find specified WfSpec")
        return self.wf_spec

    async def GetWfSpec(self, request: Any, context: Any) -> WfSpec:
        self.received.append(("GetWfSpec", request))
        return self.wf_spec

    async def GetExternalEventDef(self, request: Any, context: Any) -> ExternalEventDef:
        self.received.append(("GetExternalEventDef", request))
        return ExternalEventDef(
            id=ExternalEventDefId(name=request.name),
            type_information=ReturnType(
                return_type=TypeDefinition(primitive_type=self.event_content)
            ),
        )

    async def GetServerVersion(self, request: Any, context: Any) -> LittleHorseVersion:
        return LittleHorseVersion(major_version=1, minor_version=2, patch_version=1)

    def names(self) -> list[str]:
        return [name for name, _ in self.received]


@asynccontextmanager
async def serving(
    fake: FakeLittleHorse, *, deadline: float = 5.0, tenant: str | None = "acme"
) -> AsyncIterator[LittleHorseClient]:
    server = grpc.aio.server()
    add_LittleHorseServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    client = LittleHorseClient(
        LittleHorseConnection(host="127.0.0.1", port=port, tenant=tenant, deadline_seconds=deadline)
    )
    try:
        yield client
    finally:
        await client.close()
        await server.stop(None)


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


# ---------------------------------------------------------------------------------------------
# requests
# ---------------------------------------------------------------------------------------------


def test_run_wf_sends_the_plan_with_variables_typed_by_the_wf_spec() -> None:
    fake = FakeLittleHorse()

    async def go() -> None:
        async with serving(fake) as client:
            await client.send(
                RunWfPlan("kyc", "ann-1", {"age": "30"}, parent_wf_run_id="family-1_ann")
            )

    run(go)
    assert fake.names() == ["GetLatestWfSpec", "RunWf"]
    request = fake.received[1][1]
    assert (request.wf_spec_name, request.id) == ("kyc", "ann-1")
    assert not request.HasField("major_version") and not request.HasField("revision")
    assert request.variables["age"].int == 30
    parent = request.parent_wf_run_id
    assert (parent.id, parent.parent_wf_run_id.id) == ("ann", "family-1")
    assert fake.tenants == ["acme"]


def test_a_pinned_wf_spec_version_is_fetched_and_sent_as_given() -> None:
    fake = FakeLittleHorse()

    async def go() -> None:
        async with serving(fake) as client:
            await client.send(RunWfPlan("kyc", "a", {}, major_version=0, revision=0))

    run(go)
    assert fake.names() == ["GetWfSpec", "RunWf"]
    request = fake.received[1][1]
    assert (request.major_version, request.revision) == (0, 0)


def test_post_event_addresses_a_child_wf_run_and_types_the_content() -> None:
    fake = FakeLittleHorse()

    async def go() -> None:
        async with serving(fake) as client:
            await client.send(
                PostEventPlan("paid", "order-1_pay-2", "g-1", 12, thread_run_number=0)
            )

    run(go)
    request = fake.received[-1][1]
    assert (request.wf_run_id.id, request.wf_run_id.parent_wf_run_id.id) == ("pay-2", "order-1")
    assert (request.external_event_def_id.name, request.guid) == ("paid", "g-1")
    assert request.content.WhichOneof("value") == "double"
    assert request.HasField("thread_run_number") and not request.HasField("node_run_position")


def test_ids_name_a_chain_of_parents_from_left_to_right() -> None:
    fake = FakeLittleHorse()

    async def go() -> None:
        async with serving(fake) as client:
            await client.send(RunWfPlan("kyc", "c", {}, parent_wf_run_id="a_b"))
            await client.send(PostEventPlan("paid", "a_b_c", "g-1", 12))

    run(go)
    a_b = WfRunId(id="b", parent_wf_run_id=WfRunId(id="a"))
    run_wf = next(request for name, request in fake.received if name == "RunWf")
    post_event = fake.received[-1][1]
    assert (run_wf.id, run_wf.parent_wf_run_id) == ("c", a_b)
    assert post_event.wf_run_id == WfRunId(id="c", parent_wf_run_id=a_b)


def test_correlate_sends_the_key_and_typed_content() -> None:
    fake = FakeLittleHorse()
    fake.event_content = VariableType.STR

    async def go() -> None:
        async with serving(fake) as client:
            await client.send(CorrelatePlan("paid", "order-7", 12.5))

    run(go)
    request = fake.received[-1][1]
    assert (request.key, request.content.str) == ("order-7", "12.5")


def test_metadata_is_fetched_once_for_many_sends() -> None:
    fake = FakeLittleHorse()

    async def go() -> None:
        async with serving(fake) as client:
            await asyncio.gather(
                *(client.send(RunWfPlan("kyc", f"id-{i}", {"age": i})) for i in range(10))
            )

    run(go)
    assert fake.names().count("GetLatestWfSpec") == 1
    assert fake.names().count("RunWf") == 10


def test_a_sender_of_another_kind_of_plan_is_a_programming_error() -> None:
    fake = FakeLittleHorse()

    async def go() -> None:
        async with serving(fake) as client:
            await client.send(TopicPlan("t", None, 1))

    with pytest.raises(TypeError, match="cannot send a TopicPlan"):
        run(go)


# ---------------------------------------------------------------------------------------------
# outcomes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plan", "call", "field", "value"),
    [
        (RunWfPlan("kyc", "ann-1", {}), "RunWf", "id", "ann-1"),
        (PostEventPlan("paid", "ann-1", "g", 1.0), "PutExternalEvent", "guid", "g"),
        (CorrelatePlan("paid", "k", 1.0), "PutCorrelatedEvent", "key", "k"),
    ],
)
def test_already_exists_is_success(plan: Any, call: str, field: str, value: str) -> None:
    fake = FakeLittleHorse()
    fake.answers = [(S.ALREADY_EXISTS, "already exists")]

    async def go() -> tuple[str | None, str | None]:
        async with serving(fake) as client:
            existed = await client.send(plan)
            return existed, await client.send(plan)  # answered as a new call this time

    assert asyncio.run(go()) == (ALREADY_EXISTS, None)
    writes = [(name, request) for name, request in fake.received if not name.startswith("Get")]
    assert [(name, getattr(request, field)) for name, request in writes] == [(call, value)] * 2
    assert fake.answers == []


@pytest.mark.parametrize(
    ("code", "error_class"),
    [
        (S.UNAVAILABLE, LittleHorseTransientError),
        (S.RESOURCE_EXHAUSTED, LittleHorseTransientError),
        (S.ABORTED, LittleHorseTransientError),
        (S.INTERNAL, LittleHorseTransientError),
        (S.CANCELLED, LittleHorseTransientError),
        (S.UNAUTHENTICATED, LittleHorsePausedError),
        (S.PERMISSION_DENIED, LittleHorsePausedError),
        (S.FAILED_PRECONDITION, LittleHorsePausedError),
        (S.INVALID_ARGUMENT, LittleHorsePermanentError),
        (S.NOT_FOUND, LittleHorsePermanentError),
    ],
)
def test_grpc_failures_are_classified_with_the_status_name(
    code: grpc.StatusCode, error_class: type[Exception]
) -> None:
    fake = FakeLittleHorse()
    fake.answers = [(code, "details from the server")]

    async def go() -> None:
        async with serving(fake) as client:
            await client.send(RunWfPlan("kyc", "ann-1", {}))

    with pytest.raises(error_class) as caught:
        run(go)
    error = caught.value
    assert getattr(error, "code", None) == code.name
    assert str(error) == f"RunWf kyc id ann-1: {code.name}: details from the server"


def test_the_classes_are_the_engines_three() -> None:
    assert isinstance(classify(S.DEADLINE_EXCEEDED, ""), TransientError)
    assert isinstance(classify(S.FAILED_PRECONDITION, ""), PausedError)
    assert isinstance(classify(S.OUT_OF_RANGE, ""), PermanentError)
    assert classify(S.UNIMPLEMENTED, "").code == "UNIMPLEMENTED"


def test_a_call_past_its_deadline_is_transient_deadline_exceeded() -> None:
    fake = FakeLittleHorse()
    fake.delay = 1.0

    async def go() -> None:
        async with serving(fake, deadline=0.2) as client:
            await client.send(RunWfPlan("kyc", "ann-1", {}))

    with pytest.raises(LittleHorseTransientError) as caught:
        run(go)
    assert caught.value.code == "DEADLINE_EXCEEDED"


def test_an_unknown_wf_spec_is_permanent_not_found_before_any_run() -> None:
    fake = FakeLittleHorse()

    async def go() -> None:
        async with serving(fake) as client:
            await client.send(RunWfPlan("nope", "ann-1", {}))

    with pytest.raises(LittleHorsePermanentError) as caught:
        run(go)
    assert caught.value.code == "NOT_FOUND"
    assert "WfSpec nope" in caught.value.message
    assert "RunWf" not in fake.names()


def test_a_type_mismatch_refetches_the_wf_spec_and_retries_once_with_new_types() -> None:
    fake = FakeLittleHorse()

    async def go() -> None:
        async with serving(fake) as client:
            await client.send(RunWfPlan("kyc", "a", {"age": 1}))
            # A new revision makes `age` a DOUBLE: the cached INT no longer fits.
            fake.wf_spec = spec(1, age=VariableType.DOUBLE)
            fake.answers = [
                (
                    S.INVALID_ARGUMENT,
                    "ThreadSpec entrypoint invalid: Variable age invalid: Value of type INT "
                    "is not compatible with expected type DOUBLE",
                )
            ]
            await client.send(RunWfPlan("kyc", "b", {"age": 2}))

    run(go)
    assert fake.names() == ["GetLatestWfSpec", "RunWf", "RunWf", "GetLatestWfSpec", "RunWf"]
    retried = fake.received[-1][1]
    assert retried.variables["age"].WhichOneof("value") == "double"


def test_a_second_type_mismatch_is_permanent() -> None:
    fake = FakeLittleHorse()
    mismatch = (S.INVALID_ARGUMENT, "Invalid type of content for event")
    fake.answers = [mismatch, mismatch]

    async def go() -> None:
        async with serving(fake) as client:
            await client.send(PostEventPlan("paid", "a", "g", 1.0))

    with pytest.raises(LittleHorsePermanentError) as caught:
        run(go)
    assert caught.value.code == "INVALID_ARGUMENT"
    assert fake.names().count("PutExternalEvent") == 2


def test_an_undeclared_variable_fails_fast_without_a_run() -> None:
    fake = FakeLittleHorse()

    async def go() -> None:
        async with serving(fake) as client:
            await client.send(RunWfPlan("kyc", "a", {"agee": 1}))

    with pytest.raises(UndeclaredVariableError, match="agee is not declared by WfSpec kyc"):
        run(go)
    assert fake.names() == ["GetLatestWfSpec"]


# ---------------------------------------------------------------------------------------------
# health
# ---------------------------------------------------------------------------------------------


def test_ping_and_connected_follow_the_server() -> None:
    fake = FakeLittleHorse()

    async def go() -> tuple[bool, bool, bool]:
        async with serving(fake) as client:
            before = client.connected()
            answered = await client.ping()
            return before, answered, client.connected()

    assert asyncio.run(go()) == (False, True, True)


def test_ping_of_a_server_that_is_gone_is_false_and_not_connected() -> None:
    async def go() -> tuple[bool, bool]:
        server = grpc.aio.server()
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        await server.stop(None)
        client = LittleHorseClient(LittleHorseConnection("127.0.0.1", port, deadline_seconds=1))
        try:
            return await client.ping(), client.connected()
        finally:
            await client.close()

    assert asyncio.run(go()) == (False, False)


# ---------------------------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------------------------


def settings(**environ: str) -> Settings:
    return Settings(environ=environ)


def test_the_defaults_reach_the_local_stack() -> None:
    connection = LittleHorseConnection.from_settings(settings())
    assert (connection.target, connection.tls, connection.tenant) == (
        "127.0.0.1:2023",
        False,
        "default",
    )
    assert connection.deadline_seconds == 10.0


def test_lhc_settings_and_the_deadline_are_read() -> None:
    connection = LittleHorseConnection.from_settings(
        settings(
            LHC_API_HOST="lh.example.com",
            LHC_API_PORT="443",
            LHC_API_PROTOCOL="tls",
            LHC_TENANT_ID="acme",
            LHC_OAUTH_CLIENT_ID="lhpipe",
            LHC_OAUTH_CLIENT_SECRET="s3cret",
            LHC_OAUTH_ACCESS_TOKEN_URL="https://idp.example.com/token",
            LHPIPE_LITTLEHORSE_DEADLINE_MS="2500",
        )
    )
    assert (connection.target, connection.tls, connection.tenant) == (
        "lh.example.com:443",
        True,
        "acme",
    )
    assert connection.oauth and connection.oauth_token_url == "https://idp.example.com/token"
    assert connection.deadline_seconds == 2.5
    assert "s3cret" not in repr(connection)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"LHC_API_PROTOCOL": "QUIC"}, "PLAINTEXT or TLS"),
        ({"LHC_API_PORT": "twenty"}, "LHC_API_PORT must be a whole number"),
        ({"LHPIPE_LITTLEHORSE_DEADLINE_MS": "0"}, "must be positive"),
        ({"LHC_OAUTH_CLIENT_ID": "x", "LHC_API_PROTOCOL": "TLS"}, "needs LHC_OAUTH_CLIENT_SECRET"),
        (
            {
                "LHC_OAUTH_CLIENT_ID": "x",
                "LHC_OAUTH_CLIENT_SECRET": "y",
                "LHC_OAUTH_ACCESS_TOKEN_URL": "http://127.0.0.1/token",
            },
            "needs LHC_API_PROTOCOL=TLS",
        ),
    ],
)
def test_bad_settings_are_one_clear_error(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        LittleHorseConnection.from_settings(settings(**environ))

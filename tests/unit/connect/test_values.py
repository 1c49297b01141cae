"""Run-time values into LittleHorse VariableValues: the default mapping, coercion to declared
types (StructDefs included), undeclared variables, and the metadata cache over a fake server."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from littlehorse.model import (
    CorrelatedEventConfig,
    ExternalEventDef,
    ExternalEventDefId,
    InlineStructDef,
    ReturnType,
    StructDef,
    StructDefId,
    StructFieldDef,
    ThreadSpec,
    ThreadVarDef,
    TypeDefinition,
    VariableDef,
    VariableType,
    VariableValue,
    WfRunVariableAccessLevel,
    WfSpec,
    WfSpecId,
)
from littlehorse.utils import extract_value

from lhpipe.clients.lh_values import (
    ConversionError,
    EventDefShape,
    LHType,
    MetadataCache,
    StructFieldShape,
    StructShape,
    UndeclaredVariableError,
    WfSpecShape,
    coerce,
    default_value,
    event_content,
    run_wf_variables,
    wf_run_id,
)
from lhpipe.core.errors import PermanentError, TransientError


def kind(value: VariableValue) -> str | None:
    which: str | None = value.WhichOneof("value")
    return which


def as_python(value: VariableValue) -> Any:
    return extract_value(value)


# ---------------------------------------------------------------------------------------------
# default mapping
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected_kind", "expected"),
    [
        ("ann", "str", "ann"),
        (42, "int", 42),
        (1.5, "double", 1.5),
        (True, "bool", True),
        (b"\x00\xff", "bytes", b"\x00\xff"),
        ([1, "a"], "json_arr", [1, "a"]),
        ({"a": {"b": None}}, "json_obj", {"a": {"b": None}}),
        (Decimal("12.50"), "str", "12.50"),
    ],
)
def test_a_value_without_declared_type_maps_by_its_own_type(
    value: Any, expected_kind: str, expected: Any
) -> None:
    result = default_value(value)
    assert kind(result) == expected_kind
    assert as_python(result) == expected


def test_none_is_an_unset_variable_value() -> None:
    assert kind(default_value(None)) is None
    assert kind(coerce(None, LHType("INT"))) is None


def test_a_datetime_is_a_utc_timestamp_at_the_same_instant() -> None:
    paris = timezone(timedelta(hours=2))
    result = default_value(datetime(2024, 5, 1, 12, 30, 15, 250_000, tzinfo=paris))
    assert kind(result) == "utc_timestamp"
    assert result.utc_timestamp.ToDatetime(tzinfo=UTC) == datetime(
        2024, 5, 1, 10, 30, 15, 250_000, tzinfo=UTC
    )


def test_nested_datetimes_and_bytes_in_json_are_written_as_exports_write_them() -> None:
    result = default_value({"at": datetime(2024, 1, 2, tzinfo=UTC), "raw": b"hi"})
    assert json.loads(result.json_obj) == {"at": "2024-01-02T00:00:00.000Z", "raw": "aGk="}


def test_an_int_beyond_64_bits_is_a_conversion_error() -> None:
    with pytest.raises(ConversionError, match="64 bits") as caught:
        default_value(2**63, what="variable n")
    assert caught.value.code == "CONVERSION"
    assert "variable n" in caught.value.message


def test_an_object_without_a_littlehorse_type_is_a_conversion_error() -> None:
    with pytest.raises(ConversionError, match="object has no LittleHorse type"):
        default_value(object())


# ---------------------------------------------------------------------------------------------
# coercion
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("declared", "value", "expected"),
    [
        ("STR", "x", "x"),
        ("STR", 12, "12"),
        ("STR", 1.25, "1.25"),
        ("STR", False, "false"),
        ("STR", Decimal("0.10"), "0.10"),
        ("STR", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), "2024-01-02T03:04:05.000Z"),
        ("INT", 7, 7),
        ("INT", 7.0, 7),
        ("INT", "-42", -42),
        ("INT", "+3", 3),
        ("DOUBLE", 2, 2.0),
        ("DOUBLE", "1.5", 1.5),
        ("DOUBLE", "-2e3", -2000.0),
        ("DOUBLE", Decimal("12.5"), 12.5),
        ("BOOL", True, True),
        ("BOOL", "false", False),
        ("BYTES", b"\x01", b"\x01"),
        ("BYTES", "é", "é".encode()),
        ("JSON_OBJ", {"a": 1}, {"a": 1}),
        ("JSON_OBJ", '{"a": 1}', {"a": 1}),
        ("JSON_ARR", [1, 2], [1, 2]),
        ("JSON_ARR", "[1, 2]", [1, 2]),
    ],
)
def test_values_are_coerced_to_the_declared_type(declared: str, value: Any, expected: Any) -> None:
    result = coerce(value, LHType(declared))
    assert as_python(result) == expected
    assert type(as_python(result)) is type(expected)


@pytest.mark.parametrize(
    ("value", "instant"),
    [
        ("2024-05-01T10:00:00Z", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01T12:00:00+02:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01T10:00:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
        (1_714_557_600_123, datetime(2024, 5, 1, 10, 0, 0, 123_000, tzinfo=UTC)),
        (-1, datetime(1969, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)),
        (datetime(2024, 5, 1, 10), datetime(2024, 5, 1, 10, tzinfo=UTC)),
    ],
)
def test_iso_strings_epoch_millis_and_datetimes_become_timestamps(
    value: Any, instant: datetime
) -> None:
    result = coerce(value, LHType("TIMESTAMP"))
    assert kind(result) == "utc_timestamp"
    assert result.utc_timestamp.ToDatetime(tzinfo=UTC) == instant


@pytest.mark.parametrize(
    ("declared", "value"),
    [
        ("INT", True),
        ("INT", 1.5),
        ("INT", "4.2"),
        ("INT", "4e1"),
        ("INT", " 42"),
        ("INT", ""),
        ("INT", float("inf")),
        ("INT", "9223372036854775808"),
        ("DOUBLE", False),
        ("DOUBLE", "one"),
        ("DOUBLE", "nan"),
        ("BOOL", 1),
        ("BOOL", "True"),
        ("BOOL", "yes"),
        ("STR", b"bytes"),
        ("STR", {"a": 1}),
        ("STR", [1]),
        ("BYTES", 5),
        ("TIMESTAMP", "yesterday"),
        ("TIMESTAMP", 1.5),
        ("TIMESTAMP", True),
        ("JSON_OBJ", "[1]"),
        ("JSON_OBJ", "not json"),
        ("JSON_OBJ", [1]),
        ("JSON_ARR", {"a": 1}),
        ("JSON_ARR", '{"a": 1}'),
        ("WF_RUN_ID", 5),
    ],
)
def test_values_that_would_lose_or_invent_information_are_refused(
    declared: str, value: Any
) -> None:
    with pytest.raises(ConversionError) as caught:
        coerce(value, LHType(declared), what="variable v")
    assert caught.value.code == "CONVERSION"
    assert caught.value.message.startswith("variable v: ")
    assert declared in caught.value.message


def test_a_long_value_is_shortened_in_the_message() -> None:
    with pytest.raises(ConversionError) as caught:
        coerce("x" * 500, LHType("INT"))
    assert len(caught.value.message) < 150


def test_a_typed_collection_lhpipe_cannot_write_is_a_clear_conversion_error() -> None:
    with pytest.raises(ConversionError, match="cannot write LittleHorse ARRAY values"):
        coerce([1], LHType("ARRAY"))


def test_a_wf_run_id_value_names_a_child_with_an_underscore() -> None:
    result = coerce("order-1_payment-2", LHType("WF_RUN_ID"))
    assert result.wf_run_id.id == "payment-2"
    assert result.wf_run_id.parent_wf_run_id.id == "order-1"


def test_wf_run_ids_nest_parents_from_left_to_right() -> None:
    grandchild = wf_run_id("a_b_c")
    assert (grandchild.id, grandchild.parent_wf_run_id.id) == ("c", "b")
    assert grandchild.parent_wf_run_id.parent_wf_run_id.id == "a"
    assert not wf_run_id("plain").HasField("parent_wf_run_id")


# ---------------------------------------------------------------------------------------------
# StructDefs
# ---------------------------------------------------------------------------------------------

CITY = StructShape(
    "city",
    2,
    {
        "name": StructFieldShape(LHType("STR"), optional=False),
        "population": StructFieldShape(LHType("INT"), optional=True),
    },
)
ADDRESS = LHType(
    "STRUCT",
    StructShape(
        "address",
        0,
        {
            "street": StructFieldShape(LHType("STR"), optional=False),
            "since": StructFieldShape(LHType("TIMESTAMP"), optional=True),
            "city": StructFieldShape(LHType("STRUCT", CITY), optional=False),
        },
    ),
)


def test_a_dict_becomes_a_struct_of_the_declared_struct_def_with_fields_coerced() -> None:
    result = coerce(
        {"street": "Rue 1", "since": "2020-01-01T00:00:00Z", "city": {"name": "Lyon"}},
        ADDRESS,
    )
    struct = result.struct
    assert (struct.struct_def_id.name, struct.struct_def_id.version) == ("address", 0)
    fields = struct.struct.fields
    assert fields["street"].value.str == "Rue 1"
    assert fields["since"].value.utc_timestamp.ToDatetime(tzinfo=UTC) == datetime(
        2020, 1, 1, tzinfo=UTC
    )
    city = fields["city"].value.struct
    assert (city.struct_def_id.name, city.struct_def_id.version) == ("city", 2)
    assert city.struct.fields["name"].value.str == "Lyon"
    assert "population" not in city.struct.fields


def test_a_missing_required_struct_field_is_named() -> None:
    with pytest.raises(ConversionError, match=r"field street of StructDef address v0 is required"):
        coerce({"city": {"name": "Lyon"}}, ADDRESS, what="variable home")


def test_a_field_the_struct_def_does_not_have_is_refused_with_the_known_fields() -> None:
    with pytest.raises(ConversionError) as caught:
        coerce({"street": "a", "city": {"name": "b"}, "zip": 1}, ADDRESS, what="variable home")
    assert "zip not in StructDef address v0" in caught.value.message
    assert "city, since, street" in caught.value.message


def test_a_nested_field_error_names_its_path() -> None:
    with pytest.raises(ConversionError, match=r"variable home\.city\.population: cannot convert"):
        coerce(
            {"street": "a", "city": {"name": "b", "population": "many"}},
            ADDRESS,
            what="variable home",
        )


def test_a_non_dict_for_a_struct_is_refused() -> None:
    with pytest.raises(ConversionError, match="to Struct<address,v0>"):
        coerce("Rue 1", ADDRESS)


# ---------------------------------------------------------------------------------------------
# variables and contents
# ---------------------------------------------------------------------------------------------

SHAPE = WfSpecShape(
    name="kyc",
    major_version=1,
    revision=3,
    variables={"age": LHType("INT"), "score": LHType("DOUBLE")},
    inherited=frozenset({"tenant"}),
)


def test_run_wf_variables_are_coerced_to_the_wf_spec_types() -> None:
    variables = run_wf_variables(SHAPE, {"age": "30", "score": 7})
    assert variables["age"].int == 30
    assert kind(variables["score"]) == "double"
    assert variables["score"].double == 7.0


def test_an_undeclared_variable_fails_fast_naming_the_declared_ones() -> None:
    with pytest.raises(UndeclaredVariableError) as caught:
        run_wf_variables(SHAPE, {"agee": 30})
    assert caught.value.code == "UNDECLARED_VARIABLE"
    assert isinstance(caught.value, PermanentError)
    assert caught.value.message == (
        "variable agee is not declared by WfSpec kyc v1.3 (its input variables: age, score)"
    )


def test_an_inherited_variable_cannot_be_given() -> None:
    with pytest.raises(UndeclaredVariableError, match="tenant is inherited from the parent"):
        run_wf_variables(SHAPE, {"tenant": "acme"})


def test_event_content_follows_the_declared_type_or_its_own() -> None:
    typed = EventDefShape("paid", LHType("DOUBLE"), correlated=True)
    assert kind(event_content(typed, 12)) == "double"
    untyped = EventDefShape("note", None, correlated=False)
    assert kind(event_content(untyped, 12)) == "int"
    with pytest.raises(ConversionError, match="content of paid: cannot convert"):
        event_content(typed, "twelve")


# ---------------------------------------------------------------------------------------------
# the metadata cache
# ---------------------------------------------------------------------------------------------


def primitive(type_: VariableType) -> TypeDefinition:
    return TypeDefinition(primitive_type=type_)


def wf_spec(name: str, revision: int, variables: dict[str, TypeDefinition]) -> WfSpec:
    thread = ThreadSpec(
        variable_defs=[
            ThreadVarDef(var_def=VariableDef(name=n, type_def=t)) for n, t in variables.items()
        ]
        + [
            ThreadVarDef(
                var_def=VariableDef(name="inherited", type_def=primitive(VariableType.STR)),
                access_level=WfRunVariableAccessLevel.INHERITED_VAR,
            )
        ]
    )
    return WfSpec(
        id=WfSpecId(name=name, major_version=0, revision=revision),
        entrypoint_thread_name="entrypoint",
        thread_specs={"entrypoint": thread},
    )


class FakeServer:
    """Answers metadata requests like LittleHorse, counting them."""

    def __init__(self) -> None:
        self.wf_specs: dict[str, WfSpec] = {}
        self.event_defs: dict[str, ExternalEventDef] = {}
        self.struct_defs: dict[tuple[str, int], StructDef] = {}
        self.calls: list[str] = []
        self.fail_with: Exception | None = None

    async def fetch_wf_spec(
        self, name: str, major_version: int | None, revision: int | None
    ) -> WfSpec:
        self.calls.append(f"wf_spec {name}")
        await asyncio.sleep(0)
        if self.fail_with is not None:
            raise self.fail_with
        if name not in self.wf_specs:
            raise PermanentError(f"WfSpec {name}: NOT_FOUND", code="NOT_FOUND")
        return self.wf_specs[name]

    async def fetch_external_event_def(self, name: str) -> ExternalEventDef:
        self.calls.append(f"event_def {name}")
        return self.event_defs[name]

    async def fetch_struct_def(self, name: str, version: int) -> StructDef:
        self.calls.append(f"struct_def {name} {version}")
        return self.struct_defs[(name, version)]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_concurrent_sends_for_one_wf_spec_fetch_it_once_and_then_from_the_cache() -> None:
    server = FakeServer()
    server.wf_specs["kyc"] = wf_spec("kyc", 0, {"age": primitive(VariableType.INT)})
    cache = MetadataCache(server)

    async def go() -> list[WfSpecShape]:
        first = await asyncio.gather(*(cache.wf_spec("kyc") for _ in range(20)))
        return [*first, await cache.wf_spec("kyc")]

    shapes = asyncio.run(go())
    assert server.calls == ["wf_spec kyc"]
    assert all(shape is shapes[0] for shape in shapes)
    assert shapes[0].variables == {"age": LHType("INT")}
    assert shapes[0].inherited == {"inherited"}


def test_a_failed_fetch_is_not_cached() -> None:
    server = FakeServer()
    cache = MetadataCache(server)
    server.fail_with = TransientError("UNAVAILABLE", code="UNAVAILABLE")
    with pytest.raises(TransientError):
        asyncio.run(cache.wf_spec("kyc"))
    server.fail_with = None
    server.wf_specs["kyc"] = wf_spec("kyc", 0, {})
    assert asyncio.run(cache.wf_spec("kyc")).name == "kyc"
    assert server.calls == ["wf_spec kyc", "wf_spec kyc"]


def test_forgetting_a_wf_spec_fetches_the_new_revision() -> None:
    server = FakeServer()
    server.wf_specs["kyc"] = wf_spec("kyc", 0, {"age": primitive(VariableType.INT)})
    cache = MetadataCache(server)
    assert asyncio.run(cache.wf_spec("kyc")).variables["age"] == LHType("INT")
    server.wf_specs["kyc"] = wf_spec("kyc", 1, {"age": primitive(VariableType.DOUBLE)})
    cache.forget_wf_spec("kyc")
    refreshed = asyncio.run(cache.wf_spec("kyc"))
    assert (refreshed.revision, refreshed.variables["age"]) == (1, LHType("DOUBLE"))


def test_only_an_unpinned_wf_spec_fetched_a_while_ago_is_stale() -> None:
    server = FakeServer()
    server.wf_specs["kyc"] = wf_spec("kyc", 0, {})
    clock = Clock()
    cache = MetadataCache(server, min_refresh_seconds=5, clock=clock)
    asyncio.run(cache.wf_spec("kyc"))
    asyncio.run(cache.wf_spec("kyc", 0, 0))
    assert not cache.is_stale("kyc")
    clock.now += 5
    assert cache.is_stale("kyc")
    assert not cache.is_stale("kyc", 0, 0)


def test_struct_defs_are_resolved_recursively_and_fetched_once() -> None:
    server = FakeServer()
    server.struct_defs[("city", 1)] = StructDef(
        id=StructDefId(name="city", version=1),
        struct_def=InlineStructDef(
            fields={"name": StructFieldDef(field_type=primitive(VariableType.STR))}
        ),
    )
    city_ref = TypeDefinition(struct_def_id=StructDefId(name="city", version=1))
    server.struct_defs[("address", 0)] = StructDef(
        id=StructDefId(name="address", version=0),
        struct_def=InlineStructDef(
            fields={
                "home": StructFieldDef(field_type=city_ref),
                "work": StructFieldDef(field_type=city_ref, is_nullable=True),
                "floor": StructFieldDef(
                    field_type=primitive(VariableType.INT), default_value=VariableValue(int=0)
                ),
            }
        ),
    )
    address_ref = TypeDefinition(struct_def_id=StructDefId(name="address", version=0))
    server.wf_specs["move"] = wf_spec("move", 0, {"to": address_ref})
    shape = asyncio.run(MetadataCache(server).wf_spec("move"))

    address = shape.variables["to"].struct
    assert address is not None
    assert str(shape.variables["to"]) == "Struct<address,v0>"
    assert not address.fields["home"].optional
    assert address.fields["work"].optional
    assert address.fields["floor"].optional
    city = address.fields["home"].type.struct
    assert city is not None and city.fields["name"].type == LHType("STR")
    assert sorted(server.calls) == ["struct_def address 0", "struct_def city 1", "wf_spec move"]


def test_an_event_def_shape_has_its_content_type_and_correlation() -> None:
    server = FakeServer()
    server.event_defs["paid"] = ExternalEventDef(
        id=ExternalEventDefId(name="paid"),
        type_information=ReturnType(return_type=primitive(VariableType.DOUBLE)),
        correlated_event_config=CorrelatedEventConfig(),
    )
    server.event_defs["note"] = ExternalEventDef(id=ExternalEventDefId(name="note"))
    cache = MetadataCache(server)
    paid = asyncio.run(cache.event_def("paid"))
    note = asyncio.run(cache.event_def("note"))
    assert (paid.content, paid.correlated) == (LHType("DOUBLE"), True)
    assert (note.content, note.correlated) == (None, False)


def test_a_var_def_with_only_the_older_type_field_is_understood() -> None:
    server = FakeServer()
    spec = wf_spec("old", 0, {})
    spec.thread_specs["entrypoint"].variable_defs.append(
        ThreadVarDef(var_def=VariableDef(name="n", type=VariableType.INT))
    )
    server.wf_specs["old"] = spec
    assert asyncio.run(MetadataCache(server).wf_spec("old")).variables["n"] == LHType("INT")


def test_uuid_values_are_their_text() -> None:
    value = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert default_value(value).str == str(value)
    assert coerce(value, LHType("STR")).str == str(value)

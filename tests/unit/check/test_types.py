"""The type rules: what compares, orders, fits and combines."""

from __future__ import annotations

import pytest

from lhpipe.check import types as t

ADDRESS = t.RecordType("Address", {"city": t.STRING, "zip": t.optional(t.STRING)})
SIGNUP = t.RecordType("Signup", {"email": t.STRING, "source": t.STRING}, {"source"})


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        (t.INT, t.DOUBLE, True),
        (t.LONG, t.INT, True),
        (t.STRING, t.INT, False),
        (t.STRING, t.optional(t.STRING), True),
        (t.optional(t.INT), t.NULL, True),
        (t.BOOLEAN, t.STRING, False),
        (t.JSON, t.STRING, True),
        (t.TIMESTAMP, t.STRING, False),
        (t.ArrayType(t.STRING), t.ArrayType(t.NULL), True),
        (t.ArrayType(t.STRING), t.ArrayType(t.INT), False),
        (ADDRESS, ADDRESS, True),
        (ADDRESS, t.RecordType("Address", dict(ADDRESS.fields)), False),
        (ADDRESS, t.RecordType(None, {"city": t.STRING}), True),
        (ADDRESS, t.RecordType(None, {"town": t.STRING}), False),
    ],
)
def test_comparable(left: t.Type, right: t.Type, expected: bool) -> None:
    assert t.comparable(left, right) is expected
    assert t.comparable(right, left) is expected


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        (t.INT, t.FLOAT, True),
        (t.STRING, t.STRING, True),
        (t.TIMESTAMP, t.TIMESTAMP, True),
        (t.STRING, t.INT, False),
        (t.BOOLEAN, t.BOOLEAN, False),
        (t.optional(t.INT), t.INT, False),
        (t.JSON, t.INT, True),
    ],
)
def test_orderable(left: t.Type, right: t.Type, expected: bool) -> None:
    assert t.orderable(left, right) is expected


@pytest.mark.parametrize(
    ("source", "target", "expected"),
    [
        (t.INT, t.LONG, True),
        (t.LONG, t.INT, False),
        (t.INT, t.DOUBLE, True),
        (t.NULL, t.optional(t.STRING), True),
        (t.STRING, t.optional(t.STRING), True),
        (t.optional(t.STRING), t.STRING, False),
        (t.NULL, t.STRING, False),
        (t.ArrayType(t.NULL), t.ArrayType(t.STRING), True),
        (t.RecordType(None, {"a": t.STRING}), t.MapType(t.STRING), True),
        (t.RecordType(None, {"a": t.INT}), t.MapType(t.STRING), False),
        (t.RecordType(None, {"city": t.STRING}), ADDRESS, True),
        (t.RecordType(None, {"zip": t.STRING}), ADDRESS, False),  # lacks the required city
        (t.RecordType(None, {"email": t.STRING}), SIGNUP, True),  # source has a default
        (t.RecordType(None, {"source": t.STRING}), SIGNUP, False),
        (t.STRING, t.JSON, True),
        (t.JSON, ADDRESS, True),
    ],
)
def test_assignable(source: t.Type, target: t.Type, expected: bool) -> None:
    assert t.assignable(source, target) is expected


def test_optional_is_never_nested_and_leaves_dynamic_alone() -> None:
    once = t.optional(t.STRING)
    assert t.optional(once) is once
    assert t.optional(t.JSON) is t.JSON
    assert t.optional(t.NULL) == t.NULL
    assert t.unwrap(once) == t.STRING


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([], t.NULL),
        ([t.INT, t.LONG], t.LONG),
        ([t.INT, t.NULL], t.optional(t.INT)),
        ([t.STRING, t.STRING], t.STRING),
        ([t.STRING, t.INT], t.JSON),
    ],
)
def test_common_type_of_list_items(items: list[t.Type], expected: t.Type) -> None:
    assert t.same(t.common(items), expected)


def test_types_print_as_written_in_lhp() -> None:
    assert str(t.ArrayType(t.MapType(t.optional(t.INT)))) == "[map<int?>]"
    assert str(ADDRESS) == "Address"
    assert str(t.RecordType(None, {"a": t.INT})) == "{a: int}"


def test_missing_fields_leaves_out_optional_fields_and_fields_with_a_default() -> None:
    record = t.RecordType(
        "Order",
        {"id": t.STRING, "note": t.optional(t.STRING), "currency": t.STRING, "total": t.DOUBLE},
        {"currency"},
    )
    assert t.missing_fields(t.RecordType(None, {"id": t.STRING}), record) == ["total"]

"""`lint --online`'s judgement of a static type against a declared LittleHorse type: it must
agree with what the run-time coercion (lhpipe.clients.lh_values) accepts."""

from __future__ import annotations

import pytest

from lhpipe.check import types as t
from lhpipe.clients.lh_values import LHType, StructFieldShape, StructShape
from lhpipe.online.lint import Fit, fits


@pytest.mark.parametrize(
    ("static", "declared", "expected"),
    [
        (t.INT, "DOUBLE", Fit.YES),
        (t.LONG, "TIMESTAMP", Fit.YES),
        (t.TIMESTAMP, "STR", Fit.YES),
        (t.STRING, "BYTES", Fit.YES),
        (t.optional(t.INT), "INT", Fit.YES),
        (t.NULL, "BOOL", Fit.YES),
        (t.JSON, "INT", Fit.YES),
        (t.ArrayType(t.STRING), "JSON_ARR", Fit.YES),
        (t.MapType(t.INT), "JSON_OBJ", Fit.YES),
        (t.STRING, "INT", Fit.MAYBE),
        (t.DOUBLE, "INT", Fit.MAYBE),
        (t.STRING, "TIMESTAMP", Fit.MAYBE),
        (t.STRING, "JSON_OBJ", Fit.MAYBE),
        (t.BOOLEAN, "INT", Fit.NO),
        (t.BYTES, "STR", Fit.NO),
        (t.ArrayType(t.STRING), "STR", Fit.NO),
        (t.DOUBLE, "TIMESTAMP", Fit.NO),
        (t.INT, "ARRAY", Fit.NO),
    ],
)
def test_static_types_against_declared_types(static: t.Type, declared: str, expected: Fit) -> None:
    assert fits(static, LHType(declared)).fit == expected


CITY = LHType(
    "STRUCT",
    StructShape(
        "city",
        0,
        {
            "name": StructFieldShape(LHType("STR"), optional=False),
            "population": StructFieldShape(LHType("INT"), optional=True),
        },
    ),
)


def record(**fields: t.Type) -> t.RecordType:
    return t.RecordType("City", dict(fields))


def test_a_record_with_the_struct_defs_fields_fits() -> None:
    assert fits(record(name=t.STRING, population=t.LONG), CITY).fit == Fit.YES
    assert fits(record(name=t.STRING), CITY).fit == Fit.YES


def test_a_record_missing_a_required_field_or_with_an_extra_one_does_not_fit() -> None:
    missing = fits(record(population=t.INT), CITY)
    assert (missing.fit, missing.reason) == (Fit.NO, "StructDef city requires name")
    extra = fits(record(name=t.STRING, mayor=t.STRING), CITY)
    assert (extra.fit, extra.reason) == (Fit.NO, "StructDef city has no field mayor")


def test_a_field_type_that_converts_only_sometimes_or_may_be_null_is_a_maybe() -> None:
    text = fits(record(name=t.STRING, population=t.STRING), CITY)
    assert text.fit == Fit.MAYBE
    assert text.reason.startswith("field population is string, not INT")
    optional = fits(record(name=t.optional(t.STRING)), CITY)
    assert optional.fit == Fit.MAYBE
    assert optional.reason == "field name may be null but the StructDef requires it"

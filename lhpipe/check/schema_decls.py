"""Checking ``schema`` declarations: inline fields, ``.avsc`` files, registry subjects."""

from __future__ import annotations

from collections.abc import Mapping

from lhpipe.check import types as t
from lhpipe.check.context import NOT_LITERAL, CheckContext, literal_json
from lhpipe.check.names import EMPTY_SCOPE, did_you_mean
from lhpipe.check.program import (
    SchemaInfo,
)
from lhpipe.check.schemas import (
    NO_DEFAULT,
    AvroCompiler,
    InlineField,
    JSONValue,
    SchemaFileError,
    read_avsc,
)
from lhpipe.check.types import Type
from lhpipe.syntax import ast


class SchemaChecks(CheckContext):
    def _schemas(self, decls: list[ast.SchemaDecl]) -> None:
        records: dict[str, t.RecordType] = {}
        external: dict[int, Mapping[str, JSONValue]] = {}
        for decl in decls:
            name = decl.name.name
            if decl.fields is not None:
                record = t.RecordType(name)
                if self.is_first(decl):
                    records[name] = record
                    self.schema_types[name] = record
            elif decl.file is not None:
                loaded = self._read_schema_file(decl, decl.file)
                if self.is_first(decl):
                    if loaded is None:
                        self.schema_types[name] = t.UNKNOWN
                    else:
                        external[id(loaded[1])] = loaded[0]
                        self.schema_types[name] = loaded[1]
                        self.schemas[name] = SchemaInfo(
                            name,
                            decl,
                            "file",
                            loaded[1],
                            loaded[0],
                            file=self.folder[id(decl)] / decl.file.text,
                        )
            elif decl.registry is not None:
                subject = self.literal_text(decl.registry, "a registry subject")
                if self.is_first(decl):
                    self.schema_types[name] = t.Dynamic("registry")
                    self.schemas[name] = SchemaInfo(
                        name,
                        decl,
                        "registry",
                        t.Dynamic("registry"),
                        None,
                        subject=subject,
                    )
        inline: dict[int, list[InlineField]] = {}
        for decl in decls:
            if decl.fields is None:
                continue
            # A duplicate declaration is checked on a record of its own.
            first = records.get(decl.name.name)
            record = (
                first if first is not None and self.is_first(decl) else t.RecordType(decl.name.name)
            )
            inline[id(record)] = self._fields(decl, record)
        compiler = AvroCompiler(inline, external)
        for decl in decls:
            compiled = records.get(decl.name.name)
            if decl.fields is not None and compiled is not None and self.is_first(decl):
                avro = None if id(compiled) in self.registry_users else compiler.compile(compiled)
                self.schemas[decl.name.name] = SchemaInfo(
                    decl.name.name, decl, "inline", compiled, avro
                )

    def _fields(self, decl: ast.SchemaDecl, record: t.RecordType) -> list[InlineField]:
        compiled: list[InlineField] = []
        assert decl.fields is not None
        for f in decl.fields:
            name = f.name.name
            typ = self._resolve_type(f.type, record)
            if name in record.fields:
                self.report(
                    "LHP110", f.name.span, f"field `{name}` appears twice in `{decl.name.name}`"
                )
                continue
            record.fields[name] = typ
            default: JSONValue = NO_DEFAULT
            if f.default is not None:
                default = self._field_default(f, typ)
                record.defaults.add(name)
            compiled.append(InlineField(name, typ, default))
        return compiled

    def _resolve_type(self, expr: ast.TypeExpr, owner: t.RecordType) -> Type:
        if isinstance(expr, ast.ArrayType):
            return t.ArrayType(self._resolve_type(expr.item, owner))
        if isinstance(expr, ast.MapType):
            return t.MapType(self._resolve_type(expr.values, owner))
        if isinstance(expr, ast.OptionalType):
            return t.optional(self._resolve_type(expr.inner, owner))
        primitive = t.PRIMITIVE_TYPES.get(expr.name)
        if primitive is not None:
            return primitive
        found = self.schema_types.get(expr.name)
        if found is None and self.is_unreadable(expr.name, "schema"):
            return t.UNKNOWN
        if found is None:
            candidates = list(t.PRIMITIVE_TYPES) + list(self.schema_types)
            self.report(
                "LHP208",
                expr.span,
                f"unknown type `{expr.name}`",
                did_you_mean(expr.name, candidates),
            )
            return t.UNKNOWN
        if isinstance(found, t.Dynamic) and found.reason == "registry":
            self.report(
                "LHP115",
                expr.span,
                f"`{expr.name}` comes from the registry: an inline schema cannot include it",
                "declare the field as `json`, or write the schema inline or in a .avsc file",
            )
            self.registry_users.add(id(owner))
        return found

    def _field_default(self, f: ast.Field, typ: Type) -> JSONValue:
        assert f.default is not None
        value = literal_json(f.default)
        if value is NOT_LITERAL:
            self.report("LHP209", f.default.span, "a field default must be a literal value")
            return NO_DEFAULT
        default_type = self.exprs.check(f.default, EMPTY_SCOPE)
        if not t.assignable(default_type, typ):
            self.report(
                "LHP201",
                f.default.span,
                f"default `{default_type}` does not fit field `{f.name.name}: {typ}`",
            )
        return value

    def _read_schema_file(
        self, decl: ast.SchemaDecl, literal: ast.StringLit
    ) -> tuple[dict[str, JSONValue], t.RecordType] | None:
        relative = self.literal_text(literal, "a schema file path")
        if relative is None:
            return None
        path = self.folder[id(decl)] / relative
        try:
            return read_avsc(path, decl.name.name)
        except SchemaFileError as exc:
            self.report(
                "LHP111",
                literal.span,
                str(exc),
                "the path is relative to the folder of this .lhp file",
            )
            return None

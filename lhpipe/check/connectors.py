"""Checking ``connector`` declarations (Kafka Connect connectors lhpipe deploys)."""

from __future__ import annotations

from lhpipe.check import blocks, rules
from lhpipe.check.context import CheckContext, literal_json
from lhpipe.check.names import EMPTY_SCOPE
from lhpipe.check.program import (
    ConnectorInfo,
    EnvRef,
)
from lhpipe.syntax import ast

# Kafka Connect settings that the connector declaration itself decides, and what decides them.
_CONNECTOR_OWNED = {
    "connector.class": "it is the connector's `class`",
    "name": "the connector is named after its declaration",
}


class ConnectorChecks(CheckContext):
    def _connector(self, decl: ast.ConnectorDecl) -> None:
        found = blocks.entries(decl.body, blocks.CONNECTOR, self.diagnostics)
        self.require(found, ("class", "topic"), decl.name.span, f"connector `{decl.name.name}`")
        cls_expr = self.setting(found, "class")
        connector_class = self.literal_text(cls_expr, "a connector class") if cls_expr else None
        if connector_class is not None and not rules.valid_java_class(connector_class):
            assert cls_expr is not None
            self.report(
                "LHP601",
                cls_expr.span,
                f'"{connector_class}" is not a Java class name',
                'write the class as Kafka Connect knows it, e.g. "io.debezium.connector.'
                'postgresql.PostgresConnector" or an alias such as "FileStreamSource"',
            )
            connector_class = None
        topic_expr = self.setting(found, "topic")
        topic = self.topic_name(topic_expr, "a topic") if topic_expr else None
        config: dict[str, str | int | float | bool | EnvRef] = {}
        if "config" in found:
            for pair in blocks.map_entries(found["config"], self.diagnostics) or []:
                value = self._config_value(pair.key, pair.value)
                if value is not None:
                    config[pair.key.name] = value
        if self.is_first(decl):
            self.connectors[decl.name.name] = ConnectorInfo(
                decl.name.name,
                decl,
                connector_class or "",
                config,
                topic or "",
                sink=rules.is_sink_class(connector_class or ""),
            )

    def _config_value(
        self, key: ast.Ident, expr: ast.Expr
    ) -> str | int | float | bool | EnvRef | None:
        """One setting of a connector's ``config``: Kafka Connect takes text, and numbers and
        booleans as their text."""
        owner = _CONNECTOR_OWNED.get(key.name)
        if owner is not None:
            self.report("LHP601", key.span, f"`{key.name}` cannot be set in `config`: {owner}")
            return None
        literal = literal_json(expr)
        if isinstance(literal, int | float):  # booleans included
            self.exprs.check(expr, EMPTY_SCOPE)
            return literal
        if isinstance(expr, ast.StringLit) or (
            isinstance(expr, ast.Call) and expr.func.name == "env"
        ):
            return self.text(expr, "a connector setting")
        hint = (
            'Kafka Connect lists are one string with commas: "a,b"'
            if isinstance(expr, ast.ListLit)
            else None
        )
        self.report(
            "LHP601",
            expr.span,
            f"`{key.name}` must be a string, a number, a boolean or `env(...)`",
            hint,
        )
        return None

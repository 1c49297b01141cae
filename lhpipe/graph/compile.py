"""Compiling a checked :class:`~lhpipe.check.program.Program` into the execution graph and the
specs the engine runs.

Node ids are built from names only (``webhook:kyc_intake``, ``topic:kyc-applicants``,
``pipeline:start_kyc/step:0``), so they are stable across compiles of the same text and survive
unrelated edits. Things several pipelines share (a topic, a WfSpec, an ExternalEventDef) are one
node, which is how the graph shows one pipeline feeding another.

A spec's fingerprint hashes everything its behaviour depends on: the declaration's meaning (its
syntax tree without spans, so layout and comments do not count), the Avro JSON of every schema it
uses, what it reads of other declarations (a webhook's topic, a connector's block), and the
settings it reads, with their values when the caller passes them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

from lhpipe.check.program import (
    ConnectorInfo,
    EnvRef,
    HmacAuth,
    NoAuth,
    OAuthAuth,
    PipelineInfo,
    Program,
    SourceInfo,
    TargetInfo,
    Text,
    WebhookInfo,
)
from lhpipe.check.types import ArrayType, MapType, OptionalType, RecordType, Type
from lhpipe.graph.kinds import (
    CONNECT_SETTINGS,
    KAFKA_SETTINGS,
    LITTLEHORSE_SETTINGS,
    REGISTRY_SETTINGS,
    KindGraphs,
)
from lhpipe.graph.model import (
    CompiledProgram,
    Edge,
    Graph,
    JSONValue,
    Node,
    NodeKind,
    PipelineSpec,
    RouteSpec,
)
from lhpipe.syntax import ast
from lhpipe.syntax.canonical import structure
from lhpipe.syntax.formatter import target_words


def digest(*parts: object) -> str:
    """A short, stable hex digest of plain values (the ``repr`` of tuples, strings, numbers):
    a spec's fingerprint."""
    return hashlib.sha256(repr(parts).encode("utf-8")).hexdigest()[:16]


def expr_text(expr: ast.Expr) -> str:
    """An expression as canonical source text."""
    from lhpipe.syntax.formatter import format_expr

    return format_expr(expr)


def text_json(value: Text | None) -> JSONValue:
    """A literal-or-environment setting as plain data: the string, or ``env("NAME")``."""
    if isinstance(value, EnvRef):
        if value.default is None:
            return f'env("{value.name}")'
        return f'env("{value.name}", "{value.default}")'
    return value


def env_names_in(node: object) -> Iterator[str]:
    """The names of every ``env("NAME", ...)`` call and :class:`EnvRef` inside ``node``."""
    if isinstance(node, EnvRef):
        yield node.name
    elif isinstance(node, ast.Call):
        if node.func.name == "env" and node.args and isinstance(node.args[0], ast.StringLit):
            yield node.args[0].text
        for arg in node.args:
            yield from env_names_in(arg)
    elif isinstance(node, tuple | list):
        for item in node:
            yield from env_names_in(item)
    elif isinstance(node, Mapping):
        for item in node.values():
            yield from env_names_in(item)
    elif dataclasses.is_dataclass(node) and not isinstance(node, type):
        for f in dataclasses.fields(node):
            if f.name != "span":
                yield from env_names_in(getattr(node, f.name))


def _record_names(t: Type, seen: set[str]) -> None:
    """Collect the schema names of every record type reachable from ``t``."""
    if isinstance(t, OptionalType):
        _record_names(t.inner, seen)
    elif isinstance(t, ArrayType):
        _record_names(t.item, seen)
    elif isinstance(t, MapType):
        _record_names(t.values, seen)
    elif isinstance(t, RecordType) and t.name is not None and t.name not in seen:
        seen.add(t.name)
        for field_type in t.fields.values():
            _record_names(field_type, seen)


@runtime_checkable
class _PrefixedNames(Protocol):
    """Settings that list their names by prefix (:meth:`lhpipe.settings.Settings.names`)."""

    def names(self, prefix: str) -> list[str]: ...


#: Settings passed on to a client as they are, by prefix, counted with the client's own.
_PASS_THROUGH = (
    ("LHPIPE_KAFKA_", KAFKA_SETTINGS[0]),
    ("LHPIPE_REGISTRY_", REGISTRY_SETTINGS[0]),
    ("LHC_", LITTLEHORSE_SETTINGS[0]),
)


class _Compiler:
    def __init__(
        self, program: Program, kinds: KindGraphs, settings: Mapping[str, str] | None
    ) -> None:
        self.program = program
        self.kinds = kinds
        self.settings = settings
        self.nodes: dict[str, Node] = {}
        self.edges: list[Edge] = []
        self.dead_letters: set[str] = set()

    # --- graph building ---

    def node(self, node: Node) -> str:
        # Shared nodes (topics, LittleHorse objects) are created by whoever meets them first.
        self.nodes.setdefault(node.id, node)
        return node.id

    def edge(self, src: str, dst: str, label: str | None = None) -> None:
        edge = Edge(src, dst, label)
        if edge not in self.edges:
            self.edges.append(edge)

    def topic(self, name: Text) -> str:
        label = text_json(name)
        return self.node(Node(f"topic:{label}", NodeKind.TOPIC, f"topic {label}"))

    def wf_spec(self, name: str) -> str:
        return self.node(
            Node(f"lh:wf_spec:{name}", NodeKind.LITTLEHORSE, f"WfSpec {name}", attrs={"name": name})
        )

    def external_event_def(self, name: str) -> str:
        return self.node(
            Node(
                f"lh:external_event_def:{name}",
                NodeKind.LITTLEHORSE,
                f"ExternalEventDef {name}",
                attrs={"name": name},
            )
        )

    def connector(self, name: str) -> str:
        """The node of a declared connector (one, whoever reads or writes its topic)."""
        connector = self.program.connectors[name]
        return self.node(
            Node(
                f"connector:{connector.name}",
                NodeKind.EXTERNAL,
                f"connector {connector.name}\n{connector.connector_class}",
                attrs={"class": connector.connector_class, "topic": connector.topic},
            )
        )

    # --- schemas and settings ---

    def schema_names(self, *types: Type) -> tuple[str, ...]:
        seen: set[str] = set()
        for t in types:
            _record_names(t, seen)
        return tuple(sorted(name for name in seen if name in self.program.schemas))

    def pipeline_schemas(self, pipeline: PipelineInfo) -> tuple[str, ...]:
        """The schemas a pipeline reads its source with and its ``to topic`` targets write
        with (``schema = NAME``), and the schemas theirs refer to."""
        written = {t.schema for t in pipeline.targets if t.schema in self.program.schemas}
        types = [self.program.schemas[name].type for name in written if name is not None]
        names = set(self.schema_names(pipeline.source.value_type, *types))
        return tuple(sorted(names | {name for name in written if name is not None}))

    def schema_content(self, names: tuple[str, ...]) -> tuple[object, ...]:
        content: list[object] = []
        for name in names:
            info = self.program.schemas[name]
            avro = json.dumps(info.avro, sort_keys=True) if info.avro is not None else None
            content.append((name, info.origin, info.subject, avro))
        return tuple(content)

    def settings_content(self, names: tuple[str, ...]) -> tuple[object, ...]:
        if self.settings is None:
            return names
        # A client's pass-through settings (credentials, TLS) count with its address: a new
        # password in lhpipe.toml restarts what uses that client on a hot reload.
        every = set(names)
        settings = self.settings
        for prefix, anchor in _PASS_THROUGH:
            if anchor in every:
                if isinstance(settings, _PrefixedNames):  # Settings: NAME_FILE counts as NAME
                    every.update(settings.names(prefix))
                else:
                    every.update(name for name in settings if name.startswith(prefix))
        return tuple((name, self.settings.get(name)) for name in sorted(every))

    # --- webhooks ---

    def webhook_settings(self, webhook: WebhookInfo) -> tuple[str, ...]:
        names = set(env_names_in(webhook.auth)) | set(env_names_in(webhook.decl))
        if webhook.topic is not None:
            names.update(KAFKA_SETTINGS)
            if webhook.body in self.program.schemas:
                names.update(REGISTRY_SETTINGS)
        return tuple(sorted(names))

    def webhook_node(self, webhook: WebhookInfo) -> str:
        methods = ",".join(webhook.methods)
        return self.node(
            Node(
                f"webhook:{webhook.name}",
                NodeKind.WEBHOOK,
                f"webhook {webhook.name}\n{methods} {webhook.path}",
                attrs={
                    "path": webhook.path,
                    "methods": list(webhook.methods),
                    "auth": _auth_kind(webhook),
                    "body": webhook.body,
                    "topic": webhook.topic,
                },
            )
        )

    def route(self, webhook: WebhookInfo, direct: PipelineSpec | None) -> RouteSpec:
        node_id = self.webhook_node(webhook)
        if webhook.topic is not None:
            self.edge(node_id, self.topic(webhook.topic))
        schemas = self.schema_names(webhook.body_type)
        settings = self.webhook_settings(webhook)
        description: dict[str, JSONValue] = {
            "auth": _auth_json(webhook),
            "body": webhook.body,
            "key": expr_text(webhook.key) if webhook.key is not None else None,
            "max_body": webhook.max_body,
            "partitions": webhook.partitions,
        }
        fingerprint = digest(
            "route",
            structure(webhook.decl),
            self.schema_content(schemas),
            self.settings_content(settings),
            (direct.name, direct.fingerprint) if direct is not None else None,
        )
        return RouteSpec(
            name=webhook.name,
            path=webhook.path,
            methods=webhook.methods,
            topic=webhook.topic,
            direct_pipeline=direct.name if direct is not None else None,
            fingerprint=fingerprint,
            schemas=schemas,
            settings=settings,
            description=description,
            webhook=webhook,
        )

    # --- pipelines ---

    def source_node(self, pipeline: PipelineInfo) -> str:
        source = pipeline.source
        kind = self.kinds.sources[source.kind]
        node_id = f"pipeline:{pipeline.name}/source"
        self.node(
            Node(
                node_id,
                NodeKind.SOURCE,
                kind.label(source),
                pipeline=pipeline.name,
                attrs=self.source_json(pipeline),
            )
        )
        upstream = kind.upstream(self, source)
        if upstream is not None:
            self.edge(upstream, node_id)
        return node_id

    def source_json(self, pipeline: PipelineInfo) -> dict[str, JSONValue]:
        source = pipeline.source
        nested = source.decl.block.entries if source.decl.block is not None else ()
        return {
            "kind": source.kind.value,
            "topic": source.topic,
            "group": text_json(source.group),
            "value": source.value,
            "key": source.key,
            "webhook": source.webhook,
            "connector": source.connector,
            "url": poll_url(source),
            "every_ms": source.every_ms,
            "kinds": list(source.kinds),
            "wf_spec": source.wf_spec,
            "settings": {k: expr_text(v) for k, v in source.settings.items()},
            "blocks": {
                entry.key.name: {e.key.name: expr_text(e.value) for e in _settings_of(entry.block)}
                for entry in nested
                if isinstance(entry, ast.NestedBlock)
            },
        }

    def target_node(
        self, pipeline: PipelineInfo, index: int, target: TargetInfo, upstream: str
    ) -> None:
        node_id = f"pipeline:{pipeline.name}/target:{index}"
        self.node(
            Node(
                node_id,
                NodeKind.TARGET,
                target_words(target.kind, target.name),
                pipeline=pipeline.name,
                attrs=_target_json(target),
            )
        )
        self.edge(upstream, node_id)
        feeds = self.kinds.targets[target.kind].feeds(self, target)
        if feeds is not None:
            self.edge(node_id, feeds)

    def pipeline_settings(self, pipeline: PipelineInfo, schemas: tuple[str, ...]) -> set[str]:
        names = set(env_names_in(pipeline.decl)) | set(env_names_in(pipeline.on_error))
        source = pipeline.source
        names.update(self.kinds.sources[source.kind].settings(source, self.program))
        if schemas:
            names.update(REGISTRY_SETTINGS)
        for target in pipeline.targets:
            names.update(self.kinds.targets[target.kind].settings(target, self.program))
        if pipeline.on_error.dead_letter is not None:
            names.update(KAFKA_SETTINGS)
        return names

    def upstream_content(self, pipeline: PipelineInfo) -> object:
        """What the pipeline reads of other declarations (a webhook's topic and body, a
        connector's block), as its source and target kinds say."""
        source = pipeline.source
        read = self.kinds.sources[source.kind].reads(source, self.program)
        targets = tuple(
            self.kinds.targets[target.kind].reads(target, self.program)
            for target in pipeline.targets
        )
        if not any(content is not None for content in targets):
            return read  # as before targets could read anything (fingerprints stay the same)
        return (read, targets)

    def pipeline(self, pipeline: PipelineInfo) -> PipelineSpec:
        source_id = self.source_node(pipeline)
        previous = source_id
        steps: list[dict[str, JSONValue]] = []
        for index, step in enumerate(pipeline.steps):
            step_json, label = _step_json(step)
            steps.append(step_json)
            step_id = self.node(
                Node(
                    f"pipeline:{pipeline.name}/step:{index}",
                    NodeKind.STEP,
                    label,
                    pipeline=pipeline.name,
                    attrs=step_json,
                )
            )
            self.edge(previous, step_id)
            previous = step_id
        for index, target in enumerate(pipeline.targets):
            self.target_node(pipeline, index, target, previous)
        policy = pipeline.on_error
        if policy.dead_letter is not None:
            dlq = self.topic(policy.dead_letter)
            self.dead_letters.add(dlq)
            self.edge(source_id, dlq, "on error")
        schemas = self.pipeline_schemas(pipeline)
        settings = tuple(sorted(self.pipeline_settings(pipeline, schemas)))
        description: dict[str, JSONValue] = {
            "source": self.source_json(pipeline),
            "steps": steps,
            "targets": [_target_json(t) for t in pipeline.targets],
            "on_error": {
                "retry": policy.retry,
                "backoff_ms": policy.backoff_ms,
                "dead_letter": text_json(policy.dead_letter),
                "permanent": policy.permanent,
                "partitions": policy.partitions,
            },
        }
        fingerprint = digest(
            "pipeline",
            structure(pipeline.decl),
            self.upstream_content(pipeline),
            self.schema_content(schemas),
            self.settings_content(settings),
        )
        return PipelineSpec(
            name=pipeline.name,
            fingerprint=fingerprint,
            schemas=schemas,
            settings=settings,
            description=description,
            pipeline=pipeline,
        )

    def compile(self) -> CompiledProgram:
        program = self.program
        for webhook in program.webhooks.values():
            self.webhook_node(webhook)
        pipelines = {name: self.pipeline(p) for name, p in program.pipelines.items()}
        direct_readers = {
            p.source.webhook: pipelines[name]
            for name, p in program.pipelines.items()
            if p.source.webhook is not None
        }
        routes = {
            name: self.route(w, direct_readers.get(name) if w.direct else None)
            for name, w in program.webhooks.items()
        }
        nodes = tuple(
            dataclasses.replace(node, kind=NodeKind.DEAD_LETTER)
            if node.id in self.dead_letters
            else node
            for node in self.nodes.values()
        )
        connectors = {name: self.connector_fingerprint(c) for name, c in program.connectors.items()}
        return CompiledProgram(Graph(nodes, tuple(self.edges)), pipelines, routes, connectors)

    def connector_fingerprint(self, connector: ConnectorInfo) -> str:
        """What the connector's deployment depends on: its block and the settings it reads."""
        names = {value.name for value in connector.config.values() if isinstance(value, EnvRef)}
        settings = tuple(sorted(names.union(CONNECT_SETTINGS)))
        return digest("connector", structure(connector.decl), self.settings_content(settings))


def _auth_kind(webhook: WebhookInfo) -> str:
    auth = webhook.auth
    if isinstance(auth, OAuthAuth):
        return "oauth"
    if isinstance(auth, HmacAuth):
        return f"hmac {auth.preset}" if auth.preset else "hmac"
    return "none"


def _auth_json(webhook: WebhookInfo) -> dict[str, JSONValue]:
    auth = webhook.auth
    if isinstance(auth, OAuthAuth):
        return {
            "kind": "oauth",
            "issuer": text_json(auth.issuer),
            "audience": text_json(auth.audience),
            "scopes": list(auth.scopes),
            "leeway_ms": auth.leeway_ms,
        }
    if isinstance(auth, HmacAuth):
        # The secret itself is never part of the description, only where it comes from.
        secret = auth.secret if isinstance(auth.secret, EnvRef) else "<literal>"
        return {
            "kind": "hmac",
            "preset": auth.preset,
            "header": auth.header,
            "algorithm": auth.algorithm,
            "encoding": auth.encoding,
            "prefix": auth.prefix,
            "secret": text_json(secret),
        }
    assert isinstance(auth, NoAuth)
    return {"kind": "none"}


def poll_url(source: SourceInfo) -> str | None:
    """The polled URL as written, ``${...}`` parts included (the checker keeps only plain
    URLs)."""
    if source.url is not None:
        return source.url
    arg = source.decl.arg
    if not isinstance(arg, ast.StringLit):
        return None
    return "".join(p if isinstance(p, str) else "${" + expr_text(p) + "}" for p in arg.parts)


def _settings_of(block: ast.Block) -> list[ast.Setting]:
    return [entry for entry in block.entries if isinstance(entry, ast.Setting)]


def _step_json(step: ast.Step) -> tuple[dict[str, JSONValue], str]:
    if isinstance(step, ast.Where):
        text = expr_text(step.condition)
        return {"kind": "where", "condition": text}, f"where {text}"
    text = expr_text(step.value)
    return {"kind": "let", "name": step.name.name, "value": text}, f"let {step.name.name} = {text}"


def _target_json(target: TargetInfo) -> dict[str, JSONValue]:
    result: dict[str, Any] = {
        "kind": target.kind.value,
        "name": target.name,
        "settings": {k: expr_text(v) for k, v in target.settings.items()},
    }
    if target.variables is not None:
        result["variables"] = {k: expr_text(v) for k, v in target.variables.items()}
    if target.headers is not None:
        result["headers"] = {k: expr_text(v) for k, v in target.headers.items()}
    if target.schema is not None:
        result["schema"] = target.schema
    return result


def compile_program(
    program: Program, kinds: KindGraphs, settings: Mapping[str, str] | None = None
) -> CompiledProgram:
    """Compile ``program`` into its graph and specs, each source and target drawn by its
    kind's graph part in ``kinds``.

    ``settings`` are the values of the settings the process runs with (environment and
    ``lhpipe.toml``); when given, they take part in the fingerprints, so that a changed value
    restarts exactly what reads it. Without them, fingerprints cover the names only.
    """
    return _Compiler(program, kinds, settings).compile()

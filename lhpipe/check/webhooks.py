"""Checking ``webhook`` declarations: path, methods, auth, body, topic, key, limits."""

from __future__ import annotations

from typing import Literal, cast

from lhpipe.check import blocks, rules, scopes
from lhpipe.check import types as t
from lhpipe.check.context import CheckContext
from lhpipe.check.names import did_you_mean
from lhpipe.check.program import (
    Auth,
    HmacAuth,
    NoAuth,
    OAuthAuth,
    Text,
    WebhookInfo,
)
from lhpipe.check.types import Type
from lhpipe.syntax import ast

_PRESETS = ("github", "stripe", "standard_webhooks")
_DEFAULT_MAX_BODY = 1024 * 1024


class WebhookChecks(CheckContext):
    def _webhook(self, decl: ast.WebhookDecl) -> None:
        name = decl.name.name
        found = blocks.entries(decl.body, blocks.WEBHOOK, self.diagnostics)
        self.require(found, ("path",), decl.name.span, f"webhook `{name}`")
        if "auth" not in found:
            self.report(
                "LHP301",
                decl.name.span,
                f"webhook `{name}` has no `auth`",
                "add `auth = oauth { ... }` or `auth = hmac { ... }`; `auth = none` accepts anyone",
            )
        path = self._webhook_path(name, self.setting(found, "path"))
        methods = self._methods(self.setting(found, "methods"))
        auth_expr = self.setting(found, "auth")
        auth: Auth = self._auth(auth_expr) if auth_expr is not None else NoAuth()
        body, body_type = "json", cast(Type, t.JSON)
        body_expr = self.setting(found, "body")
        if body_expr is not None:
            body, body_type = self._body(body_expr)
        topic_expr = self.setting(found, "topic")
        topic = None
        if topic_expr is not None:
            # An invalid topic is still a topic: the webhook is not in direct mode.
            topic = self.topic_name(topic_expr, "a topic") or ""
        scope = scopes.webhook_scope(body_type, oauth=isinstance(auth, OAuthAuth))
        key = self.setting(found, "key")
        if key is not None:
            key_type = self.exprs.check(key, scope, allow_env=True)
            if not (t.is_string_like(t.unwrap(key_type)) or key_type == t.NULL):
                self.report(
                    "LHP201", key.span, f"a webhook key must be a string, found `{key_type}`"
                )
        max_body = _DEFAULT_MAX_BODY
        size = self.setting(found, "max_body")
        if size is not None:
            if isinstance(size, ast.SizeLit) and size.size > 0:
                max_body = size.size
            else:
                self.report("LHP209", size.span, "`max_body` must be a size, e.g. `1MiB`")
        partitions_expr = self.setting(found, "partitions")
        partitions = None
        if partitions_expr is not None:
            partitions = self.partitions(partitions_expr)
            if topic_expr is None:
                self.report(
                    "LHP411",
                    found["partitions"].key.span,
                    f"`partitions` is for the webhook's topic, and webhook `{name}` has none "
                    "(direct mode)",
                    "add a `topic`, or remove `partitions`",
                )
            elif partitions is not None:
                self.claim_partitions(topic, partitions, partitions_expr.span, f"webhook `{name}`")
        if self.is_first(decl) and path is not None:
            self.webhooks[name] = WebhookInfo(
                name,
                decl,
                path,
                methods,
                auth,
                body,
                body_type,
                topic,
                key,
                max_body,
                {n: b.type for n, b in scope.names.items() if b.unavailable is None},
                partitions,
            )

    def _webhook_path(self, name: str, expr: ast.Expr | None) -> str | None:
        if expr is None:
            return None
        path = self.literal_text(expr, "a path")
        if path is None:
            return None
        if not path.startswith("/") or any(c.isspace() or c in "?#" for c in path):
            self.report(
                "LHP306",
                expr.span,
                f'"{path}" is not a valid webhook path',
                'a path starts with `/` and has no spaces, `?` or `#`, e.g. "/hooks/orders"',
            )
            return None
        purpose = rules.ENGINE_PATHS.get(path)
        if purpose is not None:
            instead = "/hooks" + (path if path != "/" else "/intake")
            self.report(
                "LHP306",
                expr.span,
                f'"{path}" is served by lhpipe itself (its {purpose})',
                f"lhpipe keeps {', '.join(rules.ENGINE_PATHS)} for itself; "
                f'use another path, e.g. "{instead}"',
            )
            return None
        for other in self.webhooks.values():
            if other.path == path:
                self.report(
                    "LHP304",
                    expr.span,
                    f'path "{path}" is already used by webhook `{other.name}`',
                    f"declared at {other.decl.name.span}",
                )
                return None
        return path

    def _methods(self, expr: ast.Expr | None) -> tuple[str, ...]:
        if expr is None:
            return ("POST",)
        methods: list[str] = []
        for text, item in self.string_list(expr, "`methods`"):
            if text not in rules.HTTP_METHODS:
                hint = (
                    f'write it in capitals: "{text.upper()}"'
                    if text.upper() in rules.HTTP_METHODS
                    else "one of " + ", ".join(rules.HTTP_METHODS)
                )
                self.report("LHP306", item.span, f'"{text}" is not an HTTP method', hint)
            else:
                methods.append(text)
        return tuple(methods)

    def _auth(self, expr: ast.Expr) -> Auth:
        if isinstance(expr, ast.Name) and expr.name == "none":
            self.report(
                "LHP302",
                expr.span,
                "`auth = none`: this webhook accepts requests from anyone",
                "use `oauth { ... }` or `hmac { ... }` unless the route is meant to be public",
            )
            return NoAuth()
        if isinstance(expr, ast.Tagged) and expr.tag.name == "oauth":
            return self._oauth(expr)
        if isinstance(expr, ast.Tagged) and expr.tag.name == "hmac":
            return self._hmac(expr)
        word = (
            expr.tag.name
            if isinstance(expr, ast.Tagged)
            else (expr.name if isinstance(expr, ast.Name) else None)
        )
        hint = did_you_mean(word, ("oauth", "hmac", "none")) if word else None
        self.report(
            "LHP305",
            expr.span,
            "`auth` must be `oauth { ... }`, `hmac { ... }` or `none`",
            hint,
        )
        return NoAuth()

    def _oauth(self, expr: ast.Tagged) -> Auth:
        found = blocks.entries(expr.block, blocks.OAUTH, self.diagnostics)
        self.require(found, ("issuer", "audience"), expr.tag.span, "`oauth`")
        issuer_expr = self.setting(found, "issuer")
        issuer = self.text(issuer_expr, "an issuer URL") if issuer_expr else None
        if isinstance(issuer, str) and not issuer.startswith(("https://", "http://")):
            assert issuer_expr is not None
            self.report("LHP305", issuer_expr.span, f'issuer "{issuer}" is not an http(s) URL')
        audience_expr = self.setting(found, "audience")
        audience = self.text(audience_expr, "an audience") if audience_expr else None
        scopes_expr = self.setting(found, "scopes")
        scope_list = (
            [s for s, _ in self.string_list(scopes_expr, "`scopes`")] if scopes_expr else []
        )
        leeway_expr = self.setting(found, "leeway")
        leeway = self.duration(leeway_expr, "`leeway`", "LHP305") if leeway_expr else None
        return OAuthAuth(
            issuer or "",
            audience or "",
            tuple(scope_list),
            30_000 if leeway is None else leeway,
        )

    def _hmac(self, expr: ast.Tagged) -> Auth:
        found = blocks.entries(expr.block, blocks.HMAC, self.diagnostics)
        preset_expr = self.setting(found, "preset")
        preset = (
            self.choice(preset_expr, _PRESETS, "hmac preset", "LHP305") if preset_expr else None
        )
        if preset_expr is not None:
            for key in ("header", "algorithm", "encoding", "prefix"):
                if key in found:
                    self.report(
                        "LHP305",
                        found[key].key.span,
                        f"`{key}` cannot be combined with `preset`: the preset defines it",
                    )
            self.require(found, ("secret",), expr.tag.span, "`hmac`")
        else:
            self.require(found, ("header", "secret"), expr.tag.span, "custom `hmac`")
        secret_expr = self.setting(found, "secret")
        secret: Text | None = None
        if secret_expr is not None:
            secret = self.text(secret_expr, "a secret")
            if isinstance(secret, str):
                self.report(
                    "LHP303",
                    secret_expr.span,
                    "the hmac secret is written in the source",
                    'read it from the environment: `secret = env("WEBHOOK_SECRET")`',
                )
        header_expr = self.setting(found, "header")
        header = self.literal_text(header_expr, "a header name") if header_expr else None
        algorithm_expr = self.setting(found, "algorithm")
        algorithm = (
            self.choice(algorithm_expr, ("sha256", "sha512"), "hmac algorithm", "LHP305")
            if algorithm_expr
            else None
        )
        encoding_expr = self.setting(found, "encoding")
        encoding = (
            self.choice(encoding_expr, ("hex", "base64"), "hmac encoding", "LHP305")
            if encoding_expr
            else None
        )
        prefix_expr = self.setting(found, "prefix")
        prefix = self.literal_text(prefix_expr, "a prefix") if prefix_expr else None
        return HmacAuth(
            secret=secret or "",
            preset=preset,
            header=header,
            algorithm=cast(Literal["sha256", "sha512"], algorithm or "sha256"),
            encoding=cast(Literal["hex", "base64"], encoding or "hex"),
            prefix=prefix or "",
        )

    def _body(self, expr: ast.Expr) -> tuple[str, Type]:
        if isinstance(expr, ast.Name):
            if expr.name == "json":
                return "json", t.JSON
            if expr.name == "bytes":
                return "bytes", t.BYTES
            return expr.name, self.schema_ref(expr)
        self.report("LHP209", expr.span, "`body` must be a schema name, `json` or `bytes`")
        return "json", t.UNKNOWN

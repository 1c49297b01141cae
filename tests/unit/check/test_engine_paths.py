"""The checker refuses webhook paths that the engine's listener keeps for itself (LHP306):
exactly the ones where a webhook would never be called."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client import CollectorRegistry

from lhpipe.check import rules
from lhpipe.gateway.server import EngineApp, Receive, Scope, Send, send_json
from lhpipe.kinds import load_texts

CANDIDATES = ("/", "/healthz", "/readyz", "/metrics", "/health", "/metrics/x", "/healthz/")


async def _webhook(scope: Scope, receive: Receive, send: Send) -> None:
    await send_json(send, 200, {"webhook": True})


def _reaches_webhook(path: str) -> bool:
    app = EngineApp(lambda: (), registry=CollectorRegistry(), routes={path: _webhook})

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lhpipe") as client:
            return await client.get(path)

    response = asyncio.run(go())
    return response.headers.get("content-type") == "application/json" and response.json() == {
        "webhook": True
    }


def _refused(path: str) -> bool:
    text = f"""
webhook hook {{
  path = "{path}"
  auth = hmac {{ preset = github  secret = env("GITHUB_SECRET") }}
  topic = "hooks"
}}
"""
    result = load_texts({"paths.lhp": text})
    return any(d.code == "LHP306" for d in result.diagnostics)


def test_the_checker_refuses_exactly_the_paths_the_listener_keeps() -> None:
    kept = {path for path in CANDIDATES if not _reaches_webhook(path)}
    refused = {path for path in CANDIDATES if _refused(path)}
    assert kept == refused == set(rules.ENGINE_PATHS)

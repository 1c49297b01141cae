"""The few calls of the Kafka Connect REST API that :mod:`lhpipe.engine.connectors` makes.

=====================================================  ===========================================
``GET /connectors?expand=info&expand=status``          every connector's config and status, in one
                                                       call
``PUT /connectors/{name}/config``                      create or update one connector (idempotent)
``DELETE /connectors/{name}``                          remove one connector (404 counts as done)
=====================================================  ===========================================

Failures are two exceptions under :class:`ConnectRestError`: :class:`ConnectUnreachable` (no
answer, a timeout, or a 5xx/409 that a later call may not get: a rebalance, a worker starting)
and :class:`ConnectRejected` (a 4xx: the worker refused this request, its message says why).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_TIMEOUT_SECONDS = 10.0
_MESSAGE_EXCERPT = 300  # characters of an error answer kept in a message


class ConnectRestError(Exception):
    """A Kafka Connect REST call that did not succeed."""


class ConnectUnreachable(ConnectRestError):
    """No usable answer: the worker is down, slow, or busy (rebalancing); try again later."""


class ConnectRejected(ConnectRestError):
    """The worker refused the request (a 4xx): an invalid config, an unknown class..."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class ClusterConnector:
    """One connector as the cluster has it: its config (text values, ``name`` included) and
    its status (``{"connector": {"state", "trace"?}, "tasks": [...]}``, empty when the worker
    has none yet)."""

    name: str
    config: Mapping[str, str]
    status: Mapping[str, Any] = field(default_factory=dict)


class ConnectRest:
    """A Kafka Connect REST client over one ``httpx.AsyncClient`` (pass ``client`` to serve
    it from a fake, e.g. ``httpx.MockTransport``)."""

    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.url = url.rstrip("/")
        self._client = client or httpx.AsyncClient(timeout=timeout)

    async def connectors(self) -> dict[str, ClusterConnector]:
        """Every connector of the cluster, by name."""
        answer = await self._call(
            "GET", "/connectors", params=[("expand", "info"), ("expand", "status")]
        )
        body = _json_of(answer)
        if not isinstance(body, dict):
            raise ConnectUnreachable(f"GET /connectors answered {_excerpt(answer.text)}")
        found: dict[str, ClusterConnector] = {}
        for name, entry in body.items():
            info = entry.get("info") if isinstance(entry, dict) else None
            status = entry.get("status") if isinstance(entry, dict) else None
            config = info.get("config") if isinstance(info, dict) else None
            found[name] = ClusterConnector(
                name=name,
                config={str(k): str(v) for k, v in (config or {}).items()},
                status=status if isinstance(status, dict) else {},
            )
        return found

    async def put_config(self, name: str, config: Mapping[str, str]) -> None:
        """Create connector ``name`` with ``config``, or replace its config."""
        await self._call("PUT", f"/connectors/{quote(name, safe='')}/config", json=dict(config))

    async def delete(self, name: str) -> None:
        """Remove connector ``name``; one that is already gone is not an error."""
        try:
            await self._call("DELETE", f"/connectors/{quote(name, safe='')}")
        except ConnectRejected as exc:
            if exc.status != 404:
                raise

    async def close(self) -> None:
        await self._client.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            answer = await self._client.request(method, f"{self.url}{path}", **kwargs)
        except httpx.TimeoutException as exc:
            raise ConnectUnreachable(f"{method} {path} timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise ConnectUnreachable(f"{method} {path} failed: {reason}") from exc
        if answer.is_success:
            return answer
        message = f"{method} {path} answered {answer.status_code}: {_error_message(answer)}"
        # 409: a rebalance is in progress; 5xx: the worker could not do it now. Both pass.
        if answer.status_code == 409 or answer.status_code >= 500:
            raise ConnectUnreachable(message)
        raise ConnectRejected(message, answer.status_code)


def _json_of(answer: httpx.Response) -> Any:
    try:
        return answer.json()
    except ValueError:
        return None


def _error_message(answer: httpx.Response) -> str:
    """Connect's ``{"error_code", "message"}`` message, else the start of the body."""
    body = _json_of(answer)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return _excerpt(body["message"])
    return _excerpt(answer.text) or answer.reason_phrase


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MESSAGE_EXCERPT else text[: _MESSAGE_EXCERPT - 1] + "…"

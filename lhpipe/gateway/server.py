"""The engine's HTTP listener: health, readiness, metrics, a status page, and (later) webhooks.

One port serves everything (cli.md). The application is a raw ASGI callable with no framework
underneath, because the webhook routes that share it are a hot path and a framework layer can
halve a server's ceiling (performance.md). It runs on uvicorn (httptools) inside the engine's
own event loop (asyncio's, not uvloop: docs/webhooks.md), as a task next to the pipelines.

Built-in routes, answered for ``GET`` and ``HEAD`` (other methods: 405):

``/healthz``
    200 ``{"alive": true}`` while the process runs.
``/readyz``
    200 when every pipeline is ready and the process has finished starting, else 503; the body
    is ``{"ready": bool, "starting": bool, "not_ready": [names], "pipelines": {name:
    PipelineStatus.to_json()}}``,
    plus ``"program": "<hash>"`` (the running program's hash, which hot reload changes) once
    :attr:`EngineApp.program_hash` is set, and ``"worker": {"index": i, "count": N, "pid":
    pid}`` (which process of ``lhpipe run --workers N`` answered: :mod:`lhpipe.core.worker`;
    index 0 of 1 without ``--workers``).
``/metrics``
    the Prometheus exposition of :data:`lhpipe.core.metrics.REGISTRY`, in the format the
    scraper's ``Accept`` header asks for (text 0.0.4 by default, OpenMetrics on request).
``/``
    an HTML page with every pipeline's state and counters, and which worker this is.

Other paths are looked up in :attr:`EngineApp.routes`, a mapping from path to ASGI handler that
webhooks and hot reload replace in one assignment (so a request sees the old table or the new
one, never a mix). A handler there answers its own methods. Built-in paths win over that table.
Unknown paths get 404. Error answers are ``application/problem+json`` (RFC 9457).

The listener binds ``0.0.0.0`` unless told otherwise: health probes, Prometheus and webhook
providers all reach the process from outside its network namespace, so a loopback default would
make every container deployment fail its probes. ``host="127.0.0.1"`` keeps a laptop private.
Because it faces the internet, the listener times out slow heads and bodies, caps a head's size
and the number of connections, and answers pipelined requests in order
(:mod:`lhpipe.gateway.http_limits`, settings ``LHPIPE_HTTP_*``).
The workers of ``lhpipe run --workers N`` each bind the same port with ``SO_REUSEPORT`` (the
kernel spreads new connections over them); a process on its own does not, so a second
``lhpipe run`` on a port in use still fails with "address in use".
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import html
import logging
import os
import socket
import ssl
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from lhpipe.core.jsonenc import dumps
from lhpipe.core.metrics import REGISTRY
from lhpipe.core.worker import Worker, this_worker
from lhpipe.gateway.http_limits import (
    HttpLimits,
    fit_max_connections,
    limit_accept_error_logs,
    protocol_class,
)
from lhpipe.runtime.status import PipelineStatus
from lhpipe.settings import TLS_CERT_SETTING, TLS_KEY_SETTING, Settings, SettingsError

DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 8080

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
StatusSource = Callable[[], Iterable[PipelineStatus]]

log = logging.getLogger(__name__)

_JSON = b"application/json"
_PROBLEM_JSON = b"application/problem+json"
_HTML = b"text/html; charset=utf-8"
_READ_METHODS = ("GET", "HEAD")


async def send_response(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    *,
    headers: Iterable[tuple[bytes, bytes]] = (),
    head: bool = False,
) -> None:
    """Answer with one complete body; for a ``HEAD`` request (``head``) the body is left out
    but its length is still announced."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode("ascii")),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else body})


async def send_json(
    send: Send,
    status: int,
    value: Any,
    *,
    headers: Iterable[tuple[bytes, bytes]] = (),
    head: bool = False,
) -> None:
    """Answer with ``value`` as JSON."""
    await send_response(send, status, dumps(value), _JSON, headers=headers, head=head)


async def send_problem(
    send: Send,
    status: int,
    title: str,
    detail: str,
    *,
    headers: Iterable[tuple[bytes, bytes]] = (),
    head: bool = False,
) -> None:
    """Answer with an RFC 9457 problem document."""
    problem = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    await send_response(send, status, dumps(problem), _PROBLEM_JSON, headers=headers, head=head)


class EngineApp:
    """The ASGI application of the listener (see the module docstring for the routes).

    ``statuses`` is called on every ``/readyz`` and status-page request, so it must be cheap and
    must not block (the Supervisor keeps the current statuses at hand). ``routes`` holds the
    webhook table; assign a new mapping to swap it. While ``starting`` is true (the listener
    accepts connections before the pipelines are built), ``/readyz`` answers 503 whatever the
    statuses say: an empty list of statuses is not a ready process. ``worker`` is the process
    that answers (default: :func:`lhpipe.core.worker.this_worker`).
    """

    def __init__(
        self,
        statuses: StatusSource,
        *,
        registry: CollectorRegistry = REGISTRY,
        routes: Mapping[str, ASGIApp] | None = None,
        starting: bool = False,
        worker: Worker | None = None,
    ) -> None:
        self.statuses = statuses
        self.worker = worker if worker is not None else this_worker()
        self.starting = starting
        self.registry = registry
        self.routes: Mapping[str, ASGIApp] = routes if routes is not None else {}
        self.program_hash: str | None = None
        self._builtin: Mapping[str, Callable[[Scope, Send, bool], Awaitable[None]]] = {
            "/healthz": self._healthz,
            "/readyz": self._readyz,
            "/metrics": self._metrics,
            "/": self._status_page,
        }

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine itself: it returns the coroutine of the route that answers, so a
        # webhook request runs (and resumes after Kafka's acknowledgement) one frame less.
        # The listener therefore tells uvicorn the interface (ASGI 3) instead of guessing.
        if scope["type"] != "http":
            # The listener runs with lifespan and websockets off; nothing else should arrive.
            return _answered()
        path: str = scope["path"]
        builtin = self._builtin.get(path)
        if builtin is not None:
            method: str = scope["method"]
            if method not in _READ_METHODS:
                return send_problem(
                    send,
                    405,
                    "Method Not Allowed",
                    f"{path} answers GET and HEAD, not {method}",
                    headers=[(b"allow", b"GET, HEAD")],
                )
            return builtin(scope, send, method == "HEAD")
        # Read the table once: a reload that swaps it mid-request does not affect this one.
        handler = self.routes.get(path)
        if handler is None:
            return send_problem(send, 404, "Not Found", f"nothing is served at {path}")
        return handler(scope, receive, send)

    async def _healthz(self, scope: Scope, send: Send, head: bool) -> None:
        await send_json(send, 200, {"alive": True}, head=head)

    async def _readyz(self, scope: Scope, send: Send, head: bool) -> None:
        statuses = list(self.statuses())
        not_ready = [status.name for status in statuses if not status.ready]
        ready = not not_ready and not self.starting
        body: dict[str, object] = {
            "ready": ready,
            "starting": self.starting,
            "not_ready": not_ready,
            "pipelines": {status.name: status.to_json() for status in statuses},
        }
        if self.program_hash is not None:
            body["program"] = self.program_hash
        body["worker"] = self.worker.to_json()
        await send_json(send, 200 if ready else 503, body, head=head)

    async def _metrics(self, scope: Scope, send: Send, head: bool) -> None:
        accept = ""
        for name, value in scope["headers"]:
            if name == b"accept":
                accept = value.decode("latin-1")
        encode, content_type = choose_encoder(accept)
        await send_response(
            send, 200, encode(self.registry), content_type.encode("ascii"), head=head
        )

    async def _status_page(self, scope: Scope, send: Send, head: bool) -> None:
        page = render_status_page(
            list(self.statuses()),
            pipeline_counters(self.registry),
            starting=self.starting,
            worker=self.worker,
        )
        await send_response(send, 200, page.encode("utf-8"), _HTML, head=head)


async def _answered() -> None:
    """Nothing to do: an awaitable for :meth:`EngineApp.__call__`."""


# Counters shown on the status page: metric family -> column title.
_PAGE_COUNTERS = {
    "lhpipe_records_in": "in",
    "lhpipe_records_out": "out",
    "lhpipe_records_failed": "failed attempts",
    "lhpipe_retries": "retries",
    "lhpipe_records_dead_lettered": "dead-lettered",
    "lhpipe_records_skipped": "skipped",
    "lhpipe_in_flight": "in flight",
    "lhpipe_concurrency_limit": "limit",
}


def pipeline_counters(registry: CollectorRegistry) -> dict[str, dict[str, float]]:
    """The status page's counters per pipeline, summed over their other labels (targets,
    error classes)."""
    counters: dict[str, dict[str, float]] = {}
    for family in registry.collect():
        title = _PAGE_COUNTERS.get(family.name)
        if title is None:
            continue
        wanted = family.name + "_total" if family.type == "counter" else family.name
        for sample in family.samples:
            pipeline = sample.labels.get("pipeline")
            if sample.name == wanted and pipeline is not None:
                row = counters.setdefault(pipeline, {})
                row[title] = row.get(title, 0.0) + sample.value
    return counters


def render_status_page(
    statuses: list[PipelineStatus],
    counters: Mapping[str, Mapping[str, float]],
    *,
    starting: bool = False,
    worker: Worker | None = None,
) -> str:
    """The HTML of ``/``: one table row per pipeline; every name and detail is escaped. With
    ``worker``, a line says which worker of how many this process is."""
    ready = all(status.ready for status in statuses)
    headline = "starting" if starting else "ready" if ready else "not ready"
    columns = list(_PAGE_COUNTERS.values())
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    rows = []
    for status in statuses:
        row = counters.get(status.name, {})
        targets = ", ".join(
            f"{html.escape(name)} {'✓' if ok else '✗'}" for name, ok in status.targets.items()
        )
        cells = "".join(f"<td class=num>{row.get(c, 0.0):g}</td>" for c in columns)
        rows.append(
            f"<tr class={'ok' if status.ready else 'bad'}>"
            f"<td>{html.escape(status.name)}</td>"
            f"<td>{html.escape(status.state.value)}</td>"
            f"<td>{'yes' if status.source_connected else 'no'}</td>"
            f"<td>{targets}</td>"
            f"<td>{html.escape(status.detail or '')}</td>"
            f"{cells}</tr>"
        )
    body = "\n".join(rows) or f"<tr><td colspan={5 + len(columns)}>no pipelines</td></tr>"
    which = "" if worker is None else f"\n<p class=worker>{html.escape(worker.describe())}</p>"
    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8><meta http-equiv=refresh content=5>
<title>lhpipe</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em}}
table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}
.num{{text-align:right}} .ok td:first-child{{color:#060}} .bad td:first-child{{color:#a00}}
</style></head><body>
<h1>lhpipe: {headline}</h1>{which}
<p><a href=/readyz>/readyz</a> · <a href=/metrics>/metrics</a> · <a href=/healthz>/healthz</a></p>
<table><tr><th>pipeline</th><th>state</th><th>source</th><th>targets</th><th>detail</th>{head}</tr>
{body}
</table></body></html>
"""


class _EngineServer(uvicorn.Server):
    """uvicorn without its signal handlers: the Supervisor owns SIGTERM and SIGINT and stops
    the listener itself, after draining."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def listening_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A bound, listening TCP socket for uvicorn.

    With ``reuse_port`` the socket sets ``SO_REUSEPORT`` before binding, so that every worker
    of ``lhpipe run --workers N`` binds the same port and the kernel spreads new connections
    over them; the kernel lets a socket share a port only with others that set it too (and
    belong to the same user), so a process without it still meets "address in use".

    The protocol is given explicitly (``IPPROTO_TCP``, not 0 as ``socket.create_server`` does)
    because asyncio turns Nagle's algorithm off only on accepted sockets whose ``proto`` says
    TCP; without it every response on a kept-alive connection waits ~40 ms for the peer's ACK.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(socket.SOMAXCONN)
    except OSError:
        sock.close()
        raise
    return sock


@dataclasses.dataclass(frozen=True, slots=True)
class ServerTls:
    """The certificate (chain) and private key lhpipe's HTTP port serves HTTPS with."""

    cert: str
    key: str

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerTls | None:
        """``LHPIPE_TLS_CERT`` and ``LHPIPE_TLS_KEY`` (``lhpipe run --tls-cert/--tls-key``),
        both or neither, checked now: a file that cannot be read, or a key that does not fit
        the certificate, raises :class:`~lhpipe.settings.SettingsError` naming the setting,
        never the key's contents."""
        cert, key = settings.get(TLS_CERT_SETTING), settings.get(TLS_KEY_SETTING)
        if not cert and not key:
            return None
        if not cert or not key:
            raise SettingsError(f"{TLS_CERT_SETTING} and {TLS_KEY_SETTING} go together")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        for name, path in ((TLS_CERT_SETTING, cert), (TLS_KEY_SETTING, key)):
            if not Path(path).is_file():
                raise SettingsError(f"{name}: {path} is not a readable file")
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "reason", None) or exc.strerror or type(exc).__name__
            raise SettingsError(
                f"{TLS_CERT_SETTING}/{TLS_KEY_SETTING}: cannot serve HTTPS with {cert} and "
                f"{key}: {reason}"
            ) from None
        return cls(cert, key)


class HttpListener:
    """Serves an :class:`EngineApp` on ``host:port`` from the running event loop.

    :meth:`start` binds the socket first, so a port already in use raises :class:`OSError`
    at once instead of ending the process from inside uvicorn; ``port=0`` picks a free port
    (see :attr:`port`). ``reuse_port``: share the port with the other workers
    (:func:`listening_socket`). uvicorn's logging configuration is left alone (the engine's own
    applies) and its access log is off unless ``access_log``. :meth:`stop` gives open requests
    ``graceful_timeout`` seconds to finish. ``limits``: the timeouts and caps of
    :mod:`lhpipe.gateway.http_limits` (default: the ``LHPIPE_HTTP_*`` environment variables,
    :meth:`HttpLimits.from_settings`, which raises :class:`~lhpipe.settings.SettingsError` for
    a bad one); the connection cap is lowered to fit the open-file limit.
    """

    def __init__(
        self,
        app: EngineApp,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        access_log: bool = False,
        graceful_timeout: int = 10,
        reuse_port: bool = False,
        limits: HttpLimits | None = None,
        tls: ServerTls | None = None,
    ) -> None:
        self.app = app
        self.tls = tls
        self.limits = (
            limits if limits is not None else HttpLimits.from_settings(Settings(os.environ))
        )
        self.host = host
        self.port = port
        self.reuse_port = reuse_port
        self._access_log = access_log
        self._graceful_timeout = graceful_timeout
        self._server: _EngineServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._restore_exception_handler: Callable[[], None] | None = None

    async def start(self) -> None:
        """Bind and start serving; returns once connections are accepted."""
        sock = listening_socket(self.host, self.port, reuse_port=self.reuse_port)
        self.port = sock.getsockname()[1]
        # uvicorn announces its start and stop at INFO; the listener's own line says where it
        # listens, and uvicorn's warnings and errors (an app exception) still come through.
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        limits = self.limits
        max_connections = fit_max_connections(limits.max_connections)
        if max_connections != limits.max_connections:
            limits = dataclasses.replace(limits, max_connections=max_connections)
        config = uvicorn.Config(
            self.app,
            http=protocol_class(limits),  # httptools, with timeouts and caps
            interface="asgi3",  # EngineApp.__call__ returns a coroutine without being one
            loop="none",  # the engine's loop is already running
            lifespan="off",
            ws="none",
            log_config=None,
            access_log=self._access_log,
            server_header=False,
            timeout_graceful_shutdown=self._graceful_timeout,
            timeout_keep_alive=limits.keep_alive_timeout,  # type: ignore[arg-type]  # a float works
            ssl_certfile=None if self.tls is None else self.tls.cert,
            ssl_keyfile=None if self.tls is None else self.tls.key,
        )
        server = _EngineServer(config)
        self._server = server
        self._restore_exception_handler = limit_accept_error_logs(asyncio.get_running_loop())
        self._task = asyncio.create_task(server.serve(sockets=[sock]), name="http-listener")
        try:
            while not server.started:
                if self._task.done():
                    await self._task  # raises what stopped it
                    raise RuntimeError("the HTTP listener stopped while starting")
                await asyncio.sleep(0.01)
        except BaseException:
            self._restore_exception_handler()
            self._restore_exception_handler = None
            raise
        scheme = "http" if self.tls is None else "https"
        log.info("HTTP listener on %s://%s:%d", scheme, self.host, self.port)

    async def stop(self) -> None:
        """Stop accepting connections, let open requests finish, and return."""
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            await self._task
        finally:
            self._server = None
            self._task = None
            if self._restore_exception_handler is not None:
                self._restore_exception_handler()
                self._restore_exception_handler = None

"""Loopback stand-ins for the two services the examples reach over HTTP.

``crm_export`` (pipelines/crm.lhp) posts completed onboardings to a CRM, and
``partner_applications`` (pipelines/partners.lhp) polls a partner's API for new applications.
Neither service exists on a laptop, so ``lhpipe demo`` serves a small stand-in for each on
127.0.0.1, at the addresses the example files name:

- the **CRM** (:data:`CRM_PORT`): ``POST /customers`` records the JSON it is sent (``201``) when
  its ``Authorization`` header is the value the pipeline sends (``CRM_AUTHORIZATION``), else
  ``401``; ``GET /customers`` lists what it recorded, for people to look at.
- the **partner API** (:data:`PARTNER_API_PORT`): ``GET /api/applications?after=CURSOR`` answers
  ``{"applications": [...], "next_cursor": "..."}`` a page of :data:`PAGE_SIZE` at a time, with
  the ``Authorization`` the pipeline sends (``PARTNER_API_TOKEN``), else ``401``; ``POST
  /api/applications`` adds an application (``{"name", "email", "country"}``; the id is given)
  and answers it with ``201``. It starts with :data:`DEMO_APPLICANTS`.

Application ids carry a session tag (``pa-<6 hex>-<n>``) and cursors do too (``<tag>-<n>``,
the number of applications already handed out): a cursor the poll source kept from an earlier
demo names another session, and the stand-in then starts from its first application. So every
demo session's applications are new to the source's dedupe window and become new WfRuns.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lhpipe.core.timestamps import timestamp_text

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
#: The ports the example files name (``to http`` in crm.lhp, ``from poll`` in partners.lhp).
CRM_PORT = 8091
PARTNER_API_PORT = 8092
CUSTOMERS_PATH = "/customers"
APPLICATIONS_PATH = "/api/applications"
#: Applications per page of the partner API.
PAGE_SIZE = 2
#: How many CRM deliveries are kept for ``GET /customers`` (the oldest are forgotten).
KEEP = 1000
#: Largest request body read.
MAX_BODY = 1 << 20

#: The partner's applications at the start of a session: name, e-mail, country.
DEMO_APPLICANTS: Sequence[tuple[str, str, str]] = (
    ("Bo Berg", "Bo.Berg@example.com", "SE"),
    ("Chiara Conti", "chiara@example.com", "IT"),
    ("Dara Doyle", "Dara@Example.com", "IE"),
)


def _now() -> str:
    return timestamp_text(datetime.now(UTC))


class StandIn:
    """One HTTP service on ``127.0.0.1:port``, served by a daemon thread from :meth:`start`
    until :meth:`stop`. Subclasses answer in :meth:`handle`."""

    name = "stand-in"

    def __init__(self, port: int, authorization: str | None) -> None:
        self.port = port
        #: The ``Authorization`` value the pipeline's requests must carry (None: any).
        self.authorization = authorization
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        """Listen and serve; ``OSError`` when the port is taken. Port 0 takes a free one
        (tests)."""
        server = ThreadingHTTPServer((HOST, self.port), _handler_class(self))
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name=f"lhpipe-demo-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._server = None

    def authorized(self, headers: Mapping[str, str]) -> bool:
        return self.authorization is None or headers.get("authorization") == self.authorization

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> tuple[int, Any]:
        """The status and JSON answer to one request."""
        raise NotImplementedError


class CrmStandIn(StandIn):
    """Records what ``crm_export`` posts."""

    name = "crm"

    def __init__(self, authorization: str | None, port: int = CRM_PORT) -> None:
        super().__init__(port, authorization)
        self._received: list[dict[str, Any]] = []
        self._count = 0

    @property
    def url(self) -> str:
        return self.base_url + CUSTOMERS_PATH

    def received(self) -> list[dict[str, Any]]:
        """The deliveries recorded, oldest first."""
        with self.lock:
            return list(self._received)

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> tuple[int, Any]:
        if path != CUSTOMERS_PATH:
            return HTTPStatus.NOT_FOUND, {"error": f"no such path: {path}"}
        if method == "GET":
            return HTTPStatus.OK, {"customers": self.received()}
        if not self.authorized(headers):
            return HTTPStatus.UNAUTHORIZED, {"error": "wrong or missing Authorization"}
        try:
            customer = json.loads(body)
        except ValueError:
            return HTTPStatus.BAD_REQUEST, {"error": "the body is not JSON"}
        with self.lock:
            self._count += 1
            entry = {
                "id": f"crm-{self._count}",
                "received": _now(),
                "wf_run_id": customer.get("wf_run_id") if isinstance(customer, dict) else None,
                "body": customer,
            }
            self._received.append(entry)
            del self._received[:-KEEP]
        log.info("CRM stand-in: recorded %s (WfRun %s)", entry["id"], entry["wf_run_id"])
        return HTTPStatus.CREATED, {"id": entry["id"]}


class PartnerApiStandIn(StandIn):
    """A paged list of applications behind a cursor, as ``partner_applications`` polls it."""

    name = "partner-api"

    def __init__(
        self, authorization: str | None, port: int = PARTNER_API_PORT, session: str | None = None
    ) -> None:
        super().__init__(port, authorization)
        self.session = session or uuid.uuid4().hex[:6]
        self._applications: list[dict[str, Any]] = []
        for name, email, country in DEMO_APPLICANTS:
            self.add({"name": name, "email": email, "country": country})

    @property
    def url(self) -> str:
        return self.base_url + APPLICATIONS_PATH

    def applications(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self._applications)

    def add(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """A new application with the next id."""
        with self.lock:
            application = {
                "id": f"pa-{self.session}-{len(self._applications) + 1}",
                **{k: v for k, v in fields.items() if k != "id"},
                "submitted": _now(),
            }
            self._applications.append(application)
        return application

    def page(self, cursor: str | None) -> dict[str, Any]:
        """The applications after ``cursor`` (from the first when it is not this session's)."""
        start = self._position(cursor)
        with self.lock:
            items = self._applications[start : start + PAGE_SIZE]
        return {"applications": items, "next_cursor": f"{self.session}-{start + len(items)}"}

    def _position(self, cursor: str | None) -> int:
        tag, _, number = (cursor or "").rpartition("-")
        if tag != self.session or not number.isdigit():
            return 0
        with self.lock:
            return min(int(number), len(self._applications))

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> tuple[int, Any]:
        if path != APPLICATIONS_PATH:
            return HTTPStatus.NOT_FOUND, {"error": f"no such path: {path}"}
        if method == "POST":
            try:
                fields = json.loads(body)
            except ValueError:
                fields = None
            if not isinstance(fields, dict):
                return HTTPStatus.BAD_REQUEST, {"error": "the body must be a JSON object"}
            fields_needed = ("name", "email", "country")
            missing = [k for k in fields_needed if not isinstance(fields.get(k), str)]
            if missing:
                return HTTPStatus.BAD_REQUEST, {"error": f"missing text fields: {missing}"}
            return HTTPStatus.CREATED, self.add(fields)
        if not self.authorized(headers):
            return HTTPStatus.UNAUTHORIZED, {"error": "wrong or missing Authorization"}
        after = query.get("after")
        return HTTPStatus.OK, self.page(after[0] if after else None)


def _handler_class(stand_in: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = f"lhpipe-demo-{stand_in.name}"

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

        def _answer(self, method: str) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY:
                self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "body too large"})
                return
            body = self.rfile.read(length) if length else b""
            url = urlsplit(self.path)
            headers = {name.lower(): value for name, value in self.headers.items()}
            query = parse_qs(url.query, keep_blank_values=True)
            try:
                status, answer = stand_in.handle(method, url.path, query, headers, body)
            except Exception:  # a bug here must not look like a network failure
                log.exception("%s stand-in failed on %s %s", stand_in.name, method, self.path)
                status, answer = HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "stand-in failed"}
            self._send(status, answer)

        def _send(self, status: int, answer: Any) -> None:
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s stand-in: " + format, stand_in.name, *args)

    return Handler


class StandIns:
    """The CRM and the partner API, started and stopped together."""

    def __init__(self, crm_authorization: str | None, partner_token: str | None) -> None:
        self.crm = CrmStandIn(crm_authorization)
        self.partner_api = PartnerApiStandIn(partner_token)
        self.serving: list[StandIn] = []

    def start(self) -> list[str]:
        """Start each stand-in; returns a warning for each that could not listen."""
        problems = []
        for stand_in in (self.crm, self.partner_api):
            try:
                stand_in.start()
            except OSError as exc:
                problems.append(
                    f"the {stand_in.name} stand-in cannot listen on {stand_in.base_url} "
                    f"({exc.strerror or exc}); is another `lhpipe demo` running? Its requests "
                    "go to whatever answers there"
                )
            else:
                self.serving.append(stand_in)
        return problems

    def stop(self) -> None:
        for stand_in in self.serving:
            stand_in.stop()
        self.serving.clear()

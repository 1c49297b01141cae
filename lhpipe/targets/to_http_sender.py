"""``to http``: one HTTP request per record, through one shared connection pool.

The body is the plan's ``body`` as JSON (:mod:`lhpipe.core.jsonenc`) with
``content-type: application/json`` unless the target's headers set another; a ``None`` body
sends no body at all. Redirects are not followed: a 3xx is an answer the target did not expect.

How answers are classified (one attempt per call; the engine's Delivery policy retries):

=========================================  =================================================
2xx                                        accepted
408, 429, 5xx                              :class:`HttpTransientError` ``HTTP_<status>``, with
                                           the ``Retry-After`` header as ``retry_after``
timeout (whole call over the deadline)     :class:`HttpTransientError` ``HTTP_TIMEOUT``
connection refused, reset, DNS failure     :class:`HttpTransientError` ``HTTP_CONNECTION``
401, 407                                   :class:`~lhpipe.core.errors.PausedError`
                                           ``HTTP_<status>``: credentials, as gRPC's
                                           UNAUTHENTICATED (delivery.md)
any other status (3xx, 4xx)                :class:`~lhpipe.core.errors.PermanentError`
                                           ``HTTP_<status>``
a URL httpx cannot use                     :class:`~lhpipe.core.errors.PermanentError`
                                           ``HTTP_URL``
=========================================  =================================================

Messages name the URL redacted (:func:`~lhpipe.core.redact.redact_url`: no userinfo, no
query values), and so do the URLs inside an exception's text or an answer's excerpt: the
messages reach ``/readyz``, the status page, the logs and dead letters.

Delivery is at least once: a retry after a timeout may reach an endpoint that already acted on
the first attempt, so endpoints should deduplicate (for example on an ``Idempotency-Key``
header built from the record's coordinates in the target's ``headers``).
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Mapping

import httpx

from lhpipe import __version__
from lhpipe.core.errors import PausedError, PermanentError, TransientError
from lhpipe.core.jsonenc import dumps
from lhpipe.core.plans import HttpPlan, Plan
from lhpipe.core.redact import redact_text, redact_url

DEFAULT_DEADLINE_SECONDS = 10.0
_TRANSIENT_STATUSES = frozenset({408, 429})
# Credentials refused: the pipeline pauses until they work again, nothing is dead-lettered.
# (403 stays permanent: it is as often a refusal of one record's resource as of the caller.)
_PAUSED_STATUSES = frozenset({401, 407})
_BODY_EXCERPT = 200  # characters of an error answer kept in the error message


class HttpTransientError(TransientError):
    """A transient ``to http`` failure; ``retry_after`` is the server's ``Retry-After`` in
    seconds when it sent one (a hint for the backoff), else ``None``."""

    def __init__(self, message: str, *, code: str, retry_after: float | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date; ``None``
    when absent or unreadable. A date in the past gives 0."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class HttpSender:
    """Sends :class:`~lhpipe.core.plans.HttpPlan` requests; one instance per process.

    ``deadline`` bounds each whole call (connect, send, wait, read). ``client`` is for tests
    (an ``httpx.MockTransport``); without it the sender owns a client and closes it.
    """

    #: Answer times (and 429/503) say how loaded the server is: pipelines adapt their
    #: concurrency to them (:mod:`lhpipe.runtime.limit`).
    adaptive = True

    def __init__(
        self,
        client: httpx.AsyncClient | None = None,
        *,
        deadline: float = DEFAULT_DEADLINE_SECONDS,
    ) -> None:
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(deadline),
            follow_redirects=False,
            headers={"user-agent": f"lhpipe/{__version__}"},
        )
        self._deadline = deadline
        self._closed = False

    async def send(self, plan: Plan) -> None:
        """Perform one request; return on a 2xx answer, raise as the module docstring says."""
        if not isinstance(plan, HttpPlan):
            raise TypeError(f"the HTTP sender cannot send a {type(plan).__name__}")
        content = None if plan.body is None else dumps(plan.body)
        headers = _request_headers(plan.headers, has_body=content is not None)
        try:
            async with asyncio.timeout(self._deadline):
                response = await self._client.request(
                    plan.method, plan.url, content=content, headers=headers
                )
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise HttpTransientError(
                f"{plan.method} {redact_url(plan.url)}: no answer within {self._deadline:g} s",
                code="HTTP_TIMEOUT",
            ) from exc
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise PermanentError(
                f"{plan.method} {redact_url(plan.url)}: {_scrubbed(exc, plan.url)}", code="HTTP_URL"
            ) from exc
        except httpx.TransportError as exc:
            raise HttpTransientError(
                f"{plan.method} {redact_url(plan.url)}: "
                f"{_scrubbed(exc, plan.url) or type(exc).__name__}",
                code="HTTP_CONNECTION",
            ) from exc
        _check_status(plan, response)

    async def close(self) -> None:
        """Close the connection pool (when the sender owns it)."""
        self._closed = True
        if self._owns_client:
            await self._client.aclose()

    def connected(self) -> bool:
        """True until closed: HTTP keeps no standing connection that could be down; whether
        an endpoint answers shows per record, as transient failures and retries."""
        return not self._closed


def _request_headers(headers: Mapping[str, str], *, has_body: bool) -> dict[str, str]:
    merged = {"content-type": "application/json"} if has_body else {}
    # The target's own headers win, whatever their case.
    for name, value in headers.items():
        merged.pop(name.lower(), None)
        merged[name] = value
    return merged


def _scrubbed(exc: Exception, url: str) -> str:
    """The text of an httpx exception with the URL, and any other URL in it, redacted."""
    return redact_text(str(exc).replace(url, redact_url(url)))


def _check_status(plan: HttpPlan, response: httpx.Response) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    # The endpoint's answer may echo the URL it was asked.
    excerpt = redact_text(response.text[:_BODY_EXCERPT].strip())
    message = f"{plan.method} {redact_url(plan.url)} answered {status} {response.reason_phrase}" + (
        f": {excerpt}" if excerpt else ""
    )
    if status in _TRANSIENT_STATUSES or status >= 500:
        raise HttpTransientError(
            message,
            code=f"HTTP_{status}",
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
    if status in _PAUSED_STATUSES:
        raise PausedError(message, code=f"HTTP_{status}")
    raise PermanentError(message, code=f"HTTP_{status}")

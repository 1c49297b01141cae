"""A record as the engine sees it: raw bytes as received, and where it came from.

The origin is what makes generated ids, acknowledgement and dead letters possible without side
tables: a Kafka record knows its topic, partition and offset; a webhook delivery its webhook id.
Decoding the value happens in the pipeline (a failure there is a permanent error that still has
the raw record to dead-letter).
"""

from __future__ import annotations

from dataclasses import dataclass

#: The header the Gateway puts the webhook id in (delivery.md).
WEBHOOK_ID_HEADER = "lhpipe.webhook.id"

#: The headers the LittleHorse id rules read when no setting is written (runtime.md, "Ids,
#: guids and keys"): ``run_wf``'s and ``post_event``'s WfRun id, ``post_event``'s guid,
#: ``correlate``'s key. A webhook request's headers are signed by no auth kind, so for a
#: webhook request run in direct mode they never steer anything: :meth:`Record.routing_header`.
ROUTING_HEADERS = frozenset({"wfRunId", "guid", "correlationId"})

# Made for every record read: slotted dataclasses, hashable and compared by value, never changed
# after they are made, but not frozen (a frozen dataclass's ``__init__`` sets each field through
# ``object.__setattr__``, five times the cost).


@dataclass(slots=True, unsafe_hash=True)
class KafkaOrigin:
    topic: str
    partition: int
    offset: int

    def coordinates(self) -> str:
        """``topic-partition-offset``, the seed of generated ids and guids."""
        return f"{self.topic}-{self.partition}-{self.offset}"


@dataclass(slots=True, unsafe_hash=True)
class WebhookOrigin:
    """A webhook request run in direct mode; ``id`` is the webhook id (delivery.md)."""

    webhook: str
    id: str

    def coordinates(self) -> str:
        return self.id


Origin = KafkaOrigin | WebhookOrigin


@dataclass(slots=True, unsafe_hash=True)
class Record:
    """One record: key, value and headers byte for byte as received, plus its origin.

    ``headers`` keeps order and repeats (Kafka allows both); :meth:`header_text` gives the
    decoded view expressions see (the last value of each name wins, decoded as UTF-8).
    """

    origin: Origin
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp_ms: int | None = None

    def header_text(self) -> dict[str, str]:
        """Headers as UTF-8 strings (undecodable bytes replaced), last value wins."""
        return {
            name: raw.decode("utf-8", errors="replace")
            for name, raw in self.headers
            if raw is not None
        }

    def header(self, name: str) -> str | None:
        """The last value of header ``name`` as text, if present."""
        for hname, raw in reversed(self.headers):
            if hname == name and raw is not None:
                return raw.decode("utf-8", errors="replace")
        return None

    def routing_header(self, name: str) -> str | None:
        """Header ``name`` (one of :data:`ROUTING_HEADERS`) as the id rules read it: its
        last non-empty value, or None; always None for a webhook request run in direct mode.
        An HMAC signature covers the body, not the headers, so a caller replaying a signed
        request could otherwise add ``wfRunId: other`` and point it at another WfRun; a
        webhook's ids come from its own rules (its ``key``, the webhook id, or a setting that
        reads ``headers`` explicitly). A topic-mode webhook writes none of the request's
        headers to Kafka, and a Kafka record's headers are its producer's, read as the
        LittleHorse sink connectors read them."""
        if isinstance(self.origin, WebhookOrigin):
            return None
        return self.header(name) or None

    def webhook_id(self) -> str | None:
        """The webhook id of a webhook delivery: run in direct mode, or produced by the
        Gateway (its ``lhpipe.webhook.id`` header); None for any other record."""
        if isinstance(self.origin, WebhookOrigin):
            return self.origin.id
        return self.header(WEBHOOK_ID_HEADER) or None

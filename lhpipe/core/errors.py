"""The run-time error tree: every failure while delivering a record is one of three classes.

::

    DeliveryError
    ├── TransientError   retry the same request (same id/guid) with backoff, under a deadline:
    │                    gRPC UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED,
    │                    INTERNAL, CANCELLED; Kafka or HTTP timeouts; HTTP 429 and 5xx
    ├── PausedError      pause the source, report unhealthy, retry slowly, never dead-letter:
    │                    UNAUTHENTICATED, PERMISSION_DENIED, FAILED_PRECONDITION
    └── PermanentError   dead-letter, stop or skip (the pipeline's ``on_error``): INVALID_ARGUMENT,
                         NOT_FOUND, a bad id, a value that does not fit its schema or type, an
                         expression error such as a missing field, an undecodable record

Clients and senders (``lhpipe/clients/``, ``lhpipe/targets/``) raise their own subclasses; the
engine's ``Delivery`` policy only looks at these three classes, so it is written once. ``code``
is a short machine-readable cause
(a gRPC status name, ``HTTP_503``, ``BAD_ID``, ``DECODE``, ``EXPRESSION``...) that ends up in
the ``lhpipe.error.code`` header of a dead letter.
"""

from __future__ import annotations


class DeliveryError(Exception):
    """A failure to deliver one record to one target (or to decode or evaluate it)."""

    error_class = "error"

    def __init__(self, message: str, *, code: str = "UNKNOWN") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class TransientError(DeliveryError):
    """Worth retrying as is: the same request may succeed later."""

    error_class = "transient"


class PausedError(DeliveryError):
    """Needs an operator or another system first (credentials, a missing parent WfRun)."""

    error_class = "paused"


class PermanentError(DeliveryError):
    """Will never succeed for this record: retrying cannot help."""

    error_class = "permanent"


class ExpressionError(PermanentError):
    """An expression failed on this record: a missing field, a null where a value is needed,
    a conversion that does not apply."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="EXPRESSION")


class BadIdError(PermanentError):
    """A WfRun id, guid or correlation key that LittleHorse would reject."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="BAD_ID")


class DecodeError(PermanentError):
    """A record whose key or value cannot be decoded as its source declares."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="DECODE")

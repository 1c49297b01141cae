"""Kafka's refusals of lhpipe's connection: wrong credentials, an untrusted certificate, a
denied operation. Unlike a broker that is down, a refusal does not go away by waiting: the
settings must change. Each client keeps the refusal as its one-line reason (``/readyz``, the
status page) until it connects again, rather than letting the next "brokers are down" hide it
(docs/security.md)."""

from __future__ import annotations

from confluent_kafka import KafkaError

_CREDENTIALS = "Kafka refused lhpipe's credentials"
_TLS = "TLS to Kafka failed"
_DENIED = "Kafka denied lhpipe access"

_BY_CODE: dict[int, str] = {
    KafkaError._AUTHENTICATION: _CREDENTIALS,
    KafkaError.SASL_AUTHENTICATION_FAILED: _CREDENTIALS,
    KafkaError._SSL: _TLS,
    KafkaError.TOPIC_AUTHORIZATION_FAILED: _DENIED,
    KafkaError.GROUP_AUTHORIZATION_FAILED: _DENIED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: _DENIED,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: _DENIED,
}
# librdkafka reports a failed certificate check as a transport error first.
_TLS_WORDS = ("certificate verify failed", "SSL handshake failed", "ssl.ca.location")


def refusal(error: KafkaError) -> str | None:
    """One line saying Kafka refused the connection and why, or ``None`` when ``error`` is
    not a refusal (a broker down, a timeout: waiting may cure those)."""
    text = error.str()
    what = _BY_CODE.get(error.code())
    if (
        what is None
        and error.code() == KafkaError._TRANSPORT
        and any(word in text for word in _TLS_WORDS)
    ):
        what = _TLS
    if what is None:
        return None
    return f"{what}: {text}"

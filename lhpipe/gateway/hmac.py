"""HMAC signatures of webhook requests: the three presets and the custom form (language.md).

Every signature is computed over the raw request bytes, exactly as received, and compared with
:func:`hmac.compare_digest` on the decoded digests, so the comparison takes the same time
wherever the first difference is.

``github``
    ``X-Hub-Signature-256: sha256=<hex>``, HMAC-SHA256 of the body keyed with the secret's
    UTF-8 bytes. Webhook id: ``X-GitHub-Delivery`` (absent: none).
``stripe``
    ``Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]``; the signed payload is
    ``<t>.<body>``, HMAC-SHA256 keyed with the whole secret string (``whsec_...`` included, as
    Stripe's own libraries do). Any ``v1`` may match (Stripe sends one per active secret while
    you roll it); other schemes (``v0``) are ignored. ``t`` more than 5 minutes away from now,
    in either direction, is refused. Webhook id: the ``id`` of the JSON event in the body.
``standard_webhooks``
    The Standard Webhooks specification (Svix): ``webhook-id``, ``webhook-timestamp`` (unix
    seconds, at most 5 minutes away from now) and ``webhook-signature``, space-separated
    ``v1,<base64>`` entries (any may match; ``v1a`` asymmetric entries are ignored). The signed
    content is ``<webhook-id>.<webhook-timestamp>.<body>``; the key is the secret after its
    ``whsec_`` prefix, base64-decoded. Webhook id: ``webhook-id``.
custom
    ``header``, ``algorithm`` (``sha256``/``sha512``), ``encoding`` (``hex``/``base64``) and
    an optional ``prefix`` (``sha256=``) that must start the header's value and is stripped;
    the HMAC of the body keyed with the secret's UTF-8 bytes. No webhook id.

A check gives a :class:`Verdict`. Its ``reason`` is for the logs; the caller only ever learns
that the signature is missing or does not match (:class:`SignatureAuthenticator`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from typing import Final, NamedTuple, Protocol

import orjson

from lhpipe.check.program import HmacAuth
from lhpipe.gateway import problems
from lhpipe.gateway.config import WebhookConfigError, resolve_secret
from lhpipe.gateway.outcome import (
    Authenticated,
    AuthOutcome,
    Headers,
    Refused,
    describe_error,
)
from lhpipe.settings import Settings

#: How far a signed timestamp may be from now, either way (Stripe and Standard Webhooks).
TOLERANCE_SECONDS: Final = 300

#: Longest signed timestamp read as a number: unix seconds have 10 digits until the year 2286.
MAX_TIMESTAMP_DIGITS: Final = 12

_CHALLENGE: Final = 'HMAC realm="lhpipe"'
_DETAIL: Final = "the request's signature is missing or does not match"


class Verdict(NamedTuple):
    """The outcome of one signature check: ``ok``, the provider's webhook id when the preset
    has one, and otherwise the ``reason`` it failed (for the logs). A named tuple: made on
    every request, and a frozen dataclass costs several times more to build."""

    ok: bool
    webhook_id: str | None = None
    reason: str = ""


def _refuse(reason: str) -> Verdict:
    return Verdict(False, reason=reason)


class SignatureVerifier(Protocol):
    """Checks the signature of one request. ``header`` is the (lower-case) header that holds
    the signature; ``reads`` every header the check reads, each of which a request may send
    only once (the route refuses a duplicate with 400)."""

    header: str
    reads: tuple[str, ...]

    def verify(self, headers: Headers, body: bytes, now: float | None = None) -> Verdict:
        """``headers`` with lower-case names, ``body`` the raw bytes, ``now`` in unix seconds
        (default: the clock)."""
        ...


class _Keyed:
    """An HMAC keyed once with the standard library's :mod:`hmac`; each request copies it,
    which skips re-deriving the key pads (3.2 µs a request for a 431-byte body). A hand-built
    HMAC over :mod:`hashlib` measured 1.6 µs, but cryptography stays with the library made for
    it.

    The key lives only inside the HMAC object, whose ``repr`` does not show it.
    """

    __slots__ = ("_mac",)

    def __init__(self, key: bytes, digest: str) -> None:
        self._mac = hmac.new(key, digestmod=digest)

    def digest(self, *parts: bytes) -> bytes:
        mac = self._mac.copy()
        for part in parts:
            mac.update(part)
        return mac.digest()

    def digest_of(self, body: bytes) -> bytes:
        """:meth:`digest` of one part (the body alone: ``github`` and the custom form), without
        the loop over the parts."""
        mac = self._mac.copy()
        mac.update(body)
        return mac.digest()


def _from_hex(text: str) -> bytes | None:
    try:
        return binascii.unhexlify(text)
    except (binascii.Error, ValueError):
        return None


def _from_base64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _timestamp_problem(timestamp: str, now: float | None) -> str | None:
    """Why a signed unix-seconds timestamp is refused, or ``None`` when it is fine."""
    if not timestamp.isascii() or not timestamp.isdigit():
        return f"timestamp {timestamp[:20]!r} is not unix seconds"
    if len(timestamp) > MAX_TIMESTAMP_DIGITS:
        # Never converted: 310 digits overflow a float, 4,300 are past int()'s limit.
        return f"timestamp of {len(timestamp)} digits is not unix seconds"
    skew = int(timestamp) - (time.time() if now is None else now)
    if skew < -TOLERANCE_SECONDS:
        return f"timestamp is {-skew:.0f} s old (tolerance {TOLERANCE_SECONDS} s)"
    if skew > TOLERANCE_SECONDS:
        return f"timestamp is {skew:.0f} s in the future (tolerance {TOLERANCE_SECONDS} s)"
    return None


class GitHubSignature:
    """The ``github`` preset (``X-Hub-Signature-256``)."""

    header = "x-hub-signature-256"
    reads: tuple[str, ...] = ("x-hub-signature-256", "x-github-delivery")

    def __init__(self, secret: str) -> None:
        self._keyed = _Keyed(secret.encode("utf-8"), "sha256")

    def verify(self, headers: Headers, body: bytes, now: float | None = None) -> Verdict:
        value = headers.get(self.header)
        if value is None:
            return _refuse("no X-Hub-Signature-256 header")
        scheme, _, signature = value.strip().partition("=")
        given = _from_hex(signature) if scheme == "sha256" else None
        if given is None:
            return _refuse("X-Hub-Signature-256 is not sha256=<hex>")
        if not hmac.compare_digest(self._keyed.digest_of(body), given):
            return _refuse("X-Hub-Signature-256 does not match the body")
        return Verdict(True, webhook_id=headers.get("x-github-delivery"))


class StripeSignature:
    """The ``stripe`` preset (``Stripe-Signature``)."""

    header = "stripe-signature"
    reads: tuple[str, ...] = ("stripe-signature",)

    def __init__(self, secret: str) -> None:
        self._keyed = _Keyed(secret.encode("utf-8"), "sha256")

    def verify(self, headers: Headers, body: bytes, now: float | None = None) -> Verdict:
        value = headers.get(self.header)
        if value is None:
            return _refuse("no Stripe-Signature header")
        timestamp: str | None = None
        signatures: list[str] = []
        for item in value.split(","):
            key, _, text = item.strip().partition("=")
            if key == "t" and timestamp is None:
                timestamp = text
            elif key == "v1":
                signatures.append(text)
        if timestamp is None or not signatures:
            return _refuse("Stripe-Signature has no t= or no v1= entry")
        stale = _timestamp_problem(timestamp, now)
        if stale is not None:
            return _refuse(f"Stripe-Signature {stale}")
        expected = self._keyed.digest(timestamp.encode("ascii"), b".", body)
        if not any(
            (given := _from_hex(s)) is not None and hmac.compare_digest(expected, given)
            for s in signatures
        ):
            return _refuse("no v1 signature of Stripe-Signature matches the body")
        return Verdict(True, webhook_id=_stripe_event_id(body))


def _stripe_event_id(body: bytes) -> str | None:
    """The ``id`` of the Stripe event in ``body`` (``evt_...``), if it is there."""
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    event_id = event.get("id") if isinstance(event, dict) else None
    return event_id if isinstance(event_id, str) and event_id else None


class StandardWebhooksSignature:
    """The ``standard_webhooks`` preset (``webhook-id``, ``-timestamp``, ``-signature``)."""

    header = "webhook-signature"
    reads: tuple[str, ...] = ("webhook-id", "webhook-timestamp", "webhook-signature")

    def __init__(self, secret: str) -> None:
        encoded = secret.removeprefix("whsec_")
        key = _from_base64(encoded + "=" * (-len(encoded) % 4))
        if not key:
            raise WebhookConfigError(
                "a standard_webhooks secret is whsec_ followed by base64 (the signing key)"
            )
        self._keyed = _Keyed(key, "sha256")

    def verify(self, headers: Headers, body: bytes, now: float | None = None) -> Verdict:
        webhook_id = headers.get("webhook-id")
        timestamp = headers.get("webhook-timestamp")
        value = headers.get(self.header)
        if not webhook_id or timestamp is None or value is None:
            return _refuse("webhook-id, webhook-timestamp or webhook-signature is missing")
        stale = _timestamp_problem(timestamp, now)
        if stale is not None:
            return _refuse(f"webhook-timestamp {stale}")
        try:
            # Header values arrive decoded as Latin-1: encoding them back gives the bytes sent.
            signed_prefix = f"{webhook_id}.{timestamp}.".encode("latin-1")
        except UnicodeEncodeError:
            return _refuse("webhook-id is not Latin-1 text")
        expected = self._keyed.digest(signed_prefix, body)
        for entry in value.split():
            version, _, signature = entry.partition(",")
            if version != "v1":
                continue
            given = _from_base64(signature)
            if given is not None and hmac.compare_digest(expected, given):
                return Verdict(True, webhook_id=webhook_id)
        return _refuse("no v1 entry of webhook-signature matches the body")


class CustomSignature:
    """The custom form: one header holding the HMAC of the body, maybe after a prefix."""

    def __init__(
        self, secret: str, *, header: str, algorithm: str, encoding: str, prefix: str
    ) -> None:
        self.header = header.lower()
        self.reads: tuple[str, ...] = (self.header,)
        self._name = header
        self._keyed = _Keyed(secret.encode("utf-8"), algorithm)
        self._encoding = encoding
        self._decode = _from_hex if encoding == "hex" else _from_base64
        self._prefix = prefix

    def verify(self, headers: Headers, body: bytes, now: float | None = None) -> Verdict:
        value = headers.get(self.header)
        if value is None:
            return _refuse(f"no {self._name} header")
        value = value.strip()
        if not value.startswith(self._prefix):
            return _refuse(f"{self._name} does not start with {self._prefix!r}")
        given = self._decode(value[len(self._prefix) :])
        if given is None:
            return _refuse(f"{self._name} is not {self._encoding} text")
        if not hmac.compare_digest(self._keyed.digest_of(body), given):
            return _refuse(f"{self._name} does not match the body")
        return Verdict(True)


def signature_verifier(auth: HmacAuth, settings: Settings, what: str) -> SignatureVerifier:
    """The verifier of ``auth``, its secret read now; ``what`` names the webhook in errors.

    Raises :class:`WebhookConfigError` for a secret that is not set (or not what the preset
    needs) and for an unknown preset.
    """
    secret = resolve_secret(auth.secret, settings, f"{what}: hmac secret").reveal()
    try:
        if auth.preset == "github":
            return GitHubSignature(secret)
        if auth.preset == "stripe":
            return StripeSignature(secret)
        if auth.preset == "standard_webhooks":
            return StandardWebhooksSignature(secret)
    except WebhookConfigError as exc:
        raise WebhookConfigError(f"{what}: {exc}") from None
    if auth.preset is not None:
        raise WebhookConfigError(f"{what}: unknown hmac preset {auth.preset!r}")
    if not auth.header:
        raise WebhookConfigError(f"{what}: a custom hmac needs a `header`")
    return CustomSignature(
        secret,
        header=auth.header,
        algorithm=auth.algorithm,
        encoding=auth.encoding,
        prefix=auth.prefix,
    )


class SignatureAuthenticator:
    """An :class:`~lhpipe.gateway.outcome.Authenticator` over a signature check:
    401 with ``WWW-Authenticate: HMAC realm="lhpipe"`` and one generic detail whatever failed,
    an exception of the check included (a request is never let in, nor answered 500, by a
    check that could not finish)."""

    challenge = _CHALLENGE

    def __init__(self, verifier: SignatureVerifier) -> None:
        self.verifier = verifier
        #: Headers a request may send once only (the route refuses duplicates with 400).
        self.credential_headers = frozenset(verifier.reads)
        #: Headers kept out of direct-mode records and their dead letters: with the body,
        #: the signature would let whoever reads them send the request again.
        self.secret_headers = frozenset({verifier.header})
        self._refused = problems.unauthorized(_CHALLENGE, _DETAIL)

    async def authenticate(self, headers: Headers, body: bytes) -> AuthOutcome:
        return self.check(headers, body)

    def check(self, headers: Headers, body: bytes) -> AuthOutcome:
        """The outcome at once: a signature check never waits."""
        try:
            verdict = self.verifier.verify(headers, body)
        except Exception as exc:  # a defect of the check on hostile input: refused, not 500
            return Refused(self._refused, f"the signature check failed: {describe_error(exc)}")
        if verdict.ok:
            return Authenticated(webhook_id=verdict.webhook_id)
        return Refused(self._refused, verdict.reason)

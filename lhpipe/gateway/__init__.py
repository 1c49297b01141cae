"""The Gateway's checks of an incoming webhook request, before anything is produced.

* :mod:`.auth` builds a webhook's authenticator from its ``auth`` form: :mod:`.hmac`
  (signatures: the ``github``, ``stripe`` and ``standard_webhooks`` presets and the custom
  form), :mod:`.oauth` (bearer JWTs against the issuer's discovered keys) or none. Each answers
  :class:`~.outcome.Authenticated` or :class:`~.outcome.Refused` (:mod:`.outcome`).
* :mod:`.validate` decodes and checks the body against the webhook's ``body`` (a schema,
  ``json`` or ``bytes``), including its ``Content-Type``.
* :mod:`.problems` holds the RFC 9457 answers for every refusal.
* :mod:`.config` reads ``env(...)`` settings once, when a route is built, and keeps secrets in
  a type that never prints them.

docs/webhooks.md describes the behaviour a caller sees.
"""

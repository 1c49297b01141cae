"""Bearer tokens (``auth = oauth { issuer audience scopes? leeway? }``): JWTs verified against
the issuer's published keys.

Keys (:class:`IssuerKeys`, one per issuer, shared by every webhook that names it):

* OIDC discovery at ``<issuer>/.well-known/openid-configuration`` on first need; the document's
  ``issuer`` must be the configured issuer exactly (OpenID Connect Discovery 1.0, section 4.3),
  its ``jwks_uri`` gives the key set.
* The key set is cached. A token whose ``kid`` is not in it triggers one refetch, at most once
  every 30 s (so a stream of made-up ``kid`` values cannot hammer the issuer); a set older than
  an hour is refetched on next need (so a withdrawn key stops working), keeping the old set if
  that fails. Only signing keys count (``use`` absent or ``sig``).
* While no key set could be fetched at all, requests get 503 with ``Retry-After`` (the caller
  did nothing wrong, and may retry), and a new attempt is made at most every 5 s.

A token (:class:`BearerVerifier`) is accepted when all of these hold:

* ``Authorization: Bearer <JWS compact serialization>`` (scheme case-insensitive);
* the header's ``alg`` is RS256, ES256 or PS256: never ``none``, never an HMAC algorithm (so a
  token "signed" with the issuer's public key as an HS256 secret fails), never a JWE;
* the signature verifies with the issuer's key of that ``kid`` (or its only key when the token
  names none), and that key's type, ``use`` and ``alg`` fit the token's ``alg``;
  header parameters listed in ``crit`` must be understood, others are let through;
* the payload is a JSON object with ``iss`` equal to the issuer, ``aud`` (a string or a list)
  containing the audience, a numeric ``exp`` not before now minus the leeway and, if present, a
  numeric ``nbf`` not after now plus the leeway (``exp`` is required: a bearer token that never
  expires is refused);
* every required scope is in ``scope`` (space-separated, RFC 8693 / RFC 9068) or, when there is
  no ``scope``, in ``scp`` (a list or a space-separated string, as some issuers write it).

Answers follow RFC 6750: no bearer token is 401 with ``WWW-Authenticate: Bearer
realm="lhpipe"``; a bad one 401 with ``error="invalid_token"``; a good token without a required
scope 403 with ``error="insufficient_scope"`` and the scopes needed. The caller learns that a
token expired, is not valid yet, or is invalid; the precise reason goes to the logs only.

Verifying a signature costs tens of microseconds (performance.md), so accepted tokens are kept
in a bounded LRU keyed by the token text until they expire; a hit costs a dictionary lookup
and the expiry check.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TypeGuard

import httpx
import orjson
from joserfc.errors import JoseError
from joserfc.jwk import Key, KeySet
from joserfc.jws import JWSRegistry, extract_compact, validate_compact

from lhpipe.gateway import problems
from lhpipe.gateway.outcome import (
    Authenticated,
    AuthOutcome,
    Headers,
    Refused,
    describe_error,
)

log = logging.getLogger(__name__)

#: The only signature algorithms a token may use: asymmetric, so the public key verifies only.
ALLOWED_ALGORITHMS: Final = ("RS256", "ES256", "PS256")

#: Longest token looked at; anything longer is malformed (joserfc's own limit is larger).
MAX_TOKEN_LENGTH: Final = 16 * 1024

REALM: Final = "lhpipe"

# Header parameters the registry does not know are let through (issuers add their own, and
# the signature covers them); `crit` is still enforced.
_REGISTRY: Final = JWSRegistry(algorithms=list(ALLOWED_ALGORITHMS), strict_check_header=False)
_DEFAULT_TIMEOUT_SECONDS: Final = 10.0
_NO_TOKEN: Final = problems.unauthorized(f'Bearer realm="{REALM}"', "a bearer token is required")


class KeysUnavailable(Exception):
    """The issuer's discovery document or key set cannot be fetched or used right now."""


class IssuerKeys:
    """The signing keys of one issuer, discovered and fetched on first need, then cached.

    ``client`` makes the HTTP calls (its owner closes it). ``refresh_interval_s`` bounds
    refetches for unknown ``kid`` values; ``retry_interval_s`` bounds attempts while no key set
    is known; ``max_age_s`` is how long a key set is trusted before it is fetched again.
    ``clock`` is monotonic seconds.
    """

    def __init__(
        self,
        issuer: str,
        client: httpx.AsyncClient,
        *,
        refresh_interval_s: float = 30.0,
        retry_interval_s: float = 5.0,
        max_age_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self.discovery_url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        self.retry_interval_s = retry_interval_s
        self._client = client
        self._refresh_interval_s = refresh_interval_s
        self._max_age_s = max_age_s
        self._clock = clock
        self._jwks_uri: str | None = None
        self._keys: dict[str | None, Key] = {}
        self._loaded = False
        self._fetched_at = float("-inf")  # when the current key set was fetched
        self._attempted_at = float("-inf")  # when a fetch was last attempted, even failing
        self._last_error = ""
        self._lock = asyncio.Lock()
        #: How many times the key set was fetched (discovery counts once), for the logs.
        self.fetches = 0

    async def key_for(self, kid: str | None) -> Key | None:
        """The signing key named ``kid`` (``None``: the issuer's only key), fetching or
        refetching the key set when the rules above allow; ``None`` when there is no such key.

        Raises :class:`KeysUnavailable` when no key set is known and none can be fetched, or
        when a refetch for an unknown ``kid`` fails.
        """
        if not self._loaded:
            await self._load()
        elif self._clock() - self._fetched_at > self._max_age_s:
            await self._refresh_stale()
        key = self._keys.get(kid)
        if key is None and kid is not None:
            await self._refresh_for(kid)
            key = self._keys.get(kid)
        return key

    async def _load(self) -> None:
        async with self._lock:
            if self._loaded:
                return  # another task loaded the keys while this one waited
            if self._clock() - self._attempted_at < self.retry_interval_s:
                raise KeysUnavailable(self._last_error)
            await self._fetch()

    async def _refresh_stale(self) -> None:
        async with self._lock:
            now = self._clock()
            if now - self._fetched_at <= self._max_age_s:
                return
            if now - self._attempted_at < self.retry_interval_s:
                return
            try:
                await self._fetch()
            except KeysUnavailable as exc:
                log.warning("keeping the old keys of %s: %s", self.issuer, exc)

    async def _refresh_for(self, kid: str) -> None:
        async with self._lock:
            if kid in self._keys:
                return  # another task refetched while this one waited
            if self._clock() - self._attempted_at < self._refresh_interval_s:
                return  # fetched lately: the kid is unknown, not new
            await self._fetch()

    async def _fetch(self) -> None:
        """Fetch the key set now (the lock is held); raises :class:`KeysUnavailable`."""
        self._attempted_at = self._clock()
        try:
            keys = await self._download()
        except KeysUnavailable as exc:
            self._last_error = str(exc)
            raise
        self._keys = keys
        self._loaded = True
        self._fetched_at = self._clock()
        self.fetches += 1
        log.info("fetched %d signing key(s) of %s", len(keys) - (None in keys), self.issuer)

    async def _download(self) -> dict[str | None, Key]:
        if self._jwks_uri is None:
            discovery = await self._get_json(self.discovery_url)
            if discovery.get("issuer") != self.issuer:
                raise KeysUnavailable(
                    f"{self.discovery_url} names issuer {discovery.get('issuer')!r}, "
                    f"not {self.issuer!r}"
                )
            jwks_uri = discovery.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                raise KeysUnavailable(f"{self.discovery_url} has no jwks_uri")
            self._jwks_uri = jwks_uri
        document = await self._get_json(self._jwks_uri)
        try:
            key_set = KeySet.import_key_set(document)  # type: ignore[arg-type]
        except (JoseError, KeyError, TypeError, ValueError) as exc:
            raise KeysUnavailable(f"{self._jwks_uri} is not a usable JWK set: {exc}") from exc
        keys: dict[str | None, Key] = {
            key.kid: key for key in key_set.keys if key.get("use") in (None, "sig")
        }
        if not keys:
            raise KeysUnavailable(f"{self._jwks_uri} has no signing key")
        if len(keys) == 1:
            # A token without `kid` is verified with the issuer's only key.
            keys[None] = next(iter(keys.values()))
        return keys

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = await self._client.get(url, timeout=_DEFAULT_TIMEOUT_SECONDS)
        except httpx.HTTPError as exc:
            raise KeysUnavailable(f"GET {url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise KeysUnavailable(f"GET {url}: HTTP {response.status_code}")
        try:
            document = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise KeysUnavailable(f"GET {url}: not JSON") from exc
        if not isinstance(document, dict):
            raise KeysUnavailable(f"GET {url}: not a JSON object")
        return document


class IssuerDirectory:
    """The :class:`IssuerKeys` of every issuer in use, so webhooks naming the same issuer
    share one discovery and one key set. Owns an HTTP client unless given one."""

    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        self._own_client = client is None
        self.client = httpx.AsyncClient(follow_redirects=True) if client is None else client
        self._issuers: dict[str, IssuerKeys] = {}

    def keys(self, issuer: str) -> IssuerKeys:
        """The shared keys of ``issuer``."""
        found = self._issuers.get(issuer)
        if found is None:
            found = self._issuers[issuer] = IssuerKeys(issuer, self.client)
        return found

    async def aclose(self) -> None:
        """Close the HTTP client if this directory made it."""
        if self._own_client:
            await self.client.aclose()


class _TokenRefused(Exception):
    """A token that is not accepted (RFC 6750 ``invalid_token``): the reason for the logs,
    and the description the caller is told."""

    def __init__(self, reason: str, description: str = "the access token is invalid") -> None:
        super().__init__(reason)
        self.reason = reason
        self.description = description


class BearerVerifier:
    """One ``oauth`` webhook's check of ``Authorization: Bearer`` tokens (module docstring).

    ``leeway_s`` widens ``exp`` and ``nbf`` for clock skew; ``cache_size`` bounds the LRU of
    accepted tokens; ``clock`` is unix seconds.

    Whatever the token holds, the answer is an outcome, never an exception: a check that
    raises on a malformed token (the JOSE library's ``TypeError`` on ``"crit": 5``) is an
    invalid token.
    """

    challenge = f'Bearer realm="{REALM}"'
    #: A request may send these once only (the route refuses a duplicate with 400).
    credential_headers = frozenset({"authorization"})
    secret_headers = frozenset({"authorization"})

    def __init__(
        self,
        keys: IssuerKeys,
        *,
        audience: str,
        scopes: Sequence[str] = (),
        leeway_s: float = 30.0,
        cache_size: int = 4096,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.issuer = keys.issuer
        self.audience = audience
        self.scopes = tuple(scopes)
        self.leeway_s = leeway_s
        self._cache_size = cache_size
        self._clock = clock
        # token -> (claims, exp): accepted tokens only, the least recently used first.
        self._accepted: OrderedDict[str, tuple[Mapping[str, Any], float]] = OrderedDict()
        scope_text = " ".join(self.scopes)
        self._insufficient = problems.forbidden(
            f'Bearer realm="{REALM}", error="insufficient_scope", '
            f'error_description="the access token lacks a required scope", scope="{scope_text}"',
            f"the access token lacks a required scope ({scope_text})",
        )

    async def authenticate(self, headers: Headers, body: bytes) -> AuthOutcome:
        """The :class:`~lhpipe.gateway.outcome.Authenticator` interface."""
        return await self.verify(headers.get("authorization"))

    async def verify(self, authorization: str | None) -> AuthOutcome:
        """Check the value of an ``Authorization`` header (``None``: there is none)."""
        token = _bearer_token(authorization)
        if token is None:
            reason = "no Authorization header" if authorization is None else "not a Bearer token"
            return Refused(_NO_TOKEN, reason)
        now = self._clock()
        cached = self._accepted.get(token)
        if cached is not None:
            claims, expires = cached
            if now <= expires + self.leeway_s:
                self._accepted.move_to_end(token)
                return Authenticated(claims=claims)
            del self._accepted[token]
        try:
            claims = await self._verified_claims(token, now)
        except _TokenRefused as refused:
            return Refused(_invalid_token(refused.description), refused.reason)
        except KeysUnavailable as exc:
            retry = max(1, round(self.keys.retry_interval_s))
            problem = problems.unavailable("the token issuer's keys cannot be fetched now", retry)
            return Refused(problem, str(exc))
        except Exception as exc:  # a defect of the check on hostile input: refused, not 500
            return Refused(
                _invalid_token("the access token is invalid"),
                f"the token check failed: {describe_error(exc)}",
            )
        missing = [s for s in self.scopes if s not in _granted_scopes(claims)]
        if missing:
            return Refused(self._insufficient, f"token lacks scope(s) {' '.join(missing)}")
        self._remember(token, claims)
        return Authenticated(claims=claims)

    async def _verified_claims(self, token: str, now: float) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
            raise _TokenRefused("not a JWS compact serialization")
        try:
            signed = extract_compact(token.encode("ascii"), registry=_REGISTRY)
            header = signed.headers()
        except (JoseError, ValueError, TypeError) as exc:
            raise _TokenRefused(f"malformed token: {type(exc).__name__}") from exc
        algorithm = header.get("alg")
        if algorithm not in ALLOWED_ALGORITHMS:
            raise _TokenRefused(f"alg {algorithm!r} is not allowed")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise _TokenRefused("kid is not a string")
        key = await self.keys.key_for(kid)
        if key is None:
            raise _TokenRefused(f"no signing key {kid!r} at {self.issuer}")
        try:
            valid = validate_compact(signed, key, registry=_REGISTRY)
        except JoseError as exc:
            raise _TokenRefused(f"key {kid!r} does not fit: {type(exc).__name__}") from exc
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            # joserfc checks the header (`crit` not a list of names...) while verifying.
            raise _TokenRefused(f"malformed token header: {describe_error(exc)}") from exc
        if not valid:
            raise _TokenRefused("bad signature")
        try:
            claims = orjson.loads(signed.payload)
        except orjson.JSONDecodeError:
            claims = None
        if not isinstance(claims, dict):
            raise _TokenRefused("the payload is not a JSON object")
        self._check_claims(claims, now)
        return claims

    def _check_claims(self, claims: Mapping[str, Any], now: float) -> None:
        if claims.get("iss") != self.issuer:
            raise _TokenRefused(f"iss {claims.get('iss')!r} is not {self.issuer!r}")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self.audience not in audiences:
            raise _TokenRefused(f"aud {audience!r} does not contain {self.audience!r}")
        expires = claims.get("exp")
        if not _is_number(expires):
            raise _TokenRefused("exp is missing or not a number")
        if now > expires + self.leeway_s:
            raise _TokenRefused(f"expired {now - expires:.0f} s ago", "the access token expired")
        not_before = claims.get("nbf")
        if not_before is not None:
            if not _is_number(not_before):
                raise _TokenRefused("nbf is not a number")
            if now < not_before - self.leeway_s:
                raise _TokenRefused(
                    f"not valid for another {not_before - now:.0f} s",
                    "the access token is not valid yet",
                )

    def _remember(self, token: str, claims: Mapping[str, Any]) -> None:
        self._accepted[token] = (claims, float(claims["exp"]))
        if len(self._accepted) > self._cache_size:
            self._accepted.popitem(last=False)


def _bearer_token(authorization: str | None) -> str | None:
    """The token of ``Bearer <token>`` (RFC 6750 section 2.1), else ``None``."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _granted_scopes(claims: Mapping[str, Any]) -> set[str]:
    granted = claims.get("scope")
    if granted is None:
        granted = claims.get("scp")
    if isinstance(granted, str):
        return set(granted.split())
    if isinstance(granted, list):
        return {s for s in granted if isinstance(s, str)}
    return set()


def _invalid_token(description: str) -> problems.Problem:
    return problems.unauthorized(
        f'Bearer realm="{REALM}", error="invalid_token", error_description="{description}"',
        description,
    )

"""Benchmark: the Gateway's per-request checks against the bare operations they wrap.

In one process, without network, on a 377-byte JSON body (an ``Applicant``):

- HMAC: each preset's verifier (``github``, ``stripe``, ``standard_webhooks``, custom
  sha512/base64) against the bare check of the same signature: ``hmac.new(key, signed,
  digest)`` and ``hmac.compare_digest`` with the header's value;
- bearer tokens: lhpipe's verifier (issuer keys already fetched) on a token it has not
  accepted before, against joserfc's ``jwt.decode`` with a parsed key and its claims registry
  checking ``iss``, ``aud`` and ``exp`` (what a hand-written check does); and on a token it has
  accepted before (its cache), for RS256 and ES256;
- bodies: ``body = json`` and ``body = Applicant`` (parse, check against the schema, defaults)
  against ``orjson.loads`` of the same bytes.

Each figure is the best of ``--repeat`` timings of ``--number`` calls (a fortieth of them for
a new token), the two sides of a line timed in turn so that they see the same load. Prints the
time per request of both and their ratio. docs/webhooks.md ("Speeds") reports ranges measured
this way.

Run: ``.venv/bin/python bench/auth.py [--number N] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hmac
import time
from collections.abc import Callable

import httpx
import orjson
from _timing import awaited, best_us, plain, show, show_header
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from joserfc.jws import JWSRegistry

from lhpipe.check.program import HmacAuth
from lhpipe.gateway.hmac import signature_verifier
from lhpipe.gateway.oauth import BearerVerifier, IssuerKeys
from lhpipe.gateway.outcome import Authenticated
from lhpipe.gateway.validate import body_decoder
from lhpipe.kinds import load_texts
from lhpipe.settings import Settings

ISSUER = "https://idp.example.com/realms/bench"
AUDIENCE = "lhpipe"
SCOPE = "kyc:write"

BODY = orjson.dumps(
    {
        "applicant_id": "ann-1",
        "email": "ann@example.com",
        "name": "Ann Example",
        "country": "DE",
        "age": 30,
        "note": "x" * 200,
        "tags": ["vip", "web", "de"],
        "meta": {"src": "web", "campaign": "spring-2024"},
    }
)

APPLICANT = """\
schema Applicant {
  applicant_id: string
  email: string
  name: string
  country: string
  age: int
  note: string?
  tags: [string]
  meta: map<string>?
}
"""


async def bench_hmac(number: int, repeat: int) -> None:
    settings = Settings(environ={})
    now = int(time.time())
    github_sig = hmac.new(b"s", BODY, "sha256").hexdigest()
    stripe_signed = f"{now}.".encode() + BODY
    stripe_sig = hmac.new(b"whsec_s", stripe_signed, "sha256").hexdigest()
    key = b"0123456789abcdef0123456789abcdef"
    standard_signed = f"msg_1.{now}.".encode() + BODY
    standard_sig = base64.b64encode(hmac.new(key, standard_signed, "sha256").digest()).decode()
    custom_sig = base64.b64encode(hmac.new(b"s", BODY, "sha512").digest()).decode()
    standard_secret = "whsec_" + base64.b64encode(key).decode()
    # (name, auth, request headers, the bare check of the same signature)
    cases: list[tuple[str, HmacAuth, dict[str, str], Callable[[], bool]]] = [
        (
            "github",
            HmacAuth(secret="s", preset="github"),
            {"x-hub-signature-256": "sha256=" + github_sig, "x-github-delivery": "d-1"},
            lambda: hmac.compare_digest(hmac.new(b"s", BODY, "sha256").hexdigest(), github_sig),
        ),
        (
            "stripe",
            HmacAuth(secret="whsec_s", preset="stripe"),
            {"stripe-signature": f"t={now},v1={stripe_sig}"},
            lambda: hmac.compare_digest(
                hmac.new(b"whsec_s", stripe_signed, "sha256").hexdigest(), stripe_sig
            ),
        ),
        (
            "standard_webhooks",
            HmacAuth(secret=standard_secret, preset="standard_webhooks"),
            {
                "webhook-id": "msg_1",
                "webhook-timestamp": str(now),
                "webhook-signature": "v1," + standard_sig,
            },
            lambda: hmac.compare_digest(
                base64.b64encode(hmac.new(key, standard_signed, "sha256").digest()).decode(),
                standard_sig,
            ),
        ),
        (
            "custom sha512/base64",
            HmacAuth(secret="s", header="X-Sig", algorithm="sha512", encoding="base64"),
            {"x-sig": custom_sig},
            lambda: hmac.compare_digest(
                base64.b64encode(hmac.new(b"s", BODY, "sha512").digest()).decode(), custom_sig
            ),
        ),
    ]
    for name, auth, headers, bare in cases:
        verifier = signature_verifier(auth, settings, "bench")
        if not verifier.verify(headers, BODY).ok or not bare():
            raise SystemExit(f"hmac {name}: the signature does not verify")
        lhpipe_us, bare_us = await best_us(
            number, repeat, plain(lambda v=verifier, h=headers: v.verify(h, BODY)), plain(bare)
        )
        show(f"hmac {name}", lhpipe_us, "hmac.new + compare_digest", bare_us)


async def bench_bearer(number: int, repeat: int) -> None:
    rsa = RSAKey.generate_key(2048, parameters={"kid": "rsa", "alg": "RS256", "use": "sig"})
    ec = ECKey.generate_key("P-256", parameters={"kid": "ec", "alg": "ES256", "use": "sig"})

    def identity_provider(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/openid-configuration"):
            return httpx.Response(200, json={"issuer": ISSUER, "jwks_uri": ISSUER + "/certs"})
        keys = [rsa.as_dict(private=False), ec.as_dict(private=False)]
        return httpx.Response(200, json={"keys": keys})

    async with httpx.AsyncClient(transport=httpx.MockTransport(identity_provider)) as client:
        keys = IssuerKeys(ISSUER, client)
        fresh = BearerVerifier(keys, audience=AUDIENCE, scopes=(SCOPE,), cache_size=0)
        cached = BearerVerifier(keys, audience=AUDIENCE, scopes=(SCOPE,))
        # An RSA or EC verification takes 50 to 300 us: fewer calls per timing.
        slow = max(50, number // 40)
        for key, algorithm in ((rsa, "RS256"), (ec, "ES256")):
            await bench_token(key, algorithm, fresh, cached, slow, number, repeat)


async def bench_token(
    key: RSAKey | ECKey,
    algorithm: str,
    fresh: BearerVerifier,
    cached: BearerVerifier,
    slow: int,
    number: int,
    repeat: int,
) -> None:
    claims = {"iss": ISSUER, "aud": AUDIENCE, "scope": SCOPE, "exp": time.time() + 3600}
    token = jwt.encode({"alg": algorithm, "kid": key.kid}, claims, key, algorithms=[algorithm])
    header = "Bearer " + token
    # The first call discovers the issuer and fetches its keys.
    for verifier in (fresh, cached):
        if not isinstance(await verifier.verify(header), Authenticated):
            raise SystemExit(f"{algorithm}: the token does not verify")
    public = type(key).import_key(key.as_dict(private=False))
    jws_registry = JWSRegistry(algorithms=[algorithm])
    claims_registry = jwt.JWTClaimsRegistry(
        leeway=30,
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": AUDIENCE},
        exp={"essential": True},
    )

    def bare() -> None:
        decoded = jwt.decode(token, public, registry=jws_registry)
        claims_registry.validate(decoded.claims)

    lhpipe_us, bare_us = await best_us(
        slow, repeat, awaited(lambda: fresh.verify(header)), plain(bare)
    )
    show(f"bearer {algorithm}, new token", lhpipe_us, "joserfc jwt.decode + claims check", bare_us)
    [cached_us] = await best_us(number, repeat, awaited(lambda: cached.verify(header)))
    show(f"bearer {algorithm}, token seen before", cached_us)


async def bench_bodies(number: int, repeat: int) -> None:
    loaded = load_texts({"bench.lhp": APPLICANT})
    assert loaded.program is not None, loaded.diagnostics
    avro = loaded.program.schemas["Applicant"].avro
    assert avro is not None
    schema_body = body_decoder("Applicant", avro)
    json_body = body_decoder("json")
    json_us, schema_us, bare_us = await best_us(
        number,
        repeat,
        plain(lambda: json_body.decode("application/json", BODY)),
        plain(lambda: schema_body.decode("application/json", BODY)),
        plain(lambda: orjson.loads(BODY)),
    )
    show("body = json", json_us, "orjson.loads", bare_us)
    show("body = Applicant", schema_us, "orjson.loads", bare_us)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--number", type=int, default=20_000, help="calls per timing")
    parser.add_argument("--repeat", type=int, default=5, help="timings; the best is kept")
    args = parser.parse_args()
    print(f"body: {len(BODY)} bytes of JSON; best of {args.repeat} timings of each side, in turn")
    show_header()
    asyncio.run(bench_hmac(args.number, args.repeat))
    asyncio.run(bench_bearer(args.number, args.repeat))
    asyncio.run(bench_bodies(args.number, args.repeat))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

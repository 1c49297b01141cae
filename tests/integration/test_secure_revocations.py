"""Credentials that stop being good while lhpipe runs, or never were (docs/security.md, "When a
service refuses lhpipe"): an OAuth client revoked in Keycloak mid-stream, and an mTLS client
certificate that has expired. Each pauses `run_wf` with one line, loses nothing and duplicates
nothing; the WfRuns are counted on the open listener."""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from engine_run import LhpipeRun, committed, settled_wf_run_count, unique, wait_until
from lh import lh_config
from test_secure_kafka import paused_view
from test_secure_littlehorse import all_committed, run_wf_pipeline, send

from lhpipe.stack import addresses as at
from lhpipe.stack.addresses import StackAddresses
from lhpipe.stack.certs import StackCerts
from lhpipe.stack.env import kafka_secure_settings, littlehorse_secure_settings

pytestmark = pytest.mark.integration


class KeycloakAdmin:
    """Just enough of Keycloak's admin API to make and disable a client of the realm."""

    def __init__(self, stack: StackAddresses) -> None:
        self.base = stack.keycloak_url
        self.realm = stack.keycloak_realm
        user, password = at.KEYCLOAK_ADMIN
        token = httpx.post(
            f"{self.base}/realms/master/protocol/openid-connect/token",
            data={
                "grant_type": "password",
                "client_id": "admin-cli",
                "username": user,
                "password": password,
            },
            timeout=30,
        )
        token.raise_for_status()
        self.headers = {"Authorization": f"Bearer {token.json()['access_token']}"}

    def create_client(self, client_id: str, secret: str) -> str:
        """A client like ``lhpipe-secure`` (60-second tokens that LittleHorse accepts); its id."""
        body: dict[str, Any] = {
            "clientId": client_id,
            "enabled": True,
            "publicClient": False,
            "clientAuthenticatorType": "client-secret",
            "secret": secret,
            "serviceAccountsEnabled": True,
            "standardFlowEnabled": False,
            "directAccessGrantsEnabled": False,
            "attributes": {"access.token.lifespan": "60"},
            "defaultClientScopes": ["basic", "lhpipe:connect"],
            "protocolMappers": [
                {
                    "name": "audience littlehorse",
                    "protocol": "openid-connect",
                    "protocolMapper": "oidc-audience-mapper",
                    "config": {
                        "included.client.audience": at.LITTLEHORSE_INTROSPECTION_CLIENT_ID,
                        "access.token.claim": "true",
                        "introspection.token.claim": "true",
                    },
                }
            ],
        }
        url = f"{self.base}/admin/realms/{self.realm}/clients"
        made = httpx.post(url, json=body, headers=self.headers, timeout=30)
        assert made.status_code == 201, made.text
        found = httpx.get(url, params={"clientId": client_id}, headers=self.headers, timeout=30)
        return str(found.json()[0]["id"])

    def disable(self, uuid: str) -> None:
        url = f"{self.base}/admin/realms/{self.realm}/clients/{uuid}"
        client = httpx.get(url, headers=self.headers, timeout=30).json()
        client["enabled"] = False
        done = httpx.put(url, json=client, headers=self.headers, timeout=30)
        assert done.status_code == 204, done.text

    def delete(self, uuid: str) -> None:
        httpx.delete(
            f"{self.base}/admin/realms/{self.realm}/clients/{uuid}",
            headers=self.headers,
            timeout=30,
        )


def paused_detail(run: LhpipeRun) -> str | None:
    view = paused_view(run, "secured")
    return None if view is None else str(view["detail"])


def test_a_client_revoked_in_keycloak_pauses_run_wf_once_its_token_is_renewed(
    stack: StackAddresses, secure_stack: StackCerts, tmp_path: Path
) -> None:
    admin = KeycloakAdmin(stack)
    client_id, secret = unique("lhpipe-revoked"), unique("secret")
    uuid = admin.create_client(client_id, secret)
    wf_name, topic, group, _dlq, folder = run_wf_pipeline(tmp_path, stack)
    settings = {
        **kafka_secure_settings(secure_stack),
        **littlehorse_secure_settings(secure_stack),
        "LHC_OAUTH_CLIENT_ID": client_id,
        "LHC_OAUTH_CLIENT_SECRET": secret,
    }
    try:
        with LhpipeRun(folder, env=settings) as run:
            run.wait_ready()
            send(stack, topic, range(20))
            all_committed(stack, group, topic, 20)
            admin.disable(uuid)
            revoked_at = time.monotonic()
            # The current token stays good at LittleHorse until it expires (60 s); the renewal
            # at 48 s is refused, and the pipeline pauses by the token's end.
            sent = 20
            while (detail := paused_detail(run)) is None:
                assert time.monotonic() - revoked_at < 120, run.log()[-3000:]
                send(stack, topic, range(sent, sent + 5))
                sent += 5
                time.sleep(3)
            done_before = sum(max(0, o) for o in committed(stack, group, topic, 2))
            output = run.log()
            assert run.terminate() == 0, run.log()
    finally:
        admin.delete(uuid)

    # Which refusal comes first depends on timing: the token endpoint refusing the renewal, or
    # LittleHorse introspecting a token of the disabled client it had not cached yet.
    assert (
        f"the endpoint refused client '{client_id}'" in detail
        or "UNAUTHENTICATED: Token is not active" in detail
        or "UNAUTHENTICATED: Access token is not active" in detail
    ), detail
    assert "\n" not in detail
    assert secret not in output
    # The records read after the revocation wait in Kafka: done later by a good client, once.
    settings |= littlehorse_secure_settings(secure_stack)
    with LhpipeRun(folder, env=settings) as run:
        run.wait_ready()
        all_committed(stack, group, topic, sent)
        assert run.terminate() == 0, run.log()
    assert done_before < sent
    assert settled_wf_run_count(lh_config(stack), wf_name, sent) == sent


def expired_client_certificate(certs: StackCerts, folder: Path) -> tuple[Path, Path]:
    """A client certificate the stack's CA signed, valid until yesterday."""
    ca = x509.load_pem_x509_certificate(certs.ca.read_bytes())
    ca_key = serialization.load_pem_private_key(certs.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lhpipe-expired")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=30))
        .not_valid_after(now - datetime.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = folder / "expired.pem", folder / "expired-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_an_expired_client_certificate_pauses_run_wf_naming_tls(
    stack: StackAddresses, secure_stack: StackCerts, tmp_path: Path
) -> None:
    _wf_name, topic, group, _dlq, folder = run_wf_pipeline(tmp_path, stack)
    cert, key = expired_client_certificate(secure_stack, tmp_path)
    settings = {
        **kafka_secure_settings(secure_stack),
        **littlehorse_secure_settings(secure_stack, "mtls"),
        "LHC_CLIENT_CERT": str(cert),
        "LHC_CLIENT_KEY": str(key),
    }
    send(stack, topic, range(10))

    with LhpipeRun(folder, env=settings) as run:
        detail = wait_until(lambda: paused_detail(run), 90, "the pipeline to be paused")
        output = run.log() + json.dumps(run.readyz())
        assert run.terminate() == 0, run.log()

    assert "TLS to LittleHorse failed" in detail, detail
    assert all(offset < 0 for offset in committed(stack, group, topic, 2))  # none committed
    assert "PRIVATE KEY" not in output and key.read_text().splitlines()[1] not in output

"""The secure stack's certificates: a local certificate authority and what it signs.

Made with `cryptography` the first time `lhpipe stack up --secure` needs them and kept in the run
directory (``<run dir>/secure/``), so a user who trusted the CA once keeps trusting it across
restarts. Everything is for 127.0.0.1 only:

- ``ca.pem`` (and its key ``ca-key.pem``): the authority every secured service's certificate
  chains to; clients point their CA setting at it (``ssl.ca.location``, ``LHC_CA_CERT``).
- ``server.pem`` / ``server-key.pem``: the services' certificate, for ``127.0.0.1`` and
  ``localhost``; ``server-keystore.pem`` is both in one file, as Kafka's PEM key store reads them.
- ``client.pem`` / ``client-key.pem``: a client certificate (``CN=lhpipe``) for mTLS.
- ``other-ca.pem``: a second, unrelated authority, for tests of a client that trusts the wrong
  one.

Private keys are written readable by their owner only.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: How long the certificates are valid: long enough that a development machine never sees one
#: expire.
VALID_DAYS = 3650
CLIENT_COMMON_NAME = "lhpipe"


@dataclass(frozen=True)
class StackCerts:
    """Where the secure stack's certificate files are."""

    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca-key.pem"

    @property
    def server_cert(self) -> Path:
        return self.folder / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.folder / "server-key.pem"

    @property
    def server_keystore(self) -> Path:
        """The server's key and certificate in one PEM file (Kafka's ``ssl.keystore.type=PEM``)."""
        return self.folder / "server-keystore.pem"

    @property
    def client_cert(self) -> Path:
        return self.folder / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.folder / "client-key.pem"

    @property
    def other_ca(self) -> Path:
        return self.folder / "other-ca.pem"

    def all_present(self) -> bool:
        return all(
            path.is_file()
            for path in (
                self.ca,
                self.ca_key,
                self.server_cert,
                self.server_key,
                self.server_keystore,
                self.client_cert,
                self.client_key,
                self.other_ca,
            )
        )


def certs_in(run_root: Path) -> StackCerts:
    return StackCerts(run_root / "secure")


def stack_certs() -> StackCerts | None:
    """The local stack's certificates (in its run directory), or ``None`` while
    ``lhpipe stack up --secure`` has not made them."""
    from lhpipe.stack.paths import run_dir

    certs = certs_in(run_dir())
    return certs if certs.all_present() else None


def ensure_certs(run_root: Path) -> StackCerts:
    """The stack's certificates under ``run_root``, made now when any file is missing (then all
    of them anew, so that they always chain to the CA beside them)."""
    certs = certs_in(run_root)
    if certs.all_present():
        return certs
    certs.folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("lhpipe local stack CA")
    ca_cert = _sign(ca_name, ca_key.public_key(), ca_name, ca_key, authority=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _sign(
        _name("127.0.0.1"),
        server_key.public_key(),
        ca_name,
        ca_key,
        names=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = _sign(
        _name(CLIENT_COMMON_NAME),
        client_key.public_key(),
        ca_name,
        ca_key,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_name = _name("an unrelated CA")
    other_cert = _sign(other_name, other_key.public_key(), other_name, other_key, authority=True)

    _write(certs.ca, _pem(ca_cert))
    _write(certs.ca_key, _key_pem(ca_key), private=True)
    _write(certs.server_cert, _pem(server_cert) + _pem(ca_cert))
    _write(certs.server_key, _key_pem(server_key), private=True)
    _write(
        certs.server_keystore,
        _key_pem(server_key) + _pem(server_cert) + _pem(ca_cert),
        private=True,
    )
    _write(certs.client_cert, _pem(client_cert))
    _write(certs.client_key, _key_pem(client_key), private=True)
    _write(certs.other_ca, _pem(other_cert))
    return certs


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lhpipe local stack"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _sign(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    authority: bool = False,
    names: list[x509.GeneralName] | None = None,
    usage: x509.ObjectIdentifier | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=authority, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if authority:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    # PKCS#8, unencrypted: what Kafka's PEM key store, gRPC and Java's PEM readers all take.
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    temporary = path.with_name(path.name + ".tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    descriptor = os.open(temporary, flags, 0o600 if private else 0o644)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    temporary.replace(path)

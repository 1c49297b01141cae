"""Settings given as ``NAME_FILE`` (a path to a file holding the value, as container platforms
mount secrets), and the secure stack's certificates and settings (docs/security.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lhpipe.clients.kafka.config import client_config
from lhpipe.settings import Settings, SettingsError, load_settings


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_a_file_setting_gives_the_value_without_its_trailing_newline(tmp_path: Path) -> None:
    secret = write(tmp_path / "password", "pa ss\n")
    crlf = write(tmp_path / "crlf", "other\r\n")
    settings = Settings(
        environ={"LHPIPE_KAFKA_SASL_PASSWORD_FILE": secret, "LHC_OAUTH_CLIENT_SECRET_FILE": crlf}
    )

    assert settings.get("LHPIPE_KAFKA_SASL_PASSWORD") == "pa ss"
    assert client_config(settings)["sasl.password"] == "pa ss"
    assert "sasl.password.file" not in client_config(settings)
    assert settings.littlehorse()["LHC_OAUTH_CLIENT_SECRET"] == "other"
    assert "LHC_OAUTH_CLIENT_SECRET_FILE" not in settings.littlehorse()


def test_the_setting_itself_wins_over_its_file_and_the_toml_may_name_the_file(
    tmp_path: Path,
) -> None:
    secret = write(tmp_path / "password", "from-file")
    write(tmp_path / "lhpipe.toml", f'LHPIPE_KAFKA_SASL_PASSWORD_FILE = "{secret}"\n')

    from_toml = load_settings([tmp_path], environ={})
    both = load_settings([tmp_path], environ={"LHPIPE_KAFKA_SASL_PASSWORD": "from-environment"})

    assert from_toml.get("LHPIPE_KAFKA_SASL_PASSWORD") == "from-file"
    assert both.get("LHPIPE_KAFKA_SASL_PASSWORD") == "from-environment"


@pytest.mark.parametrize("target", ["missing", "folder", "fifo", "binary"])
def test_a_file_that_cannot_be_read_names_the_setting_and_path_never_hangs(
    tmp_path: Path, target: str
) -> None:
    path = tmp_path / target
    if target == "folder":
        path.mkdir()
    elif target == "fifo":
        os.mkfifo(path)  # nobody writes to it: opening it for reading would block
    elif target == "binary":
        path.write_bytes(b"\xff\xfe secret-bytes")
    settings = Settings(environ={"LHPIPE_KAFKA_SASL_PASSWORD_FILE": str(path)})

    with pytest.raises(SettingsError) as caught:
        settings.get("LHPIPE_KAFKA_SASL_PASSWORD")

    message = str(caught.value)
    assert message.startswith(f"LHPIPE_KAFKA_SASL_PASSWORD_FILE: {path}") or (
        f"LHPIPE_KAFKA_SASL_PASSWORD_FILE: cannot read {path}" in message
    )
    assert "secret-bytes" not in message


def test_the_stack_certificates_chain_to_their_ca_and_keys_are_private(tmp_path: Path) -> None:
    from cryptography import x509

    from lhpipe.stack.certs import ensure_certs

    certs = ensure_certs(tmp_path)
    again = ensure_certs(tmp_path)
    ca = x509.load_pem_x509_certificate(certs.ca.read_bytes())
    server = x509.load_pem_x509_certificates(certs.server_cert.read_bytes())[0]
    client = x509.load_pem_x509_certificate(certs.client_cert.read_bytes())
    other = x509.load_pem_x509_certificate(certs.other_ca.read_bytes())

    assert again.ca.read_bytes() == certs.ca.read_bytes()  # kept, not made anew
    server.verify_directly_issued_by(ca)
    client.verify_directly_issued_by(ca)
    with pytest.raises(Exception):  # noqa: B017 (cryptography raises several kinds)
        server.verify_directly_issued_by(other)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    for key in (certs.ca_key, certs.server_key, certs.client_key, certs.server_keystore):
        assert key.stat().st_mode & 0o077 == 0, key


def test_stack_env_secure_settings_use_each_ecosystems_names(tmp_path: Path) -> None:
    from lhpipe.stack.certs import ensure_certs
    from lhpipe.stack.env import as_exports, as_toml, secure_settings

    certs = ensure_certs(tmp_path)
    scram = secure_settings(certs, "scram")
    oauth = secure_settings(certs, "oauth")

    assert client_config(Settings(environ=scram)) == {
        "bootstrap.servers": "127.0.0.1:9094",
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": str(certs.ca),
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "lhpipe",
        "sasl.password": "lhpipe-scram-secret",
    }
    assert client_config(Settings(environ=oauth))["sasl.oauthbearer.method"] == "oidc"
    assert "export LHPIPE_KAFKA_SASL_MECHANISM='SCRAM-SHA-512'\n" in as_exports(scram)
    assert 'KAFKA_BOOTSTRAP_SERVERS = "127.0.0.1:9094"\n' in as_toml(scram)

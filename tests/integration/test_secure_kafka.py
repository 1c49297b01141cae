"""Pipelines against the secure stack's Kafka listener (``lhpipe stack up --secure``,
docs/security.md): SASL_SSL with SCRAM-SHA-512 or OAuth (OIDC client credentials from the
Keycloak realm, tokens living 60 s), settings as ``lhpipe stack env --secure`` prints them.
Token renewal over several lifespans is tested with LittleHorse's in test_secure_littlehorse.py.

The test itself writes and reads on the open listener of the same broker; only lhpipe goes
through the secured one. Each test counts what arrived, and every output lhpipe made (its log,
``/readyz``, ``/metrics``, the status page) is searched for each secret.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from engine_run import (
    LhpipeRun,
    create_topic,
    produce,
    read_all,
    unique,
    wait_until,
    write_pipelines,
)

from lhpipe.stack import addresses as at
from lhpipe.stack.addresses import StackAddresses
from lhpipe.stack.certs import StackCerts
from lhpipe.stack.env import kafka_secure_settings

pytestmark = pytest.mark.integration

SECRETS = (at.KAFKA_SCRAM_PASSWORD, at.SECURE_CLIENT_SECRET)
WRONG_PASSWORD = "not-the-password-4242"


def copy_pipeline(source: str, target: str) -> str:
    return f"""
pipeline copy {{
  from topic "{source}" {{ value = string }}
  to topic "{target}" {{ value = value }}
}}
"""


def values(stack: StackAddresses, topic: str, expected: int) -> list[str]:
    """The values in ``topic`` (JSON strings, as `to topic` writes them) once at least
    ``expected`` are there, sorted."""
    return sorted(json.loads(r.value()) for r in read_all(stack, topic, expected, timeout=120))


def every_output(run: LhpipeRun) -> str:
    """Whatever lhpipe showed: its log and its HTTP pages."""
    pages = []
    for path in ("/readyz", "/metrics", "/"):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{run.port}{path}", timeout=10) as r:
                pages.append(r.read().decode("utf-8", "replace"))
        except OSError as exc:  # an HTTP error page is output too
            pages.append(str(exc))
            if hasattr(exc, "read"):
                pages.append(exc.read().decode("utf-8", "replace"))
    return run.log() + "\n".join(pages)


def paused_view(run: LhpipeRun, pipeline: str) -> dict[str, Any] | None:
    """The pipeline's entry in ``/readyz`` while it is paused, else ``None``."""
    answer = run.readyz()
    view: dict[str, Any] | None = answer[1]["pipelines"].get(pipeline) if answer else None
    return view if view is not None and view["state"] == "paused" else None


def assert_no_secret(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text, f"a secret appears in lhpipe's output: {secret[:3]}…"


@pytest.mark.parametrize("auth", ["scram", "oauth"])
def test_a_topic_pipeline_over_sasl_ssl_copies_every_record_once(
    stack: StackAddresses, secure_stack: StackCerts, tmp_path: Path, auth: str
) -> None:
    source, target = unique("secure-in"), unique("secure-out")
    create_topic(stack, source, partitions=3)
    create_topic(stack, target)
    write_pipelines(tmp_path, copy_pipeline(source, target))
    sent = [f"{auth}-{n}" for n in range(300)]
    produce(stack, source, ((v.encode(), v.encode(), ()) for v in sent[:150]))

    with LhpipeRun(tmp_path, env=kafka_secure_settings(secure_stack, auth)) as run:
        run.wait_ready()
        produce(stack, source, ((v.encode(), v.encode(), ()) for v in sent[150:]))
        got = values(stack, target, len(sent))
        output = every_output(run)

    assert got == sorted(sent)
    assert_no_secret(output, *SECRETS)


def test_a_wrong_password_pauses_the_pipeline_with_one_line_and_loses_nothing(
    stack: StackAddresses, secure_stack: StackCerts, tmp_path: Path
) -> None:
    source, target = unique("secure-in"), unique("secure-out")
    create_topic(stack, source)
    create_topic(stack, target)
    write_pipelines(tmp_path, copy_pipeline(source, target))
    sent = [f"r-{n}" for n in range(100)]
    produce(stack, source, ((v.encode(), v.encode(), ()) for v in sent))
    wrong = {**kafka_secure_settings(secure_stack), "LHPIPE_KAFKA_SASL_PASSWORD": WRONG_PASSWORD}

    with LhpipeRun(tmp_path, env=wrong) as run:
        status = wait_until(lambda: paused_view(run, "copy"), 60, "the pipeline to be paused")
        code, _ = run.readyz() or (0, {})
        time.sleep(3)  # a refused consumer must keep its reason, not trade it for "brokers down"
        later = paused_view(run, "copy")
        output = every_output(run)

    assert code == 503
    detail = str(status["detail"])
    assert detail.startswith("Kafka refused lhpipe's credentials: ")
    assert "\n" not in detail
    assert later is not None and str(later["detail"]).startswith("Kafka refused")
    assert read_all(stack, target, 0, timeout=10) == []  # read after the process ended
    assert_no_secret(output, WRONG_PASSWORD, *SECRETS)

    # The setting fixed (here in lhpipe.toml, as a restart reads it): everything arrives once.
    (tmp_path / "lhpipe.toml").write_text(
        "".join(f'{k} = "{v}"\n' for k, v in kafka_secure_settings(secure_stack).items())
    )
    with LhpipeRun(tmp_path) as run:
        run.wait_ready()
        values(stack, target, len(sent))
        output = every_output(run)
        assert run.terminate() == 0
    got = values(stack, target, len(sent))  # read after the process ended: no late duplicate

    assert got == sorted(sent)
    assert_no_secret(output, *SECRETS)


def test_an_untrusted_certificate_pauses_the_pipeline_naming_tls(
    stack: StackAddresses, secure_stack: StackCerts, tmp_path: Path
) -> None:
    source, target = unique("secure-in"), unique("secure-out")
    create_topic(stack, source)
    write_pipelines(tmp_path, copy_pipeline(source, target))
    settings = {
        **kafka_secure_settings(secure_stack),
        "LHPIPE_KAFKA_SSL_CA_LOCATION": str(secure_stack.other_ca),
    }

    with LhpipeRun(tmp_path, env=settings) as run:
        view = wait_until(lambda: paused_view(run, "copy"), 60, "the pipeline to be paused")
        detail = str(view["detail"])

    assert detail.startswith("TLS to Kafka failed: ")
    assert "certificate verify failed" in detail


def test_a_paused_pipeline_resumes_when_a_hot_reload_brings_the_right_password(
    stack: StackAddresses, secure_stack: StackCerts, tmp_path: Path
) -> None:
    source, target = unique("secure-in"), unique("secure-out")
    create_topic(stack, source)
    create_topic(stack, target)
    write_pipelines(tmp_path, copy_pipeline(source, target))
    sent = [f"h-{n}" for n in range(60)]
    produce(stack, source, ((v.encode(), v.encode(), ()) for v in sent))
    good = kafka_secure_settings(secure_stack)
    toml = tmp_path / "lhpipe.toml"
    toml.write_text(
        "".join(
            f'{k} = "{v}"\n'
            for k, v in {**good, "LHPIPE_KAFKA_SASL_PASSWORD": WRONG_PASSWORD}.items()
        )
    )

    with LhpipeRun(tmp_path, args=["--watch"]) as run:

        def state() -> str | None:
            answer = run.readyz()
            return answer[1]["pipelines"]["copy"]["state"] if answer else None

        wait_until(lambda: state() == "paused", 60, "the pipeline to be paused")
        toml.write_text("".join(f'{k} = "{v}"\n' for k, v in good.items()))
        run.wait_ready(90)
        values(stack, target, len(sent))
        output = every_output(run)
        assert run.terminate() == 0, run.log()

    assert values(stack, target, len(sent)) == sorted(sent)
    assert_no_secret(output, WRONG_PASSWORD, *SECRETS)

"""`from topic` → `run_wf` with every connection secured (``lhpipe stack up --secure``,
docs/security.md): Kafka over SASL_SSL and LittleHorse over TLS with OAuth (tokens from the
Keycloak realm, living 60 s, introspected by the server) or with a client certificate (mTLS).

WfRuns are counted with the open listener; only lhpipe goes through the secured ones. Every
output of lhpipe (its log, ``/readyz``, ``/metrics``, the status page) is searched for each
secret.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from engine_run import (
    LhpipeRun,
    committed,
    create_topic,
    external_events_of,
    produce,
    read_all,
    settled_wf_run_count,
    unique,
    wait_until,
    write_pipelines,
)
from lh import correlated_event, lh_config, register_external_event_def, register_wf_spec
from littlehorse.workflow import Workflow, WorkflowThread
from test_secure_kafka import SECRETS, assert_no_secret, every_output, paused_view

from lhpipe.stack import addresses as at
from lhpipe.stack.addresses import StackAddresses
from lhpipe.stack.certs import StackCerts
from lhpipe.stack.env import kafka_secure_settings, littlehorse_secure_settings

pytestmark = pytest.mark.integration

WRONG_SECRET = "not-the-client-secret-7731"


def run_wf_pipeline(tmp_path: Path, stack: StackAddresses) -> tuple[str, str, str, str, Path]:
    """A WfSpec, a topic, a group and a pipeline starting one WfRun per record."""
    wf_name, topic, group = unique("sec-wf"), unique("sec-wf-in"), unique("sec-wf-g")
    dlq = unique("sec-wf-dlq")

    def flow(wf: WorkflowThread) -> None:
        wf.declare_int("n")

    register_wf_spec(lh_config(stack), Workflow(wf_name, flow))
    create_topic(stack, topic, partitions=2)
    tag = unique("r")
    folder = write_pipelines(
        tmp_path / "pipelines",
        f"""
pipeline secured {{
  from topic "{topic}" {{ value = json  group = "{group}" }}
  run_wf "{wf_name}" {{ id = "{tag}-${{key}}" }}
  on_error {{ dead_letter = "{dlq}" }}
}}
""",
    )
    return wf_name, topic, group, dlq, folder


def send(stack: StackAddresses, topic: str, numbers: range) -> None:
    produce(stack, topic, ((str(n).encode(), json.dumps({"n": n}).encode(), []) for n in numbers))


def all_committed(stack: StackAddresses, group: str, topic: str, total: int) -> None:
    wait_until(
        lambda: sum(committed(stack, group, topic, 2)) == total,
        180,
        f"{total} offsets committed",
        every=1.0,
    )


@pytest.mark.parametrize("auth", ["oauth", "mtls"])
def test_run_wf_over_tls_with_oauth_or_mtls_starts_every_wf_run_once(
    stack: StackAddresses, secure_stack: StackCerts, tmp_path: Path, auth: str
) -> None:
    wf_name, topic, group, dlq, folder = run_wf_pipeline(tmp_path, stack)
    settings = {
        **kafka_secure_settings(secure_stack),
        **littlehorse_secure_settings(secure_stack, auth),
    }
    send(stack, topic, range(60))

    with LhpipeRun(folder, env=settings) as run:
        run.wait_ready()
        send(stack, topic, range(60, 120))
        all_committed(stack, group, topic, 120)
        output = every_output(run)
        assert run.terminate() == 0, run.log()

    assert settled_wf_run_count(lh_config(stack), wf_name, 120) == 120
    assert read_all(stack, dlq, expected=0) == []
    assert_no_secret(output, *SECRETS)


def test_a_refused_oauth_client_pauses_run_wf_and_a_restart_with_the_fix_loses_nothing(
    stack: StackAddresses, secure_stack: StackCerts, tmp_path: Path
) -> None:
    wf_name, topic, group, dlq, folder = run_wf_pipeline(tmp_path, stack)
    good = {**kafka_secure_settings(secure_stack), **littlehorse_secure_settings(secure_stack)}
    wrong = {**good, "LHC_OAUTH_CLIENT_SECRET": WRONG_SECRET}
    send(stack, topic, range(50))

    with LhpipeRun(folder, env=wrong) as run:
        view = wait_until(lambda: paused_view(run, "secured"), 90, "the pipeline to be paused")
        code = (run.readyz() or (0, {}))[0]
        output = every_output(run)
        assert run.terminate() == 0, run.log()

    detail = str(view["detail"])
    assert code == 503
    assert "\n" not in detail
    assert "the endpoint refused client 'lhpipe-secure'" in detail, detail
    assert all(offset < 0 for offset in committed(stack, group, topic, 2))  # none committed
    assert_no_secret(output, WRONG_SECRET, *SECRETS)

    with LhpipeRun(folder, env=good) as run:
        run.wait_ready()
        all_committed(stack, group, topic, 50)
        output = every_output(run)
        assert run.terminate() == 0, run.log()

    assert settled_wf_run_count(lh_config(stack), wf_name, 50) == 50
    assert read_all(stack, dlq, expected=0) == []
    assert_no_secret(output, *SECRETS)


def test_tokens_are_renewed_through_several_lifespans_with_no_error_and_no_pause(
    stack: StackAddresses, secure_stack: StackCerts, tmp_path: Path
) -> None:
    """Kafka (OAUTHBEARER, librdkafka's own refresh) and LittleHorse (lhpipe's plugin, at 80 %
    of the lifespan) with the realm's 60-second tokens: records keep flowing for more than two
    lifespans, /readyz stays ready, and the log shows no refusal."""
    wf_name, topic, group, dlq, folder = run_wf_pipeline(tmp_path, stack)
    settings = {
        **kafka_secure_settings(secure_stack, "oauth"),
        **littlehorse_secure_settings(secure_stack, "oauth"),
    }
    sent = 0
    not_ready: list[object] = []

    with LhpipeRun(folder, env=settings) as run:
        run.wait_ready()
        started = time.monotonic()
        while time.monotonic() - started < 2.2 * at.SECURE_TOKEN_LIFESPAN_SECONDS:
            send(stack, topic, range(sent, sent + 10))
            sent += 10
            time.sleep(4)
            answer = run.readyz()
            if answer is None or answer[0] != 200:
                not_ready.append(answer)
        all_committed(stack, group, topic, sent)
        log = run.log()
        output = every_output(run)
        assert run.terminate() == 0, log

    assert not_ready == []
    for word in ("UNAUTHENTICATED", "_AUTHENTICATION", "refused", "no OAuth token"):
        assert word not in log, word
    assert settled_wf_run_count(lh_config(stack), wf_name, sent) == sent
    assert read_all(stack, dlq, expected=0) == []
    assert_no_secret(output, *SECRETS)


@pytest.mark.parametrize("auth", ["oauth", "mtls"])
def test_post_event_and_correlate_over_tls_post_every_event_once(
    stack: StackAddresses, secure_stack: StackCerts, tmp_path: Path, auth: str
) -> None:
    config = lh_config(stack)
    event, correlated = unique("sec-evt"), unique("sec-corr")
    register_external_event_def(config, event)
    register_external_event_def(config, correlated, correlated=True)
    events_in, keys_in = unique("sec-evt-in"), unique("sec-corr-in")
    create_topic(stack, events_in)
    create_topic(stack, keys_in)
    folder = write_pipelines(
        tmp_path,
        f"""
pipeline posted {{
  from topic "{events_in}" {{ value = json }}
  post_event "{event}" {{ content = value.note }}
}}

pipeline correlated {{
  from topic "{keys_in}" {{ value = json }}
  correlate "{correlated}" {{ content = value.note }}
}}
""",
    )
    tag = unique("k")
    wf_run_ids = [f"{tag}-w-{n}" for n in range(15)]
    keys = [f"{tag}-c-{n}" for n in range(15)]
    settings = {
        **kafka_secure_settings(secure_stack),
        **littlehorse_secure_settings(secure_stack, auth),
    }

    with LhpipeRun(folder, env=settings) as run:
        run.wait_ready()
        produce(
            stack,
            events_in,
            ((i.encode(), json.dumps({"note": f"n-{i}"}).encode(), ()) for i in wf_run_ids),
        )
        produce(
            stack,
            keys_in,
            ((k.encode(), json.dumps({"note": f"n-{k}"}).encode(), ()) for k in keys),
        )
        wait_until(
            lambda: (
                sum(committed(stack, "lhpipe-posted", events_in))
                + sum(committed(stack, "lhpipe-correlated", keys_in))
                == len(wf_run_ids) + len(keys)
            ),
            120,
            "every event posted",
            every=1.0,
        )
        output = every_output(run)
        assert run.terminate() == 0, run.log()

    for wf_run_id in wf_run_ids:
        posted = external_events_of(config, wf_run_id).results
        assert len(posted) == 1, wf_run_id
    for key in keys:
        assert correlated_event(config, key, correlated) == f"n-{key}"
    assert_no_secret(output, *SECRETS)

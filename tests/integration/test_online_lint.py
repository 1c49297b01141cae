"""`lhpipe lint --online` against the live LittleHorse and Apicurio: a clean program, and one
with a missing WfSpec, an undeclared variable, a wrong variable type, an ExternalEventDef
without correlation and an unknown registry subject; an unreachable server exits 2."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from lh import lh_config, register_external_event_def, register_wf_spec, unique_name
from littlehorse.model import VariableType
from littlehorse.workflow import Workflow, WorkflowThread

from lhpipe.commands.lint import run_lint
from lhpipe.stack.addresses import StackAddresses

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def names(stack: StackAddresses) -> dict[str, str]:
    """A WfSpec `kyc` (age INT required, score DOUBLE, name STR), an INT ExternalEventDef
    `verdict` and a correlated STR one `paid`, under unique names."""
    config = lh_config(stack)
    verdict = unique_name("it-verdict")
    register_external_event_def(config, verdict, payload_type=VariableType.INT)
    paid = unique_name("it-paid")
    register_external_event_def(config, paid, correlated=True)

    def entrypoint(wf: WorkflowThread) -> None:
        wf.declare_int("age").required()
        wf.declare_double("score")
        wf.declare_str("name")

    kyc = register_wf_spec(config, Workflow(unique_name("it-kyc"), entrypoint)).id.name
    return {"kyc": kyc, "verdict": verdict, "paid": paid}


def lint_online(stack: StackAddresses, tmp_path: Path, text: str, **settings: str) -> Any:
    (tmp_path / "lhpipe.toml").write_text(
        "\n".join(
            f'{k} = "{v}"'
            for k, v in {
                "LHC_API_HOST": stack.littlehorse_host,
                "LHC_API_PORT": str(stack.littlehorse_port),
                "LHPIPE_REGISTRY_URL": stack.ccompat_url,
                **settings,
            }.items()
        ),
        encoding="utf-8",
    )
    path = tmp_path / "pipelines.lhp"
    path.write_text(text, encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    code = run_lint([str(path)], output_format="json", online=True, stdout=out, stderr=err)
    return code, (json.loads(out.getvalue()) if out.getvalue() else None), err.getvalue()


CLEAN = """
schema Applicant {
  applicant_id: string
  age: int
  score: double
  name: string
}

pipeline start {
  from topic "applicants" { value = Applicant }
  run_wf "KYC" { id = value.applicant_id  variables { age = value.age  score = value.score } }
}

pipeline whole {
  from topic "applicants-again" { value = Applicant }
  run_wf "KYC" { id = value.applicant_id  variables { age = value.age  name = value.name } }
}

pipeline verdicts {
  from topic "verdicts" { value = json }
  post_event "VERDICT" { wf_run_id = value.id  content = 1 }
}

pipeline payments {
  from topic "payments" { value = json }
  correlate "PAID" { key = value.order_id }
}
"""


def fill(text: str, names: dict[str, str]) -> str:
    return (
        text.replace("KYC", names["kyc"])
        .replace("VERDICT", names["verdict"])
        .replace("PAID", names["paid"])
    )


def test_a_program_that_fits_the_live_servers_is_clean(
    stack: StackAddresses, tmp_path: Path, names: dict[str, str]
) -> None:
    code, diagnostics, err = lint_online(stack, tmp_path, fill(CLEAN, names))
    assert (code, diagnostics, err) == (0, [], "")


MISTAKES = """
schema Applicant {
  applicant_id: string
  age: string
  tags: [string]
}

schema Remote from registry "SUBJECT"

pipeline start {
  from topic "applicants" { value = Applicant }
  run_wf "KYC" {
    id = value.applicant_id
    variables { age = value.age  scroe = 1  name = value.tags }
  }
}

pipeline missing {
  from topic "applicants-2" { value = Applicant }
  run_wf "KYC-nope" { id = value.applicant_id }
}

pipeline wrong_kind {
  from topic "payments" { value = json }
  correlate "VERDICT" { key = value.order_id  content = value.amount }
}

pipeline remote {
  from topic "remote" { value = Remote }
  to log
}
"""


def test_each_mismatch_with_the_live_servers_is_a_diagnostic_at_its_name(
    stack: StackAddresses, tmp_path: Path, names: dict[str, str]
) -> None:
    subject = unique_name("it-no-such-subject")
    text = fill(MISTAKES, names).replace("SUBJECT", subject)

    code, diagnostics, _ = lint_online(stack, tmp_path, text)

    assert code == 1
    found = [(d["code"], d["line"], d["severity"], d["message"], d["hint"]) for d in diagnostics]
    kyc = names["kyc"]
    assert found == [
        (
            "LHP909",
            8,
            "error",
            f"registry subject `{subject}` does not exist at {stack.ccompat_url}",
            None,
        ),
        (
            "LHP906",
            14,
            "warning",
            f"`age` is string, but variable `age` of WfSpec `{kyc}` is INT",
            "it converts only when the text is a whole number",
        ),
        (
            "LHP903",
            14,
            "error",
            f"`scroe` is not an input variable of WfSpec `{kyc}` (v0.0)",
            "did you mean `score`?",
        ),
        (
            "LHP905",
            14,
            "error",
            f"`name` is [string], but variable `name` of WfSpec `{kyc}` is STR",
            None,
        ),
        (
            "LHP901",
            20,
            "error",
            f"WfSpec `{kyc}-nope` does not exist in LittleHorse",
            f"did you mean `{kyc}`?",
        ),
        (
            "LHP908",
            25,
            "error",
            f"ExternalEventDef `{names['verdict']}` does not take correlated events",
            "register it with a CorrelatedEventConfig, or use `post_event`",
        ),
    ]
    columns = {d["code"]: (d["col"], d["end_col"]) for d in diagnostics}
    line_14 = text.splitlines()[13]
    assert columns["LHP903"] == (line_14.index("scroe") + 1, line_14.index("scroe") + 6)


def test_required_variables_pinned_versions_and_the_fields_of_a_value_without_variables(
    stack: StackAddresses, tmp_path: Path, names: dict[str, str]
) -> None:
    text = fill(
        """
pipeline start {
  from topic "applicants" { value = json }
  run_wf "KYC" { id = value.id  variables { score = 1.5 } }
}

pipeline pinned {
  from topic "applicants-2" { value = json }
  run_wf "KYC" { id = value.id  major_version = 4  variables { age = 1 } }
}

schema Person { age: long  email: string }

pipeline fields {
  from topic "people" { value = Person }
  run_wf "KYC" { id = value.email }
}
""",
        names,
    )
    code, diagnostics, _ = lint_online(stack, tmp_path, text)
    assert code == 1
    assert [(d["code"], d["line"], d["message"], d["hint"]) for d in diagnostics] == [
        (
            "LHP904",
            4,
            f"WfSpec `{names['kyc']}` requires input variable `age` (INT), which this target "
            "does not give",
            "add it to `variables { }`",
        ),
        (
            "LHP902",
            9,
            f"WfSpec `{names['kyc']}` has no version 4",
            "its latest version is 0.0",
        ),
        (
            "LHP903",
            16,
            f"value field `email` is not an input variable of WfSpec `{names['kyc']}` (v0.0)",
            "its input variables: `age`, `name`, `score`",
        ),
    ]


def test_an_unreachable_littlehorse_exits_2_with_a_clear_message(
    stack: StackAddresses, tmp_path: Path, names: dict[str, str]
) -> None:
    code, diagnostics, err = lint_online(stack, tmp_path, fill(CLEAN, names), LHC_API_PORT="1")
    assert code == 2
    assert diagnostics is None
    assert err.startswith("lhpipe lint: --online: cannot ask LittleHorse at 127.0.0.1:1: ")
    assert "UNAVAILABLE" in err


# -- partitions (Kafka) ------------------------------------------------------------------------


def lint_partitions(
    stack: StackAddresses,
    tmp_path: Path,
    text: str,
    processes: int | None,
    *,
    strict: bool = False,
    **settings: str,
) -> Any:
    """``lint --online [--processes N] [--strict]`` of ``text`` against the stack's Kafka."""
    values = {
        "KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
        "LHC_API_HOST": stack.littlehorse_host,
        "LHC_API_PORT": str(stack.littlehorse_port),
        "LHPIPE_REGISTRY_URL": stack.ccompat_url,
        **settings,
    }
    (tmp_path / "lhpipe.toml").write_text(
        "\n".join(f'{k} = "{v}"' for k, v in values.items()), encoding="utf-8"
    )
    path = tmp_path / "pipelines.lhp"
    path.write_text(text, encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    code = run_lint(
        [str(path)],
        output_format="json",
        strict=strict,
        online=True,
        processes=processes,
        stdout=out,
        stderr=err,
    )
    return code, (json.loads(out.getvalue()) if out.getvalue() else None), err.getvalue()


def test_a_topic_with_fewer_partitions_than_the_declared_processes_is_a_warning(
    stack: StackAddresses, tmp_path: Path
) -> None:
    from engine_run import create_topic

    thin, wide = unique_name("it-thin"), unique_name("it-wide")
    create_topic(stack, thin, partitions=1)
    create_topic(stack, wide, partitions=6)
    text = f"""
pipeline thin {{
  from topic "{thin}"
  to log
}}

pipeline wide {{
  from topic "{wide}"
  to log
}}
"""
    code, diagnostics, err = lint_partitions(stack, tmp_path, text, 3)

    # A warning: exit 0 (lint fails on warnings only with --strict).
    assert (code, err) == (0, "")
    assert [(d["code"], d["severity"], d["line"], d["col"], d["message"]) for d in diagnostics] == [
        (
            "LHP910",
            "warning",
            3,
            14,
            f'topic "{thin}" has 1 partition: only 1 of the 3 processes will get records from it',
        )
    ]
    assert diagnostics[0]["end_col"] == 14 + len(thin) + 2
    assert lint_partitions(stack, tmp_path, text, 3, strict=True)[0] == 1
    # Six processes: the wide topic is enough; the setting says the same as the flag.
    assert lint_partitions(stack, tmp_path, text, 6)[1][0]["line"] == 3
    assert len(lint_partitions(stack, tmp_path, text, 6)[1]) == 1
    code, diagnostics, _ = lint_partitions(stack, tmp_path, text, None, LHPIPE_PROCESSES="2")
    assert [d["code"] for d in diagnostics] == ["LHP910"]
    # Nothing declared, no `partitions` written: Kafka is not judged.
    assert lint_partitions(stack, tmp_path, text, None)[:2] == (0, [])


def test_webhook_topics_are_judged_by_what_lhpipe_creates_and_partitions_an_existing_topic_lacks(
    stack: StackAddresses, tmp_path: Path
) -> None:
    from engine_run import create_topic

    existing, missing = unique_name("it-hooks"), unique_name("it-new-hooks")
    create_topic(stack, existing, partitions=1)
    text = f"""
webhook old {{
  path = "/hooks/old"
  auth = hmac {{ preset = github  secret = env("GITHUB_SECRET") }}
  topic = "{existing}"
  partitions = 4
}}

webhook new {{
  path = "/hooks/new"
  auth = hmac {{ preset = github  secret = env("GITHUB_SECRET") }}
  topic = "{missing}"
  partitions = 2
}}

pipeline from_old {{
  from webhook old
  to log
}}

pipeline from_new {{
  from webhook new
  to log
}}
"""
    code, diagnostics, _ = lint_partitions(stack, tmp_path, text, 3)

    assert code == 0
    assert [(d["code"], d["line"], d["message"]) for d in diagnostics] == [
        (
            "LHP910",
            5,
            f'topic "{existing}" has 1 partition: only 1 of the 3 processes will get records '
            "from it",
        ),
        (
            "LHP911",
            6,
            f'topic "{existing}" exists with 1 partition, fewer than `partitions = 4`: lhpipe '
            "never changes an existing topic",
        ),
        (
            "LHP910",
            12,
            f'topic "{missing}" does not exist yet and lhpipe will create it with 2 '
            "partitions: only 2 of the 3 processes will get records from it",
        ),
    ]
    # Without --processes, only the `partitions` the existing topic lacks.
    assert [d["code"] for d in lint_partitions(stack, tmp_path, text, None)[1]] == ["LHP911"]


def test_an_unreachable_kafka_exits_2_when_partitions_are_to_be_judged(
    stack: StackAddresses, tmp_path: Path
) -> None:
    text = 'pipeline p {\n  from topic "anything"\n  to log\n}\n'
    code, diagnostics, err = lint_partitions(
        stack, tmp_path, text, 2, KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1"
    )
    assert (code, diagnostics) == (2, None)
    assert err.startswith("lhpipe lint: --online: cannot ask Kafka at 127.0.0.1:1: ")

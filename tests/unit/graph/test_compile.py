"""Compiling a checked program: the graph's shape, stable ids, and fingerprints that change
exactly when what a spec depends on changes."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from lhpipe.graph.model import CompiledProgram, NodeKind
from lhpipe.kinds import compile_program, load

SNAPSHOT = Path(__file__).with_name("snapshots") / "compiled.json"

CUSTOMER_AVSC = {
    "type": "record",
    "name": "Customer",
    "namespace": "com.example",
    "fields": [{"name": "name", "type": "string"}, {"name": "email", "type": "string"}],
}

ORDERS = """\
// orders come in signed, start a workflow, and go to a dead-letter topic when they fail
schema Order {
  order_id: string
  amount: long
  customer: Customer
}

schema Customer from "customer.avsc"

webhook orders_in {
  path = "/hooks/orders"
  auth = hmac { preset = github  secret = env("GH_SECRET") }
  body = Order
  topic = "orders"
  key = body.order_id
}

pipeline start_orders {
  from webhook orders_in
  where value.amount > 0
  let who = value.customer.name
  run_wf "process-order" {
    id = value.order_id
    variables { who = who }
  }
  on_error { dead_letter = "orders-dlq" }
}
"""

EXPORTS = """\
webhook pings {
  path = "/hooks/ping"
  auth = hmac { preset = standard_webhooks  secret = env("PING_SECRET") }
}

pipeline ping_log {
  from webhook pings
  to log
}

pipeline export_orders {
  from lh_output { kinds = [wf_run]  wf_spec = "process-order" }
  where event.status == "COMPLETED"
  to http "https://erp.example.com/orders" { body = event }
  to topic "orders-done" { key = event.wf_run_id }
}
"""


def write_program(folder: Path, orders: str = ORDERS, exports: str = EXPORTS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "orders.lhp").write_text(orders, encoding="utf-8")
    (folder / "exports.lhp").write_text(exports, encoding="utf-8")
    (folder / "customer.avsc").write_text(json.dumps(CUSTOMER_AVSC), encoding="utf-8")
    return folder


def compiled(folder: Path, settings: dict[str, str] | None = None) -> CompiledProgram:
    result = load([folder])
    assert result.program is not None, [str(d.span) + " " + d.message for d in result.diagnostics]
    assert result.diagnostics == ()
    return compile_program(result.program, settings)


def fingerprints(program: CompiledProgram) -> dict[str, str]:
    found = {f"pipeline:{n}": s.fingerprint for n, s in program.pipelines.items()}
    found.update({f"route:{n}": s.fingerprint for n, s in program.routes.items()})
    return found


def test_compiled_json_matches_snapshot(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    actual = compiled(write_program(tmp_path)).to_json()
    text = json.dumps(actual, indent=2, sort_keys=True) + "\n"
    if request.config.getoption("--update-goldens", default=False):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(text, encoding="utf-8")
    assert text == SNAPSHOT.read_text(encoding="utf-8")


def test_graph_connects_webhook_topic_pipeline_littlehorse_and_dead_letters(
    tmp_path: Path,
) -> None:
    graph = compiled(write_program(tmp_path)).graph
    kinds = {node.id: node.kind for node in graph.nodes}
    edges = {(e.src, e.dst): e.label for e in graph.edges}
    assert kinds["webhook:orders_in"] is NodeKind.WEBHOOK
    assert kinds["topic:orders"] is NodeKind.TOPIC
    assert kinds["topic:orders-dlq"] is NodeKind.DEAD_LETTER
    assert kinds["lh:wf_spec:process-order"] is NodeKind.LITTLEHORSE
    assert kinds["external:http:https://erp.example.com/orders"] is NodeKind.EXTERNAL
    chain = [
        "webhook:orders_in",
        "topic:orders",
        "pipeline:start_orders/source",
        "pipeline:start_orders/step:0",
        "pipeline:start_orders/step:1",
        "pipeline:start_orders/target:0",
        "lh:wf_spec:process-order",
        "pipeline:export_orders/source",
        "pipeline:export_orders/step:0",
        "pipeline:export_orders/target:1",
        "topic:orders-done",
    ]
    assert ("pipeline:export_orders/step:0", "pipeline:export_orders/target:0") in edges
    for src, dst in itertools.pairwise(chain):
        assert (src, dst) in edges, (src, dst)
    assert edges[("pipeline:start_orders/source", "topic:orders-dlq")] == "on error"
    # Direct mode: the webhook feeds the pipeline without a topic.
    assert ("webhook:pings", "pipeline:ping_log/source") in edges
    # Every edge joins two nodes of the graph.
    assert all(src in kinds and dst in kinds for src, dst in edges)


def test_specs_name_their_schemas_and_settings(tmp_path: Path) -> None:
    program = compiled(write_program(tmp_path))
    start = program.pipelines["start_orders"]
    assert start.schemas == ("Customer", "Order")
    assert "KAFKA_BOOTSTRAP_SERVERS" in start.settings
    assert "LHC_API_HOST" in start.settings
    assert "GH_SECRET" not in start.settings
    route = program.routes["orders_in"]
    assert route.topic == "orders"
    assert "GH_SECRET" in route.settings
    assert program.routes["pings"].direct_pipeline == "ping_log"
    assert program.pipelines["export_orders"].schemas == ()


def test_fingerprints_are_stable_across_compiles_and_layout(tmp_path: Path) -> None:
    before = fingerprints(compiled(write_program(tmp_path / "a")))
    again = fingerprints(compiled(write_program(tmp_path / "a")))
    relaid = ORDERS.replace(
        "  where value.amount > 0\n", "\n  // only real orders\n  where value.amount>0\n"
    )
    moved = fingerprints(compiled(write_program(tmp_path / "b", orders=relaid)))
    assert before == again == moved


def test_editing_a_pipeline_changes_only_its_fingerprint(tmp_path: Path) -> None:
    before = fingerprints(compiled(write_program(tmp_path / "a")))
    edited = EXPORTS.replace('"COMPLETED"', '"ERROR"')
    after = fingerprints(compiled(write_program(tmp_path / "b", exports=edited)))
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"pipeline:export_orders"}


def test_editing_a_schema_changes_the_specs_that_use_it(tmp_path: Path) -> None:
    before = fingerprints(compiled(write_program(tmp_path)))
    documented = {**CUSTOMER_AVSC, "doc": "a customer, with a doc string"}
    (tmp_path / "customer.avsc").write_text(json.dumps(documented), encoding="utf-8")
    after = fingerprints(compiled(tmp_path))
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"pipeline:start_orders", "route:orders_in"}


def test_a_direct_route_changes_with_its_pipeline(tmp_path: Path) -> None:
    before = fingerprints(compiled(write_program(tmp_path / "a")))
    edited = EXPORTS.replace("  to log\n", '  to file "pings.jsonl"\n')
    after = fingerprints(compiled(write_program(tmp_path / "b", exports=edited)))
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"pipeline:ping_log", "route:pings"}


def test_setting_values_change_exactly_the_specs_that_read_them(tmp_path: Path) -> None:
    folder = write_program(tmp_path)
    base = {"GH_SECRET": "one", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092"}
    before = fingerprints(compiled(folder, base))
    secret = fingerprints(compiled(folder, {**base, "GH_SECRET": "two"}))
    assert {n for n in before if before[n] != secret[n]} == {"route:orders_in"}
    kafka = fingerprints(compiled(folder, {**base, "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092"}))
    # ping_log and its direct-mode route touch no topic.
    assert {n for n in before if before[n] != kafka[n]} == {
        "route:orders_in",
        "pipeline:start_orders",
        "pipeline:export_orders",
    }

"""The LittleHorse metadata the example pipelines need, and the demo's task functions.

Each example pipeline that reaches LittleHorse names a WfSpec or an ExternalEventDef; the
definitions here give them the variables the pipelines send, so that every WfRun the demo starts
can run to its end:

- ``know-your-customer`` (``start_kyc``): ``full_name``, ``email``, ``country``; asks for a
  verification (task), waits for ``identity-verified`` (``verdicts``: the verdict's ``approved``),
  then opens the account (task).
- ``deploy-release`` (``deploy_release``): ``tag`` and ``repository``; deploys (task).
- ``partner-referral`` major version 2 (``referrals``, which sends the referral's top-level
  fields ``referral_id``, ``partner`` and ``email``). LittleHorse numbers major versions from 0
  and starts a new one when the set of required variables changes, so versions 0 and 1 (fewer
  required variables) are registered first.
- ``order``: ``order_id``; waits for ``payment-received`` correlated by the order id
  (``payments`` and ``legacy_payments``), then ships (task).
- ``refund`` (``refunds``): a child of ``order`` (the pipeline's ``parent`` is the order id),
  with ``order_id`` and ``amount_cents``; issues the refund (task).

Registration is idempotent: LittleHorse answers a WfSpec identical to the latest version with
that version, an ExternalEventDef or TaskDef registered again is accepted (or ALREADY_EXISTS,
taken as success), and ``partner-referral``'s versions are only added while version 2 is missing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from littlehorse.config import LHConfig
from littlehorse.model import (
    CorrelatedEventConfig,
    ExternalEventDefId,
    GetLatestWfSpecRequest,
    PutExternalEventDefRequest,
    ReturnType,
    TaskDefId,
    TypeDefinition,
    VariableType,
)
from littlehorse.worker import LHTaskWorker
from littlehorse.workflow import Workflow, WorkflowThread

log = logging.getLogger(__name__)

#: How long new metadata may take to show on the server's read side.
VISIBLE_TIMEOUT_SECONDS = 30.0

KYC_WF_SPEC = "know-your-customer"
IDENTITY_VERIFIED = "identity-verified"
PAYMENT_RECEIVED = "payment-received"
PARTNER_REFERRAL = "partner-referral"
PARTNER_REFERRAL_MAJOR_VERSION = 2


# -- task functions: the littlehorse worker requires coroutine functions ------------------------


async def request_verification(full_name: str, email: str) -> str:
    """Ask the identity verifier to check an applicant (the demo only says it did)."""
    return f"verification requested for {full_name} ({email})"


async def open_account(email: str, approved: bool) -> str:
    """Open the account of a verified applicant, or record the refusal."""
    return f"account opened for {email}" if approved else f"application of {email} declined"


async def deploy(repository: str, tag: str) -> str:
    """Deploy a published release."""
    return f"deployed {repository} {tag}"


async def ship_order(order_id: str) -> str:
    """Ship a paid order."""
    return f"order {order_id} shipped"


async def issue_refund(order_id: str, amount_cents: int) -> str:
    """Pay a refund back."""
    return f"refunded {amount_cents} cents of order {order_id}"


#: TaskDef name → the function that runs it (its signature is the TaskDef's).
TASKS: Mapping[str, Callable[..., Any]] = {
    "kyc-request-verification": request_verification,
    "kyc-open-account": open_account,
    "deploy": deploy,
    "ship-order": ship_order,
    "issue-refund": issue_refund,
}


# -- ExternalEventDefs --------------------------------------------------------------------------


@dataclass(frozen=True)
class EventDef:
    """An ExternalEventDef: its name, the type of its content, correlated or not."""

    name: str
    content: VariableType
    correlated: bool = False

    def request(self) -> Any:
        return PutExternalEventDefRequest(
            name=self.name,
            content_type=ReturnType(return_type=TypeDefinition(primitive_type=self.content)),
            correlated_event_config=CorrelatedEventConfig() if self.correlated else None,
        )


EVENT_DEFS = (
    # `verdicts` posts the verdict's `approved`.
    EventDef(IDENTITY_VERIFIED, VariableType.BOOL),
    # `payments` correlates {payment_id, amount_cents}; `legacy_payments` the JSON as it came.
    EventDef(PAYMENT_RECEIVED, VariableType.JSON_OBJ, correlated=True),
)


# -- WfSpecs ------------------------------------------------------------------------------------


def know_your_customer(wf: WorkflowThread) -> None:
    full_name = wf.declare_str("full_name").required()
    email = wf.declare_str("email").required()
    wf.declare_str("country")
    approved = wf.declare_bool("approved")
    wf.execute("kyc-request-verification", full_name, email)
    approved.assign(wf.wait_for_event(IDENTITY_VERIFIED))
    wf.execute("kyc-open-account", email, approved)


def deploy_release(wf: WorkflowThread) -> None:
    tag = wf.declare_str("tag").required()
    repository = wf.declare_str("repository").required()
    wf.execute("deploy", repository, tag)


def order(wf: WorkflowThread) -> None:
    order_id = wf.declare_str("order_id").required()
    payment = wf.declare_json_obj("payment")
    payment.assign(wf.wait_for_event(PAYMENT_RECEIVED, correlation_id=order_id))
    wf.execute("ship-order", order_id)


def refund(wf: WorkflowThread) -> None:
    order_id = wf.declare_str("order_id").required()
    amount_cents = wf.declare_int("amount_cents").required()
    wf.execute("issue-refund", order_id, amount_cents)


def partner_referral(required: tuple[str, ...]) -> Callable[[WorkflowThread], None]:
    """A version of ``partner-referral`` whose required variables are ``required`` (all
    strings); the set of required variables is what makes a new major version."""

    def entrypoint(wf: WorkflowThread) -> None:
        for name in ("referral_id", "partner", "email"):
            variable = wf.declare_str(name)
            if name in required:
                variable.required()

    return entrypoint


#: ``partner-referral``'s versions 0, 1 and 2, in the order they are registered.
PARTNER_REFERRAL_VERSIONS = (
    ("referral_id",),
    ("referral_id", "partner"),
    ("referral_id", "partner", "email"),
)

#: The WfSpecs other than ``partner-referral``, parents before children.
WF_SPECS: tuple[Workflow, ...] = (
    Workflow(KYC_WF_SPEC, know_your_customer),
    Workflow("deploy-release", deploy_release),
    Workflow("order", order),
    Workflow("refund", refund, parent_wf="order"),
)


# -- registration -------------------------------------------------------------------------------


def register_all(config: LHConfig) -> list[str]:
    """Register every ExternalEventDef, TaskDef and WfSpec above, each visible before the next
    that refers to it; returns one line per WfSpec saying which version the demo uses."""
    stub = config.stub()
    for event in EVENT_DEFS:
        _accept_existing(stub.PutExternalEventDef, event.request())
    for event in EVENT_DEFS:
        _wait_visible(
            stub.GetExternalEventDef,
            ExternalEventDefId(name=event.name),
            f"ExternalEventDef {event.name}",
        )
    for name, task in TASKS.items():
        _accept_existing(LHTaskWorker(task, name, config).register_task_def)
    for name in TASKS:
        _wait_visible(stub.GetTaskDef, TaskDefId(name=name), f"TaskDef {name}")
    lines = []
    for workflow in WF_SPECS:
        spec = _put_wf_spec(stub, workflow)
        lines.append(f"{workflow.name} {spec.id.major_version}.{spec.id.revision}")
    spec = _partner_referral(stub)
    lines.append(f"{PARTNER_REFERRAL} {spec.id.major_version}.{spec.id.revision}")
    return lines


def _put_wf_spec(stub: Any, workflow: Workflow) -> Any:
    stub.PutWfSpec(workflow.compile())
    return _wait_visible(
        stub.GetLatestWfSpec,
        GetLatestWfSpecRequest(name=workflow.name),
        f"WfSpec {workflow.name}",
    )


def _partner_referral(stub: Any) -> Any:
    """Version 2 of ``partner-referral``, registering versions 0 to 2 if it is missing."""
    wanted = GetLatestWfSpecRequest(
        name=PARTNER_REFERRAL, major_version=PARTNER_REFERRAL_MAJOR_VERSION
    )
    try:
        return stub.GetLatestWfSpec(wanted)
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.NOT_FOUND:
            raise
    for required in PARTNER_REFERRAL_VERSIONS:
        _put_wf_spec(stub, Workflow(PARTNER_REFERRAL, partner_referral(required)))
    try:
        return _wait_visible(
            stub.GetLatestWfSpec,
            wanted,
            f"WfSpec {PARTNER_REFERRAL} version {PARTNER_REFERRAL_MAJOR_VERSION}",
        )
    except TimeoutError as exc:
        # Other versions registered by someone else on a shared server shift the numbers.
        raise TimeoutError(
            f"{exc}: LittleHorse already had other versions of {PARTNER_REFERRAL}"
        ) from exc


def _accept_existing(put: Callable[..., Any], *request: Any) -> None:
    """Make a Put call; ALREADY_EXISTS means a previous demo registered it, which is fine."""
    try:
        put(*request)
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise


def _wait_visible(get: Callable[[Any], Any], request: Any, what: str) -> Any:
    """Call ``get(request)`` until it stops answering NOT_FOUND (new metadata reaches the
    server's read side a moment after the Put)."""
    deadline = time.monotonic() + VISIBLE_TIMEOUT_SECONDS
    while True:
        try:
            return get(request)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} is not visible in LittleHorse") from exc
        time.sleep(0.2)

"""The targets the service always ships with: ``demo_steps``, ``demo_durable``,
``customer_service_flow`` and ``echo``.

They drive the demo, the tests and the benchmarks, so their behaviour is part
of the contract (steps, inputs, outputs, the simulated failure). Registered
when the app is ready (``executions.apps``), like any deployment's targets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .context import RunContext
from .registry import Integer, Number, String, agent, pipeline

DEMO_MAX_STEPS = 10_000
DURABLE_DEMO_MAX_STEPS = 1_000


def _demo_step_names(inputs: Mapping[str, Any]) -> list[str]:
    return [f"step_{i}" for i in range(1, int(inputs.get("steps", 5)) + 1)]


def _demo_cross_check(inputs: Mapping[str, Any]) -> dict[str, list[str]]:
    fail_at = inputs.get("fail_at_step")
    if fail_at is not None and fail_at > inputs["steps"]:
        return {"fail_at_step": [f"Ensure this value is less than or equal to steps ({inputs['steps']})."]}
    return {}


@pipeline(
    "demo_steps",
    steps=_demo_step_names,
    inputs={
        "steps": Integer(minimum=1, maximum=DEMO_MAX_STEPS, default=5, description="How many steps to run."),
        "step_seconds": Number(minimum=0, maximum=60, default=1.0, description="How long each step sleeps."),
        "fail_at_step": Integer(
            minimum=1, maximum=DEMO_MAX_STEPS, default=None, nullable=True,
            description="Fail on entering this step (1..steps), or null to succeed.",
        ),
    },
    cross_check=_demo_cross_check,
)
def demo_steps(ctx: RunContext) -> dict[str, Any]:
    """Runs N steps of step_seconds each; can be told to fail at a step."""
    fail_at = ctx.inputs["fail_at_step"]
    for number, name in enumerate(ctx.steps, start=1):
        ctx.enter_step(name)
        if number == fail_at:
            raise ValueError(f"Simulated failure at step {number}")
        ctx.sleep(ctx.inputs["step_seconds"])
    return {"steps_completed": len(ctx.steps)}


def _durable_step_names(inputs: Mapping[str, Any]) -> list[str]:
    return [f"step_{i}" for i in range(1, int(inputs.get("steps", 6)) + 1)]


@pipeline(
    "demo_durable",
    steps=_durable_step_names,
    inputs={
        "steps": Integer(minimum=1, maximum=DURABLE_DEMO_MAX_STEPS, default=6, description="How many steps to run."),
        "step_seconds": Number(minimum=0, maximum=60, default=1.0, description="How long each step sleeps."),
        "fail_at_step": Integer(
            minimum=1, maximum=DURABLE_DEMO_MAX_STEPS, default=None, nullable=True,
            description="Fail on entering this step (1..steps), or null to succeed; not applied when resuming "
            "from the failed step.",
        ),
    },
    cross_check=_demo_cross_check,
    durable=True,
)
def demo_durable(ctx: RunContext) -> dict[str, Any]:
    """Runs N stored steps of step_seconds each; a run handed over goes on at its first step not completed."""
    fail_at = None if ctx.from_failed_step else ctx.inputs["fail_at_step"]

    def run_step(number: int, name: str) -> dict[str, Any]:
        if number == fail_at:
            raise ValueError(f"Simulated failure at step {number}")
        ctx.sleep(ctx.inputs["step_seconds"])
        # Who actually ran it: a step reused later keeps this.
        return {"name": name, "execution_id": ctx.execution_id, "attempt": ctx.attempt}

    results = [ctx.step(name, run_step, number, name) for number, name in enumerate(ctx.steps, start=1)]
    return {"steps": results}


_INTENTS = {
    "billing": ("invoice", "refund", "charge", "payment", "bill"),
    "shipping": ("delivery", "shipping", "package", "track", "order"),
    "account": ("password", "login", "account", "email"),
}

_ANSWERS = {
    "billing": "I have opened a billing ticket; our team will review your charges within one business day.",
    "shipping": "Your order is on its way; you can follow it with the tracking link in your confirmation email.",
    "account": "You can reset your password from the login page with the 'Forgot password' link.",
    "general": "Thank you for reaching out; a member of our team will answer you shortly.",
}


@pipeline(
    "customer_service_flow",
    steps=["classify", "retrieve", "respond"],
    inputs={"customer_query": String(min_length=1, max_length=10_000, description="The customer's question.")},
)
def customer_service_flow(ctx: RunContext) -> dict[str, Any]:
    """Classifies a customer query, retrieves an answer and writes the response."""
    query = ctx.inputs["customer_query"]
    ctx.enter_step("classify")
    words = query.lower()
    intent = next((name for name, keys in _INTENTS.items() if any(k in words for k in keys)), "general")
    ctx.sleep(0.2)
    ctx.enter_step("retrieve")
    answer = _ANSWERS[intent]
    ctx.sleep(0.2)
    ctx.enter_step("respond")
    ctx.sleep(0.2)
    return {"intent": intent, "response": answer}


@agent("echo", steps=["echo"])
def echo(ctx: RunContext) -> dict[str, Any]:
    """Returns its inputs unchanged."""
    ctx.enter_step("echo")
    return {"output": ctx.inputs}

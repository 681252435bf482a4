"""An agent that streams its work as it goes, and a client that shows it live.

The agent, ``research_assistant``, answers a question from a few sources. Its steps are
what it is doing, named from its inputs before it starts (``plan``, ``read source 1 of
3``, ..., ``write the answer``): every step it enters is one progress event, so anyone
watching sees the work as it happens, over the WebSocket, Server-Sent Events, the pages
or the widget. Writing the answer takes a while; it reports how much is written
(``ctx.report``), so the bar moves within that step too. The answer and the sources it
read are its outputs. (A real agent would call a model and fetch pages here; this one
sleeps instead, so that it runs anywhere.)

**Registering it**: like ``examples/substep_pipeline.py``, through the setting that names
modules of targets, in every web and worker process::

    EXECUTION_TARGET_MODULES=examples.streaming_agent python3 dev.py run

**Watching it**, from the repository root::

    .venv/bin/python -m examples.streaming_agent --url http://127.0.0.1:8000 --token <token> \\
        --question "Why is the sky blue?" --sources 3

It prints each step as the agent enters it, then the answer. Exits 0 when it completed.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from executions.registry import Integer, Number, String, agent
from progress_client import Client, ProgressClientError

if TYPE_CHECKING:
    from executions.context import RunContext

TARGET_ID = "research_assistant"


def research_steps(inputs: Mapping[str, Any]) -> list[str]:
    """The agent's plan, known from its inputs: the steps a watcher will see, in order."""
    sources = int(inputs.get("sources", 3))
    return ["plan", *(f"read source {n} of {sources}" for n in range(1, sources + 1)), "write the answer"]


@agent(
    TARGET_ID,
    steps=research_steps,
    inputs={
        "question": String(min_length=1, max_length=500, description="What to find out."),
        "sources": Integer(minimum=1, maximum=10, default=3, description="How many sources to read."),
        "seconds": Number(minimum=0, maximum=10, default=0.4, description="How long each piece of work takes."),
    },
)
def research_assistant(ctx: RunContext) -> dict[str, Any]:
    """Plans, reads each source, then writes an answer: each piece of work a step."""
    question, pause = ctx.inputs["question"], ctx.inputs["seconds"]
    ctx.enter_step("plan")
    ctx.sleep(pause)
    notes = []
    for number in range(1, ctx.inputs["sources"] + 1):
        ctx.enter_step()  # the next declared step: "read source <number> of <n>"
        ctx.sleep(pause)
        notes.append(f"source {number} of {ctx.inputs['sources']} was read and summarised")
    ctx.enter_step("write the answer")
    sentences = [f"An answer to {question!r}, from {len(notes)} sources:", *(f"{note}." for note in notes)]
    for written in range(1, len(sentences) + 1):
        ctx.sleep(pause / len(sentences))
        ctx.report(written / len(sentences))
    return {"answer": " ".join(sentences), "sources": len(notes)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Start research_assistant and show its work live.")
    parser.add_argument("--url", default=os.environ.get("PROGRESS_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--token", default=os.environ.get("PROGRESS_TOKEN", ""))
    parser.add_argument("--question", default="Why is the sky blue?")
    parser.add_argument("--sources", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=0.4)
    args = parser.parse_args(argv)
    inputs = {"question": args.question, "sources": args.sources, "seconds": args.seconds}
    try:
        with Client(args.url, args.token) as client:
            execution_id = client.start(TARGET_ID, inputs, type="agent")["execution_id"]
            print(f"asked {execution_id}: {args.question}")
            shown = None
            for frame in client.watch(execution_id):
                progress = frame.get("progress") or {}
                step = progress.get("current_step_name")
                if step and step != shown:
                    print(f"  [{progress['current_step'] + 1}/{progress['total_steps']}] {step}…")
                    shown = step
                if frame["type"] == "completed":
                    answer = frame["outputs"]["answer"]  # the terminal frame carries the outputs
                    print("answer:\n" + textwrap.indent(textwrap.fill(answer, 88), "  "))
                    return 0
                if frame["type"] in ("failed", "cancelled"):
                    print(f"the agent {frame['type']}: {frame.get('error')}", file=sys.stderr)
                    return 1 if frame["type"] == "failed" else 2
    except ProgressClientError as exc:
        hint = " (is the server started with EXECUTION_TARGET_MODULES=examples.streaming_agent?)"
        print(f"error: {exc}{hint if 'not found' in str(exc) else ''}", file=sys.stderr)
        return 3
    return 3


if __name__ == "__main__":
    sys.exit(main())

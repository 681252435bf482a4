"""A pipeline that reports progress within its steps, and a client that watches it.

The pipeline, ``batch_resize``: three steps (``fetch``, ``resize``, ``upload``); the long
one, ``resize``, reports after every image how far through it is (``ctx.report(done /
total)``), so the bar moves smoothly between the step boundaries (33.33 % and 66.67 %
here) instead of jumping once per step. Reports are cheap: the run context records at
most one per ``PROGRESS_COALESCE_SECONDS`` (0.1 s) and folds the others into it; entering a
step is always recorded.

**Registering it.** Declaring it here is enough for a process that imports this module.
The server imports the modules named in ``EXECUTION_TARGET_MODULES`` (comma-separated,
read by ``config/settings.py``, imported by ``executions/apps.py`` when the app is ready),
in every web and worker process; the project never imports ``examples`` otherwise::

    EXECUTION_TARGET_MODULES=examples.substep_pipeline python3 dev.py run

(In an app of your own, import your module from its ``AppConfig.ready()`` instead, as
``executions/apps.py`` does with ``executions/targets.py``.)

**Watching it**, from the repository root, with the token ``dev.py run`` prints::

    .venv/bin/python -m examples.substep_pipeline --url http://127.0.0.1:8000 --token <token> --images 30

It starts a run and prints each frame as ``progress_client`` delivers it (WebSocket, then
Server-Sent Events, then polling; never a frame lost or repeated): the percentage
creeping up within ``resize``. Exits 0 when the run completed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from executions.registry import Integer, Number, pipeline
from progress_client import Client, ProgressClientError

if TYPE_CHECKING:
    from executions.context import RunContext

TARGET_ID = "batch_resize"


@pipeline(
    TARGET_ID,
    steps=["fetch", "resize", "upload"],
    inputs={
        "images": Integer(minimum=1, maximum=500, default=40, description="How many images to resize."),
        "seconds_per_image": Number(minimum=0, maximum=5, default=0.05, description="How long each one takes."),
    },
)
def batch_resize(ctx: RunContext) -> dict[str, Any]:
    """Fetches a batch of images, resizes them one by one (reporting each), uploads them."""
    images, pause = ctx.inputs["images"], ctx.inputs["seconds_per_image"]
    ctx.enter_step("fetch")
    ctx.sleep(pause * 2)
    ctx.enter_step("resize")
    for done in range(1, images + 1):
        ctx.sleep(pause)  # the work on one image; wakes at once on cancel or timeout
        ctx.report(done / images)  # the fraction of this step; cheap, coalesced
    ctx.enter_step("upload")
    ctx.sleep(pause * 2)
    return {"resized": images}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Start batch_resize and watch its sub-step progress.")
    parser.add_argument("--url", default=os.environ.get("PROGRESS_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--token", default=os.environ.get("PROGRESS_TOKEN", ""))
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--seconds-per-image", type=float, default=0.05)
    args = parser.parse_args(argv)
    inputs = {"images": args.images, "seconds_per_image": args.seconds_per_image}
    try:
        with Client(args.url, args.token) as client:
            execution_id = client.start(TARGET_ID, inputs, type="pipeline")["execution_id"]
            print(f"started {execution_id} ({args.images} images)")
            for frame in client.watch(execution_id):
                progress = frame.get("progress") or {}
                step = progress.get("current_step_name") or ""
                percentage = f"{progress['percentage']:6.2f}%" if progress else ""
                print(f"#{frame.get('seq', '-'):<4} {frame['type']:<10} {percentage:>7}  {step}")
                if frame["type"] in ("completed", "failed", "cancelled"):
                    return {"completed": 0, "failed": 1, "cancelled": 2}[frame["type"]]
    except ProgressClientError as exc:
        hint = " (is the server started with EXECUTION_TARGET_MODULES=examples.substep_pipeline?)"
        print(f"error: {exc}{hint if 'not found' in str(exc) else ''}", file=sys.stderr)
        return 3
    return 3


if __name__ == "__main__":
    sys.exit(main())

"""Runnable examples of the executions service, each against ``python3 dev.py run``.

Run them from the repository root with the project's virtualenv (it has httpx and
websockets), with the URL and the demo token ``dev.py run`` prints::

    export PROGRESS_URL=http://127.0.0.1:8000 PROGRESS_TOKEN=<token>
    .venv/bin/python examples/api_progress_query_demo.py
    .venv/bin/python examples/rest_polling.py --input steps=5
    .venv/bin/python examples/ws_watch.py --input steps=5
    examples/sse_watch.sh <execution id>

The two that declare a target of their own (``substep_pipeline``, ``streaming_agent``)
must be loaded by the server too: start it with
``EXECUTION_TARGET_MODULES=examples.substep_pipeline,examples.streaming_agent python3 dev.py run``
and run them as modules (``.venv/bin/python -m examples.substep_pipeline``). The
project never imports this package unless that setting names it. Each file's
docstring says what it shows; docs/guides/examples.md lists them, and
``tests/examples/`` runs every one against the live stack.
"""

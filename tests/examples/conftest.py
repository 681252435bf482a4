"""The stack the examples run against (running them: tests/examples/helpers.py).

``examples_stack`` is a live stack of its own (``manage.py serve`` and a Celery worker
on the test database) whose processes load the examples' targets through
``EXECUTION_TARGET_MODULES``, as the examples' docstrings tell a user to start the
server. Its Redis database is another than the session stack's, so neither worker
takes the other's tasks (a worker without the examples' targets could not run them).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests import stack as stack_module

#: The examples' own Redis database (the session stack uses 0, the fuzzing stack 9).
EXAMPLES_REDIS_DB = 8
EXAMPLE_TARGET_MODULES = "examples.substep_pipeline,examples.streaming_agent"


@pytest.fixture(scope="module")
def examples_stack(
    django_db_setup: None, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[stack_module.LiveStack]:
    env = stack_module.stack_env(
        urlsplit(redis_url)._replace(path=f"/{EXAMPLES_REDIS_DB}").geturl(),
        EXECUTION_TARGET_MODULES=EXAMPLE_TARGET_MODULES,
    )
    env.pop("CELERY_BROKER_URL", None)
    with stack_module.running_stack(env, tmp_path_factory.mktemp("examples-logs")) as stack:
        yield stack


@pytest.fixture
def example_token(api_user: tuple[Any, str]) -> str:
    return api_user[1]

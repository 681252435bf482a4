"""Fuzzing the API with Schemathesis against a real daphne and Celery worker.

Every test here is ``live`` (tests/conftest.py; ``-m "not live"`` skips them). The fuzz run
gets its own stack rather than the session's ``live_stack``: it needs other
settings (no throttling, short runs) and a Redis database of its own, so the
executions it submits never queue behind, or in front of, other tests' work.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests import stack as stack_module

# The fuzzer sends hundreds of submits and token requests: the throttles would
# answer most of them with 429 (documented, but then the real endpoint goes
# untested). A demo_steps run may ask for 10000 steps of 60 s each.
FUZZ_ENV = {
    "THROTTLE_SUBMIT_RATE": "100000/min",
    "THROTTLE_CANCEL_RATE": "100000/min",
    "THROTTLE_TOKEN_RATE": "100000/min",
    "EXECUTION_MAX_SECONDS": "2",
    "LOG_LEVEL": "WARNING",
}
# A Redis database of its own: broker queue, channel layer and throttle counters.
FUZZ_REDIS_DB = 9


@pytest.fixture
def fuzz_stack(
    api_user: tuple[Any, str],
    django_db_setup: None,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[stack_module.LiveStack]:
    """daphne and a worker on the test database, configured for fuzzing.

    Depends on ``api_user`` so that it stops (the worker finishing or dropping
    what the fuzzer queued) before the test database is flushed.
    """
    env = stack_module.stack_env(urlsplit(redis_url)._replace(path=f"/{FUZZ_REDIS_DB}").geturl(), **FUZZ_ENV)
    env.pop("CELERY_BROKER_URL", None)
    with stack_module.running_stack(env, tmp_path_factory.mktemp("fuzz-logs")) as stack:
        yield stack

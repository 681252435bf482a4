"""Tests of the operator's endpoints and the metrics: in this process, except ``test_live.py`` (the real stack)."""

from tests.offline import offline  # noqa: F401 - an autouse fixture

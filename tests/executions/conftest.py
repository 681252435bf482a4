"""Tests in this process only: see tests/offline.py."""

from tests.offline import offline  # noqa: F401 - an autouse fixture

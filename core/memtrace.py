"""Heap snapshots of a running web process, for hunting memory leaks (off by default).

With ``MEMORY_TRACE_DIR`` set, :func:`install_from_environment` (called by the
ASGI module) starts tracemalloc (``MEMORY_TRACE_FRAMES`` deep, 25 by default),
and every ``SIGUSR2`` writes a snapshot of the live heap, after a full garbage
collection, to ``<dir>/<pid>-<n>.tracemalloc``. Comparing two snapshots
(``python -m bench.soak --trace``) shows what each connection leaves behind.
tracemalloc makes the process much larger and slower: for measurements only.
"""


from __future__ import annotations

import gc
import itertools
import logging
import os
import signal
import tracemalloc
from pathlib import Path
from types import FrameType

logger = logging.getLogger(__name__)

ENV_DIR = "MEMORY_TRACE_DIR"
ENV_FRAMES = "MEMORY_TRACE_FRAMES"
DEFAULT_FRAMES = 25
SNAPSHOT_SIGNAL = signal.SIGUSR2
SNAPSHOT_SUFFIX = ".tracemalloc"

_directory: Path | None = None
_numbers = itertools.count(1)


def install_from_environment() -> bool:
    """Start tracing and listen for ``SIGUSR2`` if ``MEMORY_TRACE_DIR`` is set; return whether it is.

    Must run in the main thread (signal handlers can only be installed there),
    which is where daphne imports the ASGI application. A signal and a file
    rather than an endpoint: nothing is exposed over HTTP, the snapshot is
    taken without a measuring client in the heap, and the slow, memory-hungry
    comparison runs in another process.
    """
    global _directory  # noqa: PLW0603 - the signal handler writes where this call says, once per process
    directory = os.environ.get(ENV_DIR, "").strip()
    if not directory:
        return False
    _directory = Path(directory)
    _directory.mkdir(parents=True, exist_ok=True)
    frames = int(os.environ.get(ENV_FRAMES) or DEFAULT_FRAMES)
    if not tracemalloc.is_tracing():
        tracemalloc.start(frames)
    signal.signal(SNAPSHOT_SIGNAL, _on_signal)
    logger.warning(
        "memory tracing on (%d frames): send SIGUSR2 to %d for a snapshot in %s", frames, os.getpid(), _directory
    )
    return True


def snapshot_path(directory: Path, pid: int, number: int) -> Path:
    """Where snapshot ``number`` of process ``pid`` goes (numbered from 1, in the order taken)."""
    return directory / f"{pid}-{number:03d}{SNAPSHOT_SUFFIX}"


def dump_snapshot() -> Path:
    """Collect garbage, snapshot the heap, write it (atomically: a reader never sees half a file)."""
    if _directory is None:
        raise RuntimeError(f"{ENV_DIR} is not set")
    gc.collect()
    snapshot = tracemalloc.take_snapshot()
    path = snapshot_path(_directory, os.getpid(), next(_numbers))
    partial = path.with_suffix(".partial")
    snapshot.dump(str(partial))
    partial.rename(path)
    return path


def _on_signal(signum: int, frame: FrameType | None) -> None:
    try:
        path = dump_snapshot()
    except Exception:
        logger.exception("memory snapshot failed")
        return
    logger.warning("memory snapshot written to %s", path)

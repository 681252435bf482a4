"""What ``watch`` writes for each frame when its output is not a terminal (``progress_client.cli.frame_line``).

Plain functions of a frame: no server. The live CLI tests (``test_cli``) read
the same lines from a real watch.
"""

from __future__ import annotations

from progress_client.cli import Clock, frame_line


def test_a_resumed_frame_says_where_the_run_goes_on_and_which_attempt() -> None:
    clock = Clock(None)
    frame = {
        "type": "resumed", "execution_id": "exec_0123456789ab", "status": "running", "attempt": 2, "seq": 6,
        "progress": {"current_step": 3, "total_steps": 6, "percentage": 50.0, "current_step_name": None,
                     "eta_seconds": 3.0},
        "timestamp": "2026-12-07T10:00:00.000000Z",
    }
    clock.update(frame)
    assert frame_line(frame, clock) == "seq=6 resumed at step 4, attempt 2 50.00% eta 0:00:03"


def test_a_progress_frame_names_its_step() -> None:
    clock = Clock(None)
    frame = {
        "type": "progress", "execution_id": "exec_0123456789ab", "status": "running", "seq": 3,
        "progress": {"current_step": 1, "total_steps": 3, "percentage": 33.33, "current_step_name": "step_2",
                     "eta_seconds": None},
        "timestamp": "2026-12-07T10:00:00.000000Z",
    }
    clock.update(frame)
    assert frame_line(frame, clock) == "seq=3 progress 33.33% step 2/3 step_2"

"""``python -m progress_client`` as a user runs it, against the live stack.

Its output is not a terminal here, so ``watch`` writes one line per frame;
the exit codes are the contract's: 0 completed, 1 failed, 2 cancelled, 3
usage, authentication or connection error.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from devtools import processes
from progress_client import Client

from .conftest import Cli

pytestmark = pytest.mark.e2e

LINE = re.compile(r"^seq=(\d+) (\w+)")


def frame_lines(stdout: str) -> list[tuple[int, str, str]]:
    """(seq, type, line) of each line of a non-terminal watch."""
    lines = []
    for line in stdout.splitlines():
        match = LINE.match(line)
        assert match, f"not a frame line: {line!r}"
        lines.append((int(match.group(1)), match.group(2), line))
    return lines


def test_start_watch_completed_exits_0_with_a_line_per_frame(cli: Cli) -> None:
    done = cli.run("start", "demo_steps", "--input", "steps=3", "--input", "step_seconds=0.2", "--watch")
    assert done.returncode == 0, done.stderr
    execution_id = done.stderr.split()[0]
    assert re.fullmatch(r"exec_[0-9a-f]{12}", execution_id)
    lines = frame_lines(done.stdout)
    assert lines[0][1] == "status" and lines[-1][1] == "completed"
    seqs = [seq for seq, _, _ in lines[1:]]
    assert seqs == list(range(lines[0][0] + 1, 6))
    assert lines[-1][2] == 'seq=5 completed 100.00% outputs {"steps_completed":3}'
    steps = [line for _, kind, line in lines if kind == "progress"]
    assert all(re.search(r" \d+\.\d\d% step \d/3 step_\d", line) for line in steps), steps


def test_failed_exits_1_and_prints_the_error(cli: Cli) -> None:
    failed = cli.run("start", "demo_steps", "--inputs-json", '{"steps": 3, "step_seconds": 0.1}',
                     "--input", "fail_at_step=2", "--watch")
    assert failed.returncode == 1
    assert "failed: ValueError: Simulated failure at step 2" in failed.stderr
    assert frame_lines(failed.stdout)[-1][1] == "failed"


def test_cancelled_exits_2(cli: Cli, client: Client) -> None:
    execution_id = client.start("demo_steps", {"steps": 1, "step_seconds": 30})["execution_id"]
    watching = cli.popen("watch", execution_id)
    assert watching.stdout is not None
    first = watching.stdout.readline()
    assert first.startswith("seq=") and ("step_1" in first or "status pending" in first or "started" in first)
    client.cancel(execution_id)
    out, err = watching.communicate(timeout=30)
    assert watching.returncode == 2, err
    assert frame_lines(first + out)[-1][1] == "cancelled"


def test_usage_authentication_and_connection_errors_exit_3(cli: Cli, live_stack: Any) -> None:
    unknown = cli.run("watch", "exec_000000000000")
    assert unknown.returncode == 3 and "Execution 'exec_000000000000' not found" in unknown.stderr
    bad_token = cli.run("watch", "exec_000000000000", PROGRESS_TOKEN="not-a-token")
    assert bad_token.returncode == 3 and "Invalid token." in bad_token.stderr
    nowhere = cli.run("--retries", "1", "watch", "exec_000000000000",
                      PROGRESS_URL=f"http://127.0.0.1:{processes.free_port()}")
    assert nowhere.returncode == 3 and "error:" in nowhere.stderr
    no_token = cli.run("list", PROGRESS_TOKEN="")
    assert no_token.returncode == 3 and "PROGRESS_TOKEN" in no_token.stderr
    for args in (["start", "demo_steps", "--input", "steps"], ["start"], ["watch"], ["frobnicate"],
                 ["start", "demo_steps", "--type", "robot"], ["start", "nope", "--watch"]):
        assert cli.run(*args).returncode == 3, args


def test_start_and_deploy_in_a_shell(cli: Cli) -> None:
    ok = cli.shell('pc start demo_steps --input steps=2 --input step_seconds=0.1 --watch > /dev/null && echo deployed')
    assert ok.returncode == 0 and ok.stdout.strip() == "deployed", ok.stderr
    failed = cli.shell('pc start demo_steps --input steps=2 --input step_seconds=0 --input fail_at_step=1 --watch '
                       '> /dev/null && echo deployed; echo "exit $?"')
    assert failed.stdout.strip() == "exit 1"


def test_start_prints_the_id_and_reads_values_as_json_or_text(cli: Cli, client: Client) -> None:
    started = cli.run("start", "echo", "--input", "n=3", "--input", "word=hello", "--input", 'obj={"a":[1,true]}',
                      "--input", 'quoted="7"')
    assert started.returncode == 0, started.stderr
    execution_id = started.stdout.strip()
    assert client.get(execution_id)["inputs"] == {"n": 3, "word": "hello", "obj": {"a": [1, True]}, "quoted": "7"}
    assert client.get(execution_id)["type"] == "agent", "looked up in /targets"


def test_watch_json_gives_the_raw_frames(cli: Cli, client: Client) -> None:
    execution_id = client.start("demo_steps", {"steps": 2, "step_seconds": 0})["execution_id"]
    client_frames = list(client.watch(execution_id))
    watched = cli.run("watch", execution_id, "--json")
    assert watched.returncode == 0
    frames = [json.loads(line) for line in watched.stdout.splitlines()]
    assert [f["type"] for f in frames] == ["status", "completed"]
    assert frames[1] == client_frames[-1]


@pytest.mark.parametrize("transports", ["sse", "poll"])
def test_watch_over_a_forced_transport(cli: Cli, transports: str) -> None:
    done = cli.run("--transports", transports, "--poll-interval", "0.2", "start", "demo_steps",
                   "--input", "steps=3", "--input", "step_seconds=0.2", "--watch")
    assert done.returncode == 0, done.stderr
    assert frame_lines(done.stdout)[-1][1] == "completed"


def test_list_and_cancel(cli: Cli, client: Client) -> None:
    ended = client.start("echo", {}, type="agent")["execution_id"]
    list(client.watch(ended))
    running = client.start("demo_steps", {"steps": 1, "step_seconds": 30})["execution_id"]

    listed = cli.run("list", "--status", "completed")
    assert listed.returncode == 0
    assert [line.split("\t")[:2] for line in listed.stdout.splitlines()] == [[ended, "completed"]]
    as_json = cli.run("list", "--json")
    assert {json.loads(line)["execution_id"] for line in as_json.stdout.splitlines()} == {ended, running}

    cancelled = cli.run("cancel", running)
    assert cancelled.returncode == 0 and cancelled.stdout.startswith(f"{running} cancelled at ")
    again = cli.run("cancel", running)
    assert again.returncode == 1 and "Cannot cancel execution with status 'cancelled'" in again.stderr


def test_a_watch_across_a_daphne_restart_shows_every_step_once(cli: Cli, client: Client, live_stack: Any) -> None:
    steps = 12
    execution_id = client.start("demo_steps", {"steps": steps, "step_seconds": 0.4})["execution_id"]
    watching = cli.popen("watch", execution_id)
    assert watching.stdout is not None
    seen = []
    while not any("step_3" in line for line in seen):
        line = watching.stdout.readline()
        assert line, "the watch ended early"
        seen.append(line)
    live_stack.restart_daphne()  # SIGTERM, as in a deploy
    out, err = watching.communicate(timeout=60)
    assert watching.returncode == 0, err
    lines = frame_lines("".join(seen) + out)
    assert lines[-1][1] == "completed"
    seqs = [seq for seq, _, _ in lines[1:]]
    assert seqs == list(range(lines[0][0] + 1, steps + 3)), seqs
    for k in range(1, steps + 1):
        shown = [line for _, _, line in lines if re.search(rf" step_{k}\b", line)]
        assert len(shown) <= 1, shown
    named = {int(m.group(1)) for _, _, line in lines if (m := re.search(r" step_(\d+)\b", line))}
    first = min(named)
    assert named == set(range(first, steps + 1)), "every step from the first one seen, once"


def test_a_watch_across_a_reload_prints_every_step_once(cli: Cli, client: Client, live_stack: Any) -> None:
    """SIGHUP to serve (a deploy on one machine): the watch is told to come back (1012) and
    resumes after the last seq it printed, so each step shows once and none is missing."""
    steps = 25
    execution_id = client.start("demo_steps", {"steps": steps, "step_seconds": 0.4})["execution_id"]
    watching = cli.popen("watch", execution_id)
    assert watching.stdout is not None
    seen = []
    while not any("step_3" in line for line in seen):
        line = watching.stdout.readline()
        assert line, "the watch ended early"
        seen.append(line)
    replaced = live_stack.reload_web()
    live_stack.wait_reloaded(replaced)  # the old processes drained while the run went on
    assert client.get(execution_id)["status"] == "running", "the run ended before the reload: nothing was cut"
    out, err = watching.communicate(timeout=60)
    assert watching.returncode == 0, err
    lines = frame_lines("".join(seen) + out)
    assert lines[-1][1] == "completed"
    seqs = [seq for seq, _, _ in lines[1:]]
    assert seqs == list(range(lines[0][0] + 1, steps + 3)), seqs
    named = [int(m.group(1)) for _, _, line in lines if (m := re.search(r" step_(\d+)\b", line))]
    assert named == list(range(named[0], steps + 1)), "every step from the first one seen, once, in order"

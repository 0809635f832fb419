"""Running tools: a timeout ends the whole command, a missing tool is named."""

import itertools
import os
import signal
import sys
import time

import pytest

from iscsi_ha import commands
from iscsi_ha.errors import CommandFailed, ToolMissing


def gone(pid):
    deadline = time.time() + 5
    while time.time() < deadline:
        try:
            with open("/proc/%d/stat" % pid) as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except (IOError, OSError):
            return True
        time.sleep(0.01)
    return False


def test_a_timeout_kills_what_the_command_started_too():
    # drbdadm starts drbdsetup and handlers: a timeout must not leave them running.
    with pytest.raises(CommandFailed) as caught:
        commands.run(["sh", "-c", "sleep 30 & echo $!; wait"], timeout=0.5)
    assert caught.value.timed_out
    assert "timed out" in caught.value.message
    assert gone(int(caught.value.stdout.split()[0]))


def test_failure_carries_exit_code_and_output():
    with pytest.raises(CommandFailed) as caught:
        commands.run(["sh", "-c", "echo refused >&2; exit 11"])
    assert caught.value.returncode == 11
    assert caught.value.message == "sh -c echo refused >&2; exit 11 exited with code 11: refused"
    assert commands.run(["sh", "-c", "exit 3"], check=False).returncode == 3


def test_a_missing_tool_names_the_config_section():
    with pytest.raises(ToolMissing) as caught:
        commands.run(["/nonexistent/tgtadm", "--op", "show"])
    assert caught.value.message.startswith("/nonexistent/tgtadm: cannot run it")
    assert "[tools]" in caught.value.message


def test_find_tool_looks_on_path_or_takes_a_path(tmp_path):
    tool = tmp_path / "drbdadm"
    tool.write_text(u"#!/bin/sh\n")
    os.chmod(str(tool), 0o755)
    assert commands.find_tool("drbdadm", path=str(tmp_path)) == str(tool)
    assert commands.find_tool(str(tool)) == str(tool)
    assert commands.find_tool("drbdadm", path="/nonexistent") is None


# A child that starts a grandchild which leaves the process group (setsid) and
# keeps the inherited stdout/stderr open for a minute, then sleeps for CHILD_SLEEP.
GRANDCHILD = """
import os, sys, time
pid = os.fork()
if pid == 0:
    os.setsid()
    time.sleep(60)
    os._exit(0)
sys.stdout.write("grandchild %d\\n" % pid)
sys.stdout.flush()
time.sleep(float(sys.argv[1]))
"""


def kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def grandchild_of(output):
    return int(output.split("grandchild ")[1].split()[0])


def test_a_grandchild_holding_the_pipes_does_not_hold_a_finished_command():
    started = time.time()
    result = commands.run([sys.executable, "-c", GRANDCHILD, "0"], timeout=20)
    try:
        assert time.time() - started < 30  # the grandchild would hold the pipes 60 s
        assert result.returncode == 0
        assert "grandchild" in result.stdout
    finally:
        kill(grandchild_of(result.stdout))


def test_a_timeout_returns_although_a_grandchild_holds_the_pipes():
    started = time.time()
    with pytest.raises(CommandFailed) as caught:
        commands.run([sys.executable, "-c", GRANDCHILD, "60"], timeout=1)
    try:
        assert time.time() - started < 30
        assert caught.value.timed_out
        assert "grandchild" in caught.value.stdout  # what it wrote before is kept
    finally:
        kill(grandchild_of(caught.value.stdout))


def test_a_command_ignoring_sigterm_is_still_ended_at_the_timeout():
    with pytest.raises(CommandFailed) as caught:
        commands.run(["sh", "-c", "trap '' TERM; echo $$; sleep 30 & wait; sleep 30"],
                     timeout=0.5)
    assert caught.value.timed_out
    assert gone(int(caught.value.stdout.split()[0]))


def test_a_kill_without_effect_does_not_hold_the_call(monkeypatch):
    # SIGKILL does not end a process in uninterruptible sleep until the kernel
    # lets it go: model a kill that has no effect.
    monkeypatch.setattr(commands, "_kill_group", lambda process: None)
    started = time.time()
    with pytest.raises(CommandFailed) as caught:
        commands.run(["sh", "-c", "echo $$; exec sleep 60"], timeout=0.5)
    try:
        assert time.time() - started < 30
        assert caught.value.timed_out
        assert caught.value.returncode is None
    finally:
        kill(int(caught.value.stdout.split()[0]))


def test_a_wall_clock_step_does_not_move_timings(monkeypatch):
    steps = itertools.count(0, -1000)  # the wall clock steps back 1000 s each time
    monkeypatch.setattr(time, "time", lambda: float(next(steps)))
    result = commands.run(["sh", "-c", "exit 0"])
    assert 0 <= result.seconds < 1000
    with pytest.raises(CommandFailed) as caught:
        commands.run(["sleep", "30"], timeout=0.2)
    assert caught.value.timed_out


def advances(clock):
    first = clock()
    time.sleep(0.05)
    second = clock()
    return first < second and clock() >= second


def test_the_monotonic_clock_ignores_the_wall_clock(monkeypatch):
    monkeypatch.setattr(time, "time", lambda: 0.0)
    assert advances(commands.monotonic)


def test_the_libc_clock_is_the_kernels_monotonic_clock():
    libc_clock = commands._libc_monotonic()  # what 2.7 uses
    assert libc_clock is not None and advances(libc_clock)
    if hasattr(time, "monotonic"):
        assert abs(libc_clock() - time.monotonic()) < 1


def test_the_last_resort_clock_advances_too():
    assert advances(commands._elapsed_ticks)


def test_background_gives_the_callers_thread_the_value_or_the_error():
    def fails():
        raise CommandFailed(["tool"], 3, "", "refused")
    assert commands.Background(lambda: commands.run(["echo", "beside"]).stdout).result() \
        == "beside\n"
    with pytest.raises(CommandFailed):
        commands.Background(fails).result()


def test_commands_run_beside_each_other_each_in_its_own_group():
    group = [sys.executable, "-c", "import os; print(os.getpgrp())"]
    beside = commands.Background(lambda: commands.run(group))
    here = commands.run(group)
    groups = [int(result.stdout) for result in (beside.result(), here)]
    assert len(set(groups)) == 2 and os.getpgrp() not in groups

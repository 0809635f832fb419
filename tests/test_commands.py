"""Running tools: a timeout ends the whole command, a missing tool is named."""

import os
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

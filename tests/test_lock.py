"""The host lock: one action at a time, a bounded wait, nothing left behind can block it."""

import os
import subprocess
import sys
import time

import pytest

from iscsi_ha.errors import BadConfig, Busy
from iscsi_ha.lock import host_lock

PLUGINS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "plugins")
HOLDER = """
import sys, time
sys.path.insert(0, %r)
from iscsi_ha.lock import host_lock
with host_lock(sys.argv[1], 5):
    sys.stdout.write("locked\\n")
    sys.stdout.flush()
    time.sleep(60)
""" % PLUGINS


def busy(path):
    with pytest.raises(Busy) as caught:
        with host_lock(path, 0.1):
            pass
    return caught.value.message


def test_a_live_holder_makes_the_next_action_busy(tmp_path):
    path = str(tmp_path / "run" / "action.lock")
    with host_lock(path, 1):
        assert busy(path).startswith(
            "another iscsi-ha action (pid %d) is running on this host" % os.getpid())
    with host_lock(path, 0.2):  # released after the block
        pass


def test_the_holder_names_itself_only_while_it_holds(tmp_path):
    path = str(tmp_path / "action.lock")
    with host_lock(path, 1):
        with open(path) as handle:
            assert int(handle.read()) == os.getpid()
    with open(path) as handle:
        assert handle.read() == ""


def test_a_holder_killed_mid_action_blocks_nobody(tmp_path):
    path = str(tmp_path / "action.lock")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, path], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"locked\n"
        assert "(pid %d)" % holder.pid in busy(path)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    with host_lock(path, 5):  # its PID is still in the file: that does not matter
        pass


@pytest.mark.parametrize("contents", ["", "garbage\n", "1\n", "%d\n" % os.getppid()])
def test_what_a_lock_file_says_never_blocks(tmp_path, contents):
    # Empty (the holder died before writing), junk, or the PID of a live process
    # that took over a dead holder's PID.
    path = str(tmp_path / "action.lock")
    with open(path, "w") as handle:
        handle.write(contents)
    with host_lock(path, 0.1):
        with open(path) as handle:
            assert int(handle.read()) == os.getpid()


def test_a_process_started_under_the_lock_does_not_keep_it(tmp_path):
    path = str(tmp_path / "action.lock")
    with host_lock(path, 1):
        child = subprocess.Popen(["sleep", "60"], close_fds=False)
    try:
        with host_lock(path, 0.1):
            pass
    finally:
        child.kill()
        child.wait()


RACER = """
import os, sys, time
sys.path.insert(0, %r)
from iscsi_ha.lock import host_lock
path, go, inside = sys.argv[1:]
while not os.path.exists(go):
    time.sleep(0.001)
with host_lock(path, 60):
    os.close(os.open(inside, os.O_CREAT | os.O_EXCL))  # fails if someone else is inside
    time.sleep(0.01)
    os.remove(inside)
""" % PLUGINS


def test_first_callers_racing_to_create_the_directory_and_file_take_turns(tmp_path):
    path = str(tmp_path / "run" / "iscsi-ha" / "action.lock")
    go, inside = str(tmp_path / "go"), str(tmp_path / "inside")
    racers = [subprocess.Popen([sys.executable, "-c", RACER, path, go, inside],
                               stderr=subprocess.PIPE) for _ in range(6)]
    try:
        time.sleep(0.5)  # let them all start waiting (slow starts only weaken the race)
        open(go, "w").close()
        outcomes = [(racer.wait(), racer.stderr.read()) for racer in racers]
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
                racer.wait()
            racer.stderr.close()
    assert outcomes == [(0, b"")] * 6


def test_a_directory_created_by_a_racing_caller_is_used(tmp_path, monkeypatch):
    path = str(tmp_path / "run" / "action.lock")
    real_makedirs = os.makedirs

    def beaten_to_it(name, *args, **kwargs):
        real_makedirs(name)  # the other caller creates it first
        real_makedirs(name, *args, **kwargs)
    monkeypatch.setattr(os, "makedirs", beaten_to_it)
    with host_lock(path, 0.1):
        pass


def test_an_unusable_run_dir_is_a_config_error(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text(u"")
    with pytest.raises(BadConfig) as caught:
        with host_lock(str(blocker / "action.lock"), 0.2):
            pass
    assert "make [host] run_dir a writable directory" in caught.value.message

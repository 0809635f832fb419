"""The host lock: one action at a time, a bounded wait, stale locks broken once."""

import os
import subprocess
import sys

import pytest

from iscsi_ha.errors import BadConfig, Busy
from iscsi_ha.lock import host_lock


def test_a_live_holder_makes_the_next_action_busy(tmp_path):
    path = str(tmp_path / "run" / "action.lock")
    with host_lock(path, 1):
        with pytest.raises(Busy) as caught:
            with host_lock(path, 0.2):
                pass
    assert "pid %d" % os.getpid() in caught.value.message
    with host_lock(path, 0.2):  # released after the block
        pass


def test_a_dead_holders_lock_is_broken(tmp_path):
    path = str(tmp_path / "action.lock")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with open(path, "w") as handle:
        handle.write("%d\n" % dead.pid)
    with host_lock(path, 0.2):
        with open(path) as handle:
            assert int(handle.read()) == os.getpid()


def test_an_unwritable_state_dir_is_a_config_error(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text(u"")
    with pytest.raises(BadConfig) as caught:
        with host_lock(str(blocker / "action.lock"), 0.2):
            pass
    assert "make [host] state_dir a writable directory" in caught.value.message

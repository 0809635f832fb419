"""One iscsi-ha action at a time on a host: a PID lock file with a bounded wait."""

import contextlib
import errno
import os
import time

from lockfile import AlreadyLocked
from lockfile.pidlockfile import PIDLockFile

from iscsi_ha.errors import Busy

_POLL_SECONDS = 0.05


def _alive(pid):
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


@contextlib.contextmanager
def host_lock(path, wait_seconds):
    """Hold the host's action lock for the ``with`` block.

    A lock left by a process that no longer exists is broken (dom0 may have
    rebooted mid-action); a live holder makes this raise :class:`Busy` after
    ``wait_seconds``.
    """
    directory = os.path.dirname(path)
    if directory and not os.path.isdir(directory):
        os.makedirs(directory)
    lock = PIDLockFile(path)
    deadline = time.time() + wait_seconds
    while True:
        try:
            lock.acquire(timeout=0)
            break
        except AlreadyLocked:
            holder = lock.read_pid()
            if holder is not None and not _alive(holder):
                lock.break_lock()
                continue
            if time.time() >= deadline:
                raise Busy("another iscsi-ha action (pid %s) is running on this host and "
                           "did not finish within %g s; retry when it is done (lock file %s)"
                           % (holder, wait_seconds, path))
            time.sleep(_POLL_SECONDS)
    try:
        yield
    finally:
        lock.release()

"""One iscsi-ha action at a time on a host: a PID lock file with a bounded wait."""

import contextlib
import errno
import fcntl
import os
import time

from lockfile import AlreadyLocked, LockFailed
from lockfile.pidlockfile import PIDLockFile

from iscsi_ha.errors import BadConfig, Busy

_POLL_SECONDS = 0.05


def _alive(pid):
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


def _try_acquire(lock, guard_path):
    """One attempt; returns (acquired, holder pid).

    A lock left by a process that no longer exists is broken (dom0 may have
    rebooted mid-action). The check and the break happen under an flock on a
    guard file, so two waiters cannot both break the same stale lock and then
    each take it.
    """
    with open(guard_path, "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        try:
            lock.acquire(timeout=0)
            return True, None
        except AlreadyLocked:
            holder = lock.read_pid()
            if holder is None or _alive(holder):
                return False, holder
            lock.break_lock()
            lock.acquire(timeout=0)
            return True, None


@contextlib.contextmanager
def host_lock(path, wait_seconds):
    """Hold the host's action lock for the ``with`` block.

    A live holder makes this raise :class:`Busy` after ``wait_seconds``.
    """
    directory = os.path.dirname(path)
    try:
        if directory and not os.path.isdir(directory):
            os.makedirs(directory)
        lock = PIDLockFile(path)
        deadline = time.time() + wait_seconds
        while True:
            acquired, holder = _try_acquire(lock, path + ".guard")
            if acquired:
                break
            if time.time() >= deadline:
                raise Busy("another iscsi-ha action (pid %s) is running on this host and "
                           "did not finish within %g s; retry when it is done (lock file %s)"
                           % (holder, wait_seconds, path))
            time.sleep(_POLL_SECONDS)
    except (LockFailed, IOError, OSError) as exc:
        raise BadConfig("cannot use the lock file %s (%s); make [host] state_dir a writable "
                        "directory" % (path, getattr(exc, "strerror", None) or exc))
    try:
        yield
    finally:
        lock.release()

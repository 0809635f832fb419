"""One iscsi-ha action at a time on a host: an flock() held for the action.

The lock is the kernel's flock on an open file, not the file's existence or
contents: the kernel drops it when the holder's last descriptor closes, which
happens however the holder ends (exit, crash, SIGKILL). So an empty file, a
file naming a dead process or a reused PID never blocks anyone. The holder
writes its PID into the file only so a waiter can say who it waits for.
"""

import contextlib
import errno
import fcntl
import os
import time

from iscsi_ha.commands import monotonic
from iscsi_ha.config import ensure_directory
from iscsi_ha.errors import BadConfig, Busy

_POLL_SECONDS = 0.05
_SETTING = "[host] run_dir"


def _open_locked(path):
    """A descriptor on ``path`` holding its flock, or (None, holder pid or None)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        # Children the action starts (the ARP announcer outlives it) must not keep it.
        fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.fcntl(fd, fcntl.F_GETFD) | fcntl.FD_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (IOError, OSError) as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            holder = _read_pid(fd)
            os.close(fd)
            return None, holder
    except BaseException:
        _close_quietly(fd)
        raise
    return fd, None


def _read_pid(fd):
    try:
        return int(os.read(fd, 32).decode("ascii").strip())
    except (OSError, UnicodeError, ValueError):
        return None  # the holder has not written it yet


def _write_pid(fd):
    try:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, ("%d\n" % os.getpid()).encode("ascii"))
    except OSError:
        pass  # a full disk costs only the PID in a waiter's message, not the lock


def _close_quietly(fd):
    try:
        os.close(fd)
    except OSError:
        pass


@contextlib.contextmanager
def host_lock(path, wait_seconds):
    """Hold the host's action lock for the ``with`` block.

    A live holder makes this raise :class:`Busy` after ``wait_seconds``; a
    directory or file that cannot hold the lock is :class:`BadConfig`.
    """
    deadline = monotonic() + wait_seconds
    try:
        ensure_directory(os.path.dirname(path) or ".", _SETTING)
        while True:
            fd, holder = _open_locked(path)
            if fd is not None:
                break
            if monotonic() >= deadline:
                raise Busy("another iscsi-ha action%s is running on this host and did "
                           "not finish within %g s; retry when it is done (lock file %s)"
                           % (" (pid %d)" % holder if holder else "", wait_seconds, path))
            time.sleep(_POLL_SECONDS)
        _write_pid(fd)
    except (IOError, OSError) as exc:
        raise BadConfig("cannot use the lock file %s (%s); make %s a writable directory"
                        % (path, exc.strerror or exc, _SETTING))
    try:
        yield
    finally:
        try:
            os.ftruncate(fd, 0)  # the PID is about to be wrong: leave no stale one
        except OSError:
            pass
        os.close(fd)

"""Running external tools: argv lists, no shell, a hard time limit, captured output.

Also the monotonic clock every deadline in iscsi-ha is measured on
(:func:`monotonic`), since a wall-clock step must not stretch or cut a timeout,
and :class:`Background`, which overlaps a slow read (a command, an ARP probe)
with the caller's other work.
"""

import errno
import os
import select
import signal
import subprocess
import threading
import time

from iscsi_ha.errors import CommandFailed, ToolMissing

# After a command's end or its kill, how long its output pipes may stay open
# before we stop reading: a process in uninterruptible sleep, or a grandchild
# that left the process group with setsid() and inherited the pipes, could keep
# them open indefinitely.
GRACE_SECONDS = 0.5
_RECHECK_SECONDS = 0.05  # how often to look whether the command ended while reading
_CLOCK_MONOTONIC = 1  # <linux/time.h>


def _libc_monotonic():
    """CLOCK_MONOTONIC via libc's clock_gettime() (for Python 2.7), or None."""
    try:
        import ctypes
    except ImportError:
        return None

    class Timespec(ctypes.Structure):
        _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

    # glibc >= 2.17 has it in libc itself (the running process); older in librt.
    for library in (None, "librt.so.1"):
        try:
            clock_gettime = ctypes.CDLL(library, use_errno=True).clock_gettime
        except (OSError, AttributeError):
            continue
        clock_gettime.argtypes = [ctypes.c_int, ctypes.POINTER(Timespec)]
        clock_gettime.restype = ctypes.c_int
        now = Timespec()
        if clock_gettime(_CLOCK_MONOTONIC, ctypes.byref(now)) != 0:
            continue

        def libc_monotonic():
            clock_gettime(_CLOCK_MONOTONIC, ctypes.byref(now))
            return now.tv_sec + now.tv_nsec * 1e-9
        return libc_monotonic
    return None


def _elapsed_ticks():
    """Seconds since an arbitrary point (boot, on Linux), in clock ticks (10 ms).

    The last resort: times() counts the kernel's ticks, so it never steps with
    the wall clock, only its resolution is coarse.
    """
    return os.times()[4]


monotonic = getattr(time, "monotonic", None) or _libc_monotonic() or _elapsed_ticks


class Result(object):
    """What a finished command returned."""

    def __init__(self, argv, returncode, stdout, stderr, seconds):
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.seconds = seconds

    @property
    def ok(self):
        return self.returncode == 0


def find_tool(name_or_path, path=None):
    """Absolute path of a tool named in config, or None when it is not there.

    A value with a slash is taken as a path; a bare name is looked up on PATH.
    """
    if os.sep in name_or_path:
        return name_or_path if os.access(name_or_path, os.X_OK) else None
    for directory in (path or os.environ.get("PATH", "")).split(os.pathsep):
        candidate = os.path.join(directory, name_or_path)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _decode(data):
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data


def _kill_group(process):
    """Kill the command and everything it started (drbdadm runs drbdsetup, handlers...)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except OSError:
        pass


def _ready(poller, seconds):
    try:
        return poller.poll(max(0, int(seconds * 1000) + 1))
    except (select.error, OSError) as exc:  # 2.7 does not retry after a signal itself
        if exc.args[0] == errno.EINTR:
            return []
        raise


def _collect(process, deadline):
    """Read the command's output until it ends; never past ``deadline`` plus graces.

    Returns ``(stdout, stderr, returncode, timed_out)``. At the deadline the
    process group is killed. Once the command has ended or been killed, its
    pipes get :data:`GRACE_SECONDS` to close; what still holds them then is
    left behind with whatever it has not written yet. ``returncode`` is None
    when even SIGKILL did not end the command within the grace (a process in
    uninterruptible sleep ends only when the kernel lets it).
    """
    out_fd, err_fd = process.stdout.fileno(), process.stderr.fileno()
    output = {out_fd: [], err_fd: []}
    poller = select.poll()
    for fd in output:
        poller.register(fd, select.POLLIN)
    reading = set(output)
    give_up = deadline
    timed_out = False
    pause = 0.0005
    while reading or process.returncode is None:
        now = monotonic()
        if process.returncode is None and process.poll() is not None:
            give_up = min(give_up, now + GRACE_SECONDS)
        if now >= give_up:
            if process.returncode is None and not timed_out:
                timed_out = True
                _kill_group(process)
                give_up = now + GRACE_SECONDS
                continue
            break
        if not reading:  # it closed its output but has not exited yet
            time.sleep(min(pause, give_up - now))
            pause = min(pause * 2, _RECHECK_SECONDS)
            continue
        for fd, _ in _ready(poller, min(give_up - now, _RECHECK_SECONDS)):
            try:
                data = os.read(fd, 65536)
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            if data:
                output[fd].append(data)
            else:
                poller.unregister(fd)
                reading.discard(fd)
    if reading:
        _kill_group(process)  # what of it is still in its group holds our pipes
    process.stdout.close()
    process.stderr.close()
    return (b"".join(output[out_fd]), b"".join(output[err_fd]), process.returncode,
            timed_out)


# Python 3 makes the new session in its C fork code, which is safe while other
# threads run (a preexec_fn is not); 2.7 has only the preexec_fn.
_NEW_SESSION = ({"start_new_session": True} if hasattr(subprocess, "DEVNULL")
                else {"preexec_fn": os.setsid})


def _argv(argv):
    """``argv`` as a list of strings; a single string is refused, never split or given
    to a shell (iscsi-ha runs no shell)."""
    if not isinstance(argv, (list, tuple)):
        raise TypeError("a command is an argv list, not %r" % (argv,))
    return [str(a) for a in argv]


def run(argv, timeout=20.0, check=True):
    """Run ``argv``; return a :class:`Result`.

    ``timeout`` is a hard limit: the command's whole process group is killed
    then, and the call returns within a short grace after it whatever the
    command's children do. With ``check`` a non-zero exit or a timeout raises
    :class:`CommandFailed`; a missing executable always raises
    :class:`ToolMissing`.
    """
    argv = _argv(argv)
    started = monotonic()
    devnull = open(os.devnull, "rb")
    try:
        process = subprocess.Popen(
            argv,
            stdin=devnull,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            close_fds=True,
            # Its own process group, so a timeout can end all of it.
            **_NEW_SESSION
        )
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.EACCES):
            raise ToolMissing(
                "%s: cannot run it (%s); install it or set its path in the [tools] "
                "section of the config" % (argv[0], os.strerror(exc.errno)))
        raise
    finally:
        devnull.close()
    out, err, returncode, timed_out = _collect(process, started + timeout)
    result = Result(argv, returncode, _decode(out), _decode(err), monotonic() - started)
    if check and (timed_out or result.returncode != 0):
        raise CommandFailed(argv, result.returncode, result.stdout, result.stderr,
                            timed_out=timed_out)
    return result


def spawn_detached(argv):
    """Start ``argv`` in its own session without waiting for it; return its pid."""
    argv = _argv(argv)
    devnull = open(os.devnull, "r+b")
    try:
        return subprocess.Popen(argv, stdin=devnull, stdout=devnull, stderr=devnull,
                                close_fds=True, preexec_fn=os.setsid).pid
    except OSError as exc:
        raise ToolMissing("%s: cannot run it (%s)" % (argv[0], os.strerror(exc.errno)))
    finally:
        devnull.close()


def stop_detached(pid, name):
    """End a process started by :func:`spawn_detached` if it still runs as ``name``."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as cmdline:
            program = cmdline.read().split(b"\0")[0]
    except (IOError, OSError):
        return
    if os.path.basename(program.decode("utf-8", "replace")) == name:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass


class Background(object):
    """``function()`` run in a thread; :meth:`result` waits for it and returns or raises
    what it did. Each use is bounded by its own timeouts (a command's, a probe's)."""

    def __init__(self, function):
        self._outcome = None
        self._thread = threading.Thread(target=self._run, args=(function,),
                                        name="background read")
        self._thread.daemon = True  # bounded: never holds up the process's exit
        self._thread.start()

    def _run(self, function):
        try:
            self._outcome = (function(), None)
        except Exception as exc:  # pylint: disable=broad-except
            self._outcome = (None, exc)  # raised in the caller's thread by result()

    def result(self):
        self._thread.join()
        value, error = self._outcome
        if error is not None:
            raise error
        return value

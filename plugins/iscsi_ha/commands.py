"""Running external tools: argv lists, no shell, a timeout, captured output."""

import errno
import os
import signal
import subprocess
import threading
import time

import six

from iscsi_ha.errors import CommandFailed, ToolMissing


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
    """Kill the command and everything it started (drbdadm runs drbdsetup, handlers...).

    Killing only the direct child would leave grandchildren holding the output
    pipes open, and reading them would wait as long as the grandchildren live.
    """
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except OSError:
        pass


def _communicate(process, timeout):
    """communicate() with a deadline; returns ((stdout, stderr), timed_out)."""
    if six.PY2:
        # 2.7's communicate() has no timeout: a timer kills the process group instead.
        expired = threading.Event()

        def expire():
            expired.set()
            _kill_group(process)

        timer = threading.Timer(timeout, expire)
        timer.start()
        try:
            output = process.communicate()
        finally:
            timer.cancel()
        return output, expired.is_set()
    try:
        return process.communicate(timeout=timeout), False
    except subprocess.TimeoutExpired:  # pylint: disable=no-member
        _kill_group(process)
        return process.communicate(), True


def run(argv, timeout=20.0, check=True):
    """Run ``argv``; return a :class:`Result`.

    With ``check`` a non-zero exit or a timeout raises :class:`CommandFailed`;
    a missing executable always raises :class:`ToolMissing`.
    """
    argv = [str(a) for a in argv]
    started = time.time()
    devnull = open(os.devnull, "rb")
    try:
        process = subprocess.Popen(
            argv,
            stdin=devnull,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            close_fds=True,
            preexec_fn=os.setsid,  # its own process group, so a timeout can end all of it
        )
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.EACCES):
            raise ToolMissing(
                "%s: cannot run it (%s); install it or set its path in the [tools] "
                "section of the config" % (argv[0], os.strerror(exc.errno)))
        raise
    finally:
        devnull.close()
    (out, err), timed_out = _communicate(process, timeout)
    result = Result(argv, process.returncode, _decode(out), _decode(err),
                    time.time() - started)
    if check and (timed_out or result.returncode != 0):
        raise CommandFailed(argv, result.returncode, result.stdout, result.stderr,
                            timed_out=timed_out)
    return result


def spawn_detached(argv):
    """Start ``argv`` in its own session without waiting for it; return its pid."""
    argv = [str(a) for a in argv]
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

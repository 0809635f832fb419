"""A real tgtd inside a lab namespace: start it on a free control port, stop it for sure.

Owns: picking a control port no other tgtd on this machine uses (the control
sockets live in one directory shared by all namespaces), waiting until tgtd
answers, and a bounded stop that works with targets and logged-in initiators,
which a plain SIGTERM does not: take the system and every target offline,
force-delete every target, delete the system, and only then kill.  The stale
socket files a killed tgtd leaves are removed.
"""

import os
import random
import signal
import subprocess
import tempfile
import time

from iscsi_ha import commands
from iscsi_ha.target import TgtTarget, parse_show

SOCKET_DIR = "/var/run/tgtd"
# tgtd refuses control ports above 32767.
CONTROL_PORTS = (10000, 32767)
# tgtd's message when another tgtd holds the control port's lock file.
_PORT_TAKEN = "another tgtd is using"


class TgtdFailed(Exception):
    """tgtd did not come up."""


class Tgtd(object):
    """One running tgtd; ``stop()`` is safe to call at any time and more than once."""

    def __init__(self, namespace, control_port, process, log_path, portal, tgtadm="tgtadm"):
        self.namespace = namespace
        self.control_port = control_port
        self.process = process
        self.log_path = log_path
        self.portal = portal
        self.tgtadm = tgtadm
        # Set once our tgtd is seen listening: only then are the socket files ours to remove.
        self.owns_socket = False

    def __repr__(self):
        return "Tgtd(pid=%s, control_port=%s, namespace=%s)" % (
            self.pid, self.control_port, self.namespace.name)

    @property
    def pid(self):
        return self.process.pid

    def running(self):
        return self.process.poll() is None

    def target(self, timeout=5.0):
        """A :class:`TgtTarget` on this daemon."""
        return TgtTarget(tgtadm=self.tgtadm, control_port=self.control_port,
                         timeout=timeout)

    def log(self):
        """What tgtd printed so far (for failure messages)."""
        try:
            with open(self.log_path) as log:
                return log.read()
        except (IOError, OSError):
            return ""

    def run_tgtadm(self, args, timeout):
        """tgtadm on this daemon's control port; a failure is returned, not raised."""
        return commands.run([self.tgtadm, "-C", self.control_port] + list(args),
                            timeout=timeout, check=False)

    def stop(self, timeout=5.0):
        """Stop tgtd within about ``timeout`` seconds, whatever state it is in.

        Returns how it ended: ``"exited"`` (it shut down when asked, or had
        already), ``"terminated"`` (SIGTERM) or ``"killed"`` (SIGKILL).
        """
        deadline = time.time() + timeout
        ending = "exited"
        if self.running():
            self._shut_down(max(0.5, timeout / 4.0))
            self._wait(deadline - time.time())
        for sig, name in ((signal.SIGTERM, "terminated"), (signal.SIGKILL, "killed")):
            if self.running():
                self.process.send_signal(sig)
                ending = name
                self._wait(max(0.5, deadline - time.time()))
        if self.running():
            raise TgtdFailed("tgtd pid %s survived SIGKILL" % self.pid)
        if self.owns_socket:
            for suffix in ("", ".lock"):
                _remove(os.path.join(SOCKET_DIR, "socket.%d%s" % (self.control_port, suffix)))
        _remove(self.log_path)
        return ending

    def _shut_down(self, step_timeout):
        # Each step is best effort: a step that fails leaves the kill in stop() to finish.
        self.run_tgtadm(["--mode", "sys", "--op", "update", "--name", "State",
                         "-v", "offline"], step_timeout)
        show = self.run_tgtadm(["--lld", "iscsi", "--mode", "target", "--op", "show"],
                               step_timeout)
        for target in parse_show(show.stdout):
            # Even --force refuses a LUN with commands in flight ("still active")
            # unless its target is offline first.
            self.run_tgtadm(["--lld", "iscsi", "--mode", "target", "--op", "update",
                             "--tid", target.tid, "--name", "state", "--value", "offline"],
                            step_timeout)
            self.run_tgtadm(["--lld", "iscsi", "--mode", "target", "--op", "delete",
                             "--force", "--tid", target.tid], step_timeout)
        self.run_tgtadm(["--mode", "system", "--op", "delete"], step_timeout)

    def _wait(self, seconds):
        deadline = time.time() + max(0.0, seconds)
        while self.running() and time.time() < deadline:
            time.sleep(0.02)


class _StartedElsewhere(object):
    """The process part of a tgtd that an earlier command (the lab's ``up``) started."""

    def __init__(self, pid):
        self.pid = pid

    def poll(self):
        try:
            os.waitpid(self.pid, os.WNOHANG)  # collect it when we are its parent after all
        except OSError:
            pass
        return None if process_alive(self.pid) else 0

    def send_signal(self, sig):
        try:
            os.kill(self.pid, sig)
        except OSError:
            pass


def process_alive(pid):
    """True while ``pid`` runs (a zombie, or a pid reaped already, is not running)."""
    try:
        with open("/proc/%d/stat" % pid) as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (IOError, OSError, IndexError):
        return False
    return state != "Z"


def start_time(pid):
    """When process ``pid`` started (clock ticks after boot, /proc/PID/stat field 22), or
    None when no process has it. It stays the same across exec, so a recorded pid and
    start time name one process even once the pid is reused."""
    try:
        with open("/proc/%d/stat" % pid) as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[19])
    except (IOError, OSError, IndexError, ValueError):
        return None


def attach_tgtd(namespace, control_port, pid, log_path, portal="0.0.0.0:3260"):
    """A :class:`Tgtd` for a daemon started by another process, known by its pid."""
    daemon = Tgtd(namespace, control_port, _StartedElsewhere(pid), log_path, portal)
    daemon.owns_socket = True
    return daemon


def _remove(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _free_control_port():
    for _ in range(1000):
        port = random.randint(*CONTROL_PORTS)
        if not os.path.exists(os.path.join(SOCKET_DIR, "socket.%d.lock" % port)):
            return port
    raise TgtdFailed("every tgtd control port seems taken: see %s" % SOCKET_DIR)


def _listening_in(pid, socket_path):
    """True when process ``pid``'s network namespace has ``socket_path`` bound."""
    try:
        with open("/proc/%d/net/unix" % pid) as table:
            return any(line.split()[-1] == socket_path for line in table
                       if len(line.split()) > 7)
    except (IOError, OSError):
        return False


def start_tgtd(namespace, portal="0.0.0.0:3260", control_port=None, tgtd="tgtd",
               tgtadm="tgtadm", ready_timeout=5.0, attempts=5):
    """Start ``tgtd -f`` in ``namespace`` and return a :class:`Tgtd` once it answers.

    Without ``control_port`` a random free one is used (retrying when another
    tgtd grabbed it first).
    """
    for _ in range(attempts if control_port is None else 1):
        port = _free_control_port() if control_port is None else control_port
        log_fd, log_path = tempfile.mkstemp(prefix="iha-tgtd-", suffix=".log")
        devnull = open(os.devnull, "rb")
        try:
            process = namespace.popen([tgtd, "-f", "--iscsi", "portal=%s" % portal, "-C", port],
                                      stdin=devnull, stdout=log_fd, stderr=subprocess.STDOUT)
        finally:
            devnull.close()
            os.close(log_fd)
        daemon = Tgtd(namespace, port, process, log_path, portal, tgtadm)
        try:
            if _wait_until_ready(daemon, ready_timeout):
                return daemon
        except BaseException:
            daemon.stop()
            raise
        log = daemon.log()
        daemon.stop()
        if _PORT_TAKEN not in log or control_port is not None:
            raise TgtdFailed("tgtd in %s on control port %s did not come up within %ss: %s"
                             % (namespace.name, port, ready_timeout, log.strip()))
    raise TgtdFailed("no free tgtd control port after %d attempts" % attempts)


def _wait_until_ready(daemon, ready_timeout):
    """True once tgtd answers on its port; False when it exited or time ran out."""
    socket_path = os.path.join(SOCKET_DIR, "socket.%d" % daemon.control_port)
    deadline = time.time() + ready_timeout
    while time.time() < deadline and daemon.running():
        # The socket check makes sure the answer comes from our tgtd, not another
        # one that already held this port.
        if _listening_in(daemon.pid, socket_path):
            daemon.owns_socket = True
            if daemon.run_tgtadm(["--mode", "sys", "--op", "show"], 2.0).ok:
                return True
        time.sleep(0.02)
    return False

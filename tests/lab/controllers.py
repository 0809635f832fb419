"""Each lab host's ``iscsi-ha-controller``, run as systemd runs it on dom0 (Python 3 only).

Owns: installing the controller on a host (its entry script, first line the
plugin's Python, beside a copy of its package and a link to the host's copy
of the ``iscsi_ha`` library, so that a host runs what was installed on it),
starting it inside the host's namespace as a service starts (stdin from
/dev/null, a session of its own, a bare environment, output to
``STATE/hosts/<host>/controller.out``), stopping it (SIGTERM) or killing it
(SIGKILL, as a dying host does), and reading what it reports: the state file
``<run_dir>/controller.json`` and its ``controller:`` lines in the host log.
Each host's controller is recorded in ``lab.json`` by its pid and start time,
which together name it even once its pid runs another process.
"""

import json
import os
import shutil
import signal
import subprocess
import time

from tests.support.tgtd import process_alive, start_time

ENTRY = "iscsi-ha-controller"
PACKAGE = "iscsi_ha_controller"
STATE_FILE = "controller.json"
OUTPUT = "controller.out"
# systemd's default PATH and nothing else: the controller must not depend on
# the environment of whoever brought the lab up.
ENVIRONMENT = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "LANG": "C.UTF-8"}
# A controller ends a plugin call under way before it exits on SIGTERM.
STOP_SECONDS = 30.0
KILL_SECONDS = 5.0
TAIL_LINES = 15
# The controllers this process started, by pid: how one ended (a signal, an
# exit status) is known only to its parent.
_STARTED = {}


class ControllerError(Exception):
    """A controller did not stop as asked; the message says what it logged."""


def directory(lab, name):
    return lab.path("hosts", name, "controller")


def install(lab, name, install_script):
    """Copy the controller onto host ``name``; ``install_script(repo_path, path)`` writes the
    entry script with the plugin's Python on its first line."""
    target = directory(lab, name)
    if os.path.exists(target):
        shutil.rmtree(target)
    os.makedirs(target)
    shutil.copytree(os.path.join(_repo(), "controller", PACKAGE), os.path.join(target, PACKAGE),
                    ignore=shutil.ignore_patterns("*.pyc", "__pycache__"))
    os.symlink(os.path.join(lab.hosts[name]["plugin_dir"], "iscsi_ha"),
               os.path.join(target, "iscsi_ha"))
    install_script(os.path.join("controller", ENTRY), os.path.join(target, ENTRY))


def _repo():
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def start(lab, name):
    """Start host ``name``'s controller unless it runs; its pid goes to ``lab.json`` at once,
    so that ``down`` finds it whatever happens next."""
    if running(lab, name):
        return lab.hosts[name]["controller"]["pid"]
    host = lab.hosts[name]
    with open(lab.path("hosts", name, OUTPUT), "a") as output:
        process = subprocess.Popen(
            ["ip", "netns", "exec", lab.record["namespaces"][name],
             os.path.join(directory(lab, name), ENTRY), "--config", host["config"]],
            cwd="/", env=ENVIRONMENT, stdin=subprocess.DEVNULL, stdout=output,
            stderr=subprocess.STDOUT, start_new_session=True)
    # `ip netns exec` execs the command: this pid, and its start time, are the
    # controller's from the fork on.
    _STARTED[process.pid] = process
    host["controller"] = {"pid": process.pid, "start_time": start_time(process.pid),
                          "started": time.time()}
    lab.save()
    return process.pid


def running(lab, name):
    """Whether host ``name``'s recorded controller runs (a reused pid does not count)."""
    record = lab.hosts[name].get("controller") or {}
    pid = record.get("pid")
    return bool(pid) and process_alive(pid) and start_time(pid) == record.get("start_time")


def ending(lab, name):
    """How host ``name``'s recorded controller ended, as far as this process can tell."""
    pid = (lab.hosts[name].get("controller") or {}).get("pid")
    process = _STARTED.get(pid)
    if process is None:
        return "started by another process: its exit status is unknown here"
    code = process.poll()
    if code is None:
        return "still running"
    if code < 0:
        return "killed by %s" % signal.Signals(-code).name
    return "exit status %d" % code


def stop(lab, name, seconds=STOP_SECONDS):
    """SIGTERM and wait until it exits. Raises ControllerError (having killed it) if it
    does not exit within ``seconds``; returns whether it was running."""
    if not running(lab, name):
        return False
    pid = lab.hosts[name]["controller"]["pid"]
    _signal(pid, signal.SIGTERM)
    if _wait_gone(lab, name, seconds):
        return True
    kill(lab, name)
    raise ControllerError("the controller of %s (pid %d) did not exit within %.0f s of "
                          "SIGTERM and was killed; its log ends:\n%s"
                          % (name, pid, seconds, tail(lab, name)))


def kill(lab, name):
    """SIGKILL, as a host that dies; returns whether it was running."""
    if not running(lab, name):
        return False
    pid = lab.hosts[name]["controller"]["pid"]
    _signal(pid, signal.SIGKILL)
    if not _wait_gone(lab, name, KILL_SECONDS):
        raise ControllerError("the controller of %s (pid %d) survived SIGKILL" % (name, pid))
    return True


def _signal(pid, number):
    try:
        os.kill(pid, number)
    except ProcessLookupError:
        pass


def _wait_gone(lab, name, seconds):
    pid = lab.hosts[name]["controller"]["pid"]
    deadline = time.monotonic() + seconds
    while True:
        if pid in _STARTED:
            _STARTED[pid].poll()  # reaps it, keeping how it ended
        if not running(lab, name):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def state(lab, name):
    """The controller's state file as it last wrote it, or None."""
    run_dir = lab.path("hosts", name, "run")
    try:
        with open(os.path.join(run_dir, STATE_FILE)) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def passes(lab, name):
    """The controller's recent passes, oldest first, as its state file keeps them (a
    state file from before it kept a list gives its last pass alone)."""
    record = state(lab, name) or {}
    kept = record.get("passes")
    if kept is None:
        kept = [record["last_pass"]] if record.get("last_pass") else []
    return kept


def first_pass(lab, name, since, outcomes):
    """The first of the controller's kept passes started at or after ``since`` whose
    outcome is one of ``outcomes``, or None. Looking through all of them, not only the
    last, finds a move that a safety pass followed before anyone looked."""
    return next((p for p in passes(lab, name)
                 if p.get("started", 0) >= since and p.get("outcome") in outcomes), None)


def describe(lab, name):
    """What ``status`` shows of host ``name``'s controller."""
    record = state(lab, name)
    shown = {"running": running(lab, name),
             "pid": (lab.hosts[name].get("controller") or {}).get("pid"),
             "mode": None, "since": None, "updated": None, "last_pass": None}
    if record is not None:
        for key in ("mode", "since", "updated"):
            shown[key] = record.get(key)
        last = record.get("last_pass")
        if last:
            shown["last_pass"] = dict((key, last.get(key)) for key in (
                "reason", "outcome", "trigger", "started", "finished", "actions"))
    return shown


def log_lines(lab, name):
    """The host log's ``controller:`` lines."""
    path = lab.path("hosts", name, "iscsi-ha.log")
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return [line.rstrip("\n") for line in handle if " controller: " in line]
    except OSError:
        return []


def tail(lab, name, count=TAIL_LINES):
    """The end of the controller's log lines and of its own output (tracebacks land there)."""
    parts = ["%s iscsi-ha.log:" % name] + (log_lines(lab, name)[-count:] or ["(none)"])
    try:
        with open(lab.path("hosts", name, OUTPUT), encoding="utf-8",
                  errors="replace") as handle:
            output = handle.read().splitlines()[-count:]
    except OSError:
        output = []
    parts += ["%s %s:" % (name, OUTPUT)] + (output or ["(empty)"])
    return "\n".join(parts)


def empty_run_dir(lab, name):
    """A reboot: what a dom0 keeps on tmpfs is gone."""
    run_dir = lab.path("hosts", name, "run")
    if os.path.isdir(run_dir):
        shutil.rmtree(run_dir)
    os.makedirs(run_dir)

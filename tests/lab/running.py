"""A lab pool driven through its command line, as tests see it."""

import json
import os
import subprocess
import sys
import threading
import time

from tests.drbd_double import show as drbd_show
from tests.lab import controllers, pool
from tests.lab.pool import VIP

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "plugins")]))
PY27 = os.environ.get("PY27", "/root/.pyenv/versions/2.7.18/bin/python")
CLI = os.path.join(REPO, "controller", "iscsi-ha")
# A login shell's PATH, and the library from the source tree.
CLI_ENVIRONMENT = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
                   "PYTHONPATH": os.path.join(REPO, "plugins")}


def lab_command(*args):
    process = subprocess.run([sys.executable, "-m", "tests.lab"] + list(args), cwd=REPO,
                             env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True, timeout=120)
    assert "Traceback" not in process.stderr, process.stderr
    return process.returncode, json.loads(process.stdout)


class RunningLab(object):
    def __init__(self, state, description):
        self.state = state
        self.description = description
        self.url = description["lun_urls"][0]

    def __call__(self, *args):
        code, answer = lab_command(*(list(args) + ["--state", self.state]))
        assert code == 0, answer
        return answer

    def client(self, *argv):
        """Run ``argv`` in the client namespace: (exit code, stdout)."""
        process = subprocess.run(["ip", "netns", "exec", self.description["client_netns"]]
                                 + list(argv), cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, universal_newlines=True,
                                 timeout=60)
        return process.returncode, process.stdout

    def io(self, *args):
        code, output = self.client(sys.executable, "-m", "tests.lab.iscsi_io", self.url,
                                   *args)
        assert code in (0, 1), output
        return json.loads(output)

    def vpd(self, page):
        return self.io("vpd", "--page", page)["hex"]

    def roles(self):
        status = self("status")
        return dict((name, host["result"]["role"] if host["ok"] else None)
                    for name, host in status["hosts"].items())

    def record(self):
        with open(os.path.join(self.state, "lab.json")) as handle:
            return json.load(handle)

    def cli(self, host, *args, python=sys.executable):
        """``iscsi-ha --config <host's config> ARGS`` in ``host``'s namespace, as a sysadmin
        runs it on dom0: (exit code, stdout, stderr)."""
        record = self.record()
        process = subprocess.run(
            ["ip", "netns", "exec", record["namespaces"][host], python, CLI, "--config",
             record["hosts"][host]["config"]] + list(args), cwd="/", env=CLI_ENVIRONMENT,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            universal_newlines=True, timeout=300)
        assert "Traceback" not in process.stdout + process.stderr, process.stderr
        return process.returncode, process.stdout, process.stderr

    def messages(self, name):
        """The bodies of the pool's XAPI messages called ``name``, as XenCenter lists them."""
        with pool.Lab.load(self.state).xapi() as session:
            records = session.retrying(lambda api: api.message.get_all_records())
        return [message["body"] for message in records.values() if message["name"] == name]

    def wait_for_message(self, name, text="", seconds=60.0):
        """A message called ``name`` whose body holds ``text``: alerts follow a pass's state
        file, so a test that saw the pass waits for its alert too."""
        wait_until(lambda: any(text in body for body in self.messages(name)),
                   "a %s message saying %r" % (name, text), seconds)

    def controller_state(self, host):
        """The state file host's controller last wrote (what `status` shows), or None."""
        return controllers.state(pool.Lab.load(self.state), host)

    def controller_log(self, host):
        """The ``controller:`` lines of host's log."""
        return controllers.log_lines(pool.Lab.load(self.state), host)

    def wait_for_pass(self, host, outcome, since, seconds=60.0):
        """The first pass of host's controller started after ``since`` with ``outcome``, as its
        state file keeps its recent passes; the bound only stops a broken run."""
        lab = pool.Lab.load(self.state)

        def last_pass():
            return (controllers.passes(lab, host) or [{}])[-1]

        return wait_until(lambda: controllers.first_pass(lab, host, since, (outcome,)),
                          lambda: "a %s pass on %s (its last: %s)" % (outcome, host,
                                                                     last_pass()), seconds)

    def drbd_roles(self):
        """Each host's DRBD role as its own drbdadm reports it; None for a host whose DRBD is
        down (a dead host's)."""
        record = self.record()
        roles = {}
        for name in sorted(record["hosts"]):
            process = subprocess.run(
                ["ip", "netns", "exec", record["namespaces"][name],
                 os.path.join(self.state, "hosts", name, "bin", "drbdadm"), "role", "iscsi1"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True,
                timeout=30)
            # DRBD 8.4 says "Primary/Secondary": this host's role comes first.
            roles[name] = (process.stdout.strip().split("/")[0] if process.returncode == 0
                           else None)
        return roles

    def vip_holders(self):
        """Hosts with the VIP on an interface that is up (a dead host's links are down)."""
        record = self.record()
        holders = []
        for name in sorted(record["hosts"]):
            shown = subprocess.check_output(
                ["ip", "-n", record["namespaces"][name], "-o", "-4", "addr", "show", "up"],
                universal_newlines=True, timeout=30)
            if " %s/" % VIP in shown:
                holders.append(name)
        return holders

    def writers(self):
        """(DRBD Primaries, VIP holders), the first in one look at the whole DRBD double."""
        pool = drbd_show(os.path.join(self.state, "drbd"))
        primaries = sorted(name for name, replica in
                           pool["resources"]["iscsi1"]["replicas"].items()
                           if replica["role"] == "Primary")
        return primaries, self.vip_holders()

    def start_writer(self, seed, blocks=64):
        """A client writing through the VIP until :meth:`stop_writer` (see iscsi_io.writer)."""
        self.writer_seed = seed
        self.writer_log = os.path.join(self.state, "writer-%s.log" % seed)
        self.writer = subprocess.Popen(
            ["ip", "netns", "exec", self.description["client_netns"], sys.executable, "-m",
             "tests.lab.iscsi_io", self.url, "writer", "--seed", seed, "--blocks",
             str(blocks), "--log", self.writer_log], cwd=REPO, env=ENV,
            stdout=subprocess.PIPE, universal_newlines=True)

        def writing():
            # It is writing once its first write was acknowledged.
            assert self.writer.poll() is None, "the writer exited (%s)" % self.writer.returncode
            return self.acknowledged_writes()

        wait_until(writing, "the writer's first acknowledged write", 30, interval=0.05)

    def acknowledged_writes(self):
        """How many writes the writer has seen acknowledged so far."""
        try:
            with open(self.writer_log) as log:
                return sum(1 for line in log if '"acked"' in line)
        except OSError:
            return 0

    def kill_writer(self):
        """For cleanup: a writer a failed test left running."""
        writer = getattr(self, "writer", None)
        if writer is not None and writer.poll() is None:
            writer.kill()
            writer.wait(30)

    def stop_writer(self):
        """Stop the writer; then every write it saw acknowledged must read back."""
        self.writer.terminate()
        report = json.loads(self.writer.communicate(timeout=30)[0])
        checked = self.io("check-writes", "--seed", self.writer_seed, "--log", self.writer_log)
        assert checked["ok"], checked
        assert checked["acknowledged_writes"] == report["acknowledged"] > 0, (checked, report)
        return report

    def assert_serving(self, master):
        """``master`` alone is DRBD Primary and holds the VIP, as its drbdadm and `ip` say."""
        roles = self.drbd_roles()
        assert [name for name, role in roles.items() if role == "Primary"] == [master], roles
        assert self.vip_holders() == [master]

    def assert_move_held_back(self, outcome, reasons, alert, alert_text="", undo=None):
        """A master change from hostA to hostB that something the test set up holds back.

        Blocks written through the VIP first; then hostB is made master. hostB's
        controller ends a pass with ``outcome`` having done nothing, its reason
        saying each of ``reasons``, and raises the XAPI message ``alert`` (its body
        saying ``alert_text``); hostA alone serves and the blocks read back. Then,
        with ``undo`` (which takes away what held the move back), a later pass of
        hostB's moves the storage (hostA demoted, then hostB promoted) and the
        blocks read back from hostB. Returns the pass that held the move back.
        """
        self.io("write", "--seed", "held-back", "--blocks", "64")
        since = time.time()
        assert self("designate-master", "hostB", "--no-wait")["master"] == "hostB"
        held = self.wait_for_pass("hostB", outcome, since)
        for text in reasons:
            assert text in held["reason"], held
        assert held["actions"] == [], held  # hostA was not demoted
        self.wait_for_message(alert, alert_text)
        self.assert_serving("hostA")
        assert self.roles() == {"hostA": "primary", "hostB": "secondary"}
        assert self.io("verify", "--seed", "held-back", "--blocks", "64")["ok"] is True
        if undo is None:
            return held
        undone = time.time()
        undo()
        # Any pass after the one that held back: one that started just before the undo
        # may see it done and move (the next would then leave the storage in place).
        moved = self.wait_for_pass("hostB", "done", held["finished"])
        assert moved["finished"] > undone, moved  # nothing moved before the undo
        assert [(a["host"], a["fn"], a["ok"]) for a in moved["actions"]] == [
            ("hostA", "demote", True), ("hostB", "promote", True)], moved
        self.assert_serving("hostB")
        assert self.io("verify", "--seed", "held-back", "--blocks", "64")["ok"] is True
        return held


def wait_until(predicate, what, seconds=60.0, interval=0.1):
    """``predicate()``'s first true value, polled every ``interval`` seconds; the bound
    only stops a broken run. ``what`` names what was awaited, for the failure: a string,
    or a function giving one (to show what was seen last)."""
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "never: %s" % (what() if callable(what) else what)
        time.sleep(interval)


class WritersWatch(object):
    """Samples ``look()`` ((DRBD Primaries, VIP holders)) every ``interval`` seconds in a
    thread while a test or a fault run goes on: what it records is every moment with
    more than one DRBD Primary or more than one VIP holder (with ``stop_at_first``, the
    first such moment only)."""

    def __init__(self, look, interval=0.05, stop_at_first=False):
        self.look = look
        self.interval = interval
        self.stop_at_first = stop_at_first
        self.samples = 0
        self.violations = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join(30)

    def _run(self):
        while not self._stop.wait(self.interval):
            if self.stop_at_first and self.violations:
                return
            try:
                primaries, holders = self.look()
            except (OSError, ValueError, KeyError, pool.LabError,
                    subprocess.SubprocessError):
                continue  # the lab changing under the look: the next sample sees it
            self.samples += 1
            if len(primaries) > 1 or len(holders) > 1:
                self.violations.append({"at": time.time(), "primaries": primaries,
                                        "vip": holders})

    def assert_never_two_writers(self):
        assert self.samples > 0
        assert self.violations == [], self.violations


def start_lab(tmp_path, *options):
    state = str(tmp_path / "lab")
    code, description = lab_command("up", "--state", state, *options)
    assert code == 0, description
    return RunningLab(state, description)

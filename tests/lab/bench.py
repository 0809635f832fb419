"""How dark a switchover is for an initiator, next to a polling baseline: ``make bench``
(Python 3 only).

Runs two labs one after the other in the same run: the product as configured
by default ("product"), and the same controller configured as the prior tool
behaves ("baseline": ``up --baseline``: polling every 10 s, no xapi events, no
tickle, a 1 s ``arping -D`` before each claim).  In each, a client in the
client namespace keeps ONE long-lived session through the VIP
(``iscsi_io session-writer``: libiscsi reconnecting by itself, never more
impatient than dom0's open-iscsi), writing numbered, checksummed blocks and
logging every acknowledgement, while the lab lives through

- planned master changes (``designate-master`` to the other host), and
- master failures: the master dies (``fail-host``), the elector makes the
  survivor master, and the dead host boots again (``restore-host``).

The lab changes only the pool, as an elector or a sysadmin does; each host's
controller moves the storage.  For every event the dark time is the longest
gap between two acknowledged writes around it.  For a failure it is counted
from the moment the new master's xapi answers as master: detecting the death
(the elector's business) and restarting xapi are not iscsi-ha's and are
reported apart, as is the time the elector waits for the survivor's DRBD to
report its peer lost (a real elector's timeout is far longer than DRBD's ping
timeout; the lab's elector would otherwise act before DRBD noticed).
Afterwards every acknowledged write is read back.

It also times one ``status`` through ``host.call_plugin``, a bare start of the
plugin's interpreter, and each controller's CPU use while nothing happens.
Prints a table; ``--json FILE`` gets the summary (the keys issue 10 names)
and every raw figure.  The labs are taken down however the run ends, Ctrl-C
included.

    python3 -m tests.lab.bench [--planned N] [--failures N] [--baseline-planned N]
                               [--baseline-failures N] [--idle-seconds S] [--json FILE]
                               [--seed TEXT] [--drbd-version 9|8.4] [--plugin-python PATH]

Every moment comes from one clock, read in four places: this process and the
session writer (``time.time()``), the XAPI simulator's audit log and the
controller's state file.
"""

import argparse
import datetime
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import XenAPI

from iscsi_ha import config as config_module
from tests.drbd_double import show as drbd_show
from tests.drbd_double.states import CONNECTED, UP_TO_DATE
from tests.lab import controllers, iscsi_io, pool

REPO = pool.REPO
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "plugins")]))
MODES = ("product", "baseline")
DEFAULT_COUNTS = {"planned": 10, "failures": 5, "baseline_planned": 10, "baseline_failures": 5}
DEFAULT_IDLE_SECONDS = 60.0
DEFAULT_REPEATS = 10
# The session writer: blocks written round-robin, and its pause between writes
# (the resolution of every dark time measured).
WRITER_BLOCKS = 256
WRITER_INTERVAL = 0.005
WRITER_START_SECONDS = 30.0
WRITER_STOP_SECONDS = 15.0
# libiscsi does not reconnect again within 5 s of its last reconnect (whole
# seconds of time(NULL)): events are spaced so that the client's own backoff
# never lands in a measured window.
RECONNECT_SPACING = 6.0
# Acknowledged writes an event must see before it starts.
LEAD_SECONDS = 0.3
# An event whose client has not recovered by then failed; far above any
# keepalive, so a stuck session is the product's, not the client's.
RECOVERY_LIMIT_SECONDS = 60.0
SETTLE_LIMIT_SECONDS = 60.0
MASTER_CALL = {"planned": "pool.designate_new_master",
               "failure": "pool.emergency_transition_to_master"}
SUMMARY_KEYS = ("planned_dark_s", "planned_dark_max_s", "unplanned_dark_s",
                "unplanned_dark_max_s", "baseline_poll_planned_dark_s",
                "baseline_poll_unplanned_dark_s", "plugin_status_s", "python_startup_s",
                "controller_idle_cpu_pct", "lost_acknowledged_writes", "runs")


class BenchError(Exception):
    """The bench could not measure what it set out to; the message says why."""


# -- what the lab wrote down ----------------------------------------------------

class Appended(object):
    """The lines a file gains from now on."""

    def __init__(self, path):
        self.path = path
        self.offset = os.path.getsize(path) if os.path.exists(path) else 0

    def lines(self):
        if not os.path.exists(self.path):
            return []
        with open(self.path) as handle:
            handle.seek(self.offset)
            return handle.read().splitlines()


def audit_calls(lines):
    """The XAPI simulator's audit entries, each with wall-clock ``start`` and ``end``."""
    calls = []
    for line in lines:
        entry = json.loads(line)
        entry["end"] = datetime.datetime.fromisoformat(entry["time"]).timestamp()
        entry["start"] = entry["end"] - entry["seconds"]
        calls.append(entry)
    return calls


def xapi_answered(calls, kind, new):
    """(when the master change was committed, when ``new``'s xapi first took a login
    after it): the audit log's view of the commit and the xapi restart."""
    commits = [call for call in calls if call["method"] == MASTER_CALL[kind]
               and call["outcome"] == "Success"]
    if len(commits) != 1:
        raise BenchError("expected one successful %s in the XAPI audit log, found %d"
                         % (MASTER_CALL[kind], len(commits)))
    committed = commits[0]["end"]
    for call in calls:
        if (call["method"] == "session.login_with_password" and call["host"] == new
                and call["outcome"] == "Success" and call["end"] > committed):
            return committed, call["end"]
    raise BenchError("the XAPI audit log shows no login at %s after the master change" % new)


# -- the client -------------------------------------------------------------------

class SessionWriter(object):
    """``iscsi_io session-writer`` in the client namespace, and its log as it grows."""

    def __init__(self, lab_description, log_path, seed):
        self.url = lab_description["lun_urls"][0]
        self.netns = lab_description["client_netns"]
        self.seed = seed
        self.log_path = log_path
        self.log = iscsi_io.SessionLog(log_path)
        self.process = None
        self.report = None

    def _io(self, *args):
        return ["ip", "netns", "exec", self.netns, sys.executable, "-m", "tests.lab.iscsi_io",
                self.url] + list(args)

    def start(self):
        self.process = subprocess.Popen(
            self._io("session-writer", "--seed", self.seed, "--blocks", str(WRITER_BLOCKS),
                     "--log", self.log_path, "--interval", str(WRITER_INTERVAL)),
            cwd=REPO, env=ENV, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, universal_newlines=True)
        self.wait_acknowledged(time.time(), WRITER_START_SECONDS, "its first write")
        return self

    def wait_acknowledged(self, since, limit, what):
        """Return the first acknowledgement after ``since``, waiting up to ``limit`` s."""
        deadline = time.time() + limit
        while True:
            self.log.refresh()
            first = self.log.first_ack_after(since)
            if first is not None:
                return first
            if self.process.poll() is not None:
                raise BenchError("the session writer ended (exit %s): %s"
                                 % (self.process.returncode, self.process.stderr.read()))
            if time.time() > deadline:
                raise BenchError("the session writer had no write acknowledged for %.0f s "
                                 "after %s" % (limit, what))
            time.sleep(0.05)

    def stop(self):
        """SIGTERM, then its report; killed if it does not end in time."""
        if self.process is None or self.process.poll() is not None:
            return self.report
        self.process.send_signal(signal.SIGTERM)
        try:
            output, errors = self.process.communicate(timeout=WRITER_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            # Seen once after libiscsi's own reconnects, like the abort below.
            self.process.kill()
            self.process.communicate()
            self.report = {"killed": True, "reason": "ignored SIGTERM for %.0f s"
                                                     % WRITER_STOP_SECONDS}
            return self.report
        if self.process.returncode != 0:
            # libiscsi 1.19 sometimes corrupts its heap on the way out after its own
            # reconnects (malloc() aborts in close): the log up to its last line is
            # what the read-back needs, so the run goes on and says so.
            self.report = {"killed": True, "reason": "exit %s while stopping: %s" % (
                self.process.returncode, errors.strip()[-300:])}
            return self.report
        self.report = json.loads(output)
        return self.report

    def check(self):
        """Read back every block: each must hold its last acknowledged version (or a later
        one that may have landed)."""
        process = subprocess.run(self._io("check-writes", "--seed", self.seed, "--log",
                                          self.log_path),
                                 cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, universal_newlines=True, timeout=300)
        if process.returncode not in (0, 1):
            raise BenchError("check-writes failed: %s" % process.stderr.strip())
        return json.loads(process.stdout)


# -- one event --------------------------------------------------------------------

def settle(lab_dir, writer, last_recovery):
    """Before an event: the client writing, both replicas connected and UpToDate, and
    libiscsi's reconnect spacing since the last recovery gone by."""
    time.sleep(max(0.0, last_recovery + RECONNECT_SPACING - time.time()))
    deadline = time.time() + SETTLE_LIMIT_SECONDS
    while True:
        resources = drbd_show(os.path.join(lab_dir, "drbd"))["resources"].values()
        synced = all(replica["connection"] == CONNECTED and replica["disk"] == UP_TO_DATE
                     for resource in resources for replica in resource["replicas"].values())
        if synced:
            break
        if time.time() > deadline:
            raise BenchError("DRBD did not settle (connected, UpToDate) within %.0f s"
                             % SETTLE_LIMIT_SECONDS)
        time.sleep(0.05)
    now = time.time()
    writer.wait_acknowledged(now + LEAD_SECONDS, SETTLE_LIMIT_SECONDS, "the settle")


def host_logs(lab):
    return dict((name, Appended(config_module.load(host["config"]).log_file))
                for name, host in lab.hosts.items())


def measure_event(lab_dir, writer, mode, kind, number, last_recovery):
    """One planned master change or master failure (the failed host restored afterwards);
    returns its figures."""
    settle(lab_dir, writer, last_recovery)
    lab = pool.Lab.load(lab_dir)
    old = lab.record["master"]
    new = lab.other_host(old)
    audit = Appended(lab.path("xapi", "audit.log"))
    logs = host_logs(lab)
    asked = time.time()
    if kind == "planned":
        outcome = pool.designate_master(lab_dir, new)
    else:
        outcome = pool.fail_host(lab_dir, old, elector_waits_for_drbd=True)
    returned = time.time()
    # The pass that moved the storage, not the last one: a safety pass may have followed.
    moved = controllers.first_pass(pool.Lab.load(lab_dir), new, asked, ("done",)) or {}
    recovered = writer.wait_acknowledged(returned, RECOVERY_LIMIT_SECONDS,
                                         "the %s master change to %s" % (kind, new))
    window = writer.log.dark_window(asked, recovered)
    committed, answered = xapi_answered(audit_calls(audit.lines()), kind, new)
    dark_start, dark_end = window
    run = {
        "mode": mode, "kind": kind, "number": number, "old_master": old, "new_master": new,
        "recovered": True,
        # The client's longest gap between two acknowledged writes around the event.
        "dark_total_s": round(dark_end - dark_start, 4),
        "xapi_restart_s": round(answered - committed, 4),
        "lab_seconds": round(returned - asked, 4),
        "controller": outcome.get("controller"),
        "client": writer.log.between(dark_start, dark_end),
    }
    run["client"]["retries"] = len(run["client"]["retries"])
    run["client"]["logins"] = len(run["client"]["logins"])
    marks = {"bench asked": asked, "XAPI %s returned" % MASTER_CALL[kind]: committed,
             "new master's xapi answered": answered, "client: last acknowledged write":
             dark_start, "client: first acknowledged write again": dark_end,
             "lab saw the new master serving": returned}
    if moved:
        marks["controller: pass started"] = moved["started"]
        marks["controller: pass finished"] = moved["finished"]
    if kind == "planned":
        run["dark_s"] = run["dark_total_s"]
        # Both DRBD steps lie in a planned move's window: what the lab's double costs
        # there, where real drbdadm takes milliseconds.
        run["drbd_steps_s"] = round(sum(
            step["seconds"] for action in (run["controller"] or {}).get("actions", [])
            for step in action.get("steps") or [] if step["step"].startswith("drbd-")), 4)
    else:
        # Ours from the moment the new master's xapi answers: detecting the death and
        # restarting xapi belong to the elector and to xapi.
        run["dark_s"] = round(max(0.0, dark_end - max(dark_start, answered)), 4)
        run["elector_wait_s"] = outcome.get("elector_wait_seconds")
        run["death_until_xapi_answered_s"] = round(answered - outcome["failed_at"], 4)
        marks["host died (fault injected)"] = outcome["failed_at"]
        marks["elector acted (emergency transition)"] = outcome["elector_acted_at"]
    for host, log in logs.items():
        for step in steps_done(log.lines()):
            if asked <= step["when"] <= returned:
                marks["%s: %s %s %s done" % (host, step["action"], step["step"],
                                             step["subject"])] = step["when"]
    run["timeline"] = dict((name, round(when - asked, 4))
                           for name, when in sorted(marks.items(), key=lambda item: item[1]))
    if kind == "failure":
        pool.restore_host(lab_dir, old)
    return run, dark_end


def steps_done(lines):
    """The "ACTION: STEP SUBJECT done" lines of a host log (plugins/iscsi_ha/actions.py),
    each with its moment; lines of another shape are left out."""
    done = []
    for line in lines:
        parts = line.split()
        # "YYYY-MM-DD HH:MM:SS,mmm PID INFO ACTION: STEP SUBJECT done ..."
        if len(parts) < 8 or parts[3] != "INFO" or not parts[4].endswith(":") \
                or parts[7] != "done":
            continue
        try:
            stamp, millis = parts[1].split(",")
            when = time.mktime(time.strptime(parts[0] + " " + stamp, "%Y-%m-%d %H:%M:%S"))
        except ValueError:
            continue
        done.append({"when": when + int(millis) / 1000.0, "action": parts[4][:-1],
                     "step": parts[5], "subject": parts[6]})
    return done


# -- what is measured once per lab --------------------------------------------------

def cpu_seconds(pid):
    """CPU time of ``pid`` and of its children it waited for, from /proc (seconds)."""
    with open("/proc/%d/stat" % pid) as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    # utime, stime, cutime, cstime: fields 14-17 of proc(5), here 11-14 after the state.
    return sum(int(value) for value in fields[11:15]) / float(os.sysconf("SC_CLK_TCK"))


def measure_idle(lab_dir, seconds):
    """Each controller's CPU use, in percent of one core, over ``seconds`` of nothing."""
    lab = pool.Lab.load(lab_dir)
    pids = dict((name, host["controller"]["pid"]) for name, host in lab.hosts.items())
    before = dict((name, cpu_seconds(pid)) for name, pid in pids.items())
    started = time.time()
    time.sleep(seconds)
    elapsed = time.time() - started
    if not all(controllers.running(lab, name) for name in pids):
        raise BenchError("a controller stopped while the bench measured idle CPU")
    return dict((name, round(100.0 * (cpu_seconds(pid) - before[name]) / elapsed, 3))
                for name, pid in pids.items())


def measure_primitives(lab_dir, repeats):
    """One ``status`` through ``host.call_plugin`` on the master, and a bare start of the
    plugin's interpreter, ``repeats`` times each (seconds)."""
    lab = pool.Lab.load(lab_dir)
    master = lab.record["master"]
    status = []
    with lab.xapi() as session:
        ref = session.xenapi.host.get_by_uuid(lab.hosts[master]["uuid"])
        for _ in range(repeats):
            started = time.time()
            session.xenapi.host.call_plugin(ref, "iscsi-ha", "status", {})
            status.append(round(time.time() - started, 4))
    startup = []
    for _ in range(repeats):
        started = time.time()
        subprocess.run([lab.record["plugin_python"], "-c", "pass"], check=True,
                       stdin=subprocess.DEVNULL)
        startup.append(round(time.time() - started, 4))
    return {"plugin_status_s": status, "python_startup_s": startup}


def configured(lab_dir):
    """What each host's config says about the controller's mode."""
    lab = pool.Lab.load(lab_dir)
    modes = {}
    for name, host in sorted(lab.hosts.items()):
        config = config_module.load(host["config"])
        modes[name] = {"events": config.controller_events,
                       "interval": config.controller_interval,
                       "tickle": config.controller_tickle,
                       "overlap": config.controller_overlap,
                       "duplicate_check": config.duplicate_check}
    return modes


# -- the run ----------------------------------------------------------------------

def run_mode(mode, planned, failures, options, say):
    """Bring one lab up (``mode`` "baseline": ``up --baseline``), measure, take it down."""
    state_dir = tempfile.mkdtemp(prefix="iscsi-ha-bench-%s-" % mode)
    result = {"mode": mode, "runs": []}
    writer = None
    try:
        say("%s: bringing the lab up in %s\n" % (mode, state_dir))
        description = pool.up(state_dir, options.drbd_version, options.plugin_python,
                              baseline=mode == "baseline")
        lab = pool.Lab.load(state_dir)
        say("lab is up: state %s, namespaces %s-*\n" % (state_dir, lab.record["prefix"]))
        result["lab"] = {"state_dir": state_dir, "prefix": lab.record["prefix"],
                         "lun_url": description["lun_urls"][0],
                         "plugin_python": lab.record["plugin_python"],
                         "configured": configured(state_dir)}
        writer = SessionWriter(description, os.path.join(state_dir, "session-writer.log"),
                               "%s-%s" % (options.seed, mode)).start()
        say("%s: controllers idle for %.0f s\n" % (mode, options.idle_seconds))
        result["idle_cpu_pct"] = measure_idle(state_dir, options.idle_seconds)
        result["primitives"] = measure_primitives(state_dir, options.repeats)
        last_recovery = time.time()
        plan = [("planned", n) for n in range(1, planned + 1)] + \
               [("failure", n) for n in range(1, failures + 1)]
        for kind, number in plan:
            run, last_recovery = measure_event(state_dir, writer, mode, kind, number,
                                               last_recovery)
            result["runs"].append(run)
            say("%s %s %d: %s -> %s, dark %.3f s (whole gap %.3f s)\n"
                % (mode, kind, number, run["old_master"], run["new_master"], run["dark_s"],
                   run["dark_total_s"]))
        result["writer"] = writer.stop()
        result["writes"] = writer.check()
        say("%s: %d acknowledged writes read back, %d lost\n"
            % (mode, result["writes"]["acknowledged_writes"], result["writes"]["lost_count"]))
    finally:
        try:
            if writer is not None:
                writer.stop()
        finally:
            if not take_down(state_dir, say):
                raise BenchError("the %s lab did not come down cleanly" % mode)
    return result


def median(values):
    return round(statistics.median(values), 4) if values else None


def summarize(modes):
    """The summary issue 10 asks for; a figure with nothing measured is None."""
    def dark(mode, kind):
        return [run["dark_s"] for run in modes.get(mode, {}).get("runs", [])
                if run["kind"] == kind]

    product = modes.get("product", {})
    primitives = product.get("primitives", {})
    idle = product.get("idle_cpu_pct", {})
    runs = [run for mode in MODES for run in modes.get(mode, {}).get("runs", [])]
    return {
        "planned_dark_s": median(dark("product", "planned")),
        "planned_dark_max_s": max(dark("product", "planned"), default=None),
        "unplanned_dark_s": median(dark("product", "failure")),
        "unplanned_dark_max_s": max(dark("product", "failure"), default=None),
        "baseline_poll_planned_dark_s": median(dark("baseline", "planned")),
        "baseline_poll_unplanned_dark_s": median(dark("baseline", "failure")),
        "plugin_status_s": median(primitives.get("plugin_status_s", [])),
        "python_startup_s": median(primitives.get("python_startup_s", [])),
        # The busier of the two: each host pays its own controller.
        "controller_idle_cpu_pct": max(idle.values(), default=None),
        "lost_acknowledged_writes": sum(mode["writes"]["lost_count"]
                                        for mode in modes.values() if "writes" in mode),
        "runs": runs,
    }


def _figures(runs, key):
    values = [run[key] for run in runs if run.get(key) is not None]
    if not values:
        return None
    return len(values), statistics.median(values), min(values), max(values)


def table(modes, summary):
    """The report as text: per mode and kind of event, median/min/max of each figure."""
    rows = [("", "n", "median", "min", "max")]
    labels = {
        "planned": [("dark_s", "dark (longest gap between acknowledged writes)"),
                    ("drbd_steps_s", "  of it, the DRBD double's Secondary and Primary"),
                    ("xapi_restart_s", "  xapi restart after the commit (lab timers)"),
                    ("lab_seconds", "  designate-master until the lab saw it serve")],
        "failure": [("dark_s", "dark, from the new master's xapi answering"),
                    ("dark_total_s", "  whole gap, from the host's death"),
                    ("elector_wait_s", "  elector waiting for DRBD to report the peer lost"),
                    ("death_until_xapi_answered_s", "  death until the new master's xapi "
                                                    "answered"),
                    ("lab_seconds", "  fail-host until the lab saw it serve")]}
    for mode in MODES:
        runs = modes.get(mode, {}).get("runs", [])
        for kind, title in (("planned", "planned master change"),
                            ("failure", "master failure")):
            of_kind = [run for run in runs if run["kind"] == kind]
            if not of_kind:
                continue
            rows.append(("%s, %s (s)" % (mode, title), "", "", "", ""))
            for key, label in labels[kind]:
                figures = _figures(of_kind, key)
                if figures:
                    rows.append(("  " + label, str(figures[0])) + tuple(
                        "%.3f" % value for value in figures[1:]))
    product = modes.get("product", {})
    rows.append(("product, primitives (s)", "", "", "", ""))
    for key, label in (("plugin_status_s", "  status through host.call_plugin"),
                       ("python_startup_s", "  plugin interpreter start (-c pass)")):
        values = product.get("primitives", {}).get(key)
        if values:
            rows.append((label, str(len(values)), "%.4f" % statistics.median(values),
                         "%.4f" % min(values), "%.4f" % max(values)))
    lines = []
    width = max(len(row[0]) for row in rows)
    for row in rows:
        lines.append("%-*s %4s %8s %8s %8s" % ((width,) + row))
    for mode in MODES:
        if "idle_cpu_pct" in modes.get(mode, {}):
            lines.append("%s: controller CPU while idle, %% of a core: %s" % (
                mode, ", ".join("%s %.3f" % item
                                for item in sorted(modes[mode]["idle_cpu_pct"].items()))))
    lines.append("lost acknowledged writes: %d" % summary["lost_acknowledged_writes"])
    lines.append("summary: " + json.dumps(dict((key, value) for key, value in summary.items()
                                               if key != "runs"), sort_keys=True))
    return "\n".join(lines) + "\n"


class Interruption(object):
    """The handler for Ctrl-C and SIGTERM: raises KeyboardInterrupt and remembers it.

    Code unwinding from the KeyboardInterrupt may raise something else in its
    place (pool.designate_master's XenAPI logout, on a connection the interrupt
    left mid-request), so the bench asks this, not the exception, whether the
    user stopped it.
    """

    def __init__(self):
        self.requested = False

    def __call__(self, signum, frame):
        self.requested = True
        raise KeyboardInterrupt()


def take_down(state_dir, say):
    """``pool.down``, shielded from a second Ctrl-C so nothing is left half removed.

    Returns whether everything went away cleanly.
    """
    previous = [(number, signal.signal(number, signal.SIG_IGN))
                for number in (signal.SIGINT, signal.SIGTERM)]
    try:
        pool.down(state_dir)
        say("lab taken down\n")
        return True
    except pool.LabError as exc:
        say("taking the lab down: %s\n" % exc)
        return False
    finally:
        for number, handler in previous:
            signal.signal(number, handler)


def _count(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0: %r" % text)
    return value


def _positive(kind):
    def parse(text):
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError("must be > 0: %r" % text)
        return value
    return parse


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python3 -m tests.lab.bench", description=__doc__.split("\n\n")[0],
        epilog="Needs root (network namespaces), tgtd, arping and libiscsi, as the lab does. "
               "`make bench BENCH_ARGS='--planned 5 --failures 3'` passes these.")
    for name, help_text in (("planned", "planned master changes, product mode"),
                            ("failures", "master failures, product mode"),
                            ("baseline-planned", "planned master changes, polling baseline"),
                            ("baseline-failures", "master failures, polling baseline")):
        parser.add_argument("--" + name, type=_count,
                            default=DEFAULT_COUNTS[name.replace("-", "_")],
                            help="%s (default %%(default)s); a mode with none is skipped"
                                 % help_text)
    parser.add_argument("--idle-seconds", type=_positive(float), default=DEFAULT_IDLE_SECONDS,
                        help="how long the controllers' idle CPU is measured (default "
                             "%(default)s)")
    parser.add_argument("--repeats", type=_positive(int), default=DEFAULT_REPEATS,
                        help="how often the plugin status call and the interpreter start are "
                             "timed (default %(default)s)")
    parser.add_argument("--seed", default=None,
                        help="seed of the written block pattern (default: from the clock)")
    parser.add_argument("--json", metavar="FILE", help="write the summary and every figure "
                                                       "to FILE")
    parser.add_argument("--drbd-version", choices=["9", "8.4"], default="9")
    parser.add_argument("--plugin-python", metavar="PATH",
                        help="interpreter the plugin runs on (default: this one)")
    return parser


def main(argv=None):
    options = build_parser().parse_args(argv)
    options.seed = options.seed or "bench-%d" % int(time.time())

    def say(text):
        sys.stdout.write(text)
        sys.stdout.flush()

    interruption = Interruption()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, interruption)
    counts = {"product": (options.planned, options.failures),
              "baseline": (options.baseline_planned, options.baseline_failures)}
    modes, code = {}, 0
    try:
        for mode in MODES:
            if sum(counts[mode]):
                modes[mode] = run_mode(mode, counts[mode][0], counts[mode][1], options, say)
    except BaseException as exc:  # pylint: disable=broad-except
        if interruption.requested:
            say("interrupted\n")
            return 130
        if isinstance(exc, (BenchError, pool.LabError, XenAPI.Failure)):
            say("bench failed: %s\n" % exc)
            return 1
        raise
    summary = summarize(modes)
    say(table(modes, summary))
    if options.json:
        report = {"summary": summary, "modes": modes,
                  "settings": {"counts": counts, "idle_seconds": options.idle_seconds,
                               "repeats": options.repeats, "seed": options.seed,
                               "drbd_version": options.drbd_version,
                               "writer_interval_s": WRITER_INTERVAL,
                               "writer_blocks": WRITER_BLOCKS,
                               "session_keepalive": iscsi_io.SESSION_KEEPALIVE,
                               "session_tcp_user_timeout_ms":
                                   iscsi_io.SESSION_TCP_USER_TIMEOUT_MS,
                               "session_command_timeout_s": iscsi_io.SESSION_COMMAND_TIMEOUT}}
        with open(options.json, "w") as handle:
            json.dump(report, handle, indent=2)
            handle.write("\n")
    if summary["lost_acknowledged_writes"]:
        say("acknowledged writes were lost\n")
        code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())

"""Where the time of a switchover goes: the benchmark behind ``make bench`` (Python 3 only).

Brings a lab pool up in a temporary directory, lives through N planned master
changes (hostA -> hostB, hostB -> hostA, ...) and then one failure of the
master, each while a client in the client namespace reads block 0 of the LUN
through the floating IP every 20 ms.  The lab changes only the pool, as an
elector or a sysadmin does; each host's iscsi-ha-controller moves the storage.
For every event it reports:

- how long the client was dark (the longest stretch without a good read);
- the master change: ``pool.designate_new_master`` (or, after the failure,
  the fault injection and the elector's ``pool.emergency_transition_to_master``);
- from the commit until the new master's xapi answers a login (the fuse and
  the xapi restart, lab timers);
- from then until the new master's controller starts the pass that moves the
  storage;
- that pass: its snapshot (each host's ``fn=status``), the round trip of each
  plugin call it makes and, inside each call, the plugin's steps as its host
  log stamps them, and the rest of the pass (deciding, alerts, publishing);
- the total, from the moment the bench asked until that pass finished, and
  apart from it the lab's own check that both hosts' roles are right.

A timeline puts the client's reads next to the moments the VIP left the old
master and reached the new one.  It also times the primitives behind the waits
(the duplicate-address check, interpreter start, a bare plugin call).  Prints
median / min / max over the rounds; ``--json FILE`` gets every raw number.
The lab is taken down however the run ends, Ctrl-C included.

    python3 -m tests.lab.bench [--rounds N] [--json FILE] [--drbd-version 9|8.4]
                               [--plugin-python PATH] [--probe-timeout SECONDS]

The numbers come from one clock read in four places: this process
(``time.time()``), the XAPI simulator's audit log (each call's end and
duration), the controller's state file (its pass's start and end, and each
plugin call's round trip as the controller timed it) and the plugin's host
log (when each step finished, to the ms).  The log says when a step finished,
not when the first one started: the first step of a call is reported together
with the plugin's start and its observe time.
"""

import argparse
import datetime
import functools
import json
import os
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
import xmlrpc.client

import XenAPI

from iscsi_ha import commands, config as config_module
from iscsi_ha.vip import FloatingIp
from tests.lab import controllers, iscsi_io, pool
from tests.lab.xapi_sim import in_netns

DEFAULT_ROUNDS = 5
PROBE_INTERVAL = 0.02
# Good reads the client must show before an event starts and after it ends.
PROBE_LEAD_SECONDS = 0.3
SETTLE_SECONDS = 0.3
RECOVERY_LIMIT_SECONDS = 15.0
# The controller rounds its round trips and the host log its stamps to the
# millisecond, so a difference with one of them in it may come out that much
# below zero.
ROUNDING = 0.001
# No lab host uses it: arping -D for it waits as long as it ever does.
FREE_LAB_ADDRESS = "192.0.2.200"
# How plugins/iscsi_ha/actions.py logs a finished step, after the logs.py prefix.
STEP_DONE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) \d+ INFO "
                       r"(promote|demote): (\S+) (\S+) done\b")
ACTION_FNS = ("demote", "promote")
# The table's narrowest label column.
LABEL_WIDTH = 72
EVENT_TITLES = {"planned": "Planned master change", "failure": "Master failure"}
MASTER_CALL = {"planned": "pool.designate_new_master",
               "failure": "pool.emergency_transition_to_master"}
TOTAL = "total: asked until the controller's pass finished"
PASS = TOTAL + "/controller's pass"
SNAPSHOT = PASS + "/snapshot (pool records, each host's status)"
RESTART_PHASE = {
    "planned": TOTAL + "/commit until the new master's xapi answers (fuse, both xapis "
                       "restart; lab timers)",
    "failure": TOTAL + "/commit until the survivor's xapi answers as master (fuse, restart; "
                       "lab timers)"}


class BenchError(Exception):
    """The bench could not measure what it set out to; the message says why."""


# -- the client -----------------------------------------------------------------

class Read(object):
    """One probe read: when it ended, whether it logged in first, its error (None: good)."""

    def __init__(self, finished, logged_in, error):
        self.finished = finished
        self.logged_in = logged_in
        self.error = error


class ClientProbe(object):
    """Reads block 0 through the VIP every PROBE_INTERVAL until stopped, keeping every read.

    It runs in a thread moved into the client namespace rather than in a
    process there, so that its reads are stamped on the bench's own clock and
    it can stop the moment the bench has seen enough.
    """

    def __init__(self, client_netns, url, timeout):
        self.client_netns = client_netns
        self.url = url
        self.timeout = timeout
        self.reads = []
        self.error = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="client-probe", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stopping.set()
        # A read in flight ends within its timeout, and a logout within LOGOUT_TIMEOUT.
        self._thread.join(self.timeout + iscsi_io.LOGOUT_TIMEOUT + 1.0)

    def _run(self):
        try:
            in_netns(self.client_netns, self._read_until_stopped)
        except BaseException as exc:  # pylint: disable=broad-except
            self.error = exc  # the bench thread raises it from wait_until_serving

    def _read_until_stopped(self):
        client = iscsi_io.IscsiClient(self.url, timeout=self.timeout)
        try:
            while not self._stopping.is_set():
                started = time.time()
                logging_in = not client.connected
                try:
                    if logging_in:
                        client.connect()
                    client.read_blocks(0, 1)
                except (iscsi_io.BadUrl, iscsi_io.BadRequest):
                    raise
                except iscsi_io.IscsiIoError as exc:
                    client.close()
                    self.reads.append(Read(time.time(), logging_in, str(exc)))
                else:
                    self.reads.append(Read(time.time(), logging_in, None))
                self._stopping.wait(max(0.0, started + PROBE_INTERVAL - time.time()))
        finally:
            client.close()

    def wait_until_serving(self, since, seconds, limit=RECOVERY_LIMIT_SECONDS):
        """Return once every read ending after ``since`` for ``seconds`` has been good."""
        deadline = time.time() + limit
        while True:
            if self.error is not None:
                raise BenchError("the client probe stopped: %s" % self.error)
            good_since = self._good_since(since)
            if good_since is not None and time.time() - good_since >= seconds:
                return
            if time.time() > deadline:
                failed = [read.error for read in list(self.reads) if read.error]
                raise BenchError("the client could not read the LUN through the VIP for %.1f s "
                                 "(last error: %s)" % (limit, failed[-1] if failed else "none"))
            time.sleep(PROBE_INTERVAL)

    def _good_since(self, since):
        """When the current run of good reads ending after ``since`` began, or None."""
        reads = [read for read in list(self.reads) if read.finished >= since]
        if not reads or reads[-1].error:
            return None
        first_good = reads[-1]
        for read in reversed(reads):
            if read.error:
                break
            first_good = read
        return first_good.finished


class Darkness(object):
    """The longest stretch between two good reads, and the reads that failed inside it."""

    def __init__(self, reads):
        good = [read.finished for read in reads if read.error is None]
        if len(good) < 2:
            raise BenchError("the client read the LUN fewer than twice; nothing to measure")
        self.start, self.end = max(zip(good, good[1:]), key=lambda pair: pair[1] - pair[0])
        self.inside = [read for read in reads if self.start < read.finished <= self.end]
        self.failed = [read for read in self.inside if read.error]
        self.reads_ok = len(good)
        self.reads_failed = len([read for read in reads if read.error])

    @property
    def seconds(self):
        return self.end - self.start

    def report(self, origin):
        runs = []
        for read in self.failed:
            if runs and runs[-1]["error"] == read.error:
                runs[-1]["count"] += 1
                runs[-1]["last_ended"] = round(read.finished - origin, 4)
            else:
                runs.append({"error": read.error, "count": 1,
                             "first_ended": round(read.finished - origin, 4),
                             "last_ended": round(read.finished - origin, 4)})
        return {"dark_seconds": round(self.seconds, 4), "reads_ok": self.reads_ok,
                "reads_failed": self.reads_failed,
                "logins_while_dark": len([read for read in self.inside if read.logged_in]),
                "errors_while_dark": runs}


# -- what the lab wrote down ------------------------------------------------------

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
        entry["fn"] = entry["params"][3] if entry["method"] == "host.call_plugin" else None
        calls.append(entry)
    return calls


class StepDone(object):
    """One "ACTION: STEP SUBJECT done" line of a host log."""

    def __init__(self, when, action, step, subject):
        self.when = when
        self.action = action
        self.step = step
        self.subject = subject


def steps_done(lines):
    """The finished steps a host log shows, in order."""
    done = []
    for line in lines:
        match = STEP_DONE.match(line)
        if match:
            stamp, millis, action, step, subject = match.groups()
            when = time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(millis) / 1000.0
            done.append(StepDone(when, action, step, subject))
    return done


# -- one event --------------------------------------------------------------------

def difference(whole, *parts):
    """``whole`` minus ``parts``; a deficit no larger than the rounding of the inputs is 0."""
    rest = whole - sum(parts)
    return 0.0 if -ROUNDING <= rest < 0 else rest


class Event(object):
    """Everything recorded while one master change happened.

    ``started`` is when the bench asked for it, ``returned`` when the lab said
    the new master serves; ``last_pass`` is the pass the new master's controller
    recorded in its state file by then; ``calls`` the XAPI audit entries and
    ``done`` (host -> steps_done()) the host log lines written meanwhile.
    """

    def __init__(self, kind, old, new, outcome, last_pass, started, returned, calls, done,
                 darkness):
        self.kind = kind
        self.old = old
        self.new = new
        self.outcome = outcome
        self.last_pass = last_pass
        self.started = started
        self.returned = returned
        self.calls = calls
        self.done = done
        self.darkness = darkness
        reported = outcome["controller"]
        if not last_pass or any(last_pass.get(key) != reported[key]
                                for key in ("reason", "outcome", "trigger", "actions")):
            raise BenchError("the state file of %s's controller shows another pass than the "
                             "one the lab reported: %s" % (new, last_pass))
        for action in reported["actions"]:
            if not action["ok"]:
                raise BenchError("%s on %s failed: %s" % (action["fn"], action["host"],
                                                          " ".join(action["error"])))
        in_pass = [call for call in calls if call["method"] == "host.call_plugin"
                   and call["listener"] == new + "/netns"
                   and last_pass["started"] <= call["start"]
                   and call["end"] <= last_pass["finished"]]
        self.statuses = [call for call in in_pass if call["fn"] == "status"]
        self.action_calls = [call for call in in_pass if call["fn"] in ACTION_FNS]
        if [call["fn"] for call in self.action_calls] != [a["fn"] for a in reported["actions"]]:
            raise BenchError("the XAPI audit log does not show the controller's plugin calls "
                             "%s" % [a["fn"] for a in reported["actions"]])
        refs = [call["params"][1] for action, call in zip(reported["actions"],
                                                           self.action_calls)
                if action["host"] == new]
        if not refs:
            raise BenchError("the controller's pass did not promote %s: %s"
                             % (new, reported["actions"]))
        self.new_master_ref = refs[0]

    @property
    def actions(self):
        return self.outcome["controller"]["actions"]

    def call(self, method):
        found = [c for c in self.calls if c["method"] == method]
        if len(found) != 1:
            raise BenchError("expected one %s in the XAPI audit log, found %d"
                             % (method, len(found)))
        return found[0]

    def answered(self):
        """When the new master's xapi first took a login after the commit."""
        committed = self.call(MASTER_CALL[self.kind])["end"]
        for call in self.calls:
            if (call["method"] == "session.login_with_password" and call["host"] == self.new
                    and call["outcome"] == "Success" and call["end"] > committed):
                return call["end"]
        raise BenchError("the XAPI audit log shows no login at %s after the master change"
                         % self.new)

    def host_role(self, host):
        if host == self.new:
            return "new master"
        return "old master, dead" if self.kind == "failure" else "old master"

    def role(self, host_ref):
        """The role of the host a call_plugin names by its ref; of two hosts, the one the
        controller promoted is the new master."""
        return self.host_role(self.new if host_ref == self.new_master_ref else self.old)

    def steps_of(self, action, call):
        """The steps the plugin logged as done during ``call``, an ``action`` record."""
        return [step for step in self.done[action["host"]] if step.action == action["fn"]
                and call["start"] - ROUNDING <= step.when <= call["end"] + ROUNDING]

    def plugin_call_phases(self, prefix, action, call):
        """One plugin call of the pass: the controller's round trip, the XML-RPC around what
        XAPI spent on it, and inside that the plugin's steps as its host log stamps them."""
        phases = [(prefix, action["seconds"]),
                  (prefix + "/XML-RPC, controller and XAPI",
                   difference(action["seconds"], call["seconds"]))]
        steps = self.steps_of(action, call)
        if not steps:
            return phases + [(prefix + "/in XAPI: the plugin, nothing done", call["seconds"])]
        observe = ("observe (incl. duplicate-address check)" if action["fn"] == "promote"
                   else "observe")
        marks = [call["start"]] + [step.when for step in steps] + [call["end"]]
        names = (["in XAPI: plugin start, %s, %s %s" % (observe, steps[0].step,
                                                         steps[0].subject)]
                 + ["in XAPI: %s %s" % (step.step, step.subject) for step in steps[1:]]
                 + ["in XAPI: result, plugin exit, reply"])
        for name, begin, end in zip(names, marks, marks[1:]):
            phases.append((prefix + "/" + name, difference(end, begin)))
        return phases

    def pass_phases(self):
        last = self.last_pass
        phases = [(PASS, last["finished"] - last["started"])]
        snapshot_end = self.statuses[-1]["end"] if self.statuses else last["started"]
        snapshot = snapshot_end - last["started"]
        phases.append((SNAPSHOT, snapshot))
        for call in self.statuses:
            phases.append((SNAPSHOT + "/status (%s)" % self.role(call["params"][1]),
                           call["seconds"]))
        phases.append((SNAPSHOT + "/pool records, XML-RPC",
                       difference(snapshot, *[call["seconds"] for call in self.statuses])))
        for action, call in zip(self.actions, self.action_calls):
            phases.extend(self.plugin_call_phases(
                "%s/%s (%s)" % (PASS, action["fn"], self.host_role(action["host"])),
                action, call))
        phases.append((PASS + "/decide, alerts, publish", difference(
            phases[0][1], snapshot, *[action["seconds"] for action in self.actions])))
        return phases

    def phases(self):
        last = self.last_pass
        committed = self.call(MASTER_CALL[self.kind])
        answered = self.answered()
        phases = [("client dark", self.darkness.seconds),
                  (TOTAL, last["finished"] - self.started)]
        if self.kind == "planned":
            phases.append((TOTAL + "/lab: login and lookups", committed["start"]
                           - self.started))
            phases.append((TOTAL + "/XAPI pool.designate_new_master", committed["seconds"]))
        else:
            failed = self.call("lab.fail_host")["end"]
            phases.append((TOTAL + "/fault injection (lab only: controller killed, links "
                                   "down, tgtd killed, DRBD crashed)", failed - self.started))
            phases.append((TOTAL + "/elector: login, pool.emergency_transition_to_master",
                           committed["end"] - failed))
        phases.append((RESTART_PHASE[self.kind], answered - committed["end"]))
        phases.append((TOTAL + "/xapi answers until the controller's pass starts",
                       last["started"] - answered))
        phases.extend(self.pass_phases())
        phases.append(("lab only: pass finished until the lab saw both hosts' roles",
                       self.returned - last["finished"]))
        return phases

    def timeline(self):
        """Moments of the event, in seconds after the bench asked for it."""
        marks = [("client: last good read", self.darkness.start),
                 ("client: first good read again", self.darkness.end)]
        if self.darkness.failed:
            marks.append(("client: first failed read ended", self.darkness.failed[0].finished))
        master_call = MASTER_CALL[self.kind]
        marks.append(("XAPI %s returned" % master_call, self.call(master_call)["end"]))
        marks.append(("XAPI: the new master answered a login", self.answered()))
        marks.append(("controller: pass started", self.last_pass["started"]))
        marks.append(("controller: pass finished", self.last_pass["finished"]))
        for call in self.statuses + self.action_calls:
            name = "%s (%s)" % (call["fn"], self.role(call["params"][1]))
            marks.append((name + " called", call["start"]))
            marks.append((name + " returned", call["end"]))
        for call in self.calls:
            if call["fn"] == "outdate":  # DRBD's fence-peer handler asking the peer
                marks.append(("fence-peer: outdate (%s) returned %s"
                              % (self.role(call["params"][1]), call["outcome"]), call["end"]))
        for action, call in zip(self.actions, self.action_calls):
            for step in self.steps_of(action, call):
                if step.step in ("vip-release", "vip-claim"):
                    marks.append(("VIP %s (%s's log)" % (
                        "released" if step.step == "vip-release" else "claimed",
                        self.host_role(action["host"])), step.when))
        marks.append(("lab: saw the new master serving", self.returned))
        return dict((name, round(when - self.started, 4))
                    for name, when in sorted(marks, key=lambda mark: mark[1]))

    def as_dict(self):
        return {
            "kind": self.kind, "old_master": self.old, "new_master": self.new,
            "phases": dict((path, round(seconds, 4)) for path, seconds in self.phases()),
            "timeline": self.timeline(),
            "client": self.darkness.report(self.started),
            "controller": dict(self.last_pass, started=round(self.last_pass["started"]
                                                             - self.started, 4),
                               finished=round(self.last_pass["finished"] - self.started, 4)),
            "xapi_calls": [{"method": c["method"], "start": round(c["start"] - self.started, 4),
                            "seconds": c["seconds"], "listener": c["listener"],
                            "outcome": c["outcome"], "fn": c["fn"]}
                           for c in self.calls],
            "lab": self.outcome,
        }


def measure_event(state_dir, kind, old, new, action, probe_timeout):
    """Run ``action`` (a pool event) while the client probes; return the Event."""
    lab = pool.Lab.load(state_dir)
    audit = Appended(lab.path("xapi", "audit.log"))
    host_logs = dict((name, Appended(config_module.load(host["config"]).log_file))
                     for name, host in lab.hosts.items())
    description = pool.describe(lab)
    probe = ClientProbe(description["client_netns"], description["lun_urls"][0],
                        probe_timeout).start()
    try:
        probe.wait_until_serving(time.time(), PROBE_LEAD_SECONDS)
        started = time.time()
        outcome = action()
        returned = time.time()
        # Now, before the controller's next pass (its interval away) replaces it.
        last_pass = (controllers.state(lab, new) or {}).get("last_pass")
        probe.wait_until_serving(time.time(), SETTLE_SECONDS)
    finally:
        probe.stop()
    done = dict((name, steps_done(log.lines())) for name, log in host_logs.items())
    return Event(kind, old, new, outcome, last_pass, started, returned,
                 audit_calls(audit.lines()), done, Darkness(list(probe.reads)))


# -- the primitives -----------------------------------------------------------------

def measure_primitives(state_dir, repeats):
    """Times of the things a switchover waits for, each run ``repeats`` times on the standby."""
    lab = pool.Lab.load(state_dir)
    standby = lab.other_host(lab.record["master"])
    namespace = lab.record["namespaces"][standby]
    config = config_module.load(lab.hosts[standby]["config"])
    plugin_python = lab.record["plugin_python"]
    plugin = os.path.join(lab.hosts[standby]["plugin_dir"], "iscsi-ha")
    version_request = xmlrpc.client.dumps(("OpaqueRef:NULL", {}), "version")

    def duplicate_check(address, expected):
        vip = FloatingIp(address, config.vip_prefix, config.vip_interface,
                         ip=config.tools["ip"], arping=config.tools["arping"],
                         dad_wait=config.dad_wait, timeout=config.command_timeout)

        def check():
            started = time.time()
            answered = in_netns(namespace, vip.answered_elsewhere)
            if answered != expected:
                raise BenchError("arping -D for %s: someone answered: %s, expected %s"
                                 % (address, answered, expected))
            return time.time() - started
        return check

    def command(argv, inside=True):
        def run():
            return commands.run(argv, timeout=30).seconds
        return functools.partial(in_netns, namespace, run) if inside else run

    primitives = [
        ("arping -D, free address, dad_wait=%d (promote's duplicate check)" % config.dad_wait,
         duplicate_check(FREE_LAB_ADDRESS, False)),
        ("arping -D, address in use (the VIP on the master)",
         duplicate_check(pool.VIP, True)),
        ("ip netns exec true (lab only: how the simulator enters a host)",
         command(["ip", "netns", "exec", namespace, "true"], inside=False)),
        ("DRBD double, one call (lab only): drbdadm --version",
         command([config.tools["drbdadm"], "--version"])),
        ("plugin interpreter start (-c pass)", command([plugin_python, "-c", "pass"])),
        ("plugin interpreter start without site (-S -c pass)",
         command([plugin_python, "-S", "-c", "pass"])),
        ("plugin file run as xapi runs it, fn=version (imports, no config)",
         command([plugin, version_request])),
    ]
    return dict((name, [round(measure(), 4) for _ in range(repeats)])
                for name, measure in primitives)


# -- the run ------------------------------------------------------------------------

def run(state_dir, rounds, drbd_version, plugin_python, probe_timeout, say):
    """Bring the lab up in ``state_dir`` and measure; the caller takes it down."""
    say("bringing the lab up in %s (DRBD %s)\n" % (state_dir, drbd_version))
    description = pool.up(state_dir, drbd_version, plugin_python)
    lab = pool.Lab.load(state_dir)
    say("lab is up: state %s, namespaces %s-*\n" % (state_dir, lab.record["prefix"]))
    pids = dict([("xapi simulator", lab.record["xapi"]["pid"])]
                + [("tgtd " + name, host["tgtd"]["pid"]) for name, host in lab.hosts.items()]
                + [("controller " + name, host["controller"]["pid"])
                   for name, host in lab.hosts.items()])
    events = []
    for number in range(1, rounds + 1):
        old = pool.Lab.load(state_dir).record["master"]
        new = lab.other_host(old)
        event = measure_event(state_dir, "planned", old, new,
                              functools.partial(pool.designate_master, state_dir, new),
                              probe_timeout)
        events.append(event.as_dict())
        say("round %d/%d: %s -> %s, client dark %.3f s, total %.3f s\n"
            % (number, rounds, old, new, event.darkness.seconds,
               events[-1]["phases"][TOTAL]))
    say("timing the primitives\n")
    primitives = measure_primitives(state_dir, rounds)
    victim = pool.Lab.load(state_dir).record["master"]
    survivor = lab.other_host(victim)
    event = measure_event(state_dir, "failure", victim, survivor,
                          functools.partial(pool.fail_host, state_dir, victim), probe_timeout)
    events.append(event.as_dict())
    say("failure of %s: %s took over, client dark %.3f s, total %.3f s\n"
        % (victim, survivor, event.darkness.seconds, events[-1]["phases"][TOTAL]))
    return {
        "settings": {"rounds": rounds, "drbd_version": drbd_version,
                     "plugin_python": lab.record["plugin_python"],
                     "probe_interval": PROBE_INTERVAL, "probe_timeout": probe_timeout},
        "lab": {"state_dir": state_dir, "prefix": lab.record["prefix"],
                "lun_url": description["lun_urls"][0], "pids": pids},
        "events": events,
        "primitives": primitives,
    }


def spread(values):
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4),
            "max": round(max(values), 4), "n": len(values)}


def summarize(report):
    """median / min / max of every phase and timeline mark, per kind of event."""
    summary = {}
    for kind in EVENT_TITLES:
        events = [event for event in report["events"] if event["kind"] == kind]
        summary[kind] = {}
        for part in ("phases", "timeline"):
            names = []
            for event in events:
                names.extend(name for name in event[part] if name not in names)
            summary[kind][part] = dict(
                (name, spread([event[part][name] for event in events if name in event[part]]))
                for name in names)
        marks = summary[kind]["timeline"]
        summary[kind]["timeline"] = dict(sorted(marks.items(),
                                                key=lambda item: item[1]["median"]))
    summary["primitives"] = dict((name, spread(values))
                                 for name, values in report["primitives"].items())
    return summary


def table(summary, rounds):
    """The summary as text, in milliseconds."""
    lines = []

    def label(name, indent_by_path):
        if indent_by_path:
            return "  " * name.count("/") + name.rsplit("/", 1)[-1]
        return "  " + name

    width = max([LABEL_WIDTH] + [len(label(name, part == "phases"))
                                 for kind in EVENT_TITLES for part in ("phases", "timeline")
                                 for name in summary[kind][part]])

    def section(title, rows, indent_by_path):
        lines.append("")
        lines.append("%-*s %7s %7s %7s" % (width, title, "median", "min", "max"))
        for name, values in rows.items():
            lines.append("%-*s %7.0f %7.0f %7.0f" % (
                width, label(name, indent_by_path), values["median"] * 1000,
                values["min"] * 1000, values["max"] * 1000))

    for kind, title in EVENT_TITLES.items():
        count = summary[kind]["phases"]["client dark"]["n"]
        section("%s, %d event%s (ms)" % (title, count, "" if count == 1 else "s"),
                summary[kind]["phases"], True)
        section("  timeline, ms after the bench asked for it", summary[kind]["timeline"],
                False)
    section("Primitives, %d run%s each (ms)" % (rounds, "" if rounds == 1 else "s"),
            summary["primitives"], False)
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


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1: %r" % text)
    return value


def _positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0: %r" % text)
    return value


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python3 -m tests.lab.bench", description=__doc__.split("\n\n")[0],
        epilog="Needs root (network namespaces), tgtd, arping and libiscsi, as the lab does.")
    parser.add_argument("--rounds", type=_positive_int, default=DEFAULT_ROUNDS,
                        help="planned master changes to measure (default %(default)s); the "
                             "primitives are timed as many times")
    parser.add_argument("--json", metavar="FILE", help="write every raw number to FILE")
    parser.add_argument("--drbd-version", choices=["9", "8.4"], default="9")
    parser.add_argument("--plugin-python", metavar="PATH",
                        help="interpreter the plugin runs on (default: this one)")
    parser.add_argument("--probe-timeout", type=_positive_float,
                        default=iscsi_io.DEFAULT_PROBE_TIMEOUT,
                        help="seconds the client waits for a login or a read before it "
                             "gives up and logs in again (default %(default)s)")
    return parser


def main(argv=None):
    options = build_parser().parse_args(argv)

    def say(text):
        sys.stdout.write(text)
        sys.stdout.flush()

    interruption = Interruption()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, interruption)
    state_dir = tempfile.mkdtemp(prefix="iscsi-ha-bench-")
    report, code = None, 0
    try:
        report = run(state_dir, options.rounds, options.drbd_version, options.plugin_python,
                     options.probe_timeout, say)
    except BaseException as exc:  # pylint: disable=broad-except
        if interruption.requested:
            say("interrupted\n")
            code = 130
        elif isinstance(exc, (BenchError, pool.LabError, XenAPI.Failure)):
            say("bench failed: %s\n" % exc)
            code = 1
        else:
            raise
    finally:
        if not take_down(state_dir, say):
            code = code or 1
    if report is not None:
        report["summary"] = summarize(report)
        say(table(report["summary"], options.rounds))
        if options.json:
            with open(options.json, "w") as handle:
                json.dump(report, handle, indent=2)
                handle.write("\n")
    return code


if __name__ == "__main__":
    sys.exit(main())

"""Randomized fault injection over the two-host lab: ``make faults`` (Python 3 only).

Brings one lab up (both hosts running ``iscsi-ha-controller``), starts a client
that writes numbered, checksummed blocks through the VIP the whole time over one
long-lived session (``iscsi_io session-writer``, logging every acknowledged
write), then runs ROUNDS rounds. Each round draws one fault from the mix with a
seeded random generator, injects it the way the real thing happens (the lab
changes only what an elector, a power cut, a crash or a sysadmin changes; the
controllers move the storage), and then waits for the pool to settle.

After every step, and all along from a sampling thread, the storage is looked at
from outside the product (``invariants``: the DRBD double's state, each tgtd's
targets through ``tgtadm``, ``ip addr`` in each namespace): never two DRBD
Primaries, never two VIP holders, never a target on a Secondary. Settled means:
exactly one Primary, the pool master, holding the VIP and the target, both
replicas connected and UpToDate, and the client's writes acknowledged again.
The wait is bounded by the product's own config (``[controller] interval`` +
``[timeouts] peer`` + ``[timeouts] action``): a pool that takes longer has
failed. At the end every acknowledged write must read back as its latest
acknowledged version.

The first violation stops the run: it prints the seed, the steps so far and a
command that replays the same draws. The last line of output is a one-line
summary; ``--json FILE`` writes it as an object.

    python3 -m tests.lab.faults [--rounds N] [--seed N] [--json FILE]
                                [--kinds KIND,...] [--hostile-report FILE]
"""

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict

import XenAPI

from iscsi_ha import config as config_module
from tests.lab import controllers, invariants, pool
from tests.lab.bench import BenchError, SessionWriter, take_down
from tests.lab.running import CLI, CLI_ENVIRONMENT, WritersWatch

DEFAULT_ROUNDS = 200
# How often the sampling thread looks for two Primaries or two VIP holders.
SAMPLE_SECONDS = 0.2
# Between looks while waiting for something the product must do.
POLL_SECONDS = 0.1
# The client writes this many blocks round-robin, pausing this long between writes.
WRITER_BLOCKS = 64
WRITER_INTERVAL = 0.01
# Plugin functions a move calls; a "slow xapi" holds them on one host.
MOVE_FNS = ("status", "demote", "promote", "remember-initiators")


class Violation(Exception):
    """An invariant broke, or the pool did not settle; the message says which."""


class Run(object):
    """One fault run over one lab: the draws, the history of steps, the checks."""

    def __init__(self, state_dir, seed, say):
        self.state_dir = state_dir
        self.seed = seed
        self.say = say
        self.history = []
        self.round = 0
        self.kind = None
        self.writer = None
        self.sampler = None
        self.failovers = 0
        self.dark_by_kind = {}

    def lab(self):
        return pool.Lab.load(self.state_dir)

    def config(self, name=None):
        lab = self.lab()
        return config_module.load(lab.hosts[name or lab.record["master"]]["config"])

    def settle_seconds(self):
        """The longest a correct pool may take to settle after a fault, from the
        product's own settings: the next safety pass, its observation, its action."""
        config = self.config()
        return config.controller_interval + config.peer_timeout + config.action_timeout

    def step(self, text):
        """Record a step of the round, then check what must always hold."""
        self.note(text)
        self.check_always()

    def note(self, text):
        """Record a step that cannot be checked at once (a tgtd is frozen: asking it
        would wait until it thaws)."""
        self.history.append("round %d %s: %s" % (self.round, self.kind, text))

    def check_always(self):
        if self.sampler is not None and self.sampler.violations:
            seen = self.sampler.violations[0]
            raise Violation("sampled at %s: Primaries %s, VIP holders %s" % (
                time.strftime("%H:%M:%S", time.localtime(seen["at"])),
                ", ".join(seen["primaries"]) or "none", ", ".join(seen["vip"]) or "none"))
        broken = invariants.always(invariants.look(self.lab()))
        if broken:
            raise Violation("; ".join(broken))

    def serving(self):
        seen = invariants.look(self.lab())
        return [name for name, host in seen.items() if host["role"] == invariants.PRIMARY]

    def settle(self, manual=False):
        """Wait until the pool has settled; a Violation when it does not in time."""
        limit = self.settle_seconds()
        deadline = time.monotonic() + limit
        while True:
            lab = self.lab()
            broken = invariants.settled(invariants.look(lab), lab.record["master"], manual)
            if not broken:
                break
            if time.monotonic() > deadline:
                raise Violation("not settled %.0f s after the fault: %s\n%s" % (
                    limit, "; ".join(broken), "\n".join(controllers.tail(lab, name)
                                                        for name in sorted(lab.hosts))))
            self.check_always()
            time.sleep(POLL_SECONDS)
        self.check_always()
        try:
            self.writer.wait_acknowledged(time.time(), limit, "the pool settled")
        except BenchError as exc:
            raise Violation("I/O does not work once settled: %s" % exc) from None

    def wait(self, predicate, what):
        """``predicate()``'s first true value; a Violation after the settle bound."""
        limit = self.settle_seconds()
        deadline = time.monotonic() + limit
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise Violation("never within %.0f s: %s" % (limit, what))
            self.check_always()
            time.sleep(POLL_SECONDS)

    def replay_command(self, kinds):
        args = "--seed %d --rounds %d" % (self.seed, self.round)
        if kinds != default_kinds():
            args += " --kinds %s" % ",".join(kinds)
        return 'make faults FAULTS_ARGS="%s"' % args


# -- helpers the faults share --------------------------------------------------------

def other(run, name):
    return run.lab().other_host(name)


def master(run):
    return run.lab().record["master"]


def held_calls(run, name):
    return run.lab().control("held_calls", name)


@contextlib.contextmanager
def holding(run, name, fns, reached=True):
    """Plugin calls of ``fns`` on ``name`` stuck until the block ends (released even when
    it fails, so that nothing stays held)."""
    pool.hold_plugin(run.state_dir, name, fns)
    run.step("plugin calls %s on %s held" % (",".join(fns), name))
    try:
        yield
    finally:
        released = pool.release_plugin(run.state_dir, name, reached)
        run.step("released %d held call(s) on %s (%s)" % (
            released["released_calls"], name, "run" if reached else "CANNOT_CONTACT_HOST"))


def iscsi_ha_cli(run, name, *args):
    """``iscsi-ha --config <name's config> ARGS`` in host ``name``'s namespace, as a
    sysadmin runs it on dom0; a Violation on a traceback."""
    lab = run.lab()
    process = subprocess.run(
        ["ip", "netns", "exec", lab.record["namespaces"][name], sys.executable, CLI,
         "--config", lab.hosts[name]["config"]] + list(args), cwd="/", env=CLI_ENVIRONMENT,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        universal_newlines=True, timeout=run.settle_seconds())
    if "Traceback" in process.stdout + process.stderr:
        raise Violation("iscsi-ha %s on %s: traceback:\n%s" % (" ".join(args), name,
                                                              process.stderr))
    return process.returncode, process.stdout + process.stderr


def manual(run, switch):
    code, output = iscsi_ha_cli(run, master(run), "manual", switch, "--reason",
                                "fault run round %d" % run.round)
    if code != 0:
        raise Violation("iscsi-ha manual %s refused: %s" % (switch, output.strip()))
    run.step("manual mode %s" % switch)


def planned_no_wait(run, target, check=True):
    pool.designate_master(run.state_dir, target, wait=False)
    (run.step if check else run.note)("pool master designated: %s (not waiting)" % target)


def restart_controller(run, name):
    controllers.start(run.lab(), name)
    run.step("controller of %s started" % name)


def kill_tgtd(run, name):
    lab = run.lab()
    daemon = lab.tgtd(name)
    if daemon is not None:
        daemon.process.send_signal(signal.SIGKILL)
        daemon.stop(timeout=2)  # reaps it and removes its socket files
    run.step("tgtd of %s killed" % name)


def write_config(lab, name, text):
    with open(lab.hosts[name]["config"], "w") as handle:
        handle.write(text)


# -- the faults ------------------------------------------------------------------------
# Each takes the run and the round's random generator, draws everything it will
# do before acting (so a replay draws the same), and leaves the pool to settle.

def fault_planned(run, rng):
    """A planned master change to the other host (``xe pool-designate-new-master``)."""
    target = other(run, master(run))
    pool.designate_master(run.state_dir, target)
    run.step("planned master change to %s: %s serves" % (target, target))


def fault_host_failure(run, rng):
    """A host loses power (the master or the slave); the elector makes the survivor
    master; the host boots again and rejoins as a slave."""
    victim = rng.choice(sorted(run.lab().hosts))
    down_for = rng.uniform(0.0, 1.0)
    result = pool.fail_host(run.state_dir, victim)
    run.step("%s failed; master now %s" % (victim, result["master"]))
    time.sleep(down_for)
    pool.restore_host(run.state_dir, victim)
    run.step("%s restored after %.2f s" % (victim, down_for))


def fault_controller_kill(run, rng):
    """SIGKILL a controller: while idle, at a random point of a planned move, or between
    the old master's demote and the new master's promote; started again."""
    when = rng.choice(("idle", "during-move", "between-demote-and-promote"))
    old = master(run)
    new = other(run, old)
    if when == "idle":
        victim = rng.choice((old, new))
        time.sleep(rng.uniform(0.0, 0.5))
        controllers.kill(run.lab(), victim)
        run.step("controller of %s killed while idle" % victim)
        restart_controller(run, victim)
    elif when == "during-move":
        delay = rng.uniform(0.0, 1.5)
        planned_no_wait(run, new)
        time.sleep(delay)
        controllers.kill(run.lab(), new)
        run.step("controller of %s killed %.2f s into the move" % (new, delay))
        restart_controller(run, new)
    else:
        with holding(run, new, ["promote"], reached=False):
            planned_no_wait(run, new)
            run.wait(lambda: invariants.look(run.lab())[old]["role"] != invariants.PRIMARY,
                     "%s demoted by %s's controller" % (old, new))
            run.wait(lambda: held_calls(run, new) == 1, "the promote of %s sent" % new)
            controllers.kill(run.lab(), new)
            run.step("controller of %s killed between demote and promote" % new)
        restart_controller(run, new)


def fault_tgtd_kill(run, rng):
    """tgtd dies on one host and is started again (as systemd restarts it); the master's
    safety pass rebuilds its target."""
    victim = rng.choice(sorted(run.lab().hosts))
    down_for = rng.uniform(0.0, 0.5)
    kill_tgtd(run, victim)
    time.sleep(down_for)
    run.lab().start_tgtd(victim)
    run.step("tgtd of %s started again after %.2f s" % (victim, down_for))


def fault_replication(run, rng):
    """The replication link is cut, and healed; sometimes a planned master change is asked
    for meanwhile (it must wait: the storage stays put until the link is back)."""
    move = rng.random() < 0.3
    cut_for = rng.uniform(0.2, 1.5)
    pool.cut_replication(run.state_dir)
    run.step("replication cut")
    if move:
        planned_no_wait(run, other(run, master(run)))
    time.sleep(cut_for)
    pool.heal_replication(run.state_dir)
    run.step("replication healed after %.2f s" % cut_for)


def fault_xapi_restart(run, rng):
    """One host's xapi restarts (a crash, a toolstack restart): its sessions and event
    streams are gone, as after every master change."""
    victim = rng.choice(sorted(run.lab().hosts))
    run.lab().control("restart_xapi", victim)
    run.step("xapi of %s restarted" % victim)


def fault_xapi_slow(run, rng):
    """One host's xapi is slow to pass plugin calls on during a planned move, then passes
    them (slow) or gives them up (CANNOT_CONTACT_HOST, a timeout)."""
    old = master(run)
    victim = rng.choice((old, other(run, old)))
    reached = rng.random() < 0.5
    slow_for = rng.uniform(0.2, 2.0)
    with holding(run, victim, list(MOVE_FNS), reached=reached):
        planned_no_wait(run, other(run, old))
        time.sleep(slow_for)


def fault_plugin_hang(run, rng):
    """A plugin call of a planned move hangs for a while, then goes on: either xapi holds
    the promote or the demote on its way to the plugin (its caller's call stays open), or
    the plugin itself hangs in ``tgtadm`` because that host's tgtd is frozen (SIGSTOP,
    then SIGCONT)."""
    old = master(run)
    new = other(run, old)
    victim, fn = rng.choice(((old, "demote"), (new, "promote")))
    frozen = rng.random() < 0.5
    hang_for = rng.uniform(0.5, 3.0)
    if not frozen:
        with holding(run, victim, [fn]):
            planned_no_wait(run, new)
            run.wait(lambda: held_calls(run, victim) >= 1, "the %s of %s sent" % (fn, victim))
            time.sleep(hang_for)
        return
    tgtd = run.lab().hosts[victim]["tgtd"]["pid"]
    os.kill(tgtd, signal.SIGSTOP)
    try:
        run.note("tgtd of %s frozen" % victim)
        planned_no_wait(run, new, check=False)
        time.sleep(hang_for)
    finally:
        os.kill(tgtd, signal.SIGCONT)
    run.step("tgtd of %s thawed after %.2f s" % (victim, hang_for))


def fault_stale_lock(run, rng):
    """A process died holding a host's action lock (its file still names it); a planned
    move then needs that host's lock."""
    victim = rng.choice(sorted(run.lab().hosts))
    lab = run.lab()
    lock_path = config_module.load(lab.hosts[victim]["config"]).lock_path
    holder = subprocess.Popen(
        ["ip", "netns", "exec", lab.record["namespaces"][victim], sys.executable, "-c",
         "import fcntl, os, sys, time\n"
         "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\n"
         "os.ftruncate(fd, 0); os.write(fd, b'%d\\n' % os.getpid())\n"
         "print('locked', flush=True)\n"
         "time.sleep(600)\n", lock_path],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, universal_newlines=True)
    try:
        holder.stdout.readline()
    finally:
        holder.kill()
        holder.wait(10)
    run.step("a process holding %s's action lock died (pid %d)" % (victim, holder.pid))
    fault_planned(run, rng)


def fault_plugin_race(run, rng):
    """Two plugin calls at once on one host (two callers racing): each ends with a
    result or a clear ISCSI_HA_* failure, never two writers."""
    old = master(run)
    victim = rng.choice((old, other(run, old)))
    if victim == old:
        fns = rng.choice((("promote", "promote"), ("promote", "status"),
                          ("status", "status")))
    else:
        fns = rng.choice((("demote", "demote"), ("demote", "status"), ("promote", "status")))
    answers = []

    def call(fn):
        lab = pool.Lab.load(run.state_dir)
        with lab.xapi() as session:
            answers.append(lab.call_plugin(session, victim, fn))

    threads = [threading.Thread(target=call, args=(fn,)) for fn in fns]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(run.settle_seconds())
    outcomes = []
    for answer in answers:
        if answer["ok"]:
            outcomes.append("%s ok" % answer["fn"])
        elif str(answer["error"][0]).startswith("ISCSI_HA_"):
            outcomes.append("%s %s" % (answer["fn"], answer["error"][0]))
        else:
            raise Violation("%s on %s racing %s failed without an ISCSI_HA_* code: %s" % (
                answer["fn"], victim, "+".join(fns), answer["error"]))
    run.step("%s raced on %s: %s" % ("+".join(fns), victim, ", ".join(outcomes)))


def fault_manual_mode(run, rng):
    """Manual mode on, a pause (the controller must only observe), manual mode off."""
    manual(run, "on")
    time.sleep(rng.uniform(0.0, 1.0))
    run.check_always()
    manual(run, "off")


def fault_configs_differ(run, rng):
    """One host's config is made to differ (its initiator list), a planned move is asked
    for (it must not happen while they differ), then the config is put back."""
    old = master(run)
    victim = rng.choice((old, other(run, old)))
    lab = run.lab()
    with open(lab.hosts[victim]["config"]) as handle:
        original = handle.read()
    if "\ninitiators = ALL\n" not in original:
        raise Violation("%s's config has no 'initiators = ALL' line to change" % victim)
    since = time.time()
    write_config(lab, victim, original.replace("\ninitiators = ALL\n",
                                               "\ninitiators = 192.0.2.0/24\n"))
    run.step("%s's config made to differ" % victim)
    try:
        new = other(run, old)
        planned_no_wait(run, new)
        refused = run.wait(lambda: controllers.first_pass(run.lab(), new, since, ("refused",)),
                           "a refused pass on %s" % new)
        run.step("%s's controller refused: %s" % (new, refused["reason"]))
        seen = invariants.look(run.lab())
        if seen[new]["role"] == invariants.PRIMARY:
            raise Violation("%s was promoted while the configs differed" % new)
    finally:
        write_config(lab, victim, original)
        run.step("%s's config put back" % victim)


def fault_stale_db(run, rng):
    """The master dies right after pool other_config changes its last database backup did
    not see; the elector's emergency transition starts the survivor's xapi from that stale
    backup. Either manual mode went on and off just before (the survivor must take over),
    or manual mode is on at the death: the stale database has lost the flag, the
    survivor's own copy of it must keep its controller observing until the sysadmin
    promotes it by hand, brings the dead host back and turns manual mode off."""
    on_at_death = rng.random() < 0.5
    victim = master(run)
    survivor = other(run, victim)
    manual(run, "on")
    if not on_at_death:
        manual(run, "off")
        result = pool.fail_host(run.state_dir, victim)
        run.step("%s failed right after; master now %s, its database a stale backup"
                 % (victim, result["master"]))
        pool.restore_host(run.state_dir, victim)
        run.step("%s restored" % victim)
        return
    died = time.time()
    pool.fail_host(run.state_dir, victim, wait=False)
    run.step("%s failed in manual mode; %s made master from a stale backup"
             % (victim, survivor))
    observing = run.wait(lambda: controllers.first_pass(run.lab(), survivor, died,
                                                        ("observing", "done", "in-place")),
                         "a pass of %s's controller as master" % survivor)
    if observing["outcome"] != "observing" or "manual mode" not in observing["reason"]:
        raise Violation("%s's controller acted in manual mode (the stale database lost the "
                        "flag): %s: %s" % (survivor, observing["outcome"],
                                           observing["reason"]))
    run.step("%s's controller only observes: %s" % (survivor, observing["reason"]))
    code, output = iscsi_ha_cli(run, survivor, "promote", survivor, "--peer-down",
                                "--reason", "fault run round %d" % run.round)
    if code != 0:
        raise Violation("iscsi-ha promote %s --peer-down refused: %s"
                        % (survivor, output.strip()))
    run.step("%s promoted by hand (--peer-down)" % survivor)
    pool.restore_host(run.state_dir, victim)
    run.step("%s restored" % victim)
    run.wait(lambda: not invariants.settled(invariants.look(run.lab()), survivor, True),
             "%s serving with both replicas in sync" % survivor)
    manual(run, "off")


# name -> (fault, weight in the default mix)
FAULTS = OrderedDict([
    ("planned", (fault_planned, 3)),
    ("host_failure", (fault_host_failure, 2)),
    ("controller_kill", (fault_controller_kill, 2)),
    ("tgtd_kill", (fault_tgtd_kill, 1)),
    ("replication", (fault_replication, 1)),
    ("xapi_restart", (fault_xapi_restart, 1)),
    ("xapi_slow", (fault_xapi_slow, 1)),
    ("plugin_hang", (fault_plugin_hang, 1)),
    ("stale_lock", (fault_stale_lock, 1)),
    ("plugin_race", (fault_plugin_race, 1)),
    ("manual_mode", (fault_manual_mode, 1)),
    ("configs_differ", (fault_configs_differ, 1)),
    ("stale_db", (fault_stale_db, 1)),
])
# Kinds left out of the default mix (each with why); --kinds still runs them.
EXCLUDED = OrderedDict()


def default_kinds():
    return [kind for kind in FAULTS if kind not in EXCLUDED]


# -- the run ------------------------------------------------------------------------------

def run_rounds(run, kinds, rounds, rng, counts):
    weights = [FAULTS[kind][1] for kind in kinds]
    for number in range(1, rounds + 1):
        run.round = number
        kind = rng.choices(kinds, weights)[0]
        # Each round's own generator: what one fault draws never shifts the next rounds.
        round_rng = random.Random(rng.random())
        run.kind = kind
        counts[kind] = counts.get(kind, 0) + 1
        before = run.serving()
        started = time.time()
        FAULTS[kind][0](run, round_rng)
        run.settle()
        after = run.serving()
        if after != before:
            run.failovers += 1
        run.writer.log.refresh()
        window = run.writer.log.dark_window(started, time.time())
        dark = round(window[1] - window[0], 3) if window else None
        if dark is not None:
            run.dark_by_kind[kind] = max(run.dark_by_kind.get(kind, 0.0), dark)
        run.history.append("round %d %s: settled, %s serves, longest gap between "
                           "acknowledged writes %.3f s" % (number, kind, ",".join(after),
                                                            dark or 0.0))
        run.say("round %d/%d %s: settled in %.1f s, %s serves, dark %.3f s\n"
                % (number, rounds, kind, time.time() - started, ",".join(after), dark or 0.0))


def hostile_examples(path):
    """The hostile-input suite's example count, from its report when one is given: that
    suite runs apart (pytest with hypothesis), this runner injects none itself."""
    if not path:
        return 0
    with open(path) as handle:
        return int(json.load(handle)["hostile_examples"])


def summary_line(report):
    faults = " ".join("%s=%d" % item for item in sorted(report["faults"].items()))
    return ("faults: %d rounds, %d violations, %d lost of %d acknowledged writes, "
            "%d failovers, max dark %.3f s, seed %d; faults by kind: %s"
            % (report["rounds"], report["violations"], report["lost_acknowledged_writes"],
               report["acknowledged_writes"], report["failovers"], report["max_dark_s"],
               report["seed"], faults or "none"))


def execute(options, say):
    """Run the rounds; returns the report (with ``violation`` and ``history`` when one
    stopped the run)."""
    state_dir = tempfile.mkdtemp(prefix="iscsi-ha-faults-")
    run = Run(state_dir, options.seed, say)
    counts = {}
    rng = random.Random(options.seed)
    report = {"seed": options.seed, "rounds": 0, "violations": 0,
              "lost_acknowledged_writes": 0, "acknowledged_writes": 0, "failovers": 0,
              "max_dark_s": 0.0, "hostile_examples": hostile_examples(options.hostile_report),
              "faults": counts}
    began = time.time()
    try:
        say("bringing the lab up in %s (seed %d)\n" % (state_dir, options.seed))
        description = pool.up(state_dir)
        say("lab is up: state %s, namespaces %s-*\n" % (state_dir, run.lab().record["prefix"]))
        run.writer = SessionWriter(description, os.path.join(state_dir, "writer.log"),
                                   "faults-%d" % options.seed)
        run.writer.start()
        with WritersWatch(lambda: invariants.writers(pool.Lab.load(state_dir)),
                          SAMPLE_SECONDS, stop_at_first=True) as run.sampler:
            try:
                run_rounds(run, options.kinds, options.rounds, rng, counts)
            except (Violation, pool.LabError, controllers.ControllerError, BenchError,
                    XenAPI.Failure, subprocess.SubprocessError) as exc:
                report["violations"] = 1
                report["violation"] = "round %d (%s): %s" % (run.round, run.kind, exc)
                report["replay"] = run.replay_command(options.kinds)
        report["rounds"] = run.round if report["violations"] else options.rounds
        report["failovers"] = run.failovers
        report["history"] = run.history
        run.writer.stop()
        run.writer.log.refresh()
        window = run.writer.log.dark_window(began, time.time())
        report["max_dark_s"] = round(window[1] - window[0], 3) if window else None
        report["max_dark_by_kind_s"] = run.dark_by_kind
        checked = run.writer.check()
        report["acknowledged_writes"] = checked["acknowledged_writes"]
        report["lost_acknowledged_writes"] = checked["lost_count"]
        if checked["lost_count"]:
            report["lost"] = checked["lost"]
    finally:
        if run.writer is not None:
            run.writer.stop()
        if not take_down(state_dir, say):
            report["violations"] = report["violations"] or 1
            report.setdefault("violation", "the lab did not come down cleanly")
    report["seconds"] = round(time.time() - began, 1)
    return report


def _kinds(text):
    kinds = [kind.strip() for kind in text.split(",") if kind.strip()]
    unknown = [kind for kind in kinds if kind not in FAULTS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError("unknown fault kind(s) %s; kinds are %s"
                                         % (", ".join(unknown) or "(none given)",
                                            ", ".join(FAULTS)))
    return kinds


def _positive(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0: %r" % text)
    return value


def build_parser():
    described = "\n".join("  %-16s %s" % (kind, " ".join(function.__doc__.split()))
                          for kind, (function, _) in FAULTS.items())
    excluded = "\n".join("  %-16s %s" % item for item in EXCLUDED.items()) or "  (none)"
    parser = argparse.ArgumentParser(
        prog="python3 -m tests.lab.faults", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="fault kinds (weights in the default mix: %s):\n%s\n\nleft out of the default "
               "mix:\n%s\n\nNot modelled: a network partition (the lab's dead host is dead "
               "for everyone), a plugin process that hangs by itself (a hung call is one "
               "xapi holds before its plugin starts).\n\nNeeds root (network namespaces), "
               "tgtd and libiscsi, as the lab does. `make faults FAULTS_ARGS='--rounds 40 "
               "--seed 7 --json FILE'` passes these."
               % (", ".join("%s %d" % (kind, weight) for kind, (_, weight) in FAULTS.items()),
                  described, excluded))
    parser.add_argument("--rounds", type=_positive, default=DEFAULT_ROUNDS,
                        help="rounds to run (default %(default)s)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of every draw (default: from the clock; printed)")
    parser.add_argument("--kinds", type=_kinds, default=None,
                        help="comma-separated fault kinds to draw from (default: the "
                             "default mix)")
    parser.add_argument("--json", metavar="FILE", help="write the report to FILE")
    parser.add_argument("--hostile-report", metavar="FILE",
                        help="a JSON file with the hostile-input suite's "
                             "'hostile_examples' count, carried into the report (default 0)")
    return parser


def main(argv=None):
    options = build_parser().parse_args(argv)
    if options.seed is None:
        options.seed = int(time.time())
    options.kinds = options.kinds or default_kinds()

    def say(text):
        sys.stdout.write(text)
        sys.stdout.flush()

    def interrupted(signum, frame):
        raise KeyboardInterrupt()

    signal.signal(signal.SIGTERM, interrupted)
    try:
        report = execute(options, say)
    except KeyboardInterrupt:
        say("interrupted\n")
        return 130
    if report.get("violation"):
        say("VIOLATION in %s\nseed %d; steps so far:\n%s\nreplay: %s\n" % (
            report["violation"], report["seed"], "\n".join(report.get("history", [])),
            report.get("replay", "")))
    if options.json:
        with open(options.json, "w") as handle:
            json.dump(report, handle, indent=2, sort_keys=True)
            handle.write("\n")
    say(summary_line(report) + "\n")
    return 1 if report["violations"] or report["lost_acknowledged_writes"] else 0


if __name__ == "__main__":
    sys.exit(main())

"""``python3 -m tests.lab.bench``, run as a user runs it: the report's shape, and a lab
that is gone afterwards, also when the run is interrupted.

No test here looks at how long anything took; the numbers are the bench's output.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

from tests.lab.running import ENV, REPO
from tests.support.tgtd import process_alive

BENCH = [sys.executable, "-m", "tests.lab.bench"]
LAB_IS_UP = re.compile(r"^lab is up: state (\S+), namespaces (\S+)-\*$")

IQN = "iqn.2026-01.org.example.lab:iscsi-ha"
VIP = "192.0.2.100"

TOTAL = "total: asked until the controller's pass finished"
PASS = TOTAL + "/controller's pass"
SNAPSHOT = PASS + "/snapshot (pool records, each host's status)"


def plugin_call(prefix, observe, steps):
    """The phases of one of the controller's plugin calls: the first step is logged only
    when it is done, so it shares its phase with the plugin's start and observe."""
    first, rest = steps[0], steps[1:]
    parts = ["XML-RPC, controller and XAPI",
             "in XAPI: plugin start, %s, %s" % (observe, first),
             "in XAPI: result, plugin exit, reply"] + ["in XAPI: " + step for step in rest]
    return set([prefix] + [prefix + "/" + part for part in parts])


PROMOTE = plugin_call(PASS + "/promote (new master)", "observe (incl. duplicate-address check)",
                      ["drbd-primary iscsi1", "target-build " + IQN, "vip-claim " + VIP])
DEMOTE = plugin_call(PASS + "/demote (old master)", "observe",
                     ["vip-release " + VIP, "target-remove " + IQN, "drbd-secondary iscsi1"])
COMMON = set([
    "client dark", TOTAL,
    TOTAL + "/xapi answers until the controller's pass starts",
    PASS, PASS + "/decide, alerts, publish",
    SNAPSHOT, SNAPSHOT + "/status (new master)", SNAPSHOT + "/pool records, XML-RPC",
    "lab only: pass finished until the lab saw both hosts' roles"]) | PROMOTE
PLANNED_PHASES = COMMON | DEMOTE | set([
    TOTAL + "/lab: login and lookups",
    TOTAL + "/XAPI pool.designate_new_master",
    TOTAL + "/commit until the new master's xapi answers (fuse, both xapis restart; lab "
            "timers)",
    SNAPSHOT + "/status (old master)"])
FAILURE_PHASES = COMMON | set([
    TOTAL + "/fault injection (lab only: controller killed, links down, tgtd killed, DRBD "
            "crashed)",
    TOTAL + "/elector: login, pool.emergency_transition_to_master",
    TOTAL + "/commit until the survivor's xapi answers as master (fuse, restart; lab timers)",
    SNAPSHOT + "/status (old master, dead)"])
EVERY_EVENT_MARKS = set(["client: last good read", "client: first good read again",
                    "VIP claimed (new master's log)", "XAPI: the new master answered a login",
                    "controller: pass started", "controller: pass finished"])
# Phases are rounded to 0.1 ms and a few clamped at 0 within the bench's 1 ms rounding.
SUM_TOLERANCE = 0.005


def children(phases, parent):
    return [name for name in phases if name.startswith(parent + "/")
            and "/" not in name[len(parent) + 1:]]


def listed_namespaces():
    return subprocess.check_output(["ip", "netns", "list"], universal_newlines=True)


def processes_mentioning(text):
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as cmdline:
                if text.encode() in cmdline.read():
                    found.append(int(pid))
        except (IOError, OSError, ValueError):
            pass
    return [pid for pid in found if process_alive(pid)]


def assert_lab_gone(state_dir, prefix):
    assert not os.path.exists(state_dir)
    assert prefix + "-" not in listed_namespaces()
    assert processes_mentioning(state_dir) == []


def test_one_round_reports_every_phase_and_takes_the_lab_down(tmp_path):
    report_path = str(tmp_path / "bench.json")
    process = subprocess.run(BENCH + ["--rounds", "1", "--json", report_path], cwd=REPO,
                             env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True, timeout=180)
    assert process.returncode == 0, process.stdout + process.stderr
    with open(report_path) as handle:
        report = json.load(handle)

    assert [(event["kind"], event["old_master"], event["new_master"])
            for event in report["events"]] == [("planned", "hostA", "hostB"),
                                               ("failure", "hostB", "hostA")]
    planned, failure = report["events"]
    assert set(planned["phases"]) == PLANNED_PHASES
    assert set(failure["phases"]) == FAILURE_PHASES
    # The new master's controller moved the storage, through its own xapi; the lab
    # made no promote or demote call.
    assert [(a["fn"], a["host"], a["ok"]) for a in planned["controller"]["actions"]] == [
        ("demote", "hostA", True), ("promote", "hostB", True)]
    assert [(a["fn"], a["host"], a["ok"]) for a in failure["controller"]["actions"]] == [
        ("promote", "hostA", True)]
    for event in report["events"]:
        phases = event["phases"]
        assert all(seconds >= 0 for seconds in phases.values()), phases
        for parent in phases:
            parts = children(phases, parent)
            if parts:
                assert abs(sum(phases[part] for part in parts) - phases[parent]) \
                    < SUM_TOLERANCE, (parent, parts, phases)
        assert EVERY_EVENT_MARKS <= set(event["timeline"])
        assert event["client"]["dark_seconds"] == phases["client dark"]
        assert event["controller"]["outcome"] == "done"
        moves = [call for call in event["xapi_calls"] if call["fn"] in ("promote", "demote")]
        assert [(call["fn"], call["listener"]) for call in moves] == [
            (action["fn"], event["new_master"] + "/netns")
            for action in event["controller"]["actions"]]
        timeline = event["timeline"]
        assert timeline["XAPI: the new master answered a login"] \
            <= timeline["controller: pass started"] \
            < timeline["VIP claimed (new master's log)"] <= timeline["controller: pass finished"]
        assert timeline["client: last good read"] < timeline["VIP claimed (new master's log)"]
    # The client's darkness spans the time nobody held the VIP, and the old master
    # served until its demote, well after the new master's xapi answered.
    timeline = planned["timeline"]
    assert (timeline["XAPI: the new master answered a login"]
            < timeline["VIP released (old master's log)"]
            < timeline["client: first good read again"])

    assert set(report["summary"]["planned"]["phases"]) == PLANNED_PHASES
    assert set(report["summary"]["failure"]["phases"]) == FAILURE_PHASES
    assert report["summary"]["planned"]["phases"]["client dark"]["n"] == 1
    assert len(report["primitives"]) == 7
    assert all(len(values) == 1 and values[0] >= 0 for values in report["primitives"].values())
    for name in ["client dark", "controller's pass", "observe (incl. duplicate-address check)",
                 "XAPI pool.designate_new_master", "status (old master, dead)",
                 "arping -D, free address"]:
        assert name in process.stdout

    assert_lab_gone(report["lab"]["state_dir"], report["lab"]["prefix"])
    assert not [pid for pid in report["lab"]["pids"].values() if process_alive(pid)]


def test_ctrl_c_in_the_middle_of_a_round_still_takes_the_lab_down():
    process = subprocess.Popen(BENCH + ["--rounds", "5"], cwd=REPO, env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               universal_newlines=True)
    try:
        for line in process.stdout:
            up = LAB_IS_UP.match(line.strip())
            if up:
                break
        assert up, process.stderr.read()
        state_dir, prefix = up.groups()
        with open(os.path.join(state_dir, "lab.json")) as handle:
            record = json.load(handle)
        pids = [record["xapi"]["pid"]] + [host[daemon]["pid"]
                                          for host in record["hosts"].values()
                                          for daemon in ("tgtd", "controller")]
        # Lands inside the first round (0.3 s of client reads, then a master change of
        # several seconds); wherever it lands, the lab must be gone afterwards.
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        output, errors = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, output + errors
    assert "interrupted" in output and "lab taken down" in output
    assert "Traceback" not in errors
    assert_lab_gone(state_dir, prefix)
    assert not [pid for pid in pids if process_alive(pid)]

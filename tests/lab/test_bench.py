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


def plugin_call(prefix, observe=None, steps=()):
    """The phases of one host.call_plugin; status reports no time of its own."""
    parts = ["XAPI simulator and XML-RPC"]
    if observe is None:
        parts.append("plugin process (whole)")
    else:
        parts += ["plugin process start and exit", "in plugin", "in plugin/plan and log",
                  "in plugin/" + observe] + ["in plugin/" + step for step in steps]
    return set([prefix] + [prefix + "/" + part for part in parts])


STATUS = plugin_call("master change/status (new master)")
PROMOTE = plugin_call("master change/promote (new master)",
                      "observe (incl. duplicate-address check)",
                      ["drbd-primary iscsi1", "target-build " + IQN, "vip-claim 192.0.2.100"])
DEMOTE = plugin_call("master change/demote (old master)", "observe",
                     ["vip-release 192.0.2.100", "target-remove " + IQN,
                      "drbd-secondary iscsi1"])
COMMON = set(["client dark", "master change",
              "master change/other XAPI calls (logout, login, lookups)"])
PLANNED_PHASES = COMMON | STATUS | DEMOTE | PROMOTE | set([
    "master change/XAPI pool.designate_new_master",
    "master change/XAPI restart: fuse, then both xapis start (lab timers)"])
FAILURE_PHASES = COMMON | STATUS | PROMOTE | set([
    "master change/fault injection (lab only: links down, tgtd killed, DRBD crashed)",
    "master change/XAPI pool.emergency_transition_to_master",
    "master change/XAPI restart: fuse, then the survivor starts as master (lab timers)"])
CLIENT_MARKS = set(["client: last good read", "client: first good read again",
                    "VIP claimed (new master's log)", "XAPI: the new master answered"])


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
                                               ("failure", None, "hostA")]
    planned, failure = report["events"]
    assert set(planned["phases"]) == PLANNED_PHASES
    assert set(failure["phases"]) == FAILURE_PHASES
    for event in report["events"]:
        assert all(seconds >= 0 for seconds in event["phases"].values()), event["phases"]
        assert CLIENT_MARKS <= set(event["timeline"])
        assert event["client"]["dark_seconds"] == event["phases"]["client dark"]
        # The lab's own calls, on loopback; a host's fence-peer handler calls from inside.
        assert [call["fn"] for call in event["xapi_calls"] if call["fn"]
                and call["listener"].endswith("/loopback") and call["outcome"] == "Success"] == [
            step["fn"] for step in event["storage"]]
    # The client's darkness spans the time nobody held the VIP, and the old master
    # served until the new one's xapi answered.
    timeline = planned["timeline"]
    assert timeline["XAPI: the new master answered"] < timeline["VIP released (old master's log)"]
    assert timeline["client: last good read"] < timeline["VIP claimed (new master's log)"]
    assert timeline["VIP released (old master's log)"] < timeline["client: first good read again"]

    assert set(report["summary"]["planned"]["phases"]) == PLANNED_PHASES
    assert report["summary"]["planned"]["phases"]["client dark"]["n"] == 1
    assert len(report["primitives"]) == 7
    assert all(len(values) == 1 and values[0] >= 0 for values in report["primitives"].values())
    for name in ["client dark", "observe (incl. duplicate-address check)",
                 "XAPI pool.designate_new_master", "plugin process start and exit",
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
        pids = [record["xapi"]["pid"]] + [host["tgtd"]["pid"]
                                          for host in record["hosts"].values()]
        # Lands inside the first round (0.3 s of client reads, then a ~2 s master
        # change); wherever it lands, the lab must be gone afterwards.
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

"""``python3 -m tests.lab.bench``, run as a user runs it: the report's shape, every event
recovered with no acknowledged write lost, and labs that are gone afterwards, also when
the run is interrupted.

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

SUMMARY_KEYS = {"planned_dark_s", "planned_dark_max_s", "unplanned_dark_s",
                "unplanned_dark_max_s", "baseline_poll_planned_dark_s",
                "baseline_poll_unplanned_dark_s", "plugin_status_s", "python_startup_s",
                "controller_idle_cpu_pct", "lost_acknowledged_writes", "runs"}
# As the config module reads them: on/off as booleans.
BASELINE = {"events": False, "interval": 10, "tickle": False, "overlap": False,
            "duplicate_check": "arping"}


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


def test_a_small_run_of_both_modes_reports_the_summary_and_loses_no_write(tmp_path):
    report_path = str(tmp_path / "bench.json")
    process = subprocess.run(
        BENCH + ["--planned", "1", "--failures", "1", "--baseline-planned", "1",
                 "--baseline-failures", "1", "--idle-seconds", "2", "--repeats", "2",
                 "--seed", "test-bench", "--json", report_path],
        cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        universal_newlines=True, timeout=600)
    assert process.returncode == 0, process.stdout + process.stderr
    with open(report_path) as handle:
        report = json.load(handle)

    summary = report["summary"]
    assert set(summary) == SUMMARY_KEYS
    for key in SUMMARY_KEYS - {"runs"}:
        assert isinstance(summary[key], (int, float)) and summary[key] >= 0, (key, summary)
    assert summary["lost_acknowledged_writes"] == 0
    runs = summary["runs"]
    assert [(run["mode"], run["kind"], run["old_master"], run["new_master"]) for run in runs] \
        == [("product", "planned", "hostA", "hostB"), ("product", "failure", "hostB", "hostA"),
            ("baseline", "planned", "hostA", "hostB"),
            ("baseline", "failure", "hostB", "hostA")]
    for run in runs:
        assert run["recovered"] is True
        assert 0 <= run["dark_s"] <= run["dark_total_s"]
        if run["kind"] == "planned":
            # The demote's Secondary and the promote's Primary, both inside the window.
            assert 0 < run["drbd_steps_s"] <= run["dark_s"]
        # The new master's controller moved the storage; the lab made no plugin call.
        assert run["controller"]["outcome"] == "done"
        assert [(a["fn"], a["host"], a["ok"]) for a in run["controller"]["actions"]][-1] \
            == ("promote", run["new_master"], True)
        timeline = run["timeline"]
        assert timeline["client: last acknowledged write"] \
            <= timeline["client: first acknowledged write again"]
    for run in runs:
        if run["kind"] == "failure":
            # The elector acted only once the survivor's DRBD had noticed the death.
            assert run["elector_wait_s"] >= 0
            assert run["timeline"]["host died (fault injected)"] \
                <= run["timeline"]["elector acted (emergency transition)"] \
                <= run["timeline"]["new master's xapi answered"]
    modes = report["modes"]
    for host in ("hostA", "hostB"):
        assert modes["baseline"]["lab"]["configured"][host] == BASELINE
        assert modes["product"]["lab"]["configured"][host]["events"] is True
    for mode in modes.values():
        assert mode["writes"]["ok"] is True
        assert mode["writes"]["acknowledged_writes"] > 0
        if not mode["writer"].get("killed"):
            assert mode["writes"]["acknowledged_writes"] == mode["writer"]["acknowledged"]
        assert set(mode["idle_cpu_pct"]) == {"hostA", "hostB"}
    assert "lost acknowledged writes: 0" in process.stdout
    for mode in modes.values():
        assert_lab_gone(mode["lab"]["state_dir"], mode["lab"]["prefix"])


def test_ctrl_c_in_the_middle_of_a_round_still_takes_the_lab_down():
    process = subprocess.Popen(BENCH + ["--planned", "5", "--idle-seconds", "1"], cwd=REPO,
                               env=ENV,
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
        # Lands while the session writer starts or the controllers idle, or in the first
        # master change; wherever it lands, the lab and the writer must be gone afterwards.
        time.sleep(2.0)
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

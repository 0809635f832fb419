"""libiscsi's conformance core set through the VIP after each kind of failover.

tests/lab/conformance.py names the set, what is left out for time (unless
ISCSI_HA_CONFORMANCE=full) and what libiscsi skips, each with its reason.
"""

import json
import os
import subprocess
import sys

from tests.lab import conformance
from tests.lab.running import ENV, REPO


def conformance_report(lab):
    process = subprocess.run(
        ["ip", "netns", "exec", lab.description["client_netns"], sys.executable, "-m",
         "tests.lab.conformance", lab.url], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, universal_newlines=True, timeout=1800)
    assert process.returncode in (0, 1), process.stderr
    return json.loads(process.stdout)


def assert_conformant(lab, after):
    report = conformance_report(lab)
    full = os.environ.get(conformance.FULL_VARIABLE) == "full"
    assert report["listed"], "iscsi-test-cu --list names none of the core set"
    assert set(conformance.FAMILIES) == set(t.split(".")[0] for t in report["listed"])
    assert report["failed"] == [], "after %s:\n%s" % (after, report["output"])
    assert report["not_run"] == [], "after %s:\n%s" % (after, report["output"])
    assert report["exit_code"] == 0, report["output"]
    assert report["skipped"] == sorted(conformance.SKIPPED_BY_LIBISCSI)
    assert report["left_out"] == ([] if full else sorted(conformance.SLOW))
    passed = [t for t, result in report["results"].items() if result == "passed"]
    assert len(passed) == len(report["listed"]) - len(report["skipped"]) - len(
        report["left_out"])


def test_the_core_set_passes_through_the_vip_after_a_planned_and_an_unplanned_failover(lab):
    moved = lab("designate-master", "hostB")
    assert moved["controller"]["outcome"] == "done"
    lab.assert_serving("hostB")
    assert_conformant(lab, "a planned switchover to hostB")

    failed = lab("fail-host", "hostB")
    assert (failed["master"], failed["controller"]["outcome"]) == ("hostA", "done")
    lab.assert_serving("hostA")
    assert_conformant(lab, "hostB's failure, hostA taking over")

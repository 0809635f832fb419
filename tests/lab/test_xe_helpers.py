"""The xe helper scripts against the lab pool, with a stand-in for dom0's xe."""

import os
import stat
import subprocess
import sys
import time

import pytest

from tests.lab import pool

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LONG = 30.0  # bounds on waits; they only stop a broken run


@pytest.fixture
def xe(lab, tmp_path):
    """An ``xe`` executable talking to the lab's XAPI as root."""
    path = str(tmp_path / "xe")
    with open(path, "w") as script:
        script.write("#!/bin/sh\nPYTHONPATH=%s exec %s -m tests.lab.xe -s %s -u %s -pw %s "
                     "\"$@\"\n" % (REPO, sys.executable, lab.description["xapi_url"],
                                   pool.USERNAME, pool.PASSWORD))
    os.chmod(path, stat.S_IRWXU)
    return path


def helper(xe_path, name, *args):
    process = subprocess.run([os.path.join(REPO, "xe-helpers", name)] + list(args),
                             env=dict(os.environ, XE=xe_path), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, universal_newlines=True, timeout=60)
    return process.returncode, process.stdout


def manual_mode_on(lab):
    """`iscsi-ha manual on` as a sysadmin runs it on hostA, then wait until every host's
    copy of the flag (which the helper reads) says so."""
    code, _, err = lab.cli("hostA", "manual", "on", "--reason", "test")
    assert code == 0, err
    deadline = time.time() + LONG
    while not all(host["ok"] and host["result"]["manual_mode"]
                  for host in lab("status")["hosts"].values()):
        assert time.time() < deadline, "the hosts' copies of manual mode never said on"
        time.sleep(0.1)


def test_status_shows_every_host_as_a_table(lab, xe):
    code, output = helper(xe, "iscsi-ha-status")
    assert code == 0, output
    for name, role in (("hostA", "primary"), ("hostB", "secondary")):
        uuid = lab.description["hosts"][name]["uuid"]
        assert "uuid %s: %s" % (uuid, role) in output


def test_move_in_manual_mode_demotes_the_others_then_promotes_the_chosen_host(lab, xe):
    manual_mode_on(lab)
    target = lab.description["hosts"]["hostB"]["uuid"]
    code, output = helper(xe, "iscsi-ha-move", target, "test move")
    assert code == 0, output
    moved = time.time()
    assert output.index("demoting") < output.index("promoting %s" % target)
    lab.assert_serving("hostB")
    assert lab.roles() == {"hostA": "secondary", "hostB": "primary"}
    # The master's controller only observes: its next pass leaves the storage on hostB.
    lab.wait_for_pass("hostA", "observing", moved)
    lab.assert_serving("hostB")
    code, _ = lab.client("iscsi-inq", lab.url)
    assert code == 0


def test_move_outside_manual_mode_is_refused_and_changes_nothing(lab, xe):
    target = lab.description["hosts"]["hostB"]["uuid"]
    code, output = helper(xe, "iscsi-ha-move", target, "test move")
    assert code == 1
    assert ("iscsi-ha-move: not moving: manual mode is off on %s: the controller keeps the "
            "pool master serving and would undo a hand-made move. Turn manual mode on first "
            "(iscsi-ha manual on --reason \"...\")" % target) in output
    assert "demoting" not in output and "promoting" not in output
    lab.assert_serving("hostA")
    assert lab.roles() == {"hostA": "primary", "hostB": "secondary"}


def test_move_to_an_outdated_host_leaves_the_storage_where_it_is(lab, xe):
    manual_mode_on(lab)
    lab("cut-replication")
    # DRBD notices a cut link only after its ping timeout; the Primary's
    # fence-peer handler then outdates hostB.
    deadline = time.time() + 30
    while lab("status")["hosts"]["hostB"]["result"]["resources"][0]["disk"] != "Outdated":
        assert time.time() < deadline, "hostB was never outdated"
        time.sleep(0.1)
    code, output = helper(xe, "iscsi-ha-move", lab.description["hosts"]["hostB"]["uuid"])
    assert code == 1
    assert "not moving: a DRBD disk on %s is not UpToDate (iscsi1 is Outdated)" \
        % lab.description["hosts"]["hostB"]["uuid"] in output
    assert "demoting" not in output
    lab.assert_serving("hostA")
    assert lab.roles() == {"hostA": "primary", "hostB": "secondary"}


def test_move_to_an_unknown_host_changes_nothing(lab, xe):
    code, output = helper(xe, "iscsi-ha-move", "00000000-0000-0000-0000-000000000000")
    assert code == 1
    assert "no host with uuid 00000000-0000-0000-0000-000000000000 in this pool" in output
    assert lab.roles() == {"hostA": "primary", "hostB": "secondary"}


def test_status_still_shows_the_survivor_when_a_host_is_down(lab, xe):
    lab("fail-host", "hostB")
    code, output = helper(xe, "iscsi-ha-status")
    assert code == 1
    hostB = lab.description["hosts"]["hostB"]["uuid"]
    assert "host %s: no answer from the iscsi-ha plugin" % hostB in output
    assert "uuid %s: primary" % lab.description["hosts"]["hostA"]["uuid"] in output


def test_move_to_a_host_without_tgtd_leaves_the_storage_where_it_is(lab, xe):
    manual_mode_on(lab)
    pool.Lab.load(lab.state).tgtd("hostB").stop()
    code, output = helper(xe, "iscsi-ha-move", lab.description["hosts"]["hostB"]["uuid"])
    assert code == 1
    assert "not moving: tgtd is not running on" in output
    assert "demoting" not in output
    lab.assert_serving("hostA")
    assert lab.roles()["hostA"] == "primary"

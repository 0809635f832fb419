"""The two-host pool lab, driven through its command line as other tools drive it.

The client namespace reads and writes the LUN through the floating IP, so what
these tests check is what a VM's storage would see across a master change, a
host failure and a cut replication link.
"""

import json
import os
import subprocess

import pytest
import XenAPI

from tests.lab import pool
from tests.lab.running import PY27, lab_command, start_lab, wait_until



def assert_same_storage(lab, seed, identity):
    assert lab.io("verify", "--seed", seed, "--blocks", "256")["ok"] is True
    assert (lab.vpd("0x80"), lab.vpd("0x83")) == identity


def plugin_calls(report):
    """(host, fn, ok) of each plugin call the controller's pass made, in order."""
    return [(action["host"], action["fn"], action["ok"]) for action in report["actions"]]


def assert_blocked_until(lab, why, undo):
    """hostB's controller refuses to take the storage for ``why``, says so in a XAPI
    message, and takes it once ``undo()`` has taken ``why`` away."""
    lab.assert_move_held_back(
        "refused", ["not moving the storage to hostB: ", why, "hostA keeps serving"],
        "ISCSI_HA_STORAGE_BLOCKED", why, undo=undo)


def test_up_serves_the_lun_through_the_vip_from_the_master(lab):
    assert lab.description["master"] == "hostA"
    assert lab.roles() == {"hostA": "primary", "hostB": "secondary"}
    lab.assert_serving("hostA")
    code, inquiry = lab.client("iscsi-inq", lab.url)
    assert code == 0 and "DIRECT_ACCESS" in inquiry
    code, listing = lab.client("iscsi-ls", "iscsi://%s" % pool.VIP)
    assert code == 0 and pool.IQN in listing


def test_planned_master_change_keeps_data_and_scsi_identity(lab):
    lab.io("write", "--seed", "before-switch", "--blocks", "256")
    identity = (lab.vpd("0x80"), lab.vpd("0x83"))
    moved = lab("designate-master", "hostB")
    assert moved["master"] == "hostB"
    assert moved["controller"]["outcome"] == "done"
    assert plugin_calls(moved["controller"]) == [("hostA", "demote", True),
                                                 ("hostB", "promote", True)]
    lab.assert_serving("hostB")
    assert lab.roles() == {"hostA": "secondary", "hostB": "primary"}
    code, _ = lab.client("iscsi-inq", lab.url)
    assert code == 0
    assert_same_storage(lab, "before-switch", identity)


def test_master_failure_moves_storage_to_the_survivor_without_losing_writes(lab):
    lab.io("write", "--seed", "before-failure", "--blocks", "256")
    identity = (lab.vpd("0x80"), lab.vpd("0x83"))
    failed = lab("fail-host", "hostA")
    assert failed["master"] == "hostB"
    assert failed["controller"]["outcome"] == "done"
    assert plugin_calls(failed["controller"])[-1] == ("hostB", "promote", True)
    lab.assert_serving("hostB")
    assert_same_storage(lab, "before-failure", identity)
    status = lab("status")
    assert status["master"] == "hostB"
    # Without XenServer HA the dead host still counts as live: xapi tries, then gives up.
    assert status["hosts"]["hostA"]["error"][0] == "CANNOT_CONTACT_HOST"

    lab.io("write", "--seed", "while-alone", "--blocks", "256")
    lab("restore-host", "hostA")
    resource = lab("status")["hosts"]["hostA"]["result"]["resources"][0]
    assert (resource["role"], resource["connection"], resource["disk"]) == (
        "Secondary", "Connected", "UpToDate")
    lab("designate-master", "hostA")
    lab.assert_serving("hostA")
    assert_same_storage(lab, "while-alone", identity)


def test_each_host_reads_its_own_config_at_the_plugins_default_path(lab):
    record = pool.Lab.load(lab.state).record
    for name in ("hostA", "hostB"):
        seen = subprocess.check_output(["ip", "netns", "exec", record["namespaces"][name],
                                        "cat", "/etc/iscsi-ha/iscsi-ha.conf"])
        with open(record["hosts"][name]["config"], "rb") as handle:
            assert seen == handle.read()


def test_a_planned_master_change_restarts_xapi_and_the_old_master_follows(lab):
    moved = lab("designate-master", "hostB")
    assert moved["xapi_restart_seconds"] > 0
    old_master = XenAPI.Session(lab.description["hosts"]["hostA"]["xapi_url"])
    with pytest.raises(XenAPI.Failure) as refused:
        old_master.xenapi.login_with_password(pool.USERNAME, pool.PASSWORD)
    assert refused.value.details == [
        "HOST_IS_SLAVE", lab.description["hosts"]["hostB"]["address"]]


def test_a_cut_replication_link_stops_a_move_to_the_outdated_host_until_it_heals(lab):
    lab.io("write", "--seed", "before-cut", "--blocks", "64")
    lab("cut-replication")
    # DRBD notices the cut after its ping timeout; the Primary's fence-peer handler
    # then outdates hostB's copy. What is written from now on only hostA has.
    wait_until(lambda: lab("status")["hosts"]["hostB"]["result"]["resources"][0]["disk"]
               == "Outdated", "hostB outdated")
    # Once hostB has resynced, its controller's next pass moves the storage by itself.
    assert_blocked_until(lab, "not connected to its peer, which may hold newer data",
                         lambda: lab("heal-replication"))


def test_down_removes_everything_and_can_run_twice(tmp_path):
    running = start_lab(tmp_path)
    namespaces = set(running.description["hosts"][name]["netns"] for name in ("hostA", "hostB"))
    namespaces.add(running.description["client_netns"])
    with open(os.path.join(running.state, pool.LAB_FILE)) as handle:
        record = json.load(handle)
    pids = [record["xapi"]["pid"]] + [host["tgtd"]["pid"] for host in record["hosts"].values()]
    assert lab_command("down", "--state", running.state) == (0, {"down": True,
                                                                  "was_up": True})
    listed = subprocess.check_output(["ip", "netns", "list"], universal_newlines=True)
    assert not [name for name in namespaces if name in listed]
    assert not [pid for pid in pids if pool.process_alive(pid)]
    assert not os.path.exists(running.state)
    assert not [name for name in namespaces if os.path.exists("/etc/netns/" + name)]
    assert lab_command("down", "--state", running.state) == (0, {"down": True,
                                                                  "was_up": False})


def test_commands_on_a_missing_lab_say_how_to_start_one(tmp_path):
    code, answer = lab_command("status", "--state", str(tmp_path / "none"))
    assert code == 1
    assert "run `python -m tests.lab up" in answer["error"]


def test_the_plugin_runs_on_python_27_through_xapi(tmp_path):
    running = start_lab(tmp_path, "--plugin-python", PY27, "--drbd-version", "8.4")
    try:
        status = running("status")
        assert status["hosts"]["hostA"]["result"]["role"] == "primary"
        with open(os.path.join(running.state, "xapi", "audit.log")) as audit:
            calls = [json.loads(line) for line in audit]
        assert any(call["method"] == "host.call_plugin" for call in calls)
        session = XenAPI.Session(running.description["xapi_url"])
        session.xenapi.login_with_password(pool.USERNAME, pool.PASSWORD)
        try:
            host = session.xenapi.host.get_by_uuid(running.description["hosts"]["hostA"]["uuid"])
            version = json.loads(session.xenapi.host.call_plugin(host, "iscsi-ha", "version", {}))
        finally:
            session.xenapi.session.logout()
        assert version["python"].startswith("2.7.")
        moved = running("designate-master", "hostB")
        assert plugin_calls(moved["controller"]) == [("hostA", "demote", True),
                                                     ("hostB", "promote", True)]
        running.assert_serving("hostB")
        # The survivor's DRBD 8.4 runs iscsi-ha's fence-peer handler, on 2.7 too.
        failed = running("fail-host", "hostB")
        assert failed["master"] == "hostA"
        assert plugin_calls(failed["controller"])[-1] == ("hostA", "promote", True), failed
        running.assert_serving("hostA")
        assert running.roles()["hostA"] == "primary"
    finally:
        lab_command("down", "--state", running.state)


def test_a_master_change_to_a_host_without_tgtd_leaves_the_storage_serving_until_it_runs(lab):
    pool.Lab.load(lab.state).tgtd("hostB").stop()
    # As `systemctl start tgt` would, on the control port hostB's config names.
    assert_blocked_until(lab, "tgtd is not running on hostB",
                         lambda: pool.Lab.load(lab.state).start_tgtd("hostB"))


def test_with_xenserver_ha_as_elector_a_master_failure_moves_the_storage(tmp_path):
    running = start_lab(tmp_path, "--elector", "xapi-ha")
    try:
        running.io("write", "--seed", "before-ha-failure", "--blocks", "64")
        failed = running("fail-host", "hostA")
        assert failed["master"] == "hostB"
        assert plugin_calls(failed["controller"])[-1] == ("hostB", "promote", True), failed
        running.assert_serving("hostB")
        assert running.io("verify", "--seed", "before-ha-failure", "--blocks", "64")["ok"]
    finally:
        lab_command("down", "--state", running.state)

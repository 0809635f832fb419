"""The controller in the lab: every host runs iscsi-ha-controller as systemd would, the
lab changes only what an elector changes, and the storage follows the pool master.

What each test checks is what a sysadmin and a VM would see: who is DRBD Primary
and holds the VIP (read from the DRBD double and ``ip`` in each namespace, not
from the product), whether a client writing through the VIP the whole time finds
every acknowledged write afterwards, the SCSI identity, the controller's reason
and the XAPI messages it raised.  A watcher samples the hosts all along and
fails the test on any moment with two Primaries or two VIP holders.
"""

import datetime
import json
import os
import subprocess
import time
from types import SimpleNamespace

from tests.lab import controllers, pool
from tests.lab.running import WritersWatch, wait_until
from tests.support.tgtd import start_time



def identity(lab):
    return lab.vpd("0x80"), lab.vpd("0x83")


def pool_conf(lab, host):
    with open(os.path.join(lab.state, "hosts", host, "pool.conf")) as handle:
        return handle.read()


def resource(lab, host):
    answer = lab("status")["hosts"][host]
    return answer["result"]["resources"][0] if answer["ok"] else None


def assert_intact(lab, scsi_identity):
    """The data written before, and the SCSI identity, as the client sees them; and the
    writer's I/O goes through again."""
    acknowledged = lab.acknowledged_writes()
    wait_until(lambda: lab.acknowledged_writes() > acknowledged, "the writer writes again")
    assert lab.io("verify", "--seed", "before", "--blocks", "128", "--lba", "1024")["ok"]
    assert identity(lab) == scsi_identity


def test_the_storage_follows_the_master_through_a_move_a_failure_and_a_return(lab):
    lab.io("write", "--seed", "before", "--blocks", "128", "--lba", "1024")
    scsi_identity = identity(lab)
    with WritersWatch(lab.writers) as watch:
        lab.start_writer("follows")

        moved = lab("designate-master", "hostB")
        assert moved["controller"]["outcome"] == "done"
        assert [(a["host"], a["fn"], a["ok"]) for a in moved["controller"]["actions"]] == [
            ("hostA", "demote", True), ("hostB", "promote", True)]
        lab.assert_serving("hostB")
        assert_intact(lab, scsi_identity)
        lab.wait_for_message("ISCSI_HA_FAILOVER_DONE")

        # hostB loses power; the elector makes hostA master by emergency transition.
        failed = lab("fail-host", "hostB")
        assert failed["master"] == "hostA"
        assert failed["controller"]["outcome"] == "done"
        assert "hostB" in failed["controller"]["reason"]
        lab.assert_serving("hostA")
        assert_intact(lab, scsi_identity)

        # It comes back believing it is the master (its pool.conf says so), and must
        # neither serve nor stay master: xapi makes it a slave, its controller idles.
        assert pool_conf(lab, "hostB") == "master"
        lab("restore-host", "hostB")
        assert pool_conf(lab, "hostB").startswith("slave:")
        assert lab.controller_state("hostB")["mode"] == "slave"
        wait_until(lambda: (resource(lab, "hostB") or {}).get("disk") == "UpToDate",
                   "hostB resynced")
        assert resource(lab, "hostB")["role"] == "Secondary"
        lab.assert_serving("hostA")
        assert_intact(lab, scsi_identity)

        lab.stop_writer()  # every acknowledged write reads back
    watch.assert_never_two_writers()


def test_with_every_controller_stopped_a_master_change_moves_nothing(lab):
    for host in ("hostA", "hostB"):
        assert lab("controller", "stop", host)["running"] is False
        assert lab.controller_log(host)[-1].endswith("controller: stopped (on SIGTERM)")
    moved = lab("designate-master", "hostB", "--no-wait")
    assert moved["master"] == "hostB"
    # The new master answers as master: with no controller, nothing follows.
    with pool.Lab.load(lab.state).xapi(master="hostB"):
        pass
    time.sleep(2)
    lab.assert_serving("hostA")
    assert lab("status")["master"] == "hostB"

    started = time.time()
    lab("controller", "start", "hostA")
    lab("controller", "start", "hostB")
    done = lab.wait_for_pass("hostB", "done", started)
    assert [(a["host"], a["fn"]) for a in done["actions"]] == [
        ("hostA", "demote"), ("hostB", "promote")]
    lab.assert_serving("hostB")


def test_a_controller_killed_between_demote_and_promote_finishes_after_restart(lab):
    with WritersWatch(lab.writers) as watch:
        lab.start_writer("killed")
        lab("hold-plugin", "hostB", "promote")
        lab("designate-master", "hostB", "--no-wait")
        wait_until(lambda: lab.drbd_roles()["hostA"] == "Secondary", "hostA demoted")
        # The promote is on its way and stuck; the controller dies now.
        wait_until(lambda: pool.Lab.load(lab.state).control("held_calls", "hostB") == 1,
                   "the promote sent")
        lab("controller", "kill", "hostB")
        assert lab("release-plugin", "hostB", "--unreached")["released_calls"] == 1
        assert lab.writers() == ([], [])  # dark, and never two writers

        restarted = time.time()
        lab("controller", "start", "hostB")
        done = lab.wait_for_pass("hostB", "done", restarted)
        assert [(a["host"], a["fn"]) for a in done["actions"]] == [("hostB", "promote")]
        lab.assert_serving("hostB")
        lab.stop_writer()
    watch.assert_never_two_writers()


def test_a_live_peer_that_does_not_answer_is_never_taken_over(lab):
    """hostA's plugin calls get stuck (its xapi overloaded): the controller's call times
    out, hostA still serves and is live, so hostB must not promote until hostA answers."""
    with WritersWatch(lab.writers) as watch:
        lab("hold-plugin", "hostA", "status", "demote")
        since = time.time()
        lab("designate-master", "hostB", "--no-wait")
        waiting = lab.wait_for_pass("hostB", "waiting", since)
        assert "hostA is neither confirmed demoted nor gone (it gives no status " \
            "(ISCSI_HA_NO_ANSWER" in waiting["reason"], waiting
        assert "another host answers for the VIP" in waiting["reason"], waiting
        lab.assert_serving("hostA")
        code, _ = lab.client("iscsi-inq", lab.url)
        assert code == 0
        lab.wait_for_message("ISCSI_HA_STORAGE_BLOCKED", "hostA")

        released = time.time()
        lab("release-plugin", "hostA")
        lab.wait_for_pass("hostB", "done", released)
        lab.assert_serving("hostB")
    watch.assert_never_two_writers()


def test_configs_that_differ_stop_a_move_until_they_agree(lab):
    config = lab.record()["hosts"]["hostB"]["config"]
    with open(config) as handle:
        original = handle.read()
    assert "\ninitiators = ALL\n" in original
    write(config, original.replace("\ninitiators = ALL\n", "\ninitiators = 192.0.2.0/24\n"))
    lab.assert_move_held_back("refused", ["configs differ"], "ISCSI_HA_CONFIG_MISMATCH",
                              undo=lambda: write(config, original))


def test_in_manual_mode_a_master_change_moves_nothing(lab):
    code, _, err = lab.cli("hostA", "manual", "on", "--reason", "cable work")
    assert code == 0, err
    # No undo: `iscsi-ha manual off` is refused while hostA serves and hostB is master.
    lab.assert_move_held_back("observing", ["manual mode"], "ISCSI_HA_MANUAL_MODE_ON")


def write(path, text):
    with open(path, "w") as handle:
        handle.write(text)


def _log_time(line):
    stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    return stamp.timestamp()


def test_the_pass_starts_as_soon_as_the_new_masters_xapi_answers(lab):
    """Event-driven: the controller's own clock (its state file and its log) puts the
    start of its pass within 0.2 s of the first answer hostB's xapi gave as master."""
    lab("designate-master", "hostB")
    with open(os.path.join(lab.state, "xapi", "audit.log")) as handle:
        calls = [json.loads(line) for line in handle]
    committed = max(_audit_time(c) for c in calls if c["method"] == "pool.designate_new_master"
                    and c["outcome"] == "Success")
    first_answer = min(_audit_time(c) for c in calls
                       if c["host"] == "hostB" and c["outcome"] == "Success"
                       and _audit_time(c) > committed)
    # The first after the change: when xapi restarts under a pass, the controller logs
    # in again and becomes master once more, and a later pass follows.
    pass_started = min(p["started"] for p in lab.controller_state("hostB")["passes"]
                       if p["started"] > committed)
    became_master = [line for line in lab.controller_log("hostB")
                     if "controller: master (" in line][0]
    assert 0 <= pass_started - first_answer < 0.2, pass_started - first_answer
    assert _log_time(became_master) - first_answer < 0.2


def _audit_time(call):
    """When the simulator answered the call."""
    return datetime.datetime.fromisoformat(call["time"]).timestamp()


def test_a_recorded_controller_pid_that_runs_another_process_is_not_running(tmp_path):
    # pid_max here is 32768: a pid outlives its process within minutes of a test run.
    other = subprocess.Popen(["sleep", "30"])
    try:
        lab = SimpleNamespace(hosts={"hostA": {"controller": {
            "pid": other.pid, "start_time": start_time(other.pid)}}})
        assert controllers.running(lab, "hostA")
        lab.hosts["hostA"]["controller"]["start_time"] -= 1  # an earlier process's pid
        assert not controllers.running(lab, "hostA")
        assert controllers.stop(lab, "hostA") is False  # and no signal goes to it
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()

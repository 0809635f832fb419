"""Promote/demote planning: a pure function from observed state to steps or a refusal."""

import pytest

from iscsi_ha import actions, config
from iscsi_ha.actions import Observation, Step
from iscsi_ha.drbd import ResourceState
from iscsi_ha.errors import (BadConfig, DiskNotUpToDate, DrbdError, PeerPrimary, PeerUnknown,
                             TargetDaemonDown, TargetError, VipInUse)
from iscsi_ha.target import LunInfo, TargetInfo

RESOURCES = [
    {"name": "r0", "device": "/dev/drbd0", "lun": 1, "scsi_id": "a0", "scsi_sn": "SN0"},
    {"name": "r1", "device": "/dev/drbd1", "lun": 2, "scsi_id": "a1", "scsi_sn": "SN1"},
]
CONFIG = config.parse(config.render_sample(resources=RESOURCES), "test.conf")
IQN = CONFIG.iqn


def drbd(role="Secondary", peer_role="Secondary", disk="UpToDate", peer_disk="UpToDate",
         connection="Connected", name="r0"):
    return ResourceState(name=name, role=role, peer_role=peer_role, connection=connection,
                         disk=disk, peer_disk=peer_disk)


def target(luns=(1, 2), state="ready", acl=("ALL",), tid=1, devices=None, serials=None):
    devices = devices or {1: "/dev/drbd0", 2: "/dev/drbd1"}
    serials = serials or {1: "SN0", 2: "SN1"}
    info = TargetInfo(tid, IQN)
    info.state, info.acl = state, list(acl)
    for number in luns:
        lun = LunInfo(number)
        lun.backing_path = devices[number]
        lun.scsi_id, lun.scsi_sn = "a%d" % (number - 1), serials[number]
        lun.write_cache = False
        info.luns.append(lun)
    return info


def observed(r0=None, r1=None, daemon=True, target=None, vip_local=False, elsewhere=False,
             tid_taken_by=None, devices=None):
    return Observation({"r0": r0 or drbd(), "r1": r1 or drbd(name="r1")}, daemon, target,
                       vip_local, elsewhere, tid_taken_by, devices)


def disconnected(disk="UpToDate", peer_disk="DUnknown", connection="Connecting", name="r0"):
    return drbd(disk=disk, peer_role="Unknown", peer_disk=peer_disk, connection=connection,
                name=name)


def serving():
    return observed(drbd("Primary"), drbd("Primary", name="r1"), target=target(),
                    vip_local=True)


def test_promote_from_standby_goes_drbd_then_target_then_vip():
    plan = actions.plan_promote(CONFIG, observed())
    assert plan.steps == [Step("drbd-primary", "r0"), Step("drbd-primary", "r1"),
                          Step("target-build", IQN), Step("vip-claim", "192.0.2.100")]


def test_promote_when_serving_already_is_a_noop_that_says_so():
    plan = actions.plan_promote(CONFIG, serving())
    assert plan.steps == []
    assert "DRBD r0 is Primary" in plan.already
    assert "VIP 192.0.2.100 is on this host" in plan.already


def test_promote_completes_a_half_done_promotion():
    half = observed(drbd("Primary"), drbd("Secondary", name="r1"),
                    target=target(luns=(1,), state="offline", acl=()))
    plan = actions.plan_promote(CONFIG, half)
    assert plan.steps == [Step("drbd-primary", "r1"), Step("lun-add", "r1"),
                          Step("target-bind", "ALL"), Step("target-online", IQN),
                          Step("vip-claim", "192.0.2.100")]


def test_promote_refuses_while_the_peer_is_primary_even_with_force():
    with pytest.raises(PeerPrimary) as caught:
        actions.plan_promote(CONFIG, observed(r1=drbd(peer_role="Primary", name="r1")),
                             force=True)
    assert "r1 is Primary on the peer host; demote the other host first" in caught.value.message


def test_a_peer_down_promote_leaves_a_primary_peer_drbd_has_not_missed_yet_to_drbd():
    # DRBD notices a dead Primary only at its next ping; its promote pings and fences first.
    plan = actions.plan_promote(CONFIG, observed(r1=drbd(peer_role="Primary", name="r1")),
                                peer_down=True)
    assert plan.steps[:2] == [Step("drbd-primary", "r0"),
                              Step("drbd-primary", "r1", peer_down=True)]


def test_promote_refuses_a_disk_that_is_not_uptodate_unless_forced():
    outdated = observed(r0=drbd(disk="Inconsistent", connection="SyncTarget"))
    with pytest.raises(DiskNotUpToDate) as caught:
        actions.plan_promote(CONFIG, outdated)
    assert "local disk is Inconsistent" in caught.value.message
    assert "force=true" in caught.value.message
    plan = actions.plan_promote(CONFIG, outdated, force=True)
    assert plan.steps[0] == Step("drbd-primary", "r0", force=True)
    # force is passed on to DRBD only for the disk that needs it
    assert plan.steps[1] == Step("drbd-primary", "r1", force=False)


@pytest.mark.parametrize("connection", ["Connecting", "WFConnection", "StandAlone",
                                        "Disconnecting", "BrokenPipe"])
def test_promote_refuses_while_the_peer_is_unknown(connection):
    # After a cut link an UpToDate Secondary may be stale, or the peer may still be Primary.
    with pytest.raises(PeerUnknown) as caught:
        actions.plan_promote(CONFIG, observed(r1=disconnected(connection=connection,
                                                              name="r1")))
    message = caught.value.message
    assert caught.value.code == "ISCSI_HA_PEER_UNKNOWN"
    assert "r1 is not connected to its peer (%s, peer disk DUnknown)" % connection in message
    assert "peer_down=true" in message and "drbdadm adjust r1" in message


def test_force_does_not_override_an_unknown_peer():
    with pytest.raises(PeerUnknown):
        actions.plan_promote(CONFIG, observed(r0=disconnected(disk="Outdated")), force=True)


def test_promote_with_the_peer_known_outdated_needs_no_confirmation():
    plan = actions.plan_promote(CONFIG, observed(r0=disconnected(peer_disk="Outdated")))
    assert plan.steps[0] == Step("drbd-primary", "r0")


def test_peer_down_lets_a_disconnected_resource_promote_and_tells_drbd_step():
    plan = actions.plan_promote(CONFIG, observed(r0=disconnected()), peer_down=True)
    assert plan.steps[0] == Step("drbd-primary", "r0", peer_down=True)
    # r1 is connected: its peer is plainly there, so the confirmation is not passed on.
    assert plan.steps[1] == Step("drbd-primary", "r1")


def test_a_consistent_survivor_promotes_with_peer_down_and_without_force():
    # DRBD 9 turns a Secondary whose Primary vanished into Consistent; DRBD itself
    # promotes it once the fence-peer handler fenced the peer.
    plan = actions.plan_promote(CONFIG, observed(r0=disconnected(disk="Consistent")),
                                peer_down=True)
    assert plan.steps[0] == Step("drbd-primary", "r0", peer_down=True)
    with pytest.raises(DiskNotUpToDate):
        actions.plan_promote(CONFIG, observed(r0=disconnected(disk="Outdated")),
                             peer_down=True)
    plan = actions.plan_promote(CONFIG, observed(r0=disconnected(disk="Outdated")),
                                peer_down=True, force=True)
    assert plan.steps[0] == Step("drbd-primary", "r0", force=True, peer_down=True)


def test_promote_refuses_to_export_anything_but_the_drbd_device():
    with pytest.raises(BadConfig) as caught:
        actions.plan_promote(CONFIG, observed(devices={"r0": "/dev/drbd7",
                                                       "r1": "/dev/drbd1"}))
    assert caught.value.message == (
        "[resource r0] device is /dev/drbd0, but DRBD's device for r0 is /dev/drbd7; "
        "exporting anything else would bypass replication: set device = /dev/drbd7")
    plan = actions.plan_promote(CONFIG, observed(devices={"r0": "/dev/drbd0",
                                                          "r1": "/dev/drbd1"}))
    assert plan.steps[0] == Step("drbd-primary", "r0")


def test_promote_refuses_an_unconfigured_resource():
    with pytest.raises(DrbdError) as caught:
        actions.plan_promote(CONFIG, observed(r0=drbd(role="Unconfigured", disk="Unconfigured",
                                                      peer_role="Unknown",
                                                      connection="Unconfigured")))
    assert "drbdadm up r0" in caught.value.message


def test_promote_refuses_without_tgtd():
    with pytest.raises(TargetDaemonDown):
        actions.plan_promote(CONFIG, observed(daemon=False))


def test_promote_refuses_when_another_host_answers_for_the_vip():
    with pytest.raises(VipInUse) as caught:
        actions.plan_promote(CONFIG, observed(elsewhere=True))
    assert "192.0.2.100/24" in caught.value.message


def test_promote_refuses_when_the_vip_has_two_holders():
    with pytest.raises(VipInUse) as caught:
        actions.plan_promote(CONFIG, observed(vip_local=True, elsewhere=True))
    assert "another host answers for it too" in caught.value.message


def test_promote_refuses_a_target_it_did_not_make():
    with pytest.raises(TargetError) as caught:
        actions.plan_promote(CONFIG, observed(target=target(tid=7)))
    assert "tid 7" in caught.value.message
    with pytest.raises(TargetError) as caught:
        actions.plan_promote(CONFIG, observed(target=target(devices={1: "/dev/sdz",
                                                                     2: "/dev/drbd1"})))
    assert "backed by /dev/sdz" in caught.value.message
    with pytest.raises(TargetError) as caught:
        actions.plan_promote(CONFIG, observed(target=target(serials={1: "OTHER", 2: "SN1"})))
    assert "has SCSI ID a0 serial OTHER, not a0 serial SN0" in caught.value.message
    cached = target()
    cached.luns[0].write_cache = True
    with pytest.raises(TargetError) as caught:
        actions.plan_promote(CONFIG, observed(target=cached))
    assert "LUN 1 is exported with the write cache on, but the config says " \
        "write_cache = off" in caught.value.message
    with pytest.raises(TargetError) as caught:
        actions.plan_promote(CONFIG, observed(tid_taken_by="iqn.2026-01.org.example:other"))
    assert "tid 1 is used by another target, iqn.2026-01.org.example:other" in \
        caught.value.message


def test_demote_goes_vip_then_target_then_drbd():
    plan = actions.plan_demote(CONFIG, serving())
    assert plan.steps == [Step("vip-release", "192.0.2.100"), Step("target-remove", IQN),
                          Step("drbd-secondary", "r0"), Step("drbd-secondary", "r1")]


def test_demote_of_a_standby_is_a_noop():
    plan = actions.plan_demote(CONFIG, observed())
    assert plan.steps == []
    assert "DRBD r0 is Secondary" in plan.already


def test_demote_without_tgtd_still_demotes_drbd():
    plan = actions.plan_demote(CONFIG, observed(drbd("Primary"), daemon=False, vip_local=True))
    assert plan.steps == [Step("vip-release", "192.0.2.100"), Step("drbd-secondary", "r0")]
    assert "tgtd is not running, so no target is exported" in plan.already


class RecordingHost(object):
    """Applies steps to nothing but a journal; fails on a chosen step."""

    config = CONFIG

    def __init__(self, fail_on=None, fail_undo=None):
        self.journal = []
        self.fail_on = fail_on
        self.fail_undo = fail_undo

    def apply(self, step):
        if (step.kind, step.subject) in (self.fail_on, self.fail_undo):
            raise TargetError("simulated failure of %s" % step.kind)
        self.journal.append((step.kind, step.subject))


def test_execute_reports_each_step_with_its_time():
    host = RecordingHost()
    result = actions.execute("promote", actions.plan_promote(CONFIG, observed()), host, "test")
    assert result["changed"] is True
    assert [s["outcome"] for s in result["steps"]] == ["done"] * 4
    assert all(s["seconds"] >= 0 for s in result["steps"])
    assert result["reason"] == "test"


def test_a_failed_step_is_undone_with_the_done_ones_newest_first():
    from iscsi_ha.errors import StepFailed
    host = RecordingHost(fail_on=("target-build", IQN))
    with pytest.raises(StepFailed) as caught:
        actions.execute("promote", actions.plan_promote(CONFIG, observed()), host, "test")
    # The failed build may have left a half-made target: its undo runs first.
    assert host.journal == [("drbd-primary", "r0"), ("drbd-primary", "r1"),
                            ("target-remove", IQN), ("drbd-secondary", "r1"),
                            ("drbd-secondary", "r0")]
    message = caught.value.message
    assert "promote failed at step target-build" in message
    assert message.endswith("rolled back with target-remove %s, drbd-secondary r1, "
                            "drbd-secondary r0" % IQN)


def test_a_failed_rollback_is_reported_loudly():
    from iscsi_ha.errors import StepFailed
    host = RecordingHost(fail_on=("vip-claim", "192.0.2.100"),
                         fail_undo=("target-remove", IQN))
    with pytest.raises(StepFailed) as caught:
        actions.execute("promote", actions.plan_promote(CONFIG, observed()), host, "test")
    assert "rollback FAILED for target-remove" in caught.value.message


def test_storage_role_summarises_the_host():
    assert actions.storage_role(serving()) == "primary"
    assert actions.storage_role(observed()) == "secondary"
    assert actions.storage_role(observed(drbd("Primary"))) == "mixed"
    offline = observed(drbd("Primary"), drbd("Primary", name="r1"),
                       target=target(state="offline"), vip_local=True)
    # An offline target takes no commands: the host does not serve.
    assert actions.storage_role(offline) == "mixed"
    assert actions.storage_role(observed(target=target(state="offline"))) == "mixed"


def test_any_exception_in_a_step_still_rolls_back():
    from iscsi_ha.errors import StepFailed

    class BrokenHost(RecordingHost):
        def apply(self, step):
            if step.kind == "vip-claim":
                raise OSError(28, "No space left on device")
            RecordingHost.apply(self, step)

    host = BrokenHost()
    with pytest.raises(StepFailed) as caught:
        actions.execute("promote", actions.plan_promote(CONFIG, observed()), host, "test")
    assert "OSError" in caught.value.message and "No space left" in caught.value.message
    assert host.journal[-2:] == [("drbd-secondary", "r1"), ("drbd-secondary", "r0")]


def test_a_released_vip_is_claimed_without_the_duplicate_check():
    plan = actions.plan_promote(CONFIG, observed(), vip_released=True)
    assert plan.steps[-1] == Step("vip-claim", "192.0.2.100", probe=False)
    assert actions.plan_promote(CONFIG, observed()).steps[-1] == Step("vip-claim",
                                                                      "192.0.2.100")


def test_a_rolled_back_release_claims_the_vip_back_with_the_check():
    assert Step("vip-release", "192.0.2.100").inverse() == Step("vip-claim", "192.0.2.100")
    assert Step("vip-release", "192.0.2.100").inverse().probe is True


def test_demote_releases_the_vip_before_the_target_and_drbd_last():
    plan = actions.plan_demote(CONFIG, serving())
    assert plan.steps == [Step("vip-release", "192.0.2.100"), Step("target-remove", IQN),
                          Step("drbd-secondary", "r0"), Step("drbd-secondary", "r1")]


class FakeHost(object):
    """actions.promote/demote's view of a host: observe, apply, connections, tickle."""

    def __init__(self, observation, connected=(), tickle_failures=()):
        self.config = CONFIG
        self.observation = observation
        self.connected = list(connected)
        self.failures = list(tickle_failures)
        self.applied, self.tickled, self.observed_with = [], [], None
        self.released_connections = []

    def observe(self, **flags):
        self.observed_with = flags
        return self.observation

    def apply(self, step):
        if step.kind == "vip-release":
            self.released_connections = list(self.connected)
        self.applied.append(step)

    def tickle(self, targets):
        self.tickled.append(list(targets))
        return [{"connection": target, "error": "no route"} for target in targets
                if target in self.failures]


def test_promote_tickles_after_every_step_and_a_failed_tickle_does_not_fail_it():
    host = FakeHost(observed(), tickle_failures=["192.0.2.51:2"])
    result = actions.promote(CONFIG, host, tickle=["192.0.2.50:1", "192.0.2.51:2"],
                             vip_released=True)
    assert host.observed_with == {"detect_vip_elsewhere": False, "read_devices": True}
    assert host.applied[-1] == Step("vip-claim", "192.0.2.100", probe=False)
    assert host.tickled == [["192.0.2.50:1", "192.0.2.51:2"]]
    assert result["tickled"] == 1
    assert result["tickle_failures"] == [{"connection": "192.0.2.51:2", "error": "no route"}]
    assert result["changed"] is True


def test_promote_without_a_tickle_list_sends_none():
    host = FakeHost(observed())
    result = actions.promote(CONFIG, host)
    assert host.observed_with["detect_vip_elsewhere"] is True
    assert host.tickled == [] and (result["tickled"], result["tickle_failures"]) == (0, [])


def test_demote_reports_the_connections_it_found_when_releasing_the_vip():
    host = FakeHost(serving(), connected=["192.0.2.50:41000"])
    result = actions.demote(CONFIG, host)
    assert (result["connections"], result["vip_released"]) == (["192.0.2.50:41000"], True)
    standby = FakeHost(observed())
    result = actions.demote(CONFIG, standby)
    assert (result["connections"], result["vip_released"]) == ([], True)

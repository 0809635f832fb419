"""The controller's decision table: snapshot in, plan out, no processes."""

import pytest

import json

from iscsi_ha_controller.decide import (IN_PLACE, LEGACY_PROMOTE_ARGS, MOVE, OBSERVING,
                                        REFUSED, REPAIR, WAITING, Action, HostView, Snapshot,
                                        decide, promote_args)


def resource(role="Secondary", connection="Connected", disk="UpToDate",
             peer_disk="UpToDate", peer_role="Secondary"):
    return {"name": "iscsi1", "role": role, "peer_role": peer_role, "connection": connection,
            "disk": disk, "peer_disk": peer_disk, "is_primary": role == "Primary",
            "peer_is_primary": peer_role == "Primary",
            "connected": connection in ("Connected", "Established", "SyncSource",
                                        "SyncTarget"),
            "disk_up_to_date": disk == "UpToDate", "configured": role != "Unconfigured"}


FAST_PROMOTE = ["force", "peer_down", "reason", "tickle", "vip_released"]


def status(role="secondary", drbd=None, tgtd=True, vip_local=False, vip_elsewhere=False,
           digest="d1", manual=False, pool_role="slave", **fast):
    """A plugin's status; ``fast`` adds the fast-switchover keys (connections,
    remembered_initiators, promote_accepts), which an older plugin lacks."""
    if drbd is None:
        drbd = resource(role="Primary" if role == "primary" else "Secondary",
                        peer_role="Secondary" if role == "primary" else "Primary")
    return dict({"role": role, "resources": [drbd], "config_digest": digest,
                 "manual_mode": manual, "pool_role": pool_role,
                 "target": {"daemon_running": tgtd},
                 "vip": {"address": "192.0.2.100", "local": vip_local,
                         "answered_elsewhere": vip_elsewhere}}, **fast)


def host(name, live=True, error=None, **kwargs):
    uuid = "uuid-" + name
    if error is not None:
        return HostView(name, uuid, "192.0.2.1" + name[-1], live, None, error)
    return HostView(name, uuid, "192.0.2.1" + name[-1], live, status(**kwargs))


def pool(master, other, **kwargs):
    return Snapshot(master, [other], **kwargs)


def calls(plan):
    return [(a.host.name, a.fn, a.args.get("peer_down")) for a in plan.actions]


def kinds(plan):
    return sorted(kind for kind, _, _ in plan.alerts)


NO_ANSWER = ["CANNOT_CONTACT_HOST", "OpaqueRef:b"]


def test_the_master_serving_and_a_demoted_standby_is_in_place():
    plan = decide(pool(host("xcp-a", role="primary", vip_local=True, pool_role="master"),
                       host("xcp-b")))
    assert (plan.outcome, plan.actions, plan.retry) == (IN_PLACE, [], False)
    assert plan.reason == ("xcp-a serves the storage as pool master and the other hosts are "
                           "demoted standbys")


def test_a_new_master_demotes_the_old_one_first_then_promotes_itself():
    old = host("xcp-a", role="primary", vip_local=True)
    new = host("xcp-b", pool_role="master")
    plan = decide(pool(new, old))
    assert plan.outcome == MOVE
    assert calls(plan) == [("xcp-a", "demote", None), ("xcp-b", "promote", None)]
    assert plan.reason == "demoting xcp-a, then promoting xcp-b, because xcp-b is pool master"


def test_a_confirmed_demoted_standby_lets_the_master_promote():
    plan = decide(pool(host("xcp-b", pool_role="master"), host("xcp-a")))
    assert calls(plan) == [("xcp-b", "promote", None)]
    assert plan.reason == ("promoting xcp-b because it is pool master and xcp-a confirmed "
                           "demoted")


@pytest.mark.parametrize("drbd, why", [
    (resource(disk="Inconsistent", peer_role="Primary"),
     "xcp-b's copy of iscsi1 is Inconsistent, not UpToDate (wait for the resync)"),
    (resource(connection="StandAlone", peer_role="Unknown"),
     "DRBD iscsi1 on xcp-b is StandAlone, not connected to its peer, which may hold newer "
     "data (reconnect the replication link)"),
])
def test_a_master_that_cannot_serve_safely_leaves_the_old_master_serving(drbd, why):
    plan = decide(pool(host("xcp-b", drbd=drbd, pool_role="master"),
                       host("xcp-a", role="primary", vip_local=True)))
    assert (plan.outcome, plan.actions, plan.retry) == (REFUSED, [], True)
    assert plan.reason == "not moving the storage to xcp-b: %s; xcp-a keeps serving" % why
    assert kinds(plan) == ["storage-blocked"]


def test_a_master_without_tgtd_does_not_take_over():
    plan = decide(pool(host("xcp-b", tgtd=False, pool_role="master"),
                       host("xcp-a", role="primary", vip_local=True)))
    assert plan.actions == []
    assert "tgtd is not running on xcp-b (start it)" in plan.reason


def test_differing_config_digests_refuse_promotion_and_alert():
    plan = decide(pool(host("xcp-b", digest="d2", pool_role="master"), host("xcp-a")))
    assert (plan.outcome, plan.actions) == (REFUSED, [])
    assert "the hosts' configs differ (xcp-b d2, xcp-a d1)" in plan.reason
    assert kinds(plan) == ["config-mismatch", "storage-blocked"]


def test_differing_digests_do_not_stop_a_serving_master_from_serving():
    plan = decide(pool(host("xcp-a", role="primary", digest="d2", pool_role="master"),
                       host("xcp-b")))
    assert (plan.outcome, plan.actions) == (IN_PLACE, [])
    assert kinds(plan) == ["config-mismatch"]


def dead_peer(disk):
    """xcp-b is master with its replica disconnected; XAPI says xcp-a is not live."""
    survivor = host("xcp-b", drbd=resource(connection="Connecting", disk=disk,
                                           peer_disk="DUnknown", peer_role="Unknown"),
                    pool_role="master")
    return pool(survivor, host("xcp-a", live=False, error=["HOST_OFFLINE"]))


def test_a_peer_xapi_calls_not_live_is_gone_and_the_promote_says_peer_down():
    plan = decide(dead_peer("Consistent"))
    assert plan.outcome == MOVE
    assert calls(plan) == [("xcp-b", "promote", "true")]
    assert "xcp-a is confirmed gone: XAPI says it is not live" in plan.reason


def unanswered_takeover(took_over_from="uuid-xcp-a", error=NO_ANSWER, vip_elsewhere=False,
                        connection="Connecting"):
    survivor = host("xcp-b", drbd=resource(connection=connection, disk="UpToDate",
                                           peer_disk="DUnknown", peer_role="Unknown"),
                    vip_elsewhere=vip_elsewhere, pool_role="master")
    return pool(survivor, host("xcp-a", live=True, error=error),
                took_over_from=took_over_from)


def test_without_ha_a_silent_old_master_that_lost_the_mastership_here_is_gone():
    plan = decide(unanswered_takeover())
    assert calls(plan) == [("xcp-b", "promote", "true")]
    assert ("it lost the mastership to xcp-b, does not answer (CANNOT_CONTACT_HOST "
            "OpaqueRef:b) and nobody answers for the VIP") in plan.reason


def test_a_takeover_does_not_wait_for_drbd_to_notice_the_dead_peer():
    # DRBD notices only at its next ping; its promote pings first and refuses a live Primary.
    plan = decide(unanswered_takeover(connection="Connected"))
    assert calls(plan) == [("xcp-b", "promote", "true")]


def test_a_timed_out_call_counts_as_no_answer():
    plan = decide(unanswered_takeover(error=["ISCSI_HA_NO_ANSWER", "no answer within 10 s"]))
    assert calls(plan) == [("xcp-b", "promote", "true")]


@pytest.mark.parametrize("snapshot, missing", [
    (unanswered_takeover(took_over_from=None),
     "the pool mastership did not move here from it while this controller watched"),
    (unanswered_takeover(vip_elsewhere=True), "another host answers for the VIP 192.0.2.100"),
    (unanswered_takeover(error=["ISCSI_HA_BUSY", "another action holds the lock"]),
     "that failure comes from a running host, not an unreachable one"),
])
def test_a_live_peer_that_is_not_confirmed_gone_blocks_the_promote(snapshot, missing):
    plan = decide(snapshot)
    assert (plan.outcome, plan.actions, plan.retry) == (WAITING, [], True)
    assert missing in plan.reason
    assert "xcp-a is neither confirmed demoted nor gone (it gives no status (%s); XAPI says " \
        "it is live, and " % " ".join(snapshot.others[0].error) in plan.reason
    assert "`iscsi-ha promote xcp-b --peer-down`" in plan.reason
    assert kinds(plan) == ["storage-blocked"]


def test_a_gone_peer_does_not_excuse_a_stale_replica():
    plan = decide(dead_peer("Outdated"))
    assert (plan.outcome, plan.actions) == (REFUSED, [])
    assert ("xcp-b's copy of iscsi1 is Outdated, not UpToDate; the newest data is on the "
            "host that is gone") in plan.reason


def test_an_old_master_returning_as_primary_is_demoted_and_split_brain_alerted():
    master = host("xcp-b", role="primary", vip_local=True, pool_role="master",
                  drbd=resource(role="Primary", connection="StandAlone", peer_role="Unknown"))
    back = host("xcp-a", role="primary", vip_local=True,
                drbd=resource(role="Primary", connection="StandAlone", peer_role="Unknown"))
    plan = decide(pool(master, back))
    assert plan.outcome == REPAIR
    assert calls(plan) == [("xcp-a", "demote", None)]
    assert plan.reason == ("demoting xcp-a: it serves (xcp-a primary) while the pool master "
                           "xcp-b does")
    assert kinds(plan) == ["split-brain"]


def test_drift_on_the_master_is_repaired_even_with_the_peer_silent():
    master = host("xcp-a", role="mixed", pool_role="master",
                  drbd=resource(role="Primary", connection="Connecting", peer_role="Unknown",
                                peer_disk="DUnknown"))
    plan = decide(pool(master, host("xcp-b", error=NO_ANSWER)))
    assert plan.outcome == REPAIR
    assert calls(plan) == [("xcp-a", "promote", None)]


def test_a_host_that_also_claims_mastership_stops_everything():
    plan = decide(pool(host("xcp-b", pool_role="master"),
                       host("xcp-a", role="primary", pool_role="master")))
    assert (plan.outcome, plan.actions) == (REFUSED, [])
    assert "xcp-a also says it is pool master" in plan.reason


def test_the_master_not_answering_itself_changes_nothing():
    plan = decide(pool(host("xcp-b", error=["ISCSI_HA_NO_ANSWER", "no answer"]),
                       host("xcp-a", role="primary")))
    assert (plan.outcome, plan.actions, plan.retry) == (WAITING, [], True)


def test_manual_mode_only_observes_and_keeps_each_hosts_copy_in_step():
    plan = decide(pool(host("xcp-b", pool_role="master", manual=True),
                       host("xcp-a", role="primary"),
                       manual_mode={"reason": "disk swap", "by": "root", "at": 1.0}))
    assert plan.outcome == OBSERVING
    assert plan.reason == ("manual mode is on (disk swap): only observing; xcp-b secondary, "
                           "xcp-a primary")
    assert [(a.host.name, a.fn, a.args["enabled"]) for a in plan.actions] == [
        ("xcp-a", "manual-mode", "true")]
    assert kinds(plan) == ["manual-mode-on"]
    assert not plan.restore_manual_mode


def test_the_masters_copy_stands_in_for_a_flag_the_pool_database_lost():
    plan = decide(pool(host("xcp-b", pool_role="master", manual=True),
                       host("xcp-a", role="primary", manual=True), fresh_master=True))
    assert (plan.outcome, plan.actions, plan.restore_manual_mode) == (OBSERVING, [], True)
    assert "the pool database lost the flag; xcp-b's copy of it is on" in plan.reason


def test_a_flag_a_stale_pool_database_brought_back_is_cleared_and_the_master_serves():
    # Manual mode went on at 1.0 and off at 2.0 (the master's copy says so); an emergency
    # transition then started xapi from a backup taken in between.
    plan = decide(pool(host("xcp-b", pool_role="master", manual_mode_off_at=2.0),
                       host("xcp-a", error=NO_ANSWER, live=False),
                       manual_mode={"reason": "disk swap", "by": "root", "at": 1.0},
                       fresh_master=True))
    assert plan.outcome == MOVE and plan.clear_manual_mode
    assert calls(plan) == [("xcp-b", "promote", "true")]
    assert plan.reason.startswith(
        "manual mode is off (the pool's flag, set 1970-01-01 00:00:01 UTC, is older than "
        "xcp-b's record of turning it off); promoting xcp-b")


def test_a_flag_set_after_the_masters_copy_went_off_rules():
    # `manual on` could not reach this host's copy (it was down); the flag is newer. An
    # undated flag rules too.
    for flag in ({"reason": "disk swap", "by": "root", "at": 3.0}, {"reason": "undated"}):
        plan = decide(pool(host("xcp-b", pool_role="master", manual_mode_off_at=2.0),
                           host("xcp-a", role="primary"), manual_mode=flag,
                           fresh_master=True))
        assert (plan.outcome, plan.clear_manual_mode) == (OBSERVING, False)
        assert [(a.host.name, a.args["enabled"]) for a in plan.actions] == [
            ("xcp-b", "true"), ("xcp-a", "true")]


def test_a_pass_during_manual_off_turns_no_cleared_copy_on_again():
    # `iscsi-ha manual off` has cleared the copies (at 2.0) and not yet the flag (1.0).
    plan = decide(pool(host("xcp-b", role="primary", pool_role="master",
                            manual_mode_off_at=2.0),
                       host("xcp-a", manual_mode_off_at=2.0),
                       manual_mode={"reason": "disk swap", "at": 1.0}))
    assert (plan.outcome, plan.actions, plan.clear_manual_mode) == (IN_PLACE, [], True)
    # It has cleared the standby's copy only: manual mode still rules, and that copy
    # stays off.
    plan = decide(pool(host("xcp-b", role="primary", pool_role="master", manual=True),
                       host("xcp-a", manual_mode_off_at=2.0),
                       manual_mode={"reason": "disk swap", "at": 1.0}))
    assert (plan.outcome, plan.actions, plan.clear_manual_mode) == (OBSERVING, [], False)


def test_later_a_masters_copy_without_the_pools_flag_is_stale_and_cleared():
    # `iscsi-ha manual off` clears the copies, then the flag; a pass in between
    # must not bring manual mode back.
    plan = decide(pool(host("xcp-b", role="primary", pool_role="master", manual=True),
                       host("xcp-a")))
    assert plan.outcome == IN_PLACE
    assert [(a.host.name, a.fn, a.args["enabled"]) for a in plan.actions] == [
        ("xcp-b", "manual-mode", "false")]


def test_outside_manual_mode_stale_host_copies_are_cleared():
    plan = decide(pool(host("xcp-a", role="primary", pool_role="master"),
                       host("xcp-b", manual=True)))
    assert plan.outcome == IN_PLACE
    assert [(a.host.name, a.fn, a.args["enabled"]) for a in plan.actions] == [
        ("xcp-b", "manual-mode", "false")]


def test_degraded_replication_is_alerted_while_in_place():
    master = host("xcp-a", role="primary", pool_role="master",
                  drbd=resource(role="Primary", connection="Connecting", peer_role="Unknown",
                                peer_disk="DUnknown"))
    plan = decide(pool(master, host("xcp-b", error=NO_ANSWER)))
    assert (plan.outcome, kinds(plan)) == (IN_PLACE, ["replication-degraded"])


def test_actions_compare_by_host_function_and_arguments():
    a = host("xcp-a")
    assert Action(a, "demote", reason="x") == Action(host("xcp-a"), "demote", reason="x")
    assert Action(a, "demote", reason="x") != Action(a, "promote", reason="x")


# -- the fast switchover: one round trip per host ------------------------------------

CLIENTS = ["198.51.100.7:40001", "198.51.100.8:40002"]


def run(plan, results):
    """The args each action of ``plan`` is sent when the calls before it answered
    ``results`` (one per action, in order), as the daemon and the CLI run a plan."""
    done, sent = [], []
    for action, result in zip(plan.actions, results):
        sent.append((action.host.name, action.fn, action.args_after(done)))
        done.append((action, result))
    return sent


def planned(tickle=True, accepts=FAST_PROMOTE):
    old = host("xcp-a", role="primary", vip_local=True, promote_accepts=accepts)
    new = host("xcp-b", pool_role="master", promote_accepts=accepts)
    return decide(pool(new, old, tickle=tickle))


def test_the_promote_after_a_demote_tickles_what_the_demote_saw_and_skips_the_probe():
    plan = planned()
    sent = run(plan, [{"connections": list(reversed(CLIENTS)), "vip_released": True}, {}])
    assert sent == [
        ("xcp-a", "demote", {"reason": "xcp-b is pool master now"}),
        ("xcp-b", "promote", {"reason": plan.reason, "tickle": json.dumps(CLIENTS),
                              "vip_released": "true"})]


def test_a_demote_that_did_not_confirm_the_release_keeps_the_probe():
    sent = run(planned(), [{"connections": [], "vip_released": False}, {}])
    assert sent[1][2] == {"reason": planned().reason}


@pytest.mark.parametrize("connections", [5, "192.0.2.50:1", [1, "192.0.2.50:1"], {"a": 1}])
def test_a_demote_answer_without_a_list_of_connections_passes_none_on(connections):
    # Found by the hostile-input tests: sorted() of such an answer raised in the pass.
    sent = run(planned(), [{"connections": connections, "vip_released": True}, {}])
    assert sent[1][2] == {"reason": planned().reason, "vip_released": "true"}


def test_tickle_off_passes_no_tickle_list_but_still_the_release():
    plan = planned(tickle=False)
    sent = run(plan, [{"connections": CLIENTS, "vip_released": True}, {}])
    assert sent[1][2] == {"reason": plan.reason, "vip_released": "true"}


def test_a_failed_demote_passes_nothing_on():
    plan = planned()
    # The daemon stops at a failure; were a promote run after one, it would learn nothing.
    assert plan.actions[1].args_after([(plan.actions[0], None)]) == {"reason": plan.reason}


def test_a_plugin_that_predates_the_fast_switchover_gets_only_the_old_arguments():
    plan = planned(accepts=None)
    sent = run(plan, [{"connections": CLIENTS, "vip_released": True}, {}])
    assert sent[1][2] == {"reason": plan.reason}


@pytest.mark.parametrize("accepts, kept", [
    (None, ["force", "peer_down", "reason"]),
    (FAST_PROMOTE, ["force", "peer_down", "reason", "tickle", "vip_released"]),
    (["reason", "peer_down", "tickle"], ["peer_down", "reason", "tickle"]),
    ([], []),
])
def test_a_promote_is_sent_only_what_its_host_accepts(accepts, kept):
    every = dict((name, "x") for name in FAST_PROMOTE)
    status_keys = {} if accepts is None else {"promote_accepts": accepts}
    assert sorted(promote_args(host("xcp-b", **status_keys), every)) == kept
    assert LEGACY_PROMOTE_ARGS == ("force", "peer_down", "reason")


def in_place(master_connections, remembered, tickle=True):
    master = host("xcp-a", role="primary", vip_local=True, pool_role="master",
                  connections=master_connections, remembered_initiators=[])
    standby = host("xcp-b", connections=[], remembered_initiators=remembered)
    return decide(pool(master, standby, tickle=tickle))


def test_in_place_the_standby_remembers_the_masters_initiators_when_they_changed():
    plan = in_place(CLIENTS, [CLIENTS[0]])
    assert plan.outcome == IN_PLACE
    assert [(a.host.name, a.fn, a.args) for a in plan.actions] == [
        ("xcp-b", "remember-initiators", {"connections": json.dumps(CLIENTS)})]


@pytest.mark.parametrize("connections, remembered", [
    (CLIENTS, list(reversed(CLIENTS))),  # the same, in another order
    ([], []),
])
def test_an_idle_pool_whose_standby_remembers_already_makes_no_call(connections, remembered):
    plan = in_place(connections, remembered)
    assert (plan.outcome, plan.actions) == (IN_PLACE, [])


def test_a_master_that_lost_its_initiators_clears_the_standbys_record():
    assert [a.args for a in in_place([], CLIENTS).actions] == [{"connections": "[]"}]


def test_nothing_is_remembered_with_tickle_off_or_an_old_plugin():
    assert in_place(CLIENTS, [], tickle=False).actions == []
    old_master = host("xcp-a", role="primary", vip_local=True, pool_role="master")
    assert decide(pool(old_master, host("xcp-b", remembered_initiators=[]))).actions == []
    old_standby = host("xcp-b")
    master = host("xcp-a", role="primary", pool_role="master", connections=CLIENTS)
    assert decide(pool(master, old_standby)).actions == []


def takeover(tickle=True, accepts=FAST_PROMOTE):
    survivor = host("xcp-b", drbd=resource(connection="Connecting", disk="UpToDate",
                                           peer_disk="DUnknown", peer_role="Unknown"),
                    pool_role="master", remembered_initiators=CLIENTS,
                    promote_accepts=accepts)
    return decide(pool(survivor, host("xcp-a", live=False, error=["HOST_OFFLINE"]),
                       tickle=tickle))


def test_a_takeover_tickles_the_initiators_the_survivor_remembered():
    plan = takeover()
    assert plan.outcome == MOVE
    assert run(plan, [{}]) == [("xcp-b", "promote", {
        "reason": plan.reason, "peer_down": "true", "tickle": json.dumps(CLIENTS)})]


def test_a_takeover_with_tickle_off_or_an_old_plugin_sends_no_tickle():
    for plan in (takeover(tickle=False), takeover(accepts=None)):
        assert run(plan, [{}]) == [("xcp-b", "promote", {"reason": plan.reason,
                                                          "peer_down": "true"})]


def test_after_a_move_the_next_pass_comes_soon_to_record_the_reconnected_initiators():
    # With tickle off nothing is recorded, and the safety interval is soon enough.
    assert (planned().retry, planned(tickle=False).retry) == (True, False)
    assert takeover().retry


def test_in_place_with_a_silent_standby_looks_again_soon_to_give_it_the_record():
    master = host("xcp-a", role="primary", vip_local=True, pool_role="master",
                  connections=CLIENTS)
    silent = host("xcp-b", error=["CANNOT_CONTACT_HOST"])
    plan = decide(pool(master, silent))
    assert (plan.outcome, plan.actions, plan.retry) == (IN_PLACE, [], True)
    assert not decide(pool(master, silent, tickle=False)).retry
    assert not in_place(CLIENTS, CLIENTS).retry


BESIDE = sorted(FAST_PROMOTE + ["await_demote"])


def test_the_promote_beside_the_demote_also_tickles_what_the_old_owner_lists_now():
    # The standby's record lags an initiator that reconnected since the last pass.
    old = host("xcp-a", role="primary", vip_local=True, promote_accepts=BESIDE,
               connections=[CLIENTS[1]])
    new = host("xcp-b", pool_role="master", promote_accepts=BESIDE,
               remembered_initiators=[CLIENTS[0]])
    promote = decide(pool(new, old)).actions[-1]
    assert promote.args["tickle"] == json.dumps(sorted(CLIENTS))
    nothing_known = host("xcp-b", pool_role="master", promote_accepts=BESIDE)
    assert "tickle" not in decide(pool(nothing_known, host(
        "xcp-a", role="primary", vip_local=True, promote_accepts=BESIDE,
        connections="not a list"))).actions[-1].args


def test_a_planned_move_starts_the_promote_beside_the_demote_with_the_remembered_tickle():
    old = host("xcp-a", role="primary", vip_local=True, promote_accepts=BESIDE)
    new = host("xcp-b", pool_role="master", promote_accepts=BESIDE,
               remembered_initiators=CLIENTS)
    plan = decide(pool(new, old))
    demote, promote = plan.actions
    assert (demote.fn, demote.beside_previous) == ("demote", False)
    assert (promote.fn, promote.beside_previous) == ("promote", True)
    assert promote.args == {"reason": plan.reason, "await_demote": "true",
                            "tickle": json.dumps(CLIENTS)}
    # It starts before the demote answers: what the demote says cannot reach it.
    assert promote.args_after([]) == promote.args
    assert plan.as_dict()["actions"][1]["beside_previous"] is True
    # Called after the demote all the same (the CLI), it is told what the demote saw.
    assert promote.args_after([(demote, {"connections": CLIENTS[:1], "vip_released": True})]) \
        == {"reason": plan.reason, "tickle": json.dumps(CLIENTS[:1]), "vip_released": "true"}


def test_with_overlap_off_the_promote_waits_for_the_demotes_answer():
    old = host("xcp-a", role="primary", vip_local=True, promote_accepts=BESIDE)
    new = host("xcp-b", pool_role="master", promote_accepts=BESIDE)
    promote = decide(pool(new, old, overlap=False)).actions[-1]
    assert (promote.beside_previous, promote.relay_tickle) == (False, True)
    assert "await_demote" not in promote.args


@pytest.mark.parametrize("why, old_drbd, new_drbd, accepts", [
    ("the new master's plugin cannot wait for a demote", None, None, FAST_PROMOTE),
    ("the serving host is not DRBD Primary", resource(peer_role="Secondary"),
     resource(peer_role="Secondary"), BESIDE),
])
def test_otherwise_the_promote_follows_the_demote(why, old_drbd, new_drbd, accepts):
    old = host("xcp-a", role="primary", vip_local=True, drbd=old_drbd, promote_accepts=accepts)
    new = host("xcp-b", pool_role="master", drbd=new_drbd, promote_accepts=accepts,
               remembered_initiators=CLIENTS)
    plan = decide(pool(new, old))
    assert plan.outcome == MOVE
    promote = plan.actions[-1]
    assert not promote.beside_previous, why
    assert "await_demote" not in promote.args, why

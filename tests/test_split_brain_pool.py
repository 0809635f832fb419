"""A DRBD split brain as the pool sees it: found from both hosts' statuses, held by the
controller's decision, and resolved by `iscsi-ha split-brain` only on an explicit choice."""

import json

from iscsi_ha_controller import splitbrain
from iscsi_ha_controller.decide import IN_PLACE, OBSERVING, REFUSED, HostView, Snapshot, decide
from tests.test_cli import changes, conf, run, status, world  # noqa: F401 (fixtures)

SHARED = "3AD40A2B1C9F5F62"


def split(host_status, current, bitmap=SHARED, logged=True, connection="StandAlone"):
    """``host_status`` with its resource in a split brain (or only disconnected)."""
    resource = host_status["resources"][0]
    resource.update(connection=connection, connected=False, peer_disk="DUnknown",
                    peer_role="Unknown", split_brain=logged,
                    split_brain_logged=("kernel: drbd iscsi1/0 drbd1 hostB: Split-Brain "
                                        "detected but unresolved, dropping connection!"
                                        if logged else None),
                    generation={"current": current, "bitmap": bitmap,
                                "history": ["0" * 16] * 2, "primary_bit": False})
    return host_status


def views(first, second):
    return [HostView("hostA", "uuid-a", "192.0.2.11", True, first),
            HostView("hostB", "uuid-b", "192.0.2.12", True, second)]


def test_a_split_brain_is_what_drbd_logged_or_what_both_generations_show():
    logged = views(split(status("hostA", "primary"), "AA" * 8),
                   split(status("hostB"), "BB" * 8, logged=False))
    assert [s.why for s in splitbrain.find(logged)] == ["DRBD reported a split brain on hostA"]
    unlogged = views(split(status("hostA", "primary"), "AA" * 8, logged=False),
                     split(status("hostB"), "BB" * 8, logged=False))
    assert [s.why for s in splitbrain.find(unlogged)] == [
        "both hosts wrote since their last shared data generation %s" % SHARED]


def test_one_side_without_writes_of_its_own_or_a_connected_pair_is_no_split_brain():
    one_wrote = views(split(status("hostA", "primary"), "AA" * 8, logged=False),
                      split(status("hostB"), SHARED, bitmap="0" * 16, logged=False))
    assert splitbrain.find(one_wrote) == []
    assert splitbrain.find(views(status("hostA", "primary"), status("hostB"))) == []


def snapshot(master_status, other_status, manual=None):
    master, other = views(master_status, other_status)
    return Snapshot(master, [other], manual_mode=manual)


def test_the_controller_keeps_a_split_brain_where_it_is_and_alerts():
    plan = decide(snapshot(split(status("hostA", "primary"), "AA" * 8),
                           split(status("hostB"), "BB" * 8)))
    assert plan.outcome == IN_PLACE and plan.actions == []
    assert [kind for kind, _, _ in plan.alerts] == ["split-brain"]
    assert "never picks whose writes to throw away" in plan.reason
    assert "iscsi-ha split-brain" in plan.alerts[0][1]


def test_a_master_that_does_not_serve_is_not_promoted_into_a_split_brain():
    plan = decide(snapshot(split(status("hostA"), "AA" * 8),
                           split(status("hostB"), "BB" * 8)))
    assert plan.outcome == REFUSED and plan.actions == []
    assert plan.reason.startswith("not moving the storage to hostA: DRBD split brain on iscsi1")
    assert "split-brain" in [kind for kind, _, _ in plan.alerts]


def test_manual_mode_still_alerts_a_split_brain():
    plan = decide(snapshot(split(status("hostA", "primary", manual=True), "AA" * 8),
                           split(status("hostB", manual=True), "BB" * 8),
                           manual={"reason": "disk swap"}))
    assert plan.outcome == OBSERVING
    assert sorted(kind for kind, _, _ in plan.alerts) == ["manual-mode-on", "split-brain"]


def split_world(world):
    split(world.statuses["hostA"], "AA" * 8)
    split(world.statuses["hostB"], "BB" * 8)
    return world


def resolutions(world):
    return [(e[1], e[3]["role"]) for e in changes(world)]


def test_status_points_at_the_split_brain_and_its_command(world, conf):
    code, out, _ = run(split_world(world), conf, "status")
    assert code == 0
    assert ("SPLIT BRAIN: DRBD reported a split brain on hostA and hostB; `iscsi-ha "
            "split-brain iscsi1` compares both copies") in out
    _, out, _ = run(world, conf, "status", "--json")
    assert json.loads(out)["split_brains"][0]["resource"] == "iscsi1"


def test_the_guide_shows_both_sides_and_what_each_would_lose_and_changes_nothing(world, conf):
    code, out, _ = run(split_world(world), conf, "split-brain")
    assert code == 0 and changes(world) == []
    assert "DRBD split brain on iscsi1" in out
    assert "hostA: DRBD Primary, disk UpToDate, StandAlone; serves target and VIP" in out
    assert "data generation %s (last shared with the peer: %s)" % ("BB" * 8, SHARED) in out
    assert "--discard hostB loses every write made on hostB since the split" in out
    assert "Keep the copy the initiators used (hostA)" in out
    code, out, _ = run(world, conf, "split-brain", "--json")
    side = json.loads(out)["split_brains"][0]["sides"][1]
    assert (side["host"], side["wrote_since_split"], side["serves"]) == ("hostB", True, [])


def test_a_choice_without_yes_or_yes_without_a_choice_is_refused_and_changes_nothing(world,
                                                                                     conf):
    code, _, err = run(split_world(world), conf, "split-brain", "iscsi1", "--discard", "hostB")
    assert code == 1 and changes(world) == []
    assert err.startswith("iscsi-ha: ISCSI_HA_CONFIRM_REQUIRED: this throws away every write "
                          "made on hostB to iscsi1 since the split and keeps hostA's copy: "
                          "add --yes")
    code, _, err = run(world, conf, "split-brain", "--yes")
    assert code == 2 and changes(world) == []
    assert "ISCSI_HA_VICTIM_REQUIRED: --yes needs the host" in err and "--discard HOST" in err


def test_the_host_that_serves_cannot_be_the_victim(world, conf):
    code, _, err = run(split_world(world), conf, "split-brain", "--discard", "hostA", "--yes")
    assert code == 1 and changes(world) == []
    assert "ISCSI_HA_VICTIM_SERVING: hostA serves iscsi1 (its target and VIP)" in err
    assert "iscsi-ha demote hostA" in err


def test_an_explicit_choice_resolves_victim_first_then_survivor(world, conf):
    code, out, _ = run(split_world(world), conf, "split-brain", "--discard", "hostB", "--yes")
    assert code == 0
    assert resolutions(world) == [("hostB", "victim"), ("hostA", "survivor")]
    assert "keep hostA's copy of iscsi1, discard hostB's" in out


def test_a_failed_victim_step_stops_before_the_survivor(world, conf):
    world.errors[("hostB", "resolve-split-brain")] = [
        "ISCSI_HA_DRBD_ERROR", "cannot connect iscsi1: ..."]
    code, _, err = run(split_world(world), conf, "split-brain", "--discard", "hostB", "--yes")
    assert code == 1 and "ISCSI_HA_DRBD_ERROR" in err
    assert resolutions(world) == [("hostB", "victim")]


def test_without_a_split_brain_there_is_nothing_to_resolve(world, conf):
    code, out, _ = run(world, conf, "split-brain", "--discard", "hostB", "--yes")
    assert (code, changes(world)) == (0, [])
    assert out == "no DRBD split brain: nothing to resolve\n"


def test_an_unknown_victim_is_bad_usage(world, conf):
    code, _, err = run(split_world(world), conf, "split-brain", "--discard", "hostC", "--yes")
    assert code == 2 and "there is no host \"hostC\"" in err and changes(world) == []

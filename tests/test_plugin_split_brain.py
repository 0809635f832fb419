"""The plugin's side of a DRBD split brain, run as xapi runs it, against the DRBD double
(DRBD 9 here; 8.4's words are in test_splitbrain and the lab's 8.4 runs)."""

import json

from tests.test_plugin_host import double, host9, network  # noqa: F401 (fixtures)


def resource(host):
    reply = host.call("status")
    assert reply.ok, reply.error
    return json.loads(reply.value)["resources"][0]


def split(host):
    """hostA serves; the link is cut; hostB is forced Primary; the link heals."""
    assert host.call("promote").ok
    double("net-cut", "--state", host.state)
    assert host.peer("primary", "--force", "r0") == 0
    double("net-heal", "--state", host.state)


def resolve(host, role):
    return host.call("resolve-split-brain", resource="r0", role=role, reason="test")


def test_status_reports_it_and_the_serving_host_is_refused_as_victim_kept_as_survivor(host9):
    host = host9
    assert resource(host)["split_brain"] is False
    split(host)
    found = resource(host)
    assert (found["connection"], found["split_brain"]) == ("StandAlone", True)
    assert "Split-Brain detected but unresolved" in found["split_brain_logged"]
    assert found["generation"]["bitmap"] != "0" * 16  # hostA wrote since the split
    refused = resolve(host, "victim")
    assert refused.error[0] == "ISCSI_HA_VICTIM_SERVING", refused.error
    assert "demote it first" in refused.error[1]
    assert resource(host)["connection"] == "StandAlone"
    assert host.peer("secondary", "r0") == 0  # hostB, the victim, by hand
    assert host.peer("connect", "--discard-my-data", "r0") == 0
    reply = resolve(host, "survivor")
    assert reply.ok, reply.error
    result = json.loads(reply.value)
    assert [s["step"] for s in result["steps"]] == ["drbd-connect"]
    assert result["state"]["connected"] is True
    after = resource(host)
    assert (after["split_brain"], after["role"]) == (False, "Primary")
    assert json.loads(resolve(host, "survivor").value)["changed"] is False


def test_a_demoted_victim_reconnects_discarding_its_copy(host9):
    host = host9
    split(host)
    assert host.call("demote").ok
    reply = resolve(host, "victim")
    assert reply.ok, reply.error
    assert [s["step"] for s in json.loads(reply.value)["steps"]] == [
        "drbd-connect-discarding"]
    assert host.peer("connect", "r0") == 0  # hostB survives
    assert resource(host)["connection"] in ("SyncTarget", "Connected")
    assert host.call("resolve-split-brain", resource="r9", role="victim").error[:1] == [
        "ISCSI_HA_BAD_ARGUMENT"]

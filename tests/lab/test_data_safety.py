"""Data safety in the pool: a standby with an unknown peer is never promoted, and
what the initiators are told is written is on both replicas.

These run the real fence-peer handler: DRBD (the double) starts it on the
Primary when replication breaks, and it outdates the standby through XAPI.
"""

import time

from tests.lab import pool


def call(lab, host, fn, **args):
    lab_pool = pool.Lab.load(lab.state)
    with lab_pool.xapi() as session:
        return lab_pool.call_plugin(session, host, fn, **args)


def resource_of(lab, host):
    answer = call(lab, host, "status")
    assert answer["ok"], answer
    return answer["result"]["resources"][0]


def wait_for(predicate, seconds=30.0):
    """Poll until ``predicate()`` holds; the bound only stops a broken run."""
    deadline = time.time() + seconds
    while True:
        value = predicate()
        if value or time.time() > deadline:
            return value
        time.sleep(0.1)


def test_a_cut_link_fences_the_standby_through_xapi_and_it_refuses_to_serve(lab):
    lab("cut-replication")
    # The Primary's DRBD runs iscsi-ha's handler, which outdates hostB's copy
    # through hostB's plugin (fn=outdate): no ssh involved.
    assert wait_for(lambda: resource_of(lab, "hostB")["disk"] == "Outdated")
    assert resource_of(lab, "hostA")["peer_disk"] == "Outdated"

    refused = call(lab, "hostB", "promote", reason="test")
    assert not refused["ok"]
    assert refused["error"][0] == "ISCSI_HA_PEER_UNKNOWN"
    assert lab.roles() == {"hostA": "primary", "hostB": "secondary"}

    # Even told that the peer is down while it still serves: refused, unchanged.
    refused = call(lab, "hostB", "promote", peer_down="true", reason="test")
    assert not refused["ok"]
    assert refused["error"][0] in ("ISCSI_HA_VIP_IN_USE", "ISCSI_HA_DISK_NOT_UPTODATE")
    assert lab.roles() == {"hostA": "primary", "hostB": "secondary"}
    code, _ = lab.client("iscsi-inq", lab.url)
    assert code == 0


def test_luns_are_write_through_by_default(lab):
    caching = lab.io("caching")
    assert caching["wce"] is False
    status = call(lab, "hostA", "status")["result"]
    assert status["resources"][0]["write_cache"] is False


def test_check_finds_every_drbd_setting_iscsi_ha_relies_on(lab):
    answer = call(lab, "hostA", "check")
    assert answer["ok"], answer
    checks = dict((c["check"], c) for c in answer["result"]["checks"])
    for setting in ("protocol", "fencing", "allow-two-primaries", "fence-peer handler"):
        assert checks["DRBD iscsi1 %s" % setting]["ok"], checks["DRBD iscsi1 %s" % setting]

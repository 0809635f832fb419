"""SR repair: which PBDs the controller plugs again after a move, and how it does it."""

import json
import os
import threading

from six.moves import xmlrpc_server

from iscsi_ha_controller import srrepair
from iscsi_ha_controller.decide import Snapshot
from iscsi_ha_controller.observe import PoolClient
from iscsi_ha_controller.srrepair import PbdView

from tests.test_daemon import (FakeClient, controller_for, make_config,
                               new_master_snapshot)
from tests.test_decide import host

VIP = "192.0.2.100"


def pool_with_refs(silent_b=False):
    master = host("xcp-a", role="primary", vip_local=True, pool_role="master")
    other = (host("xcp-b", error=["CANNOT_CONTACT_HOST", "OpaqueRef:b"]) if silent_b
             else host("xcp-b"))
    master.ref, other.ref = "OpaqueRef:a", "OpaqueRef:b"
    return Snapshot(master, [other])


def pbd(host_ref, attached, sr_type="lvmoiscsi", target=VIP, name="ha-sr"):
    return PbdView("OpaqueRef:pbd-%s-%s" % (name, host_ref[-1]), "pbd-%s-%s" % (name,
                                                                             host_ref[-1]),
                   host_ref, name, "sr-" + name, sr_type,
                   {"target": target, "targetIQN": "iqn.2026-01.com.example:ha"}, attached)


def planned(pbds, snapshot=None):
    repair = srrepair.plan(pbds, snapshot or pool_with_refs(), VIP)
    return [(p.uuid, h.name) for p, h in repair.plugs], repair.reason


def test_an_unplugged_pbd_of_an_lvmoiscsi_sr_on_the_vip_is_plugged():
    plugs, reason = planned([pbd("OpaqueRef:a", True), pbd("OpaqueRef:b", False)])
    assert plugs == [("pbd-ha-sr-b", "xcp-b")]
    assert reason == "plugging SR ha-sr on xcp-b, unplugged since the target was away"


def test_other_srs_are_left_alone():
    plugs, reason = planned([pbd("OpaqueRef:b", False, sr_type="nfs", name="isos"),
                             pbd("OpaqueRef:b", False, target="192.0.2.200", name="other"),
                             pbd("OpaqueRef:a", True)])
    assert plugs == []
    assert reason == "every PBD of the lvmoiscsi SRs on the VIP is attached"
    assert planned([pbd("OpaqueRef:b", False, sr_type="nfs")]) == (
        [], "no lvmoiscsi SR has a PBD whose target is the VIP 192.0.2.100")


def test_a_multipath_target_list_naming_the_vip_counts():
    plugs, _ = planned([pbd("OpaqueRef:a", False, target="192.0.2.200, %s" % VIP)])
    assert plugs == [("pbd-ha-sr-a", "xcp-a")]


def test_a_host_that_did_not_answer_keeps_its_pbd_unplugged():
    plugs, reason = planned([pbd("OpaqueRef:a", False), pbd("OpaqueRef:b", False)],
                            pool_with_refs(silent_b=True))
    assert plugs == [("pbd-ha-sr-a", "xcp-a")]
    assert reason == ("plugging SR ha-sr on xcp-a, unplugged since the target was away; "
                      "leaving SR ha-sr on xcp-b: its host did not answer this pass (it "
                      "plugs its PBDs when its xapi starts)")


class RepairClient(FakeClient):
    def __init__(self, snapshots, pbds, plug_errors=None, **kwargs):
        FakeClient.__init__(self, snapshots, **kwargs)
        self.pbd_views = pbds
        self.plug_errors = list(plug_errors or [])
        self.plugged = []

    def pbds(self):
        if isinstance(self.pbd_views, Exception):
            return None, ["ISCSI_HA_NO_ANSWER", str(self.pbd_views)]
        return self.pbd_views, None

    def plug_pbd(self, view, timeout):
        self.plugged.append((view.uuid, timeout))
        return self.plug_errors.pop(0) if self.plug_errors else None


def moving_snapshot():
    snapshot = new_master_snapshot()
    snapshot.master.ref, snapshot.others[0].ref = "OpaqueRef:b", "OpaqueRef:a"
    return snapshot


def steady_snapshot():
    master = host("xcp-b", role="primary", vip_local=True, pool_role="master")
    other = host("xcp-a")
    master.ref, other.ref = "OpaqueRef:b", "OpaqueRef:a"
    return Snapshot(master, [other])


def test_after_a_move_the_controller_plugs_the_pbd_and_records_it(tmp_path):
    config = make_config(tmp_path)
    client = RepairClient([moving_snapshot()], [pbd("OpaqueRef:a", False)])
    controller = controller_for(config, client)
    controller.connect()
    controller.reconcile("XAPI event")
    assert client.plugged == [("pbd-ha-sr-a", config.action_timeout)]
    repair = controller.state["last_pass"]["sr_repair"]
    assert repair["reason"].startswith("plugging SR ha-sr on xcp-a")
    assert [(p["host"], p["ok"]) for p in repair["plugs"]] == [("xcp-a", True)]
    assert controller.state["counters"]["pbd_plugs"] == 1
    with open(os.path.join(config.run_dir, "controller.json")) as handle:
        assert json.load(handle)["last_pass"]["sr_repair"] == repair


def test_an_in_place_pass_plugs_nothing_but_the_first_one_as_master_does(tmp_path):
    config = make_config(tmp_path)
    client = RepairClient([steady_snapshot()], [pbd("OpaqueRef:a", False)])
    controller = controller_for(config, client)
    controller.connect()
    controller.reconcile("safety pass")
    assert client.plugged == []  # a sysadmin's unplug between moves stays
    controller.reconcile("became master", fresh_master=True)
    assert [u for u, _ in client.plugged] == ["pbd-ha-sr-a"]


def test_with_sr_repair_off_nothing_is_plugged(tmp_path):
    config = make_config(tmp_path, sr_repair="off")
    client = RepairClient([moving_snapshot()], [pbd("OpaqueRef:a", False)])
    controller = controller_for(config, client)
    controller.connect()
    controller.reconcile("XAPI event")
    assert client.plugged == []
    assert "sr_repair" not in controller.state["last_pass"]


def test_a_failed_plug_alerts_and_is_tried_again_a_bounded_number_of_times(tmp_path):
    config = make_config(tmp_path)
    failure = ["SR_BACKEND_FAILURE_141", "", "Unable to connect to ISCSI service on target", ""]
    client = RepairClient([moving_snapshot(), steady_snapshot()], [pbd("OpaqueRef:a", False)],
                          plug_errors=[failure] * 10)
    controller = controller_for(config, client)
    controller.connect()
    plan = controller.reconcile("XAPI event")
    assert plan.retry  # the next pass comes soon, with the loop's back-off
    assert controller.alerter.sent[-1] == "sr-repair-failed"
    record = controller.state["last_pass"]["sr_repair"]["plugs"][0]
    assert (record["ok"], record["error"]) == (False, failure)
    for _ in range(5):
        controller.reconcile("safety pass")
    assert len(client.plugged) == 3
    assert controller.state["counters"]["pbd_plug_failures"] == 3
    assert not controller.reconcile("safety pass").retry



def test_pbds_that_cannot_be_listed_are_a_failed_attempt_not_a_crash(tmp_path):
    config = make_config(tmp_path)
    client = RepairClient([moving_snapshot(), steady_snapshot()],
                          Exception("no answer to PBD.get_all_records within 10 s"))
    controller = controller_for(config, client)
    controller.connect()
    assert controller.reconcile("XAPI event").retry
    assert controller.state["last_pass"]["outcome"] == "done"
    assert controller.state["last_pass"]["sr_repair"] == {
        "reason": "cannot list the PBDs: ISCSI_HA_NO_ANSWER no answer to PBD.get_all_records "
                  "within 10 s", "plugs": []}
    controller.reconcile("safety pass")
    assert not controller.reconcile("safety pass").retry  # three attempts, then it waits


class PbdXapi(object):
    """A login, SR and PBD records, and PBD.plug that fails as SM does, on 127.0.0.1."""

    def __init__(self):
        self.server = xmlrpc_server.SimpleXMLRPCServer(("127.0.0.1", 0), logRequests=False,
                                                       allow_none=True)
        self.server.register_instance(self)
        self.plugged = []
        thread = threading.Thread(target=self.server.serve_forever)
        thread.daemon = True
        thread.start()
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]

    def _dispatch(self, method, params):
        if method == "PBD.plug":
            self.plugged.append(params[1])
            if params[1] == "OpaqueRef:pbd-b":
                return {"Status": "Failure", "ErrorDescription": [
                    "SR_BACKEND_FAILURE_141", "", "Unable to connect to ISCSI service on "
                    "target", ""]}
            return {"Status": "Success", "Value": ""}
        return {"Status": "Success", "Value": {
            "session.login_with_password": "OpaqueRef:session",
            "pool.get_all": ["OpaqueRef:pool"], "pool.get_master": "OpaqueRef:a",
            "host.get_API_version_major": "2", "host.get_API_version_minor": "20",
            "SR.get_all_records": {"OpaqueRef:sr": {
                "uuid": "sr-uuid", "name_label": "vms", "type": "lvmoiscsi"}},
            "PBD.get_all_records": {"OpaqueRef:pbd-b": {
                "uuid": "pbd-uuid", "host": "OpaqueRef:b", "SR": "OpaqueRef:sr",
                "device_config": {"target": VIP, "targetIQN": "iqn.2026-01.com.example:ha"},
                "currently_attached": False}}}[method]}

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_the_client_lists_pbds_with_their_sr_and_passes_on_plugs_errors(tmp_path):
    server = PbdXapi()
    try:
        client = PoolClient(make_config(tmp_path, xapi_url=server.url))
        client.login()
        views, error = client.pbds()
        assert error is None
        [view] = views
        assert (view.ref, view.host_ref, view.sr_name, view.sr_type, view.attached,
                view.targets()) == ("OpaqueRef:pbd-b", "OpaqueRef:b", "vms", "lvmoiscsi",
                                    False, [VIP])
        assert client.plug_pbd(view, 5.0) == [
            "SR_BACKEND_FAILURE_141", "", "Unable to connect to ISCSI service on target", ""]
        view.ref = "OpaqueRef:pbd-other"
        assert client.plug_pbd(view, 5.0) is None
    finally:
        server.close()
    assert server.plugged == ["OpaqueRef:pbd-b", "OpaqueRef:pbd-other"]

"""SR repair and metrics in the lab: after a master change the new master's controller
plugs the lvmoiscsi PBD that was unplugged (and, with ``sr_repair = off``, leaves it), and
its metrics file counts the move. The PBDs are read from XAPI, the plug is the simulator's
``PBD.plug``, which logs in to the target on the VIP from the host's namespace."""

import os
import time

from tests.lab import pool
from tests.lab.running import wait_until
from tests.test_metrics import parse


def pbd_attached(lab, host):
    """``currently_attached`` of ``host``'s PBD of the lab's SR, as XAPI records it."""
    def read(api):
        srs = api.SR.get_all_records()
        hosts = dict((r["name_label"], ref) for ref, r in api.host.get_all_records().items())
        return [(ref, record["currently_attached"])
                for ref, record in api.PBD.get_all_records().items()
                if srs[record["SR"]]["name_label"] == pool.SR_NAME
                and record["host"] == hosts[host]][0]
    with pool.Lab.load(lab.state).xapi() as session:
        return session.retrying(read)


def unplug(lab, host):
    ref, attached = pbd_attached(lab, host)
    assert attached is True
    with pool.Lab.load(lab.state).xapi() as session:
        session.retrying(lambda api: api.PBD.unplug(ref))
    assert pbd_attached(lab, host)[1] is False


def metrics_of(lab, host):
    try:
        with open(os.path.join(lab.state, "hosts", host, "iscsi-ha.prom")) as handle:
            return parse(handle.read())
    except (IOError, OSError):
        return {}


def failovers(lab, host):
    """The controller's failover counter, once its file shows one (it is rewritten at the
    end of each pass, after the SR repair)."""
    families = metrics_of(lab, host)
    samples = families.get("iscsi_ha_controller_failovers_total", {}).get("samples", {})
    return samples.get(()) and families


def test_after_a_master_change_the_controller_plugs_the_unplugged_pbd_unless_told_not_to(lab):
    unplug(lab, "hostA")
    lab("designate-master", "hostB")
    families = wait_until(lambda: failovers(lab, "hostB"), "hostB's metrics count the move")
    assert pbd_attached(lab, "hostA")[1] is True
    repaired = [p["sr_repair"] for p in lab.controller_state("hostB")["passes"]
                if "sr_repair" in p][-1]
    assert [(p["sr"], p["host"], p["ok"]) for p in repaired["plugs"]] == [
        (pool.SR_NAME, "hostA", True)], repaired
    assert any("SR repair: plugged SR %s on hostA" % pool.SR_NAME in line
               for line in lab.controller_log("hostB"))
    assert families["iscsi_ha_controller_failovers_total"]["samples"] == {(): 1}
    assert families["iscsi_ha_controller_pbd_plugs_total"]["samples"] == {(): 1}
    assert families["iscsi_ha_controller_last_failover_duration_seconds"]["samples"][()] > 0
    # The pool as that pass observed it, before it moved the storage.
    assert families["iscsi_ha_pool_master"]["samples"][(("host", "hostB"),)] == 1
    # hostA's controller idles as a slave now: its file has no pool part.
    assert "iscsi_ha_pool_master" not in metrics_of(lab, "hostA")
    code, out, _ = lab.cli("hostA", "status", "--prometheus")
    assert code == 0
    shown = parse(out)
    assert shown["iscsi_ha_controller_failovers_total"]["samples"] == {(): 1}
    assert shown["iscsi_ha_pool_master"]["samples"][(("host", "hostB"),)] == 1
    assert shown["iscsi_ha_storage_role"]["samples"][
        (("host", "hostB"), ("role", "serving"))] == 1

    # hostA's controller, with sr_repair off, leaves hostB's unplugged PBD alone.
    config = lab.record()["hosts"]["hostA"]["config"]
    with open(config) as handle:
        text = handle.read()
    assert "\nsr_repair = on\n" in text
    with open(config, "w") as handle:
        handle.write(text.replace("\nsr_repair = on\n", "\nsr_repair = off\n"))
    lab("controller", "stop", "hostA")
    lab("controller", "start", "hostA")
    unplug(lab, "hostB")
    since = time.time()
    lab("designate-master", "hostA")
    wait_until(lambda: failovers(lab, "hostA"), "hostA's metrics count the move")
    assert pbd_attached(lab, "hostB")[1] is False
    moved = [p for p in lab.controller_state("hostA")["passes"] if p["started"] > since]
    assert [p["outcome"] for p in moved][:1] == ["done"]
    assert not [p for p in moved if "sr_repair" in p]

"""The ``iscsi-ha`` CLI in the lab, run as a sysadmin runs it on dom0: inside a host's
namespace, with that host's config, talking to the pool master through the host's xapi."""

import json
import sys
import time

from tests.lab.running import PY27, lab_command, start_lab

def iscsi_ha(lab, host, *args, python=sys.executable):
    return lab.cli(host, *args, python=python)


def iscsi_ha_json(lab, host, *args, python=sys.executable):
    code, out, err = lab.cli(host, *(list(args) + ["--json"]), python=python)
    return code, json.loads(out), err


def storage(shown):
    """Each host's (pool role, storage role, its copy of manual mode), from status --json."""
    return dict((h["name"], (h["pool_role"], h["status"]["role"], h["status"]["manual_mode"]))
                for h in shown["hosts"])


def test_status_from_either_host_shows_the_whole_pool(lab):
    # On dom0's Pythons too: XenServer 7 runs 2.7.
    for host, python in (("hostA", sys.executable), ("hostB", sys.executable),
                         ("hostB", PY27)):
        code, shown, err = iscsi_ha_json(lab, host, "status", python=python)
        assert code == 0, err
        assert shown["pool"]["master"] == "hostA"
        assert shown["serving"] == ["hostA"]
        assert storage(shown) == {"hostA": ("master", "primary", False),
                                  "hostB": ("slave", "secondary", False)}
        assert shown["manual_mode"] is None
        assert shown["controller"]["host"] == "hostA"
    code, out, _ = iscsi_ha(lab, "hostB", "status")
    assert code == 0
    assert "serving:     hostA (the pool master)" in out
    assert [line.split()[:4] for line in out.splitlines() if line.startswith("host")][1:] == [
        ["hostA", "master", "yes", "primary"], ["hostB", "slave", "yes", "secondary"]]


def test_manual_mode_moves_only_the_storage_and_off_waits_until_the_roles_agree(lab):
    code, out, _ = iscsi_ha(lab, "hostB", "manual", "on", "--reason", "disk swap on hostA")
    assert code == 0, out

    code, moved, err = iscsi_ha_json(lab, "hostB", "switchover")  # the other host: hostB
    assert code == 0, err
    assert [(s["host"], s["fn"], s["ok"]) for s in moved["switchover"]["steps"]] == [
        ("hostA", "demote", True), ("hostB", "promote", True)]
    moved_at = time.time()
    # The controller only observes: its next pass leaves the storage where it is.
    lab.wait_for_pass("hostA", "observing", moved_at)
    code, shown, _ = iscsi_ha_json(lab, "hostA", "status")
    assert storage(shown) == {"hostA": ("master", "secondary", True),
                              "hostB": ("slave", "primary", True)}
    assert shown["manual_mode"]["reason"] == "disk swap on hostA"

    code, _, err = iscsi_ha(lab, "hostA", "manual", "off")
    assert code == 1
    assert "ISCSI_HA_ROLES_DISAGREE: manual mode stays on: hostB serves but hostA is pool " \
           "master" in err
    assert "`iscsi-ha switchover hostA` while still in manual mode" in err
    assert iscsi_ha_json(lab, "hostA", "status")[1]["manual_mode"] is not None

    code, moved, err = iscsi_ha_json(lab, "hostA", "switchover", "hostA")
    assert code == 0, err
    assert [(s["host"], s["fn"]) for s in moved["switchover"]["steps"]] == [
        ("hostB", "demote"), ("hostA", "promote")]
    code, out, err = iscsi_ha(lab, "hostA", "manual", "off", "--reason", "disk swapped")
    assert code == 0, err
    # The controller's next pass (the pool key's removal wakes it) keeps it off.
    lab.wait_for_pass("hostA", "in-place", time.time())
    code, shown, _ = iscsi_ha_json(lab, "hostB", "status")
    assert shown["manual_mode"] is None
    assert storage(shown) == {"hostA": ("master", "primary", False),
                              "hostB": ("slave", "secondary", False)}


def test_switchover_makes_the_host_pool_master_and_waits_until_it_serves(lab):
    # Run from the host that stops being master: its xapi restarts under the command.
    code, moved, err = iscsi_ha_json(lab, "hostA", "switchover", "hostB")
    assert code == 0, err
    result = moved["switchover"]
    assert (result["designated"], result["previous_master"]) == (True, "hostA")
    assert result["roles"] == {"hostA": "secondary", "hostB": "primary"}
    assert result["controller"]["host"] == "hostB"
    assert lab("status")["master"] == "hostB"
    assert lab.roles() == {"hostA": "secondary", "hostB": "primary"}
    code, _ = lab.client("iscsi-inq", lab.url)
    assert code == 0


def test_switchover_with_xenserver_ha_on_says_to_disable_it_and_changes_nothing(tmp_path):
    running = start_lab(tmp_path, "--elector", "xapi-ha")
    try:
        code, _, err = iscsi_ha(running, "hostB", "switchover", "hostB")
        assert code == 1
        assert err.startswith("iscsi-ha: HA_IS_ENABLED: XAPI refuses to designate a new pool "
                              "master while XenServer HA is enabled")
        assert "xe pool-ha-disable" in err
        assert running("status")["master"] == "hostA"
        assert running.roles() == {"hostA": "primary", "hostB": "secondary"}
    finally:
        lab_command("down", "--state", running.state)

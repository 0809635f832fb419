"""The ``iscsi-ha`` command against a fake pool master: arguments, tables, JSON, refusals."""

import json

import pytest
import six

from iscsi_ha import config
from iscsi_ha_controller import cli
from iscsi_ha_controller.decide import HostView
from iscsi_ha_controller.observe import CONTROLLER_KEY, MANUAL_KEY, NotMaster, XapiLost
from iscsi_ha.xapi import Failure

HOSTS = [("OpaqueRef:a", "hostA", "uuid-a", "192.0.2.11"),
         ("OpaqueRef:b", "hostB", "uuid-b", "192.0.2.12")]


def status(name, role="secondary", disk="UpToDate", connection="Connected", manual=False,
           digest="d1", tgtd=True):
    primary = role == "primary"
    return {
        "host": name, "role": role, "config_digest": digest, "manual_mode": manual,
        "pool_role": "master" if primary else "slave", "version": "0.1.0",
        "resources": [{"name": "iscsi1", "device": "/dev/drbd1", "lun": 1,
                       "role": "Primary" if primary else "Secondary",
                       "peer_role": "Secondary" if primary else "Primary",
                       "connection": connection, "disk": disk, "peer_disk": "UpToDate",
                       "connected": connection == "Connected", "configured": True,
                       "disk_up_to_date": disk == "UpToDate", "is_primary": primary,
                       "peer_is_primary": not primary, "suspended": [],
                       "write_cache": False}],
        "target": {"daemon_running": tgtd, "exported": primary, "iqn": "iqn.x:y",
                   "luns": [1] if primary else [], "sessions": 0,
                   "state": "ready" if primary else None},
        "vip": {"address": "192.0.2.100", "prefix": 24, "interface": "xenbr0",
                "local": primary, "answered_elsewhere": not primary}}


class World(object):
    """The pool as the fake master's xapi shows it, shared by every client the CLI makes."""

    def __init__(self):
        self.record = {"uuid": "pool-uuid", "name_label": "lab", "master": "OpaqueRef:a",
                       "other_config": {}, "ha_enabled": False}
        self.live = {"hostA": True, "hostB": True}
        self.statuses = {"hostA": status("hostA", "primary"), "hostB": status("hostB")}
        self.errors = {}            # (host, fn) -> XAPI error list
        self.answers = {}           # (host, fn) -> result
        self.events = []            # everything that changed or was asked, in order
        self.login_failures = []    # raised by the next logins, one each
        self.designate_failure = None
        self.designated = False
        self.after_designate = []   # (master ref, statuses) a pool read at a time
        self.restart_logins = []    # login failures while xapi restarts after designating

    def set_manual(self, reason="disk swap"):
        self.record["other_config"][MANUAL_KEY] = json.dumps(
            {"reason": reason, "at": 0, "by": "root@x"})
        for host_status in self.statuses.values():
            host_status["manual_mode"] = True

    def plugin(self, host, fn, args):
        self.events.append(("plugin", host, fn, args))
        if (host, fn) in self.errors:
            return None, self.errors[(host, fn)]
        if fn == "status":
            return self.statuses[host], None
        if fn in ("promote", "demote"):
            self.statuses[host] = status(host, "primary" if fn == "promote" else "secondary",
                                         manual=self.statuses[host]["manual_mode"])
        if fn == "manual-mode":
            self.statuses[host]["manual_mode"] = args["enabled"] == "true"
        return self.answers.get((host, fn), {"summary": "%s: done" % fn}), None

    def poll(self):
        """One pool read after the designate: (master ref, statuses[, other_config])."""
        if self.designated and self.after_designate:
            step = self.after_designate.pop(0)
            self.record["master"] = step[0]
            self.statuses.update(step[1])
            self.record["other_config"].update(step[2] if len(step) > 2 else {})


class FakeClient(object):
    """observe.PoolClient's surface, over a :class:`World`."""

    world = None

    def __init__(self, config_, originator="iscsi-ha-controller"):
        self.config = config_
        self.originator = originator

    def login(self, follow_master=False):
        assert follow_master and self.originator == "iscsi-ha-cli"
        self.world.events.append(("login",))
        if self.world.login_failures:
            raise self.world.login_failures.pop(0)

    def logout(self):
        pass

    def sibling(self):
        return self

    def pool_record(self):
        self.world.poll()
        return "OpaqueRef:pool", json.loads(json.dumps(self.world.record))

    def hosts(self, master_ref):
        views = []
        for ref, name, uuid, address in sorted(HOSTS, key=lambda h: h[0] != master_ref):
            view = HostView(name, uuid, address, self.world.live[name])
            view.ref = ref
            views.append(view)
        return views

    def call_plugin(self, host, fn, args, timeout):
        assert all(isinstance(value, str) for value in args.values()), args
        self.world.events.append(("timeout", fn, timeout))
        return self.world.plugin(host.name, fn, args)

    def set_pool_key(self, pool_ref, key, value):
        self.world.events.append(("set", key))
        self.world.record["other_config"][key] = value

    def remove_pool_key(self, pool_ref, key):
        self.world.events.append(("remove", key))
        del self.world.record["other_config"][key]

    def designate_new_master(self, host):
        self.world.events.append(("xapi", "pool.designate_new_master", host.ref))
        if self.world.designate_failure is not None:
            raise self.world.designate_failure
        self.world.designated = True
        self.world.login_failures += self.world.restart_logins


class Stream(object):
    def __init__(self, encoding="utf-8"):
        self.encoding = encoding
        self.parts = []

    def write(self, text):
        self.parts.append(text.decode(self.encoding) if isinstance(text, bytes) else text)

    @property
    def text(self):
        return u"".join(self.parts)


@pytest.fixture
def world():
    return World()


@pytest.fixture
def conf(tmp_path):
    path = tmp_path / "iscsi-ha.conf"
    path.write_text(six.text_type(config.render_sample(log_file=str(tmp_path / "ha.log"))))
    return str(path)


def run(world, conf, *argv, **streams):
    FakeClient.world = world
    out, err = streams.get("out") or Stream(), Stream()
    code = cli.main(["--config", conf] + list(argv), client_factory=FakeClient, stdout=out,
                    stderr=err, sleep=lambda seconds: None)
    assert "Traceback" not in out.text + err.text
    return code, out.text, err.text


def changes(world):
    """What the CLI changed: pool keys, designations, and plugin calls other than reads."""
    return [e for e in world.events if e[0] in ("set", "remove", "xapi")
            or (e[0] == "plugin" and e[2] not in ("status", "check"))]


def rows(text):
    return [line.split() for line in text.splitlines()]


# -- status ---------------------------------------------------------------------------

def test_status_shows_every_host_as_one_table_and_who_serves(world, conf):
    world.record["other_config"][CONTROLLER_KEY] = json.dumps(
        {"host": "hostA", "host_uuid": "uuid-a", "outcome": "in-place", "at": 0,
         "reason": "hostA serves the storage as pool master"})
    code, out, _ = run(world, conf, "status")
    assert code == 0
    assert "serving:     hostA (the pool master)" in out
    assert "manual mode: off" in out
    assert "in-place" in out and "hostA serves the storage as pool master" in out
    table = rows(out)
    header = table.index(["host", "pool", "live", "storage", "resource", "drbd", "connection",
                          "disk", "peer", "disk", "target", "vip", "config", "manual"])
    assert table[header + 2] == ["hostA", "master", "yes", "primary", "iscsi1", "Primary",
                                 "Connected", "UpToDate", "UpToDate", "ready", "here", "d1",
                                 "off"]
    assert table[header + 3] == ["hostB", "slave", "yes", "secondary", "iscsi1", "Secondary",
                                 "Connected", "UpToDate", "UpToDate", "no", "no", "d1", "off"]


def test_status_of_a_host_that_failed_shows_the_xapi_error_and_exits_1(world, conf):
    world.errors[("hostB", "status")] = ["CANNOT_CONTACT_HOST", "OpaqueRef:b"]
    code, out, _ = run(world, conf, "status")
    assert code == 1
    assert ["hostB", "slave", "yes", "unknown"] in rows(out)
    assert "hostB: status failed: CANNOT_CONTACT_HOST OpaqueRef:b" in out
    assert "hostB did not answer" in out


def test_status_json_is_one_object_with_hosts_manual_mode_and_the_controller(world, conf):
    world.set_manual("disk swap")
    world.errors[("hostB", "status")] = ["HOST_OFFLINE", "OpaqueRef:b"]
    world.live["hostB"] = False
    world.record["other_config"][CONTROLLER_KEY] = json.dumps(
        {"host": "hostA", "outcome": "observing", "reason": "manual mode is on", "at": 5.0})
    code, out, _ = run(world, conf, "status", "--json")
    assert code == 1
    shown = json.loads(out)
    assert shown["pool"] == {"name": "lab", "uuid": "pool-uuid", "master": "hostA",
                             "ha_enabled": False}
    assert shown["serving"] == ["hostA"]
    assert shown["manual_mode"]["reason"] == "disk swap"
    assert shown["controller"]["outcome"] == "observing"
    hosts = dict((h["name"], h) for h in shown["hosts"])
    assert hosts["hostA"]["status"]["role"] == "primary" and hosts["hostA"]["error"] is None
    assert (hosts["hostB"]["status"], hosts["hostB"]["error"], hosts["hostB"]["live"]) == (
        None, ["HOST_OFFLINE", "OpaqueRef:b"], False)
    assert hosts["hostA"]["pool_role"] == "master" and hosts["hostB"]["pool_role"] == "slave"


def test_status_prometheus_prints_the_pool_and_the_masters_controller_counters(world,
                                                                             conf):
    from tests.test_metrics import parse
    world.record["other_config"][CONTROLLER_KEY] = json.dumps(
        {"host": "hostA", "host_uuid": HOSTS[0][2], "outcome": "in-place", "at": 0,
         "reason": "hostA serves", "counters": {"failovers": 2, "reconcile_errors": 0,
                                                "pbd_plugs": 1, "pbd_plug_failures": 0},
         "last_failover": {"seconds": 0.8, "at": 1767225600.0}})
    code, out, _ = run(world, conf, "status", "--prometheus")
    assert code == 0
    families = parse(out)
    assert families["iscsi_ha_pool_master"]["samples"] == {(("host", "hostA"),): 1,
                                                           (("host", "hostB"),): 0}
    assert families["iscsi_ha_storage_role"]["samples"][
        (("host", "hostB"), ("role", "standby"))] == 1
    assert families["iscsi_ha_controller_failovers_total"]["samples"] == {(): 2}
    assert families["iscsi_ha_controller_master"]["samples"] == {(): 1}
    assert families["iscsi_ha_controller_last_failover_duration_seconds"]["samples"] == {
        (): 0.8}


def test_status_takes_json_or_prometheus_not_both(world, conf):
    code, out, err = run(world, conf, "status", "--json", "--prometheus")
    assert code == 2
    assert "ISCSI_HA_BAD_ARGUMENT" in out + err
    assert not [e for e in world.events if e[0] == "plugin"]


def test_status_prometheus_without_a_controller_record_shows_the_pool_only(world, conf):
    from tests.test_metrics import parse
    world.errors[("hostB", "status")] = ["CANNOT_CONTACT_HOST", "OpaqueRef:b"]
    code, out, _ = run(world, conf, "status", "--prometheus")
    assert code == 1  # as `status`: a host's status could not be read
    families = parse(out)
    assert families["iscsi_ha_host_status_up"]["samples"][(("host", "hostB"),)] == 0
    assert "iscsi_ha_controller_failovers_total" not in families


def test_status_says_when_the_storage_is_not_on_the_master_and_configs_differ(world, conf):
    world.statuses = {"hostA": status("hostA", digest="d1"),
                      "hostB": status("hostB", "primary", digest="d2")}
    code, out, _ = run(world, conf, "status")
    assert code == 0
    assert "serving:     hostB, but hostA is pool master" in out
    assert "config digests differ" in out


def test_status_uses_the_peer_timeout(world, conf):
    run(world, conf, "status")
    timeout = config.load(conf).peer_timeout
    assert [e for e in world.events if e[0] == "timeout"] == [("timeout", "status", timeout)] * 2


# -- promote, demote ------------------------------------------------------------------

@pytest.mark.parametrize("command", [["promote", "hostB"], ["demote", "hostA"]])
def test_promote_and_demote_outside_manual_mode_are_refused_with_the_fix(world, conf, command):
    code, _, err = run(world, conf, *command)
    assert code == 1
    assert err.startswith("iscsi-ha: ISCSI_HA_NOT_MANUAL_MODE: %s is for manual mode only"
                          % command[0])
    assert "`iscsi-ha manual on --reason TEXT`" in err
    assert "`iscsi-ha switchover %s`" % command[1] in err
    assert changes(world) == []


def test_promote_in_manual_mode_passes_its_flags_as_strings(world, conf):
    world.set_manual()
    world.statuses["hostA"] = status("hostA", manual=True)
    code, out, _ = run(world, conf, "promote", "hostB", "--peer-down", "--force",
                       "--reason", "hostA is off")
    assert code == 0
    assert changes(world) == [("plugin", "hostB", "promote", {
        "peer_down": "true", "force": "true", "reason": "hostA is off"})]
    assert ("timeout", "promote", config.load(conf).action_timeout) in world.events
    assert out.startswith("promote on hostB: promote: done")


def test_the_pools_flag_rules_over_the_hosts_copies(world, conf):
    world.set_manual()
    del world.record["other_config"][MANUAL_KEY]  # turned off; the copies lag behind
    code, _, err = run(world, conf, "demote", "hostA")
    assert (code, "ISCSI_HA_NOT_MANUAL_MODE" in err, changes(world)) == (1, True, [])
    code, out, _ = run(world, conf, "status")
    assert "manual mode: off (the copy on hostA, hostB differs; the controller aligns it)" in out


def test_a_refused_promote_passes_on_the_plugins_code_and_message(world, conf):
    world.set_manual()
    world.errors[("hostB", "promote")] = ["ISCSI_HA_PEER_PRIMARY", "hostA is Primary: demote it"]
    code, out, err = run(world, conf, "promote", "hostB", "--json")
    assert code == 1
    assert err == ("iscsi-ha: ISCSI_HA_PEER_PRIMARY: promote on hostB failed: hostA is "
                   "Primary: demote it\n")
    error = json.loads(out)["error"]
    assert error["code"] == "ISCSI_HA_PEER_PRIMARY"
    assert error["steps"][0]["error"] == ["ISCSI_HA_PEER_PRIMARY", "hostA is Primary: demote it"]


def test_an_unknown_host_is_bad_usage_naming_the_hosts(world, conf):
    world.set_manual()
    code, _, err = run(world, conf, "demote", "hostC")
    assert code == 2
    assert "ISCSI_HA_BAD_ARGUMENT: there is no host \"hostC\" in this pool; name one of hostA, "\
           "hostB" in err


def test_a_host_may_be_named_by_uuid(world, conf):
    world.set_manual()
    assert run(world, conf, "demote", "uuid-a")[0] == 0
    assert changes(world)[0][:3] == ("plugin", "hostA", "demote")


# -- manual mode ----------------------------------------------------------------------

def test_manual_on_sets_the_pool_flag_first_then_each_hosts_copy(world, conf):
    code, out, _ = run(world, conf, "manual", "on", "--reason", "disk swap", "--json")
    assert code == 0
    assert changes(world) == [
        ("set", MANUAL_KEY),
        ("plugin", "hostA", "manual-mode", {"enabled": "true", "reason": "disk swap"}),
        ("plugin", "hostB", "manual-mode", {"enabled": "true", "reason": "disk swap"})]
    record = json.loads(world.record["other_config"][MANUAL_KEY])
    assert record["reason"] == "disk swap" and record["by"] and record["at"] > 0
    assert json.loads(out) == {"manual_mode": record,
                               "host_copies_set": {"hostA": True, "hostB": True}}


def test_manual_on_needs_a_reason(world, conf, capsys):
    with pytest.raises(SystemExit) as exited:
        run(world, conf, "manual", "on")
    assert exited.value.code == 2
    assert "--reason" in capsys.readouterr().err


def test_manual_on_still_sets_the_pool_flag_when_a_host_does_not_answer(world, conf):
    world.errors[("hostB", "manual-mode")] = ["CANNOT_CONTACT_HOST", "OpaqueRef:b"]
    code, out, _ = run(world, conf, "manual", "on", "--reason", "x")
    assert code == 0
    assert MANUAL_KEY in world.record["other_config"]
    assert "hostB's copy of the flag was not set (CANNOT_CONTACT_HOST" in out


def test_manual_off_is_refused_while_another_host_serves_and_names_both_fixes(world, conf):
    world.set_manual()
    world.statuses["hostA"] = status("hostA", manual=True)
    world.statuses["hostB"] = status("hostB", "primary", manual=True)
    code, _, err = run(world, conf, "manual", "off")
    assert code == 1
    assert err.startswith("iscsi-ha: ISCSI_HA_ROLES_DISAGREE: manual mode stays on: hostB "
                          "serves but hostA is pool master: make hostB pool master (xe "
                          "pool-designate-new-master host-uuid=uuid-b;")
    assert "move the storage to hostA with `iscsi-ha switchover hostA` while still in manual " \
           "mode; then run `iscsi-ha manual off` again" in err
    assert changes(world) == []
    assert MANUAL_KEY in world.record["other_config"]


def test_manual_off_is_refused_while_a_host_does_not_answer(world, conf):
    world.set_manual()
    world.errors[("hostB", "status")] = ["CANNOT_CONTACT_HOST", "OpaqueRef:b"]
    code, _, err = run(world, conf, "manual", "off")
    assert code == 1
    assert "hostB did not answer (CANNOT_CONTACT_HOST OpaqueRef:b)" in err
    assert changes(world) == []


@pytest.mark.parametrize("roles, advice", [
    (("secondary", "secondary"), "`iscsi-ha promote hostA`"),
    (("mixed", "secondary"), "`iscsi-ha promote hostA`"),
    (("primary", "mixed"), "`iscsi-ha demote hostB`"),
])
def test_manual_off_refusals_name_the_command_that_fixes_them(world, conf, roles, advice):
    world.set_manual()
    for name, role in zip(("hostA", "hostB"), roles):
        world.statuses[name]["role"] = role
    code, _, err = run(world, conf, "manual", "off")
    assert (code, advice in err, changes(world)) == (1, True, [])


def test_manual_off_clears_the_hosts_copies_before_the_pool_flag(world, conf):
    world.set_manual()
    code, out, _ = run(world, conf, "manual", "off", "--reason", "done")
    assert code == 0
    assert changes(world) == [
        ("plugin", "hostA", "manual-mode", {"enabled": "false", "reason": "manual mode off: done"}),
        ("plugin", "hostB", "manual-mode", {"enabled": "false", "reason": "manual mode off: done"}),
        ("remove", MANUAL_KEY)]
    assert "manual mode is off" in out


def test_manual_off_keeps_the_pool_flag_when_a_copy_cannot_be_cleared(world, conf):
    world.set_manual()
    world.errors[("hostB", "manual-mode")] = ["ISCSI_HA_BUSY", "another action runs"]
    code, _, err = run(world, conf, "manual", "off")
    assert code == 1 and "ISCSI_HA_BUSY" in err
    assert MANUAL_KEY in world.record["other_config"]


def test_manual_off_when_off_changes_nothing(world, conf):
    code, out, _ = run(world, conf, "manual", "off")
    assert (code, out, changes(world)) == (0, "manual mode is off already\n", [])


# -- switchover -----------------------------------------------------------------------

def test_switchover_in_manual_mode_demotes_then_promotes_and_leaves_the_master(world, conf):
    world.set_manual()
    code, out, _ = run(world, conf, "switchover", "--json")  # the other host: hostB
    assert code == 0
    moved = changes(world)
    assert [(e[1], e[2]) for e in moved] == [("hostA", "demote"), ("hostB", "promote")]
    assert all("manual mode" in e[3]["reason"] for e in moved)
    steps = json.loads(out)["switchover"]["steps"]
    assert [(s["host"], s["fn"], s["ok"]) for s in steps] == [("hostA", "demote", True),
                                                             ("hostB", "promote", True)]


def test_switchover_in_manual_mode_is_one_round_trip_per_host(world, conf):
    # The promote learns from the demote whom to tickle and that the VIP is released.
    world.set_manual()
    world.statuses["hostB"]["promote_accepts"] = ["force", "peer_down", "reason", "tickle",
                                                  "vip_released"]
    world.answers[("hostA", "demote")] = {"summary": "demoted", "vip_released": True,
                                          "connections": ["198.51.100.7:40001"]}
    code, _, _ = run(world, conf, "switchover", "hostB")
    assert code == 0
    demote, promote = changes(world)
    assert (promote[3]["tickle"], promote[3]["vip_released"]) == (
        json.dumps(["198.51.100.7:40001"]), "true")
    assert "manual mode" in promote[3]["reason"]


def test_switchover_in_manual_mode_stops_at_the_first_failure(world, conf):
    world.set_manual()
    world.errors[("hostA", "demote")] = ["ISCSI_HA_STEP_FAILED", "vip-release failed"]
    code, _, err = run(world, conf, "switchover", "hostB")
    assert code == 1
    assert "ISCSI_HA_STEP_FAILED: demote on hostA failed: vip-release failed" in err
    assert [e[2] for e in changes(world)] == ["demote"]


def test_switchover_in_manual_mode_refuses_a_stale_replica_and_changes_nothing(world, conf):
    world.set_manual()
    world.statuses["hostB"] = status("hostB", disk="Outdated", manual=True)
    code, _, err = run(world, conf, "switchover", "hostB")
    assert code == 1
    assert "ISCSI_HA_MOVE_REFUSED: not switching over to hostB" in err
    assert "Outdated, not UpToDate" in err
    assert changes(world) == []


def test_switchover_in_manual_mode_back_to_the_master_names_the_server_by_default(world, conf):
    world.set_manual()
    world.statuses["hostA"] = status("hostA", manual=True)
    world.statuses["hostB"] = status("hostB", "primary", manual=True)
    code, out, _ = run(world, conf, "switchover")
    assert code == 0
    assert [(e[1], e[2]) for e in changes(world)] == [("hostB", "demote"), ("hostA", "promote")]
    assert out == ("demote on hostB: demote: done (0.00 s)\n"
                   "promote on hostA: promote: done (0.00 s)\n")


def reported(host, uuid, outcome="done", reason="promoting hostB"):
    """A controller's record in the pool, as daemon._publish writes it."""
    return {CONTROLLER_KEY: json.dumps({"host": host, "host_uuid": uuid, "outcome": outcome,
                                        "reason": reason, "at": 0})}


def test_switchover_designates_the_new_master_and_waits_through_xapi_restarts(world, conf):
    served = {"hostA": status("hostA"), "hostB": status("hostB", "primary")}
    world.after_designate = [("OpaqueRef:a", {}), ("OpaqueRef:b", {}),
                             ("OpaqueRef:b", served, reported("hostB", "uuid-b"))]
    code, out, _ = run(world, conf, "switchover", "hostB", "--json")
    assert code == 0
    assert changes(world) == [("xapi", "pool.designate_new_master", "OpaqueRef:b")]
    result = json.loads(out)["switchover"]
    assert (result["host"], result["designated"], result["previous_master"]) == (
        "hostB", True, "hostA")
    assert result["roles"] == {"hostA": "secondary", "hostB": "primary"}
    assert result["controller"]["reason"] == "promoting hostB"


def test_the_wait_reconnects_after_lost_connections_and_slave_answers(world, conf):
    world.restart_logins = [XapiLost("connection refused"),
                            NotMaster("HOST_IS_SLAVE 192.0.2.12", "192.0.2.12"),
                            Failure(["HOST_STILL_BOOTING"])]
    world.after_designate = [("OpaqueRef:b", {"hostA": status("hostA"),
                                              "hostB": status("hostB", "primary")},
                              reported("hostB", "uuid-b"))]
    code, out, err = run(world, conf, "switchover", "hostB")
    assert (code, err) == (0, "")
    assert [e for e in world.events if e[0] == "login"] == [("login",)] * 5
    assert "hostB is pool master and serves the storage" in out


def test_switchover_waits_for_the_new_masters_controller_to_report_its_pass(world, conf):
    # The promote is done (status primary) a moment before hostB's controller publishes:
    # until then the pool holds hostA's record, which is not this switchover's.
    world.record["other_config"].update(reported("hostA", "uuid-a", "in-place",
                                                 "hostA serves the storage"))
    served = {"hostA": status("hostA"), "hostB": status("hostB", "primary")}
    world.after_designate = [("OpaqueRef:b", served), ("OpaqueRef:b", {}),
                             ("OpaqueRef:b", {}, reported("hostB", "uuid-b"))]
    code, out, err = run(world, conf, "switchover", "hostB", "--json")
    assert code == 0, err
    assert world.after_designate == []
    assert json.loads(out)["switchover"]["controller"]["host"] == "hostB"


def test_switchover_says_what_to_do_when_ha_is_enabled(world, conf):
    world.designate_failure = Failure(["HA_IS_ENABLED"])
    code, _, err = run(world, conf, "switchover", "hostB")
    assert code == 1
    assert err.startswith("iscsi-ha: HA_IS_ENABLED: XAPI refuses to designate a new pool "
                          "master while XenServer HA is enabled")
    assert "Disable HA (xe pool-ha-disable), run `iscsi-ha switchover hostB` again" in err


def test_switchover_refuses_before_designating_when_the_new_master_cannot_serve(world, conf):
    world.statuses["hostB"] = status("hostB", tgtd=False)
    code, _, err = run(world, conf, "switchover", "hostB")
    assert code == 1
    assert "ISCSI_HA_MOVE_REFUSED" in err and "tgtd is not running on hostB" in err
    assert changes(world) == []


def test_switchover_that_does_not_serve_in_time_says_what_it_saw(world, conf):
    world.after_designate = [("OpaqueRef:b", {})] * 3
    world.record["other_config"][CONTROLLER_KEY] = json.dumps({
        "host": "hostB", "outcome": "refused", "at": 0,
        "reason": "not moving the storage to hostB: DRBD iscsi1 on hostB is StandAlone"})
    code, _, err = run(world, conf, "switchover", "hostB", "--wait", "0")
    assert code == 1
    assert "ISCSI_HA_TIMEOUT: the storage did not move within the wait" in err
    assert "hostB is pool master and its status says secondary" in err
    assert "not moving the storage to hostB: DRBD iscsi1 on hostB is StandAlone" in err


def test_switchover_to_the_serving_master_does_nothing(world, conf):
    code, out, _ = run(world, conf, "switchover", "hostA")
    assert (code, changes(world)) == (0, [])
    assert out == "hostA is pool master and serves the storage already\n"


# -- check, log, errors ---------------------------------------------------------------

def test_check_is_one_table_for_both_hosts_and_exits_1_when_a_check_fails(world, conf):
    world.answers[("hostA", "check")] = {"ok": True, "checks": [
        {"check": "tgtd", "ok": True, "detail": "answering"}]}
    world.answers[("hostB", "check")] = {"ok": False, "checks": [
        {"check": "tgtd", "ok": False, "detail": "not answering: start tgtd"}]}
    code, out, err = run(world, conf, "check")
    assert code == 1
    assert ["hostA", "tgtd", "ok", "answering"] in rows(out)
    assert ["hostB", "tgtd", "FAIL", "not", "answering:", "start", "tgtd"] in rows(out)
    assert "ISCSI_HA_CHECK_FAILED" in err


def test_check_json_is_one_object(world, conf):
    world.answers[("hostA", "check")] = {"ok": True, "checks": []}
    world.errors[("hostB", "check")] = ["CANNOT_CONTACT_HOST", "OpaqueRef:b"]
    code, out, _ = run(world, conf, "check", "--json")
    assert code == 1
    shown = json.loads(out)
    assert shown["ok"] is False
    assert shown["hosts"][1] == {"host": "hostB", "result": None,
                                 "error": ["CANNOT_CONTACT_HOST", "OpaqueRef:b"]}


@pytest.mark.parametrize("answer, problem", [
    (["ok"], 'the answer is ["ok"], not a check report'),
    ({"ok": True, "checks": [{"check": "tgtd", "ok": "yes", "detail": ""}]},
     'a check has ok "yes", not true or false'),
    ({"ok": True, "checks": ["tgtd"]}, 'the report lists "tgtd", not a check'),
])
def test_a_check_answer_no_plugin_gives_is_a_failed_check(world, conf, answer, problem):
    # Found by the hostile-input tests: such an answer was ISCSI_HA_INTERNAL_ERROR.
    world.answers[("hostA", "check")] = {"ok": True, "checks": []}
    world.answers[("hostB", "check")] = answer
    code, out, _ = run(world, conf, "check", "--json")
    assert code == 1
    error = json.loads(out)["hosts"][1]["error"]
    assert error[0] == "ISCSI_HA_BAD_ANSWER"
    assert problem in error[1]


def test_log_prints_the_end_of_this_hosts_log(world, conf, tmp_path):
    (tmp_path / "ha.log").write_text(u"".join(u"line %d\n" % n for n in range(100)))
    code, out, _ = run(world, conf, "log", "--lines", "3")
    assert (code, out) == (0, "line 97\nline 98\nline 99\n")
    assert world.events == []  # no XAPI: a local file


def test_log_without_a_log_file_says_where_it_looked(world, conf, tmp_path):
    code, _, err = run(world, conf, "log")
    assert code == 1
    assert "ISCSI_HA_NO_LOG: cannot read this host's log %s" % (tmp_path / "ha.log") in err


@pytest.mark.parametrize("failure, code", [
    (XapiLost("no answer from the xapi at local: refused"), "ISCSI_HA_XAPI_UNREACHABLE"),
    (NotMaster("the xapi at local answers HOST_STILL_BOOTING"), "ISCSI_HA_NO_MASTER"),
    (Failure(["SESSION_AUTHENTICATION_FAILED", "root", "bad password"]),
     "SESSION_AUTHENTICATION_FAILED"),
])
def test_xapi_trouble_is_a_message_with_its_code_not_a_traceback(world, conf, failure, code):
    world.login_failures = [failure]
    exit_code, out, err = run(world, conf, "status", "--json")
    assert exit_code == 1
    assert err.startswith("iscsi-ha: %s: " % code)
    assert json.loads(out)["error"]["code"] == code


def test_a_bug_is_reported_with_its_code_and_logged(world, conf, tmp_path, monkeypatch):
    def bug(pool):
        raise ZeroDivisionError("a bug")
    monkeypatch.setattr(cli, "status_text", bug)
    code, _, err = run(world, conf, "status")
    assert code == 1
    assert err.startswith("iscsi-ha: ISCSI_HA_INTERNAL_ERROR: status failed unexpectedly")
    assert "Traceback" in (tmp_path / "ha.log").read_text()


def test_a_status_answer_no_plugin_gives_is_a_host_not_answering(world, conf):
    # Found by the hostile-input tests: such an answer was ISCSI_HA_INTERNAL_ERROR.
    world.statuses["hostA"] = ["not", "a", "status"]
    world.statuses["hostB"]["vip"] = {"local": "no"}
    code, text, _ = run(world, conf, "status")
    assert code == 1
    assert ("hostA: status failed: ISCSI_HA_BAD_ANSWER fn=status on hostA answered what "
            "iscsi-ha's plugin never does (the answer is [\"not\", \"a\", \"status\"], not a "
            "status)") in text
    assert "hostB: status failed: ISCSI_HA_BAD_ANSWER" in text
    assert "its vip has no address" in text


def test_config_may_follow_the_command_and_a_bad_one_is_exit_2(world, conf, tmp_path):
    FakeClient.world = world
    err = Stream()
    code = cli.main(["status", "--config", str(tmp_path / "none.conf")],
                    client_factory=FakeClient, stdout=Stream(), stderr=err)
    assert code == 2
    assert err.text.startswith("iscsi-ha: ISCSI_HA_BAD_CONFIG: cannot read config")


def test_text_the_terminal_cannot_show_is_replaced_not_a_crash(world, conf):
    world.set_manual(u"R\u00e9paration du disque")
    code, text, _ = run(world, conf, "status", out=Stream("ascii"))
    assert code == 0
    assert "R?paration du disque" in text


def test_a_reason_in_any_language_reaches_the_plugin_and_the_pool(world, conf):
    reason = u"R\u00e9paration du disque"
    code, out, _ = run(world, conf, "manual", "on", "--reason",
                       reason.encode("utf-8") if six.PY2 else reason)
    assert code == 0
    assert json.loads(world.record["other_config"][MANUAL_KEY])["reason"] == reason
    sent = changes(world)[1][3]["reason"]
    assert (sent.decode("utf-8") if six.PY2 else sent) == reason
    assert reason in out

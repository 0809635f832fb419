# -*- coding: utf-8 -*-
"""The Prometheus text the controller writes and `status --prometheus` prints: what a
scrape reads, checked by a strict parser of the text format 0.0.4."""

import os
import re

import pytest

from iscsi_ha_controller import metrics
from iscsi_ha_controller.decide import HostView

from tests.test_decide import host, resource

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


def parse(text):
    """``{name: {"help", "type", "samples": {labels tuple: value}}}``; raises AssertionError
    on anything a Prometheus text parser would refuse or warn about."""
    assert text.endswith("\n"), "the text ends with a line feed"
    families, current, seen_names = {}, None, []
    for number, line in enumerate(text[:-1].split("\n"), 1):
        assert line, "line %d is empty" % number
        if line.startswith("#"):
            parts = line.split(" ", 3)
            assert parts[1] in ("HELP", "TYPE"), line
            name = parts[2]
            assert _NAME.match(name), line
            if name != current:
                assert name not in families, "%s: family %s split" % (number, name)
                families[name] = {"help": None, "type": None, "samples": {}}
                seen_names.append(name)
                current = name
            family = families[name]
            if parts[1] == "HELP":
                assert family["help"] is None and not family["samples"], line
                family["help"] = _unescape(parts[3], help_text=True)
            else:
                assert family["type"] is None and not family["samples"], line
                assert parts[3] in _TYPES, line
                family["type"] = parts[3]
            continue
        name, labels, value = _sample(line)
        assert name == current, "line %d: sample %s outside its family" % (number, name)
        family = families[name]
        assert family["help"] and family["type"], "line %d: no HELP/TYPE first" % number
        assert labels not in family["samples"], "line %d: duplicate series" % number
        family["samples"][labels] = value
    for name, family in families.items():
        assert family["samples"], "%s has no samples" % name
        assert name.startswith("iscsi_ha_")
        assert (family["type"] == "counter") == name.endswith("_total"), name
    return families


def _sample(line):
    match = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)\Z", line)
    assert match, "not a sample line: %r" % line
    name, body, value = match.groups()
    labels = []
    if body is not None:
        rest = body[1:-1]
        while rest:
            pair = re.match(r'([^=]+)="((?:[^"\\]|\\.)*)"(,|\Z)', rest)
            assert pair, "bad labels in %r" % line
            assert _LABEL_NAME.match(pair.group(1)), line
            labels.append((pair.group(1), _unescape(pair.group(2))))
            rest = rest[pair.end():]
            assert not (pair.group(3) == "," and not rest), "trailing comma: %r" % line
        assert len(set(k for k, _ in labels)) == len(labels), line
    return name, tuple(labels), float(value)


def _unescape(text, help_text=False):
    out, index = [], 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            following = text[index + 1]
            allowed = {"\\": "\\", "n": "\n"}
            if not help_text:
                allowed['"'] = '"'
            assert following in allowed, "bad escape in %r" % text
            out.append(allowed[following])
            index += 2
            continue
        assert help_text or char not in '"\n', text
        out.append(char)
        index += 1
    return "".join(out)


def value(families, name, **labels):
    return families[name]["samples"][tuple(sorted(labels.items(), key=_order(name,
                                                                             families)))]


def _order(name, families):
    # Labels in the order the family's first series lists them.
    first = list(families[name]["samples"])[0]
    keys = [k for k, _ in first]
    return lambda item: keys.index(item[0])


def pool_text(**controller):
    master = host("xcp-a", role="primary", vip_local=True, pool_role="master",
                  drbd=resource(role="Primary", peer_role="Secondary"))
    standby = host("xcp-b", drbd=dict(resource(connection="SyncTarget", disk="Inconsistent"),
                                       out_of_sync_bytes=3 * 1024 ** 3, percent_in_sync=62.5))
    silent = host("xcp-c", live=False, error=["HOST_OFFLINE", "OpaqueRef:c"])
    return metrics.render([master, standby, silent], "xcp-a", controller or None)


def test_roles_and_drbd_states_per_host_and_resource():
    families = parse(pool_text())
    assert value(families, "iscsi_ha_pool_master", host="xcp-a") == 1
    assert value(families, "iscsi_ha_pool_master", host="xcp-b") == 0
    assert value(families, "iscsi_ha_host_live", host="xcp-c") == 0
    assert value(families, "iscsi_ha_host_status_up", host="xcp-c") == 0
    roles = dict(((dict(k)["host"], dict(k)["role"]), v) for k, v in
                 families["iscsi_ha_storage_role"]["samples"].items())
    assert [r for (h, r), v in sorted(roles.items()) if v == 1] == [
        "serving", "standby", "unknown"]  # xcp-a, xcp-b, xcp-c: one role each
    assert value(families, "iscsi_ha_drbd_primary", host="xcp-a", resource="iscsi1") == 1
    assert value(families, "iscsi_ha_drbd_connected", host="xcp-b", resource="iscsi1") == 1
    assert value(families, "iscsi_ha_drbd_disk_up_to_date", host="xcp-b",
                 resource="iscsi1") == 0
    assert value(families, "iscsi_ha_drbd_connection_state", host="xcp-b", resource="iscsi1",
                 state="SyncTarget") == 1
    assert value(families, "iscsi_ha_drbd_disk_state", host="xcp-b", resource="iscsi1",
                 state="Inconsistent") == 1
    assert value(families, "iscsi_ha_drbd_peer_disk_up_to_date", host="xcp-a",
                 resource="iscsi1") == 1
    assert value(families, "iscsi_ha_drbd_out_of_sync_bytes", host="xcp-b",
                 resource="iscsi1") == 3 * 1024 ** 3
    assert value(families, "iscsi_ha_drbd_in_sync_ratio", host="xcp-b",
                 resource="iscsi1") == 0.625
    # Only where DRBD says them: xcp-a's status (DRBD 8.4, say) has no figures.
    assert [dict(k)["host"] for k in families["iscsi_ha_drbd_in_sync_ratio"]["samples"]] == [
        "xcp-b"]
    # A host without status has no DRBD series (rather than made-up zeros).
    assert not [k for k in families["iscsi_ha_drbd_primary"]["samples"]
                if dict(k)["host"] == "xcp-c"]
    assert "iscsi_ha_controller_failovers_total" not in families


def test_the_controllers_counters_and_its_last_failover():
    families = parse(pool_text(master=True, counters={
        "failovers": 3, "reconcile_errors": 1, "pbd_plugs": 2, "pbd_plug_failures": 0},
        last_failover={"seconds": 0.781, "at": 1767225600.5}))
    assert families["iscsi_ha_controller_failovers_total"]["type"] == "counter"
    assert families["iscsi_ha_controller_failovers_total"]["samples"] == {(): 3}
    assert families["iscsi_ha_controller_reconcile_errors_total"]["samples"] == {(): 1}
    assert families["iscsi_ha_controller_pbd_plugs_total"]["samples"] == {(): 2}
    assert families["iscsi_ha_controller_master"]["samples"] == {(): 1}
    assert families["iscsi_ha_controller_last_failover_duration_seconds"]["samples"] == {
        (): 0.781}
    assert families["iscsi_ha_controller_last_failover_timestamp_seconds"]["samples"] == {
        (): 1767225600.5}


def test_a_controller_that_never_moved_anything_has_no_last_failover():
    text = metrics.render(controller={"master": False, "counters": metrics.new_counters(),
                                      "last_failover": None})
    families = parse(text)
    assert families["iscsi_ha_controller_failovers_total"]["samples"] == {(): 0}
    assert families["iscsi_ha_controller_master"]["samples"] == {(): 0}
    assert "iscsi_ha_controller_last_failover_duration_seconds" not in families
    assert "iscsi_ha_pool_master" not in families  # a slave's controller sees no pool


@pytest.mark.parametrize("name", [u'back\\slash', u'a "quoted" name', u'two\nlines',
                                  u'h\u00f6st \\"\n'])
def test_label_values_are_escaped_and_read_back_as_they_were(name):
    view = HostView(name, "uuid-x", "192.0.2.19", True, None, ["HOST_OFFLINE"])
    text = metrics.render([view], name)
    assert text.count("\n") == len(text.splitlines())  # no raw line feed inside a line
    families = parse(text)
    assert value(families, "iscsi_ha_pool_master", host=name) == 1


def test_escaping_rules():
    assert metrics.escape_label_value(u'a\\b"c\nd') == u'a\\\\b\\"c\\nd'
    assert metrics.escape_label_value(u"plain") == u"plain"


def test_the_file_is_replaced_whole_and_leaves_no_temporary_behind(tmp_path):
    path = str(tmp_path / "iscsi-ha.prom")
    metrics.write(path, u"# old\n")
    metrics.write(path, pool_text())
    with open(path, "rb") as handle:
        assert parse(handle.read().decode("utf-8"))
    assert os.listdir(str(tmp_path)) == ["iscsi-ha.prom"]


def test_a_file_that_cannot_be_written_raises_and_leaves_nothing(tmp_path):
    with pytest.raises((IOError, OSError)):
        metrics.write(str(tmp_path / "missing" / "iscsi-ha.prom"), u"x 1\n")
    assert os.listdir(str(tmp_path)) == []


def test_the_controller_writes_its_counters_and_the_pool_after_each_pass(tmp_path):
    from tests.test_daemon import FakeClient, controller_for, make_config, new_master_snapshot
    path = str(tmp_path / "iscsi-ha.prom")
    config = make_config(tmp_path, metrics_file=path)
    clock = iter(range(100, 200, 2))
    client = FakeClient([new_master_snapshot()])
    controller = controller_for(config, client)
    controller.clock = lambda: float(next(clock))
    controller.connect()
    controller._set_mode("master", "test")
    controller.reconcile("became master")
    with open(path) as handle:
        families = parse(handle.read())
    assert families["iscsi_ha_controller_failovers_total"]["samples"] == {(): 1}
    # From the pass's start to the end of its calls, on the controller's clock (which
    # this test moves 2 s a reading: observed, and each call's start and end, come between).
    assert families["iscsi_ha_controller_last_failover_duration_seconds"]["samples"] == {
        (): 12.0}
    assert value(families, "iscsi_ha_pool_master", host="xcp-b") == 1
    assert client.keys["iscsi-ha.controller"]["counters"]["failovers"] == 1

    # A restarted controller counts on; as a slave it drops the pool's part.
    restarted = controller_for(config, FakeClient([new_master_snapshot()]))
    restarted._set_mode("slave", "pool.conf names 192.0.2.11 as master")
    with open(path) as handle:
        families = parse(handle.read())
    assert families["iscsi_ha_controller_failovers_total"]["samples"] == {(): 1}
    assert families["iscsi_ha_controller_master"]["samples"] == {(): 0}
    assert "iscsi_ha_pool_master" not in families


def test_a_failed_pass_counts_as_a_reconcile_error(tmp_path):
    from tests.test_daemon import FakeClient, controller_for, make_config, new_master_snapshot
    config = make_config(tmp_path)
    client = FakeClient([new_master_snapshot()], answers={
        ("xcp-a", "demote"): (None, ["ISCSI_HA_BUSY", "locked"])})
    controller = controller_for(config, client)
    controller.connect()
    controller.reconcile("became master")
    assert controller.state["counters"]["reconcile_errors"] == 1
    assert controller.state["counters"]["failovers"] == 0
    assert controller.state["last_failover"] is None


def test_a_metrics_file_that_cannot_be_written_is_logged_once(tmp_path, caplog):
    from tests.test_daemon import FakeClient, controller_for, make_config, new_master_snapshot
    config = make_config(tmp_path, metrics_file=str(tmp_path / "missing" / "x.prom"))
    controller = controller_for(config, FakeClient([new_master_snapshot()]))
    controller.connect()
    controller.reconcile("became master")
    controller.reconcile("safety pass")
    warned = [r for r in caplog.records if "metrics_file" in r.getMessage()]
    assert len(warned) == 1
    assert "missing" in warned[0].getMessage()

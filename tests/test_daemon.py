"""The controller's loop with a fake XAPI client: what it calls, in which order, what it keeps."""

import json
import os
import threading
import time

import pytest
from six.moves import socketserver, xmlrpc_server

from iscsi_ha import config as config_module, poolconf
from iscsi_ha_controller import daemon
from iscsi_ha_controller.decide import HostView, Snapshot
from iscsi_ha_controller.observe import (CONTROLLER_KEY, NotMaster, PoolClient, XapiLost,
                                         read_statuses)

from tests.test_cli import status as plugin_status
from tests.test_decide import FAST_PROMOTE, host


class FakeClient(object):
    """Stands in for observe.PoolClient: scripted snapshots and plugin answers."""

    def __init__(self, snapshots, answers=None, login_error=None):
        self.snapshots = list(snapshots)
        self.answers = dict(answers or {})  # (host, fn) -> (result, error)
        self.login_error = login_error
        self.calls, self.keys, self.messages, self.beside = [], {}, [], []
        self.removed_keys = []
        self.pool_uuid = "pool-uuid"
        self.took_over_addresses = []

    def __call__(self, config):  # the daemon's client_factory
        return self

    def login(self):
        if self.login_error is not None:
            raise self.login_error

    def logout(self):
        pass

    def snapshot(self, own_uuid, took_over_from_address=None, fresh_master=False):
        self.took_over_addresses.append(took_over_from_address)
        snapshot = self.snapshots.pop(0) if len(self.snapshots) > 1 else self.snapshots[0]
        snapshot.fresh_master = fresh_master
        return snapshot, "OpaqueRef:pool"

    def call_plugin(self, view, fn, args, timeout):
        self.calls.append((view.name, fn, dict(args), timeout))
        return self.answers.get((view.name, fn), ({"summary": "%s done" % fn}, None))

    def call_plugins_beside(self, calls):
        self.beside.append([(view.name, fn) for view, fn, _, _ in calls])
        return [self.call_plugin(*call) + (0.25,) for call in calls]

    def set_pool_key(self, pool_ref, key, value):
        self.keys[key] = json.loads(value)

    def pbds(self):  # the SR repair's look: no SR on the VIP
        return [], None

    def remove_pool_key(self, pool_ref, key):
        self.keys.pop(key, None)
        self.removed_keys.append(key)

    def events(self, token, wait):
        raise XapiLost("the test ends the master loop here")


class Alerts(object):
    def __init__(self):
        self.sent = []

    def alert(self, kind, text, host_uuid=None, pool_uuid=None):
        self.sent.append(kind)

    def close(self, seconds):
        pass


@pytest.fixture
def config(tmp_path):
    return make_config(tmp_path)


def make_config(tmp_path, **settings):
    text = config_module.render_sample(
        state_dir=str(tmp_path / "state"), run_dir=str(tmp_path / "run"),
        log_file=str(tmp_path / "iscsi-ha.log"), inventory=str(tmp_path / "inventory"),
        pool_conf=str(tmp_path / "pool.conf"), **settings)
    (tmp_path / "inventory").write_text(u"INSTALLATION_UUID='uuid-xcp-b'\n")
    return config_module.parse(text, str(tmp_path / "iscsi-ha.conf"))


def write_pool_conf(config, text):
    with open(config.pool_conf, "w") as handle:
        handle.write(text)


def new_master_snapshot():
    return Snapshot(host("xcp-b", pool_role="master"),
                    [host("xcp-a", role="primary", vip_local=True)])


def controller_for(config, client):
    return daemon.Controller(config, alerter=Alerts(), client_factory=client,
                             sleep=lambda seconds: None)


def test_a_move_demotes_then_promotes_and_records_it(config):
    client = FakeClient([new_master_snapshot()])
    controller = controller_for(config, client)
    assert controller.connect()
    plan = controller.reconcile("became master")
    assert [(h, fn) for h, fn, _, _ in client.calls] == [("xcp-a", "demote"),
                                                         ("xcp-b", "promote")]
    assert [timeout for _, _, _, timeout in client.calls] == [config.action_timeout] * 2
    assert plan.retry  # soon again: the initiators reconnect to the new owner
    with open(os.path.join(config.run_dir, "controller.json")) as handle:
        state = json.load(handle)
    assert state["last_pass"]["outcome"] == "done"
    assert state["last_pass"]["reason"] == plan.reason
    assert client.keys[CONTROLLER_KEY]["reason"] == plan.reason
    assert controller.alerter.sent == ["failover-started", "failover-done"]


def test_a_planned_move_hands_the_demotes_connections_to_the_promote(config):
    clients = ["198.51.100.7:40001"]
    snapshot = Snapshot(host("xcp-b", pool_role="master", promote_accepts=FAST_PROMOTE),
                        [host("xcp-a", role="primary", vip_local=True)])
    client = FakeClient([snapshot], answers={
        ("xcp-a", "demote"): ({"summary": "demoted", "connections": clients,
                               "vip_released": True}, None),
        ("xcp-b", "promote"): ({"summary": "promoted", "tickled": 1,
                                "tickle_failures": []}, None)})
    controller = controller_for(config, client)
    controller.connect()
    controller.reconcile("became master")
    promote_args = client.calls[1][2]
    assert (promote_args["tickle"], promote_args["vip_released"]) == (json.dumps(clients),
                                                                      "true")
    demoted, promoted = controller.state["last_pass"]["actions"]
    assert demoted["vip_released"] is True
    assert (promoted["tickled"], promoted["tickle_failures"]) == (1, [])


def test_the_state_file_keeps_the_last_passes_and_a_restart_keeps_them(config):
    steady = Snapshot(host("xcp-b", role="primary", pool_role="master"), [host("xcp-a")])
    client = FakeClient([new_master_snapshot(), steady])
    controller = controller_for(config, client)
    controller.connect()
    controller.reconcile("became master")
    for _ in range(daemon.KEPT_PASSES):
        controller.reconcile("safety pass")
    restarted = controller_for(config, client)
    passes = restarted.state["passes"]
    assert len(passes) == daemon.KEPT_PASSES
    assert [p["outcome"] for p in passes] == ["in-place"] * daemon.KEPT_PASSES
    assert passes[-1] == restarted.state["last_pass"]
    assert all(p["started"] <= p["observed"] <= p["finished"] for p in passes)
    restarted.connect()
    restarted.reconcile("after the restart")
    assert len(restarted.state["passes"]) == daemon.KEPT_PASSES
    assert restarted.state["passes"][-1]["trigger"] == "after the restart"


def test_a_master_again_publishes_its_reason_though_it_said_the_same_before(config):
    # Another master published in between: the pool's record is not this host's any more.
    steady = Snapshot(host("xcp-b", role="primary", pool_role="master"), [host("xcp-a")])
    client = FakeClient([steady])
    controller = controller_for(config, client)
    controller.connect()
    controller._serve()  # one pass, then the (fake) event stream breaks
    client.keys.clear()
    controller.connect()
    controller._serve()
    assert client.keys[CONTROLLER_KEY]["host_uuid"] == "uuid-xcp-b"


def test_a_failed_demote_stops_the_plan_before_the_promote(config):
    client = FakeClient([new_master_snapshot()], answers={
        ("xcp-a", "demote"): (None, ["ISCSI_HA_STEP_FAILED", "vip-release failed"])})
    controller = controller_for(config, client)
    controller.connect()
    plan = controller.reconcile("became master")
    assert [(h, fn) for h, fn, _, _ in client.calls] == [("xcp-a", "demote")]
    assert plan.retry
    assert controller.state["last_pass"]["outcome"] == "failed"
    assert controller.alerter.sent == ["failover-started", "failover-failed"]


def beside_snapshot():
    """A planned move whose new master's plugin waits for the demote (await_demote)."""
    accepts = {"promote_accepts": ["await_demote", "force", "peer_down", "reason", "tickle",
                                   "vip_released"]}
    return Snapshot(host("xcp-b", pool_role="master", **accepts),
                    [host("xcp-a", role="primary", vip_local=True, **accepts)])


def test_a_promote_that_awaits_the_demote_is_called_beside_it(config):
    client = FakeClient([beside_snapshot()], answers={
        ("xcp-b", "promote"): ({"summary": "promote done", "awaited_demote_seconds": 0.1},
                               None)})
    controller = controller_for(config, client)
    controller.connect()
    controller.reconcile("became master")
    assert client.beside == [[("xcp-a", "demote"), ("xcp-b", "promote")]]
    records = controller.state["last_pass"]["actions"]
    assert [(r["host"], r["fn"], r["ok"], r["seconds"]) for r in records] == [
        ("xcp-a", "demote", True, 0.25), ("xcp-b", "promote", True, 0.25)]
    assert records[1]["awaited_demote_seconds"] == 0.1
    assert controller.state["last_pass"]["outcome"] == "done"
    assert controller.alerter.sent == ["failover-started", "failover-done"]


def test_a_failed_demote_beside_its_promote_fails_the_pass_with_both_answers(config):
    client = FakeClient([beside_snapshot()], answers={
        ("xcp-a", "demote"): (None, ["ISCSI_HA_STEP_FAILED", "vip-release failed"]),
        ("xcp-b", "promote"): (None, ["ISCSI_HA_PEER_PRIMARY", "stayed Primary"])})
    controller = controller_for(config, client)
    controller.connect()
    plan = controller.reconcile("became master")
    assert plan.retry
    records = controller.state["last_pass"]["actions"]
    assert [(r["fn"], r["error"][0]) for r in records] == [
        ("demote", "ISCSI_HA_STEP_FAILED"), ("promote", "ISCSI_HA_PEER_PRIMARY")]
    assert controller.state["last_pass"]["outcome"] == "failed"
    assert controller.alerter.sent == ["failover-started", "failover-failed"]


def test_the_reason_is_published_to_the_pool_only_when_it_changes(config):
    steady = Snapshot(host("xcp-b", role="primary", pool_role="master"), [host("xcp-a")])
    client = FakeClient([steady])
    controller = controller_for(config, client)
    controller.connect()
    controller.reconcile("first")
    client.keys.clear()
    controller.reconcile("safety pass")
    assert client.keys == {}


def stop_after_sleeps(controller, count):
    """The seconds of each of ``controller``'s sleeps, which stop it at the ``count``th."""
    looks = []

    def sleep(seconds):
        looks.append(seconds)
        if len(looks) == count:
            controller.stop()
    controller.sleep = sleep
    return looks


def test_a_slave_waits_on_pool_conf_without_logging_in(config):
    write_pool_conf(config, "slave:192.0.2.11")
    client = FakeClient([new_master_snapshot()], login_error=AssertionError("logged in"))
    controller = controller_for(config, client)
    looks = stop_after_sleeps(controller, 3)
    assert controller._wait_for_mastership() is False
    assert looks == [daemon.SLAVE_POLL] * 3
    assert controller.state["mode"] == "slave"


def test_the_host_it_took_over_from_reaches_the_snapshot_and_survives_a_restart(config):
    write_pool_conf(config, "slave:192.0.2.11")
    client = FakeClient([new_master_snapshot()])
    controller = controller_for(config, client)

    def become_master(seconds):
        write_pool_conf(config, "master")
    controller.sleep = become_master
    assert controller._wait_for_mastership() is True
    controller._save_state()
    restarted = controller_for(config, client)  # SIGKILLed and started again
    restarted.connect()
    restarted.reconcile("restart")
    assert client.took_over_addresses == ["192.0.2.11"]


def test_a_slaves_xapi_sends_the_controller_back_to_idle(config):
    write_pool_conf(config, "master")
    client = FakeClient([new_master_snapshot()],
                        login_error=NotMaster("HOST_IS_SLAVE 192.0.2.11", "192.0.2.11"))
    controller = controller_for(config, client)
    assert not controller.connect()
    assert controller.state["mode"] == "slave"


def test_losing_xapi_mid_serve_ends_the_master_loop_without_demoting_anything(config):
    steady = Snapshot(host("xcp-b", role="primary", pool_role="master"), [host("xcp-a")])
    client = FakeClient([steady])
    controller = controller_for(config, client)
    controller.connect()
    controller._serve()
    assert controller.state["mode"] == "unreachable"
    assert [fn for _, fn, _, _ in client.calls] == []


def test_manual_mode_lost_by_the_pool_database_is_written_back(config):
    snapshot = Snapshot(host("xcp-b", role="primary", pool_role="master", manual=True),
                        [host("xcp-a", manual=True)])
    client = FakeClient([snapshot])
    controller = controller_for(config, client)
    controller.connect()
    controller.reconcile("became master", fresh_master=True)
    assert "iscsi-ha.manual-mode" in client.keys
    assert client.calls == []


def test_a_manual_mode_flag_older_than_the_masters_off_record_is_removed(config):
    snapshot = Snapshot(host("xcp-b", pool_role="master", manual_mode_off_at=2.0),
                        [host("xcp-a", role="primary", vip_local=True)],
                        manual_mode={"reason": "disk swap", "at": 1.0})
    client = FakeClient([snapshot])
    controller = controller_for(config, client)
    controller.connect()
    controller.reconcile("became master", fresh_master=True)
    assert client.removed_keys == ["iscsi-ha.manual-mode"]
    assert [(h, fn) for h, fn, _, _ in client.calls] == [("xcp-a", "demote"),
                                                         ("xcp-b", "promote")]


def test_pool_conf_is_read_as_xapi_writes_it(tmp_path):
    path = str(tmp_path / "pool.conf")
    assert poolconf.read(path) == (None, None)
    for text, expected in (("master", ("master", None)),
                           ("slave:192.0.2.11", ("slave", "192.0.2.11")),
                           ("slave:", (None, None)), ("garbage", (None, None))):
        with open(path, "w") as handle:
            handle.write(text)
        assert poolconf.read(path) == expected



def test_a_stop_that_comes_during_a_pass_ends_the_controller_right_after_it(config):
    write_pool_conf(config, "master")
    steady = Snapshot(host("xcp-b", role="primary", pool_role="master"), [host("xcp-a")])

    class StoppedMidPass(FakeClient):
        def snapshot(self, *args, **kwargs):
            controller.stop()  # SIGTERM while busy: main.py only sets the flag
            return FakeClient.snapshot(self, *args, **kwargs)

        def events(self, token, wait):
            raise AssertionError("waited for events after the stop")

    client = StoppedMidPass([steady])
    controller = controller_for(config, client)
    with pytest.raises(SystemExit):
        controller.run()
    with open(os.path.join(config.run_dir, "controller.json")) as handle:
        assert json.load(handle)["last_pass"]["outcome"] == "in-place"  # the pass finished


def test_with_events_off_a_slave_polls_pool_conf_at_the_interval(tmp_path):
    config = make_config(tmp_path, controller_events="off", controller_interval=7)
    write_pool_conf(config, "slave:192.0.2.11")
    controller = controller_for(config, FakeClient([new_master_snapshot()]))
    looks = stop_after_sleeps(controller, 2)
    assert controller._wait_for_mastership() is False
    assert looks == [7, 7]


def test_with_events_off_the_master_polls_at_the_interval_without_event_from(tmp_path):
    config = make_config(tmp_path, controller_events="off", controller_interval=7)
    steady = Snapshot(host("xcp-b", role="primary", pool_role="master"), [host("xcp-a")])

    class Polling(FakeClient):
        def events(self, token, wait):
            raise AssertionError("event.from with events = off")

    client = Polling([steady])
    controller = controller_for(config, client)
    now, waits = [0.0], []

    def sleep(seconds):
        waits.append(seconds)
        now[0] += seconds
        if len(waits) == 2:
            controller.stop()
    controller.clock, controller.sleep = (lambda: now[0]), sleep
    controller.connect()
    controller._serve()
    assert waits == [7, 7]
    assert controller.state["last_pass"]["trigger"] == "poll"


class ThreadedXapi(object):
    """A login and host.call_plugin on 127.0.0.1, each call in its own thread; a status
    call answers only once ``together`` status calls are in flight at once."""

    def __init__(self, together, fail_host=None, slow_host=None, vip_elsewhere=None):
        class Server(socketserver.ThreadingMixIn, xmlrpc_server.SimpleXMLRPCServer):
            daemon_threads = True
        self.server = Server(("127.0.0.1", 0), logRequests=False, allow_none=True)
        self.server.register_instance(self)
        self.together, self.fail_host, self.slow_host = together, fail_host, slow_host
        self.vip_elsewhere = vip_elsewhere
        self.arrived, self.sessions = [], []
        self.all_here = threading.Condition()
        thread = threading.Thread(target=self.server.serve_forever)
        thread.daemon = True
        thread.start()
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]

    def _dispatch(self, method, params):
        if method != "host.call_plugin":
            # Older XenAPI modules also ask for the API version right after the login.
            return {"Status": "Success", "Value": {
                "session.login_with_password": "OpaqueRef:session",
                "pool.get_all": ["OpaqueRef:pool"], "pool.get_master": "OpaqueRef:a",
                "host.get_API_version_major": "2", "host.get_API_version_minor": "20"}[method]}
        session, host_ref = params[0], params[1]
        if host_ref == self.fail_host:
            return {"Status": "Failure", "ErrorDescription": ["SESSION_INVALID", session]}
        if host_ref == self.slow_host:
            time.sleep(3)
        with self.all_here:
            self.sessions.append(session)
            self.arrived.append(host_ref)
            self.all_here.notify_all()
            # The bound only stops a broken run: a call that waited in vain says so.
            deadline = time.time() + 10
            while len(self.arrived) < self.together and time.time() < deadline:
                self.all_here.wait(0.1)
            together = len(self.arrived) >= self.together
        status = dict(plugin_status(host_ref), together=together)
        if self.vip_elsewhere is not None:
            status["vip"].update(local=False, answered_elsewhere=self.vip_elsewhere)
        return {"Status": "Success", "Value": json.dumps(status)}

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def views_for(*names):
    views = []
    for name in names:
        view = HostView(name, "uuid-" + name, None, True)
        view.ref = "OpaqueRef:" + name
        views.append(view)
    return views


def test_each_hosts_status_is_read_at_the_same_time_with_one_login(tmp_path):
    server = ThreadedXapi(together=2)
    try:
        client = PoolClient(make_config(tmp_path, xapi_url=server.url))
        client.login()
        views = views_for("a", "b")
        read_statuses(client, views)
    finally:
        server.close()
    assert [(v.status["role"], v.status["together"]) for v in views] == [
        ("secondary", True)] * 2
    assert sorted(server.arrived) == ["OpaqueRef:a", "OpaqueRef:b"]
    assert server.sessions == ["OpaqueRef:session"] * 2


def read_with_slow_old_master(tmp_path, vip_elsewhere, lost_master):
    server = ThreadedXapi(together=1, slow_host="OpaqueRef:b", vip_elsewhere=vip_elsewhere)
    try:
        client = PoolClient(make_config(tmp_path, xapi_url=server.url))
        client.login()
        views = views_for("a", "b")
        read_statuses(client, views, lost_master)
        return views
    finally:
        server.close()


def test_a_silent_old_master_of_a_takeover_gets_the_short_bound_once_nobody_has_the_vip(
        tmp_path):
    survivor, old_master = read_with_slow_old_master(tmp_path, False, ["uuid-b"])
    assert survivor.status["role"] == "secondary"
    assert (old_master.status, old_master.error) == (None, [
        "ISCSI_HA_NO_ANSWER", "b gave no answer to fn=status within 0.5 s"])


@pytest.mark.parametrize("vip_elsewhere, lost_master", [
    (True, ["uuid-b"]),   # it still holds the VIP: slow after a planned change, not gone
    (False, []),          # not the host the mastership moved from
])
def test_any_other_slow_host_gets_the_full_bound(tmp_path, vip_elsewhere, lost_master):
    views = read_with_slow_old_master(tmp_path, vip_elsewhere, lost_master)
    assert [(v.status["role"], v.error) for v in views] == [("secondary", [])] * 2


def test_a_lost_session_in_a_status_thread_ends_the_pass_as_it_would_have_alone(tmp_path):
    server = ThreadedXapi(together=1, fail_host="OpaqueRef:b")
    try:
        client = PoolClient(make_config(tmp_path, xapi_url=server.url))
        client.login()
        views = views_for("a", "b")
        # Not "b does not answer", which could count towards b being gone.
        with pytest.raises((NotMaster, XapiLost)):
            read_statuses(client, views)
    finally:
        server.close()


def test_xapi_still_booting_for_one_host_ends_the_pass_without_waiting_for_the_others():
    # Just after its restart, xapi answers HOST_STILL_BOOTING for a call it would pass on
    # to another host; the pass is retried after logging in again, so waiting for the
    # master's own (slow) status first would only add its time to the switchover.
    release = threading.Event()

    class Booting(object):
        config = type("Config", (), {"peer_timeout": 10, "takeover_peer_timeout": 0.5})

        def sibling(self):
            return self

        def call_plugin(self, view, fn, args, timeout):
            if view.name == "b":
                raise NotMaster("this host's xapi answers HOST_STILL_BOOTING")
            release.wait(30)  # the bound only stops a broken run
            answered.append(view.name)
            return {"role": "secondary"}, None

    answered = []
    try:
        with pytest.raises(NotMaster):
            read_statuses(Booting(), views_for("a", "b"))
        assert answered == []  # a's call was still under way
    finally:
        release.set()

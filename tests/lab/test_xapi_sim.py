"""The XAPI simulator, driven through the official XenAPI client module (Python 3).

Each test sets the timers it depends on to short values of its own; what a
test waits for, it waits for as a client would (polling, or blocked in a call),
except where the behaviour is that time passes unseen (a session left idle, a
backup of the database).
"""

import http.client
import json
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import threading
import time
import xmlrpc.client

import pytest
import XenAPI

from . import xapi_sim
from .running import wait_until

USER = "root"
PASSWORD = "lab-secret"
ADDRESS_A = "192.0.2.11"
ADDRESS_B = "192.0.2.12"
UUID_A = "aaaaaaaa-0000-4000-8000-000000000001"
UUID_B = "bbbbbbbb-0000-4000-8000-000000000002"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WAIT_SECONDS = 20
# Short enough for tests, and each test that depends on one says so.
FAST_TIMERS = {"fuse": 0.2, "xapi_start": 0.1, "gc_interval": 0.05,
               "call_plugin_retry": 0.02, "slave_retry": 0.05, "in_flight_hang": 0.3,
               "ha_fence": 0.2, "designate_call": 0.01}
# What a dropped connection looks like to the XenAPI module.
DROPPED = (ConnectionError, http.client.RemoteDisconnected)

# Plugins print a methodResponse themselves so that they need no XenAPIPlugin module.
PLUGIN_PRELUDE = textwrap.dedent("""\
    import json, os, subprocess, sys, time, xmlrpc.client
    params, fn = xmlrpc.client.loads(sys.argv[1])
    session, args = params
    def reply(struct):
        print(xmlrpc.client.dumps((struct,), methodresponse=True, allow_none=True))
    """)

PLUGINS = {
    "echo": PLUGIN_PRELUDE + textwrap.dedent("""\
        reply({"Status": "Success", "Value": json.dumps(
            {"fn": fn, "session": session, "args": args})})
        """),
    "environment": PLUGIN_PRELUDE + textwrap.dedent("""\
        reply({"Status": "Success", "Value": json.dumps({
            "environ": dict((key, value) for key, value in os.environ.items()
                            if key != "LC_CTYPE"),  # set by Python itself (PEP 538)
            "cwd": os.getcwd(), "own_session": os.getsid(0) == os.getpid(),
            "stdin": os.path.realpath("/proc/self/fd/0")})})
        """),
    "refuse": PLUGIN_PRELUDE + textwrap.dedent("""\
        reply({"Status": "Failure",
               "ErrorDescription": ["ISCSI_HA_BUSY", "another switchover runs", args["who"]]})
        """),
    "crash": PLUGIN_PRELUDE + textwrap.dedent("""\
        print("output before the crash")
        raise RuntimeError("disk on fire")
        """),
    "chatter": PLUGIN_PRELUDE + textwrap.dedent("""\
        print("not XML at all")
        """),
    "sleepy": PLUGIN_PRELUDE + textwrap.dedent("""\
        with open(args["pid_file"] + ".tmp", "w") as handle:
            handle.write(str(os.getpid()))
        os.rename(args["pid_file"] + ".tmp", args["pid_file"])
        while not os.path.exists(args["release_file"]):
            time.sleep(0.02)
        reply({"Status": "Success", "Value": "released"})
        """),
    "whereami": PLUGIN_PRELUDE + textwrap.dedent("""\
        where = subprocess.check_output(["ip", "netns", "identify"]).decode().strip()
        reply({"Status": "Success", "Value": where})
        """),
}


def write_plugins(directory):
    os.makedirs(directory)
    for name, text in PLUGINS.items():
        path = os.path.join(directory, name)
        with open(path, "w") as handle:
            handle.write("#!%s\n" % sys.executable + text)
        os.chmod(path, 0o755)
    # xapi executes the file: one that cannot be executed fails like a crash.
    with open(os.path.join(directory, "not-executable"), "w") as handle:
        handle.write("#!%s\n" % sys.executable + PLUGINS["echo"])


def lab_config(tmp_path, netns_a=None, elector="external", **timers):
    plugins_a = str(tmp_path / "plugins-a")
    plugins_b = str(tmp_path / "plugins-b")
    write_plugins(plugins_a)
    write_plugins(plugins_b)
    return {
        "username": USER, "password": PASSWORD, "pool_name": "lab-pool",
        "audit_log": str(tmp_path / "audit.jsonl"), "master": "hostA",
        "elector": elector, "timers": dict(FAST_TIMERS, **timers),
        "hosts": [
            {"name": "hostA", "uuid": UUID_A, "address": ADDRESS_A, "netns": netns_a,
             "plugin_dir": plugins_a, "pool_conf": str(tmp_path / "pool-a.conf")},
            {"name": "hostB", "uuid": UUID_B, "address": ADDRESS_B, "netns": None,
             "plugin_dir": plugins_b, "pool_conf": str(tmp_path / "pool-b.conf")},
        ],
    }


@pytest.fixture
def simulator(tmp_path):
    """``simulator(**timers)`` starts one with those timers (and FAST_TIMERS for the rest)."""
    started = []

    def make(elector="external", **timers):
        instance = xapi_sim.XapiSimulator(lab_config(tmp_path, elector=elector, **timers))
        instance.start()
        started.append(instance)
        return instance
    yield make
    for instance in started:
        instance.stop()


@pytest.fixture
def sim(simulator):
    return simulator()


def login(url, originator="test_xapi_sim"):
    session = XenAPI.Session(url)
    session.xenapi.login_with_password(USER, PASSWORD, "1.0", originator)
    return session


def local_login(url):
    session = XenAPI.Session(url)
    session.slave_local_login_with_password(USER, PASSWORD)
    return session


def failure_of(call, *args):
    with pytest.raises(XenAPI.Failure) as caught:
        call(*args)
    return caught.value.details


def raw(url):
    """A plain XML-RPC client: it shows replies the XenAPI module would act on (retries)."""
    return xmlrpc.client.ServerProxy(url, allow_none=True)


def host_url(sim, name):
    return sim.urls["hosts"][name]["loopback"]


def host_ref(session, name):
    return next(ref for ref, record in session.xenapi.host.get_all_records().items()
                if record["name_label"] == name)


def live(session, name):
    return session.xenapi.host_metrics.get_live(
        session.xenapi.host.get_metrics(host_ref(session, name)))


def read(path):
    with open(str(path)) as handle:
        return handle.read()


def eventually(probe, seconds=WAIT_SECONDS):
    """``probe()``'s first truthy result, polled as often as the fast timers need."""
    return wait_until(probe, repr(probe), seconds, interval=0.02)


def answer_of(url, *args):
    """What a login at ``url`` gets: "master", a XAPI error code list, or "refused"."""
    try:
        login(url, *args)
    except XenAPI.Failure as failure:
        return failure.details
    except ConnectionRefusedError:
        return "refused"
    return "master"


def wait_for_master(url):
    eventually(lambda: answer_of(url) == "master")
    return login(url)


class Background(object):
    """A call running in a thread, so that a test can watch it block."""

    def __init__(self, call, *args):
        self.outcome = None
        self._thread = threading.Thread(target=self._run, args=(call, args), daemon=True)
        self._thread.start()

    def _run(self, call, args):
        try:
            self.outcome = ("returned", call(*args))
        except Exception as exc:  # the test inspects whatever the call raised
            self.outcome = ("raised", exc)

    def still_blocked(self, seconds=0.5):
        self._thread.join(seconds)
        return self._thread.is_alive()

    def result(self):
        self._thread.join(WAIT_SECONDS)
        assert not self._thread.is_alive(), "the call stayed blocked"
        return self.outcome


# -- sessions and the wire -------------------------------------------------------

def test_login_reads_the_pool_and_logout_ends_the_session(sim):
    session = login(sim.urls["pool"])
    handle = session.handle
    [pool] = session.xenapi.pool.get_all()
    master = session.xenapi.pool.get_master(pool)

    assert handle.startswith("OpaqueRef:")
    assert session.xenapi.pool.get_record(pool)["name_label"] == "lab-pool"
    assert session.xenapi.host.get_name_label(master) == "hostA"
    assert session.xenapi.host.get_address(master) == ADDRESS_A
    assert sorted(session.xenapi.host.get_record(ref)["name_label"]
                  for ref in session.xenapi.host.get_all()) == ["hostA", "hostB"]

    session.xenapi.session.logout()

    assert raw(sim.urls["pool"]).pool.get_all(handle) == {
        "Status": "Failure", "ErrorDescription": ["SESSION_INVALID", handle]}


def test_wrong_password_is_refused(sim):
    session = XenAPI.Session(sim.urls["pool"])

    details = failure_of(session.xenapi.login_with_password, USER, "wrong", "1.0", "t")

    assert details == ["SESSION_AUTHENTICATION_FAILED", USER, "Authentication failure"]


def test_unknown_session_is_invalid(sim):
    reply = raw(sim.urls["pool"]).host.get_all("OpaqueRef:not-a-session")

    assert reply == {"Status": "Failure",
                     "ErrorDescription": ["SESSION_INVALID", "OpaqueRef:not-a-session"]}


def test_unknown_host_ref_and_uuid_are_reported_with_their_class(sim):
    session = login(sim.urls["pool"])

    assert failure_of(session.xenapi.host.get_record, "OpaqueRef:nope") == [
        "HANDLE_INVALID", "host", "OpaqueRef:nope"]
    assert failure_of(session.xenapi.host.get_by_uuid, "no-such-uuid") == [
        "UUID_INVALID", "host", "no-such-uuid"]
    [pool] = session.xenapi.pool.get_all()
    assert failure_of(session.xenapi.host.get_record, pool) == ["HANDLE_INVALID", "host", pool]


def test_host_lookups_by_uuid_and_metrics(sim):
    session = login(sim.urls["pool"])

    ref = session.xenapi.host.get_by_uuid(UUID_B)

    assert session.xenapi.host.get_uuid(ref) == UUID_B
    metrics = session.xenapi.host.get_metrics(ref)
    assert session.xenapi.host_metrics.get_live(metrics) is True
    assert session.xenapi.host_metrics.get_record(metrics)["live"] is True


def test_unknown_method_and_wrong_argument_count(sim):
    session = login(sim.urls["pool"])

    assert failure_of(session.xenapi.host.frobnicate) == [
        "MESSAGE_METHOD_UNKNOWN", "host.frobnicate"]
    assert failure_of(session.xenapi.host.get_record) == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH", "host.get_record", "2", "1"]


def test_every_method_also_answers_with_an_underscore_for_its_dot(sim):
    session = login(sim.urls["pool"])
    proxy = raw(sim.urls["pool"])
    metrics = session.xenapi.host.get_metrics(host_ref(session, "hostA"))

    pools = proxy.pool_get_all(session.handle)
    is_live = getattr(proxy, "host_metrics_get_live")(session.handle, metrics)

    assert pools == {"Status": "Success", "Value": session.xenapi.pool.get_all()}
    assert is_live == {"Status": "Success", "Value": True}
    assert proxy.pool_get_every(session.handle)["ErrorDescription"] == [
        "MESSAGE_METHOD_UNKNOWN", "pool_get_every"]


def test_sessions_expire_when_idle_and_the_xenapi_module_logs_in_again(simulator):
    sim = simulator(session_idle=0.3)
    session = login(sim.urls["pool"])
    first = session.handle

    assert raw(sim.urls["pool"]).pool.get_all(first)["Status"] == "Success"
    time.sleep(2 * 0.3)  # idle: any call would keep it alive
    assert raw(sim.urls["pool"]).pool.get_all(first)["ErrorDescription"] == [
        "SESSION_INVALID", first]
    assert session.xenapi.pool.get_all()  # the module saw SESSION_INVALID and logged in again
    assert session.handle != first


def test_sessions_beyond_the_limit_per_originator_expire_oldest_first(tmp_path):
    config = dict(lab_config(tmp_path), max_sessions_per_originator=2)
    with xapi_sim.XapiSimulator(config) as sim:
        proxy = raw(sim.urls["pool"])
        first, second, third = [login(sim.urls["pool"], "busy-tool").handle for _ in range(3)]
        other = login(sim.urls["pool"], "another-tool").handle

        assert proxy.pool.get_all(first)["ErrorDescription"] == ["SESSION_INVALID", first]
        assert [proxy.pool.get_all(ref)["Status"] for ref in (second, third, other)] == [
            "Success"] * 3


def test_config_refuses_what_xapi_cannot_do(tmp_path):
    config = lab_config(tmp_path)
    with_env = dict(config, hosts=[dict(config["hosts"][0], plugin_env={"A": "1"}),
                                   config["hosts"][1]])

    with pytest.raises(ValueError, match="plugin_env"):
        xapi_sim.validate_config(with_env)
    with pytest.raises(ValueError, match="plugin_timeout"):
        xapi_sim.validate_config(dict(config, plugin_timeout=5))
    with pytest.raises(ValueError, match="timer gc_interval"):
        xapi_sim.validate_config(dict(config, timers={"gc_interval": 0}))
    with pytest.raises(ValueError, match="unknown timers: fuze"):
        xapi_sim.validate_config(dict(config, timers={"fuze": 1}))
    with pytest.raises(ValueError, match="elector"):
        xapi_sim.validate_config(dict(config, elector="pacemaker"))


def test_default_timers_are_xapis_scaled_down_and_documented():
    config = xapi_sim.validate_config({"username": "u", "password": "p", "master": "a",
                                       "hosts": [{"name": "a", "uuid": "u", "address": "x",
                                                  "plugin_dir": "/nonexistent"}]})

    assert config["timers"] == dict((name, lab) for name, (_, lab, _) in
                                    xapi_sim.TIMERS.items())
    assert config["elector"] == "external"
    assert xapi_sim.TIMERS["fuse"][0] == 10.0
    assert xapi_sim.TIMERS["host_assumed_dead"][:2] == (600.0, 600.0)


# -- pool other_config ----------------------------------------------------------

def test_pool_other_config_can_be_added_to_and_removed_from(sim):
    session = login(sim.urls["pool"])
    [pool] = session.xenapi.pool.get_all()

    session.xenapi.pool.add_to_other_config(pool, "iscsi-ha-manual", "true")
    duplicate = failure_of(session.xenapi.pool.add_to_other_config, pool,
                           "iscsi-ha-manual", "true")
    empty = failure_of(session.xenapi.pool.add_to_other_config, pool, "", "x")
    after_add = session.xenapi.pool.get_other_config(pool)
    session.xenapi.pool.remove_from_other_config(pool, "iscsi-ha-manual")
    session.xenapi.pool.remove_from_other_config(pool, "never-there")

    assert after_add == {"iscsi-ha-manual": "true"}
    assert duplicate == ["MAP_DUPLICATE_KEY", "pool", "other_config", pool, "iscsi-ha-manual"]
    assert empty[0] == "INTERNAL_ERROR" and "Empty_key_in_map" in empty[1]
    assert session.xenapi.pool.get_other_config(pool) == {}


# -- event.from ------------------------------------------------------------------

def test_event_from_empty_token_lists_every_object(sim):
    session = login(sim.urls["pool"])

    batch = session.xenapi.event_from(["pool", "host", "host_metrics"], "", 5.0)

    assert sorted((event["class"], event["operation"]) for event in batch["events"]) == [
        ("host", "add"), ("host", "add"), ("host_metrics", "add"),
        ("host_metrics", "add"), ("pool", "add")]
    assert batch["valid_ref_counts"] == {"pool": 1, "host": 2, "host_metrics": 2, "sr": 1,
                                         "pbd": 2}
    pool_event = next(event for event in batch["events"] if event["class"] == "pool")
    assert pool_event["snapshot"]["master"] == host_ref(session, "hostA")
    assert batch["token"]


def test_event_from_times_out_with_no_events(sim):
    session = login(sim.urls["pool"])
    token = session.xenapi.event_from(["*"], "", 1.0)["token"]

    started = time.monotonic()
    batch = session.xenapi.event_from(["*"], token, 0.3)

    assert batch["events"] == []
    assert time.monotonic() - started >= 0.3
    assert batch["token"] == token


def test_event_from_with_a_negative_timeout_waits_for_an_event(sim):
    session = login(sim.urls["pool"])
    [pool] = session.xenapi.pool.get_all()
    token = session.xenapi.event_from(["pool"], "", 1.0)["token"]
    watcher = login(sim.urls["pool"])

    waiting = Background(watcher.xenapi.event_from, ["pool"], token, -1.0)
    assert waiting.still_blocked()  # a negative timeout is 24 h, not "return now"
    session.xenapi.pool.add_to_other_config(pool, "wake", "up")

    kind, batch = waiting.result()
    assert kind == "returned"
    assert [event["snapshot"]["other_config"] for event in batch["events"]] == [{"wake": "up"}]


def test_event_from_batches_changes_made_together(sim):
    session = login(sim.urls["pool"])
    [pool] = session.xenapi.pool.get_all()
    token = session.xenapi.event_from(["pool"], "", 1.0)["token"]
    watcher = login(sim.urls["pool"])
    waiting = Background(watcher.xenapi.event_from, ["pool"], token, 30.0)
    assert waiting.still_blocked(0.2)

    # Both writes land inside the 50 ms xapi waits after the first one wakes it.
    proxy = raw(sim.urls["pool"])
    proxy.pool.add_to_other_config(session.handle, pool, "first", "1")
    proxy.pool.add_to_other_config(session.handle, pool, "second", "2")

    kind, batch = waiting.result()
    assert kind == "returned"
    assert batch["events"][-1]["snapshot"]["other_config"] == {"first": "1", "second": "2"}


def test_event_from_rejects_a_malformed_token(sim):
    session = login(sim.urls["pool"])

    details = failure_of(session.xenapi.event_from, ["*"], "garbage", 1.0)

    assert details == ["EVENT_FROM_TOKEN_PARSE_FAILURE", "garbage"]


def test_event_from_on_an_object_subscription_sees_only_that_object(simulator):
    sim = simulator(host_assumed_dead=0.2)
    session = login(sim.urls["pool"])
    host_b = host_ref(session, "hostB")
    metrics_a = session.xenapi.host.get_metrics(host_ref(session, "hostA"))
    metrics_b = session.xenapi.host.get_metrics(host_b)
    token = session.xenapi.event_from(["*"], "", 1.0)["token"]

    sim.fail_host("hostB")
    batch = session.xenapi.event_from(["host_metrics/" + metrics_a,
                                       "host_metrics/" + metrics_b], token, 10.0)

    assert [(event["ref"], event["snapshot"]["live"]) for event in batch["events"]] == [
        (metrics_b, False)]


def test_messages_are_created_listed_and_announced_with_their_own_generation(sim):
    session = login(sim.urls["pool"])
    token = session.xenapi.event_from(["message"], "", 0.1)["token"]
    database_generation, message_generation = token.split(",")

    ref = session.xenapi.message.create("ISCSI_HA_SWITCHOVER", 3, "Host", UUID_B,
                                        "hostB took over the storage")
    batch = session.xenapi.event_from(["message"], token, 5.0)
    unknown = failure_of(session.xenapi.message.create, "X", 1, "Host", "no-such-uuid", "")
    no_vm = failure_of(session.xenapi.message.create, "X", 5, "VM", UUID_B, "")
    no_class = failure_of(session.xenapi.message.create, "X", 5, "Toaster", UUID_B, "")

    record = session.xenapi.message.get_all_records()[ref]
    assert (record["name"], record["priority"], record["cls"], record["obj_uuid"],
            record["body"]) == ("ISCSI_HA_SWITCHOVER", "3", "Host", UUID_B,
                                "hostB took over the storage")
    assert [(event["operation"], event["ref"]) for event in batch["events"]] == [("add", ref)]
    assert batch["token"].split(",") == [database_generation,
                                         "%020d" % (int(message_generation) + 1)]
    assert unknown == ["UUID_INVALID", "Host", "no-such-uuid"]
    assert no_vm == ["UUID_INVALID", "VM", UUID_B]
    assert no_class[0] == "INTERNAL_ERROR"


# -- roles -----------------------------------------------------------------------

def test_slave_refuses_logins_and_calls_naming_the_master(sim):
    slave_url = host_url(sim, "hostB")
    pool_session = login(sim.urls["pool"])

    details = failure_of(login, slave_url)
    reply = raw(slave_url).pool.get_all(pool_session.handle)

    assert details == ["HOST_IS_SLAVE", ADDRESS_A]
    assert reply == {"Status": "Failure", "ErrorDescription": ["HOST_IS_SLAVE", ADDRESS_A]}
    assert raw(slave_url).pool.get_all("OpaqueRef:unknown")["ErrorDescription"] == [
        "SESSION_INVALID", "OpaqueRef:unknown"]
    assert login(host_url(sim, "hostA")).xenapi.pool.get_all()


def test_designate_new_master_restarts_both_xapis_after_the_fuse(simulator, tmp_path):
    sim = simulator(fuse=1.0, xapi_start=0.5)
    session = login(sim.urls["pool"])
    [pool] = session.xenapi.pool.get_all()
    host_a, host_b = host_ref(session, "hostA"), host_ref(session, "hostB")
    # Hosts do not change here (the pool does: its current_operations).
    token = session.xenapi.event_from(["host"], "", 1.0)["token"]
    watcher = login(host_url(sim, "hostA"))
    watching = Background(watcher.xenapi.event_from, ["host"], token, 60.0)
    at_old_master = login(host_url(sim, "hostA"))

    session.xenapi.pool.designate_new_master(host_b)

    # Committed, but the old master answers as master until its fuse blows.
    assert read(tmp_path / "pool-a.conf") == "slave:" + ADDRESS_B
    assert read(tmp_path / "pool-b.conf") == "master"
    assert session.xenapi.pool.get_master(pool) == host_a
    assert answer_of(host_url(sim, "hostB")) == ["HOST_IS_SLAVE", ADDRESS_A]
    # Then both restart: connections are refused meanwhile, the blocked call is cut.
    eventually(lambda: answer_of(host_url(sim, "hostA")) == "refused")
    kind, error = watching.result()
    assert kind == "raised" and isinstance(error, DROPPED + (ConnectionRefusedError,))
    new = wait_for_master(host_url(sim, "hostB"))

    assert new.xenapi.pool.get_master(pool) == host_b
    assert sim.running_masters() == ["hostB"]
    eventually(lambda: answer_of(host_url(sim, "hostA")) == ["HOST_IS_SLAVE", ADDRESS_B])
    # Sessions are not persisted: the old one is unknown to the new master...
    assert raw(host_url(sim, "hostB")).pool.get_all(session.handle)["ErrorDescription"] == [
        "SESSION_INVALID", session.handle]
    # ...and the XenAPI module's own login again, at the old master, is refused.
    assert failure_of(at_old_master.xenapi.pool.get_all) == ["HOST_IS_SLAVE", ADDRESS_B]


def test_other_pool_operations_are_refused_while_a_designate_runs(simulator):
    sim = simulator(designate_call=2.0, fuse=5.0)
    session = login(sim.urls["pool"])
    [pool] = session.xenapi.pool.get_all()
    other = login(sim.urls["pool"])
    designating = Background(session.xenapi.pool.designate_new_master,
                             host_ref(session, "hostB"))

    eventually(lambda: other.xenapi.pool.get_current_operations(pool))
    assert failure_of(other.xenapi.pool.designate_new_master, host_ref(other, "hostB")) == [
        "DESIGNATE_NEW_MASTER_IN_PROGRESS"]
    assert failure_of(other.xenapi.pool.enable_ha, [], {}) == [
        "DESIGNATE_NEW_MASTER_IN_PROGRESS"]
    assert designating.result() == ("returned", "")
    assert other.xenapi.pool.get_current_operations(pool) == {}


def test_designating_the_master_itself_changes_nothing(sim, tmp_path):
    session = login(sim.urls["pool"])

    session.xenapi.pool.designate_new_master(host_ref(session, "hostA"))

    assert read(tmp_path / "pool-a.conf") == "master"
    assert session.xenapi.pool.get_all()


def test_master_failure_and_emergency_transition(simulator, tmp_path):
    sim = simulator()
    control = raw(sim.urls["control"])
    slave_url = host_url(sim, "hostB")

    assert control.lab.fail_host("hostA") == {"Status": "Success", "Value": ""}

    assert answer_of(sim.urls["pool"]) == "refused"
    assert answer_of(host_url(sim, "hostA")) == "refused"
    assert answer_of(slave_url) == ["HOST_IS_SLAVE", ADDRESS_A]
    local = local_login(slave_url)
    local.xenapi.pool.emergency_transition_to_master()
    new = wait_for_master(slave_url)

    [pool] = new.xenapi.pool.get_all()
    host_a = host_ref(new, "hostA")
    assert new.xenapi.pool.get_master(pool) == host_ref(new, "hostB")
    # HA is off: the dead host still looks alive, so calls to it retry, then give up.
    assert live(new, "hostA") is True
    assert failure_of(new.xenapi.host.call_plugin, host_a, "echo", "status", {}) == [
        "CANNOT_CONTACT_HOST", host_a]
    assert failure_of(new.xenapi.pool.designate_new_master, host_a) == [
        "CANNOT_CONTACT_HOST", host_a]
    assert read(tmp_path / "pool-b.conf") == "master"
    assert read(tmp_path / "pool-a.conf") == "master"  # a dead host's file is untouched

    assert control.lab.restore_host("hostA") == {"Status": "Success", "Value": ""}

    # It starts as master, finds hostB master and turns itself into its slave.
    eventually(lambda: answer_of(host_url(sim, "hostA")) == ["HOST_IS_SLAVE", ADDRESS_B])
    assert read(tmp_path / "pool-a.conf") == "slave:" + ADDRESS_B
    assert sim.running_masters() == ["hostB"]


def test_emergency_transition_while_the_master_runs_turns_back_into_a_slave(sim, tmp_path):
    local = local_login(host_url(sim, "hostB"))

    local.xenapi.pool.emergency_transition_to_master()

    eventually(lambda: read(tmp_path / "pool-b.conf") == "slave:" + ADDRESS_A)
    eventually(lambda: answer_of(host_url(sim, "hostB")) == ["HOST_IS_SLAVE", ADDRESS_A])
    assert sim.running_masters() == ["hostA"]


def test_a_new_master_by_emergency_starts_from_its_last_backup(simulator):
    sim = simulator(db_backup_interval=300)
    session = login(sim.urls["pool"])
    [pool] = session.xenapi.pool.get_all()
    session.xenapi.pool.add_to_other_config(pool, "iscsi-ha-manual", "true")
    token = session.xenapi.event_from(["pool"], "", 1.0)["token"]

    sim.fail_host("hostA")
    local_login(host_url(sim, "hostB")).xenapi.pool.emergency_transition_to_master()
    new = wait_for_master(host_url(sim, "hostB"))
    new.xenapi.pool.add_to_other_config(pool, "written", "after")

    # The write made since the last backup is gone, and so are events before the
    # old master's token catches up with the new master's database.
    assert new.xenapi.pool.get_other_config(pool) == {"written": "after"}
    assert new.xenapi.event_from(["pool"], token, 0.3)["events"] == []


def test_a_fresh_backup_keeps_what_was_written(simulator):
    sim = simulator(db_backup_interval=0.05)
    session = login(sim.urls["pool"])
    [pool] = session.xenapi.pool.get_all()
    session.xenapi.pool.add_to_other_config(pool, "iscsi-ha-manual", "true")
    token = session.xenapi.event_from(["pool"], "", 1.0)["token"]
    time.sleep(10 * 0.05)  # no client sees a backup happen: let ten periods pass

    sim.fail_host("hostA")
    local_login(host_url(sim, "hostB")).xenapi.pool.emergency_transition_to_master()
    new = wait_for_master(host_url(sim, "hostB"))

    assert new.xenapi.pool.get_other_config(pool) == {"iscsi-ha-manual": "true"}
    assert new.xenapi.event_from(["pool"], token, 5.0)["events"]


def test_a_slave_whose_master_died_hangs_calls_that_need_the_database(sim):
    local = local_login(host_url(sim, "hostB"))
    sim.fail_host("hostA")

    waiting = Background(local.xenapi.pool.get_all)
    assert waiting.still_blocked()
    assert answer_of(host_url(sim, "hostB")) == ["HOST_IS_SLAVE", ADDRESS_A]
    sim.restore_host("hostA")

    kind, error = waiting.result()
    assert kind == "raised" and error.details == ["HOST_IS_SLAVE", ADDRESS_A]


def test_a_slave_that_starts_without_its_master_is_still_booting(sim):
    sim.fail_host("hostA")
    sim.fail_host("hostB")
    sim.restore_host("hostB")

    eventually(lambda: answer_of(host_url(sim, "hostB")) == ["HOST_STILL_BOOTING"])
    local = local_login(host_url(sim, "hostB"))  # emergency calls still work
    local.xenapi.pool.emergency_transition_to_master()

    assert wait_for_master(host_url(sim, "hostB")).xenapi.pool.get_all()


def test_failed_slave_comes_back_as_slave_of_the_same_master(sim, tmp_path):
    control = raw(sim.urls["control"])
    session = login(sim.urls["pool"])

    control.lab.fail_host("hostB")
    assert answer_of(host_url(sim, "hostB")) == "refused"
    control.lab.restore_host("hostB")

    eventually(lambda: answer_of(host_url(sim, "hostB")) == ["HOST_IS_SLAVE", ADDRESS_A])
    assert read(tmp_path / "pool-b.conf") == "slave:" + ADDRESS_A
    [pool] = session.xenapi.pool.get_all()
    assert session.xenapi.pool.get_master(pool) == host_ref(session, "hostA")


# -- liveness --------------------------------------------------------------------

def test_without_ha_a_dead_host_stays_live_until_its_heartbeats_time_out(simulator):
    sim = simulator(host_assumed_dead=1.0)
    session = login(sim.urls["pool"])
    host_b = host_ref(session, "hostB")
    died = time.monotonic()

    sim.fail_host("hostB")

    assert live(session, "hostB") is True
    eventually(lambda: not live(session, "hostB"))
    assert time.monotonic() - died >= 1.0
    assert failure_of(session.xenapi.host.call_plugin, host_b, "echo", "status", {}) == [
        "HOST_OFFLINE", host_b]
    sim.restore_host("hostB")
    eventually(lambda: live(session, "hostB"))


def test_a_new_master_starts_the_dead_hosts_clock_again(simulator):
    sim = simulator(host_assumed_dead=0.5, xapi_start=0.5)
    session = login(sim.urls["pool"])
    sim.fail_host("hostB")
    eventually(lambda: not live(session, "hostB"))

    session.xenapi.pool.emergency_transition_to_master()  # the master restarts itself
    eventually(lambda: answer_of(host_url(sim, "hostA")) == "refused")
    again = wait_for_master(host_url(sim, "hostA"))

    assert live(again, "hostB") is True
    eventually(lambda: not live(again, "hostB"))


def test_with_ha_liveness_follows_fencing_and_ha_elects_the_survivor(simulator):
    sim = simulator(elector="xapi-ha", ha_fence=0.3)
    session = login(sim.urls["pool"])
    [pool] = session.xenapi.pool.get_all()
    session.xenapi.pool.add_to_other_config(pool, "written", "just before")
    local = local_login(host_url(sim, "hostB"))

    assert session.xenapi.pool.get_ha_enabled(pool) is True
    assert failure_of(session.xenapi.pool.designate_new_master, host_ref(session, "hostB")) == [
        "HA_IS_ENABLED"]
    assert failure_of(local.xenapi.pool.emergency_transition_to_master) == ["HA_IS_ENABLED"]
    sim.fail_host("hostA")
    new = wait_for_master(host_url(sim, "hostB"))

    assert live(new, "hostA") is False
    assert new.xenapi.pool.get_other_config(pool) == {"written": "just before"}
    host_a = host_ref(new, "hostA")
    assert failure_of(new.xenapi.host.call_plugin, host_a, "echo", "status", {}) == [
        "HOST_OFFLINE", host_a]


def test_ha_must_be_disabled_for_a_planned_master_change(simulator):
    sim = simulator(elector="xapi-ha")
    session = login(sim.urls["pool"])
    [pool] = session.xenapi.pool.get_all()

    assert failure_of(session.xenapi.pool.enable_ha, [], {}) == ["HA_IS_ENABLED"]
    session.xenapi.pool.disable_ha()
    assert failure_of(session.xenapi.pool.disable_ha) == ["HA_NOT_ENABLED"]
    session.xenapi.pool.designate_new_master(host_ref(session, "hostB"))
    new = wait_for_master(host_url(sim, "hostB"))
    eventually(lambda: answer_of(host_url(sim, "hostA")) == ["HOST_IS_SLAVE", ADDRESS_B])
    new.xenapi.pool.enable_ha([], {})

    assert new.xenapi.pool.get_ha_enabled(pool) is True
    assert new.xenapi.pool.get_ha_statefiles(pool) == new.xenapi.SR.get_all()
    assert failure_of(local_login(host_url(sim, "hostA")).xenapi.pool
                      .emergency_transition_to_master) == ["HA_IS_ENABLED"]


# -- host plugins ----------------------------------------------------------------

def test_plugin_receives_the_call_xapi_makes_and_its_value_comes_back(sim):
    session = login(sim.urls["pool"])

    on_a = json.loads(session.xenapi.host.call_plugin(
        host_ref(session, "hostA"), "echo", "status", {"verbose": "1"}))
    on_b = json.loads(session.xenapi.host.call_plugin(
        host_ref(session, "hostB"), "echo", "promote", {}))

    assert on_a == {"fn": "status", "session": session.handle, "args": {"verbose": "1"}}
    assert on_b["fn"] == "promote"


def test_plugins_get_the_bare_environment_xapi_gives_them(sim):
    session = login(sim.urls["pool"])

    seen = json.loads(session.xenapi.host.call_plugin(
        host_ref(session, "hostB"), "environment", "status", {}))

    assert seen == {"environ": {"PATH": "/sbin:/usr/sbin:/bin:/usr/bin"}, "cwd": "/",
                    "own_session": True, "stdin": "/dev/null"}


def test_plugin_failure_becomes_the_api_error(sim):
    session = login(sim.urls["pool"])

    details = failure_of(session.xenapi.host.call_plugin, host_ref(session, "hostA"),
                         "refuse", "promote", {"who": "hostB"})

    assert details == ["ISCSI_HA_BUSY", "another switchover runs", "hostB"]


def test_crashing_plugin_is_a_plugin_failure_with_its_output(sim):
    session = login(sim.urls["pool"])

    details = failure_of(session.xenapi.host.call_plugin, host_ref(session, "hostB"),
                         "crash", "status", {})

    assert details[:3] == ["XENAPI_PLUGIN_FAILURE", "non-zero exit",
                           "output before the crash\n"]
    assert "RuntimeError: disk on fire" in details[3]


def test_a_plugin_xapi_cannot_execute_is_a_plugin_failure(sim):
    session = login(sim.urls["pool"])

    details = failure_of(session.xenapi.host.call_plugin, host_ref(session, "hostB"),
                         "not-executable", "status", {})

    assert details[:2] == ["XENAPI_PLUGIN_FAILURE", "non-zero exit"]
    assert "Permission denied" in details[3]


def test_plugin_output_that_is_not_xmlrpc_is_a_parse_failure(sim):
    session = login(sim.urls["pool"])

    details = failure_of(session.xenapi.host.call_plugin, host_ref(session, "hostA"),
                         "chatter", "status", {})

    assert details[:3] == ["XENAPI_PLUGIN_FAILURE", "failed to parse plugin output",
                           "not XML at all\n"]


def test_missing_plugin_and_non_string_arguments_are_refused(sim):
    session = login(sim.urls["pool"])
    host_a = host_ref(session, "hostA")

    assert failure_of(session.xenapi.host.call_plugin, host_a, "nope", "status", {}) == [
        "XENAPI_MISSING_PLUGIN", "nope"]
    assert failure_of(session.xenapi.host.call_plugin, host_a, "../plugins-b/echo",
                      "status", {}) == ["XENAPI_MISSING_PLUGIN", "../plugins-b/echo"]
    assert failure_of(session.xenapi.host.call_plugin, host_a, "echo", "status",
                      {"count": 3}) == ["FIELD_TYPE_ERROR", "args"]


def process_exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def start_sleepy(session, name, tmp_path):
    pid_file = str(tmp_path / "sleepy.pid")
    release = str(tmp_path / "release")
    running = Background(session.xenapi.host.call_plugin, host_ref(session, name), "sleepy",
                         "status", {"pid_file": pid_file, "release_file": release})
    eventually(lambda: os.path.exists(pid_file))
    return running, int(read(pid_file)), release


def test_a_held_host_runs_no_plugin_until_released_then_runs_the_held_call(sim, tmp_path):
    session = login(sim.urls["pool"])
    host_b = host_ref(session, "hostB")
    pid_file = str(tmp_path / "sleepy.pid")
    release = tmp_path / "release"
    release.write_text("")
    sim.hold_plugin("hostB", ["status"])

    held = Background(session.xenapi.host.call_plugin, host_b, "sleepy", "status",
                      {"pid_file": pid_file, "release_file": str(release)})
    # One connection per client thread, as with any XenAPI session.
    other_fn = json.loads(login(sim.urls["pool"]).xenapi.host.call_plugin(
        host_b, "echo", "demote", {}))

    assert held.still_blocked(0.3)
    assert not os.path.exists(pid_file)  # its plugin has not started
    assert other_fn["fn"] == "demote"  # a function that is not held goes through
    assert sim.release_plugin("hostB", True) == 1
    assert held.result() == ("returned", "released")
    assert os.path.exists(pid_file)


def test_a_held_call_released_unreached_fails_and_its_plugin_never_runs(sim, tmp_path):
    session = login(sim.urls["pool"])
    host_a = host_ref(session, "hostA")
    pid_file = str(tmp_path / "sleepy.pid")
    sim.hold_plugin("hostA", ["promote"])
    held = Background(session.xenapi.host.call_plugin, host_a, "sleepy", "promote",
                      {"pid_file": pid_file, "release_file": str(tmp_path / "release")})
    assert held.still_blocked(0.3)

    assert sim.release_plugin("hostA", False) == 1

    kind, error = held.result()
    assert kind == "raised" and error.details == ["CANNOT_CONTACT_HOST", host_a]
    assert not os.path.exists(pid_file)
    with pytest.raises(xapi_sim.XapiFailure):
        sim.release_plugin("hostA", True)  # nothing is held any more


def test_a_call_in_flight_when_its_host_dies_hangs_then_cannot_contact(simulator, tmp_path):
    sim = simulator(in_flight_hang=1.0)
    session = login(sim.urls["pool"])
    host_b = host_ref(session, "hostB")
    running, pid, _ = start_sleepy(session, "hostB", tmp_path)
    died = time.monotonic()

    sim.fail_host("hostB")

    assert running.still_blocked(0.3)  # never an instant HOST_OFFLINE
    kind, error = running.result()
    assert kind == "raised" and error.details == ["CANNOT_CONTACT_HOST", host_b]
    assert time.monotonic() - died >= 1.0
    assert not process_exists(pid)


def test_calls_to_an_unreachable_live_host_retry_then_cannot_contact(simulator):
    sim = simulator(call_plugin_retry=0.1)
    session = login(sim.urls["pool"])
    host_b = host_ref(session, "hostB")
    sim.fail_host("hostB")

    started = time.monotonic()
    details = failure_of(session.xenapi.host.call_plugin, host_b, "echo", "status", {})

    assert details == ["CANNOT_CONTACT_HOST", host_b]
    assert time.monotonic() - started >= 10 * 0.1


def test_a_call_to_a_host_whose_xapi_restarts_waits_for_it(simulator):
    sim = simulator(call_plugin_retry=0.1, xapi_start=0.3)
    session = login(sim.urls["pool"])
    local_login(host_url(sim, "hostB")).xenapi.pool.emergency_transition_to_master()
    eventually(lambda: answer_of(host_url(sim, "hostB")) == "refused")

    answer = session.xenapi.host.call_plugin(host_ref(session, "hostB"), "echo", "status", {})

    assert json.loads(answer)["fn"] == "status"


def test_a_plugin_outlives_a_restart_of_its_hosts_xapi(sim, tmp_path):
    session = login(sim.urls["pool"])
    host_b = host_ref(session, "hostB")
    running, pid, release = start_sleepy(session, "hostB", tmp_path)

    local_login(host_url(sim, "hostB")).xenapi.pool.emergency_transition_to_master()

    kind, error = running.result()
    assert kind == "raised" and error.details == ["CANNOT_CONTACT_HOST", host_b]
    assert process_exists(pid)
    with open(release, "w"):
        pass
    eventually(lambda: not process_exists(pid))


def test_a_restarted_xapi_is_down_for_a_moment_and_forgets_its_sessions(simulator):
    sim = simulator(xapi_start=0.5)
    session = login(sim.urls["pool"])
    control = raw(sim.urls["control"])

    assert control.lab.restart_xapi("hostA") == {"Status": "Success", "Value": ""}

    assert answer_of(host_url(sim, "hostA")) == "refused"
    wait_for_master(host_url(sim, "hostA"))
    assert raw(host_url(sim, "hostA")).pool.get_all(session.handle)["ErrorDescription"] == [
        "SESSION_INVALID", session.handle]
    assert sim.running_masters() == ["hostA"]
    assert answer_of(host_url(sim, "hostB")) == ["HOST_IS_SLAVE", ADDRESS_A]


# -- the lab's side --------------------------------------------------------------

def test_the_pool_url_follows_the_running_master_and_refuses_without_one(simulator):
    sim = simulator(fuse=0.3, xapi_start=0.5)
    session = login(sim.urls["pool"])

    session.xenapi.pool.designate_new_master(host_ref(session, "hostB"))
    eventually(lambda: answer_of(sim.urls["pool"]) == "refused")
    eventually(lambda: answer_of(sim.urls["pool"]) == "master")

    again = login(sim.urls["pool"])
    [pool] = again.xenapi.pool.get_all()
    assert again.xenapi.pool.get_master(pool) == host_ref(again, "hostB")


def test_lab_calls_need_a_known_host_and_the_control_listener_takes_nothing_else(sim):
    control = raw(sim.urls["control"])

    assert control.lab.fail_host("hostC") == {
        "Status": "Failure", "ErrorDescription": ["LAB_UNKNOWN_HOST", "hostC"]}
    assert failure_of(login, sim.urls["control"]) == [
        "MESSAGE_METHOD_UNKNOWN", "session.login_with_password"]


def test_audit_log_records_each_call_without_the_password(sim, tmp_path):
    login(sim.urls["pool"])
    failure_of(login, host_url(sim, "hostB"))

    with open(str(tmp_path / "audit.jsonl")) as handle:
        lines = [json.loads(line) for line in handle]
    from_lab = raw(sim.urls["control"]).lab.audit()["Value"]

    assert PASSWORD not in read(tmp_path / "audit.jsonl")
    assert [(entry["listener"], entry["host"], entry["method"], entry["outcome"])
            for entry in lines] == [
        ("pool", "hostA", "session.login_with_password", "Success"),
        ("hostB/loopback", "hostB", "session.login_with_password", "HOST_IS_SLAVE")]
    assert lines[0]["params"] == [USER, "********", "1.0", "test_xapi_sim"]
    assert all(entry["seconds"] >= 0 and entry["time"] for entry in lines)
    assert from_lab == lines


def test_command_line_writes_ready_file_and_stops_on_sigterm(tmp_path):
    config_path = tmp_path / "xapi.json"
    config_path.write_text(json.dumps(lab_config(tmp_path)))
    ready_path = tmp_path / "ready.json"
    process = subprocess.Popen([sys.executable, "-m", "tests.lab.xapi_sim",
                                "--config", str(config_path)], cwd=REPO)
    try:
        eventually(lambda: ready_path.exists() or process.poll() is not None)
        urls = json.loads(ready_path.read_text())

        assert login(urls["pool"]).xenapi.pool.get_all()
        assert urls["pid"] == process.pid

        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
        assert not ready_path.exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def run(*argv):
    return subprocess.run(argv, check=True, capture_output=True, timeout=20, text=True)


@pytest.fixture
def netns():
    name = "iha" + secrets.token_hex(3)
    run("ip", "netns", "add", name)
    try:
        run("ip", "-n", name, "link", "set", "lo", "up")
        run("ip", "-n", name, "addr", "add", ADDRESS_A + "/32", "dev", "lo")
        yield name
    finally:
        run("ip", "netns", "del", name)


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_host_in_a_namespace_runs_plugins_there_and_listens_there(tmp_path, netns):
    client = textwrap.dedent("""\
        import XenAPI
        session = XenAPI.Session("http://%s/")
        session.xenapi.login_with_password("%s", "%s", "1.0", "in-namespace")
        print(session.xenapi.pool.get_all()[0])
        """ % (ADDRESS_A, USER, PASSWORD))
    with xapi_sim.XapiSimulator(lab_config(tmp_path, netns_a=netns)) as simulator:
        session = login(simulator.urls["pool"])

        where = session.xenapi.host.call_plugin(host_ref(session, "hostA"), "whereami",
                                                "status", {})
        seen_inside = run("ip", "netns", "exec", netns, sys.executable, "-c", client)

        assert simulator.urls["hosts"]["hostA"]["netns"] == "http://%s:80/" % ADDRESS_A
        assert where == netns
        assert seen_inside.stdout.strip() == session.xenapi.pool.get_all()[0]



def _pbd_of(session, sr_name, host_name):
    srs = session.xenapi.SR.get_all_records()
    host = host_ref(session, host_name)
    return [ref for ref, pbd in session.xenapi.PBD.get_all_records().items()
            if srs[pbd["SR"]]["name_label"] == sr_name and pbd["host"] == host][0]


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_pbd_plug_attaches_through_the_hosts_storage_manager_and_fails_as_sm_does(tmp_path,
                                                                                 netns):
    config = lab_config(tmp_path, netns_a=netns)
    # Nothing listens on the portal in hostA's namespace: SM cannot reach the target.
    config["srs"] = [{"name_label": "vms", "type": "lvmoiscsi", "device_config": {
        "target": ADDRESS_A, "port": "3260", "targetIQN": "iqn.2026-01.org.example:t"}}]
    with xapi_sim.XapiSimulator(config) as simulator:
        session = login(simulator.urls["pool"])
        srs = session.xenapi.SR.get_all_records()
        vms = [r for r in srs.values() if r["name_label"] == "vms"][0]
        assert (vms["type"], vms["shared"], len(vms["PBDs"])) == ("lvmoiscsi", True, 2)
        pbd = _pbd_of(session, "vms", "hostA")
        record = session.xenapi.PBD.get_record(pbd)
        assert record["currently_attached"] is True
        assert record["device_config"]["target"] == ADDRESS_A

        session.xenapi.PBD.plug(pbd)  # attached already: nothing to do
        session.xenapi.PBD.unplug(pbd)
        session.xenapi.PBD.unplug(pbd)  # detached already: nothing to do
        assert session.xenapi.PBD.get_currently_attached(pbd) is False
        assert failure_of(session.xenapi.PBD.plug, pbd) == [
            "SR_BACKEND_FAILURE_141", "", "Unable to connect to ISCSI service on target "
            "[opterr=%s:3260]" % ADDRESS_A, ""]
        assert session.xenapi.PBD.get_currently_attached(pbd) is False
        assert failure_of(session.xenapi.PBD.plug, "OpaqueRef:nonsense") == [
            "HANDLE_INVALID", "PBD", "OpaqueRef:nonsense"]

        # The heartbeat SR's NFS server is not in the lab: once unplugged, it stays so.
        heartbeat = _pbd_of(session, "ha-statefile", "hostB")
        session.xenapi.PBD.unplug(heartbeat)
        assert failure_of(session.xenapi.PBD.plug, heartbeat)[0] == "SR_BACKEND_FAILURE_47"

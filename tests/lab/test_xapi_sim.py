"""The XAPI simulator, driven through the official XenAPI client module (Python 3)."""

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

USER = "root"
PASSWORD = "lab-secret"
ADDRESS_A = "192.0.2.11"
ADDRESS_B = "192.0.2.12"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

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
            {"fn": fn, "session": session, "args": args,
             "mark": os.environ.get("LAB_MARK")})})
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
        time.sleep(60)
        """),
    "whereami": PLUGIN_PRELUDE + textwrap.dedent("""\
        where = subprocess.check_output(["ip", "netns", "identify"]).decode().strip()
        reply({"Status": "Success", "Value": where})
        """),
}


def write_plugins(directory, interpreter_line):
    os.makedirs(directory)
    for name, text in PLUGINS.items():
        path = os.path.join(directory, name)
        with open(path, "w") as handle:
            handle.write(interpreter_line + text)
        os.chmod(path, 0o755)


def lab_config(tmp_path, netns_a=None):
    """Two hosts: A (master) runs plugins through an interpreter prefix, B by shebang."""
    plugins_a = str(tmp_path / "plugins-a")
    plugins_b = str(tmp_path / "plugins-b")
    write_plugins(plugins_a, "")
    write_plugins(plugins_b, "#!%s\n" % sys.executable)
    return {
        "username": USER, "password": PASSWORD, "pool_name": "lab-pool",
        "audit_log": str(tmp_path / "audit.jsonl"), "master": "hostA",
        "plugin_timeout": 10,
        "hosts": [
            {"name": "hostA", "uuid": "aaaaaaaa-0000-4000-8000-000000000001",
             "address": ADDRESS_A, "netns": netns_a, "plugin_dir": plugins_a,
             "plugin_interpreter": [sys.executable], "plugin_env": {"LAB_MARK": "on-A"},
             "pool_conf": str(tmp_path / "pool-a.conf")},
            {"name": "hostB", "uuid": "bbbbbbbb-0000-4000-8000-000000000002",
             "address": ADDRESS_B, "netns": None, "plugin_dir": plugins_b,
             "pool_conf": str(tmp_path / "pool-b.conf")},
        ],
    }


@pytest.fixture
def sim(tmp_path):
    simulator = xapi_sim.XapiSimulator(lab_config(tmp_path))
    simulator.start()
    yield simulator
    simulator.stop()


def login(url):
    session = XenAPI.Session(url)
    session.xenapi.login_with_password(USER, PASSWORD, "1.0", "test_xapi_sim")
    return session


def failure_of(call, *args):
    with pytest.raises(XenAPI.Failure) as caught:
        call(*args)
    return caught.value.details


def raw(url):
    """A plain XML-RPC client: it shows replies the XenAPI module would act on (retries)."""
    return xmlrpc.client.ServerProxy(url, allow_none=True)


def host_ref(session, name):
    return next(ref for ref, record in session.xenapi.host.get_all_records().items()
                if record["name_label"] == name)


def read(path):
    with open(str(path)) as handle:
        return handle.read()


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

    ref = session.xenapi.host.get_by_uuid("bbbbbbbb-0000-4000-8000-000000000002")

    assert session.xenapi.host.get_uuid(ref) == "bbbbbbbb-0000-4000-8000-000000000002"
    metrics = session.xenapi.host.get_metrics(ref)
    assert session.xenapi.host_metrics.get_live(metrics) is True
    assert session.xenapi.host_metrics.get_record(metrics)["live"] is True


def test_unknown_method_and_wrong_argument_count(sim):
    session = login(sim.urls["pool"])

    assert failure_of(session.xenapi.host.frobnicate) == [
        "MESSAGE_METHOD_UNKNOWN", "host.frobnicate"]
    assert failure_of(session.xenapi.host.get_record) == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH", "host.get_record", "2", "1"]


def test_slave_refuses_logins_and_calls_naming_the_master(sim):
    slave_url = sim.urls["hosts"]["hostB"]["loopback"]
    pool_session = login(sim.urls["pool"])

    details = failure_of(login, slave_url)
    reply = raw(slave_url).pool.get_all(pool_session.handle)

    assert details == ["HOST_IS_SLAVE", ADDRESS_A]
    assert reply == {"Status": "Failure", "ErrorDescription": ["HOST_IS_SLAVE", ADDRESS_A]}
    assert login(sim.urls["hosts"]["hostA"]["loopback"]).xenapi.pool.get_all()


def test_pool_other_config_can_be_added_to_and_removed_from(sim):
    session = login(sim.urls["pool"])
    [pool] = session.xenapi.pool.get_all()

    session.xenapi.pool.add_to_other_config(pool, "iscsi-ha-manual", "true")
    duplicate = failure_of(session.xenapi.pool.add_to_other_config, pool,
                           "iscsi-ha-manual", "false")
    after_add = session.xenapi.pool.get_other_config(pool)
    session.xenapi.pool.remove_from_other_config(pool, "iscsi-ha-manual")

    assert after_add == {"iscsi-ha-manual": "true"}
    assert duplicate == ["MAP_DUPLICATE_KEY", "pool", "other_config",
                         session.xenapi.pool.get_uuid(pool), "iscsi-ha-manual"]
    assert session.xenapi.pool.get_other_config(pool) == {}


def test_event_from_empty_token_lists_every_object(sim):
    session = login(sim.urls["pool"])

    batch = session.xenapi.event_from(["pool", "host", "host_metrics"], "", 5.0)

    assert sorted((event["class"], event["operation"]) for event in batch["events"]) == [
        ("host", "add"), ("host", "add"), ("host_metrics", "add"),
        ("host_metrics", "add"), ("pool", "add")]
    assert batch["valid_ref_counts"] == {"pool": 1, "host": 2, "host_metrics": 2}
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


def test_event_from_rejects_a_malformed_token(sim):
    session = login(sim.urls["pool"])

    details = failure_of(session.xenapi.event_from, ["*"], "garbage", 1.0)

    assert details == ["EVENT_FROM_TOKEN_PARSE_FAILURE", "garbage"]


def test_designate_new_master_moves_master_and_pool_conf_and_wakes_event_from(sim, tmp_path):
    session = login(sim.urls["pool"])
    [pool] = session.xenapi.pool.get_all()
    host_b = host_ref(session, "hostB")
    token = session.xenapi.event_from(["pool"], "", 1.0)["token"]
    watcher = login(sim.urls["pool"])
    seen = {}

    def wait_for_events():
        seen["batch"] = watcher.xenapi.event_from(["pool"], token, 30.0)

    thread = threading.Thread(target=wait_for_events)
    thread.start()
    try:
        session.xenapi.pool.designate_new_master(host_b)
    finally:
        thread.join(10)

    assert not thread.is_alive(), "event_from stayed blocked after the master moved"
    [event] = seen["batch"]["events"]
    assert (event["class"], event["operation"], event["ref"]) == ("pool", "mod", pool)
    assert event["snapshot"]["master"] == host_b
    assert session.xenapi.pool.get_master(pool) == host_b
    assert sim.master == "hostB"
    assert read(tmp_path / "pool-a.conf") == "slave:" + ADDRESS_B
    assert read(tmp_path / "pool-b.conf") == "master"
    assert failure_of(login, sim.urls["hosts"]["hostA"]["loopback"]) == [
        "HOST_IS_SLAVE", ADDRESS_B]
    assert login(sim.urls["hosts"]["hostB"]["loopback"]).xenapi.pool.get_all() == [pool]


def test_event_from_on_an_object_subscription_sees_only_that_object(sim):
    session = login(sim.urls["pool"])
    host_b = host_ref(session, "hostB")
    metrics_a = session.xenapi.host.get_metrics(host_ref(session, "hostA"))
    metrics_b = session.xenapi.host.get_metrics(host_b)
    token = session.xenapi.event_from(["*"], "", 1.0)["token"]

    sim.fail_host("hostB")
    batch = session.xenapi.event_from(["host_metrics/" + metrics_a,
                                       "host_metrics/" + metrics_b], token, 5.0)

    assert [(event["ref"], event["snapshot"]["live"]) for event in batch["events"]] == [
        (metrics_b, False)]


def test_messages_are_created_listed_and_announced(sim):
    session = login(sim.urls["pool"])
    token = session.xenapi.event_from(["message"], "", 0.1)["token"]
    host_b_uuid = "bbbbbbbb-0000-4000-8000-000000000002"

    ref = session.xenapi.message.create("ISCSI_HA_SWITCHOVER", 3, "Host", host_b_uuid,
                                        "hostB took over the storage")
    batch = session.xenapi.event_from(["message"], token, 5.0)
    unknown = failure_of(session.xenapi.message.create, "X", 1, "Host", "no-such-uuid", "")

    record = session.xenapi.message.get_all_records()[ref]
    assert (record["name"], record["priority"], record["cls"], record["obj_uuid"],
            record["body"]) == ("ISCSI_HA_SWITCHOVER", "3", "Host", host_b_uuid,
                                "hostB took over the storage")
    assert [(event["operation"], event["ref"]) for event in batch["events"]] == [("add", ref)]
    assert unknown == ["UUID_INVALID", "Host", "no-such-uuid"]


def test_plugin_receives_the_call_xapi_makes_and_its_value_comes_back(sim):
    session = login(sim.urls["pool"])

    on_a = json.loads(session.xenapi.host.call_plugin(
        host_ref(session, "hostA"), "echo", "status", {"verbose": "1"}))
    on_b = json.loads(session.xenapi.host.call_plugin(
        host_ref(session, "hostB"), "echo", "promote", {}))

    assert on_a == {"fn": "status", "session": session.handle, "args": {"verbose": "1"},
                    "mark": "on-A"}
    assert (on_b["fn"], on_b["mark"]) == ("promote", None)


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


def test_plugin_running_past_the_timeout_is_killed(tmp_path):
    config = dict(lab_config(tmp_path), plugin_timeout=0.5)
    pid_file = str(tmp_path / "sleepy.pid")
    with xapi_sim.XapiSimulator(config) as simulator:
        session = login(simulator.urls["pool"])

        details = failure_of(session.xenapi.host.call_plugin, host_ref(session, "hostA"),
                             "sleepy", "status", {"pid_file": pid_file})

    assert details == ["XENAPI_PLUGIN_FAILURE", "signal: SIGKILL", "", ""]
    assert not process_exists(int(read(pid_file)))


def test_plugin_on_a_host_that_dies_meanwhile_reports_host_offline(sim, tmp_path):
    session = login(sim.urls["pool"])
    host_b = host_ref(session, "hostB")
    pid_file = str(tmp_path / "sleepy.pid")
    outcome = {}

    def call_sleepy():
        outcome["details"] = failure_of(session.xenapi.host.call_plugin, host_b, "sleepy",
                                        "status", {"pid_file": pid_file})

    thread = threading.Thread(target=call_sleepy)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(pid_file) and time.monotonic() < deadline:
            time.sleep(0.02)
        sim.fail_host("hostB")
    finally:
        thread.join(10)

    assert outcome["details"] == ["HOST_OFFLINE", host_b]
    assert not process_exists(int(read(pid_file)))


def test_master_failure_and_emergency_transition(sim, tmp_path):
    control = raw(sim.urls["control"])
    slave_url = sim.urls["hosts"]["hostB"]["loopback"]

    assert control.lab.fail_host("hostA") == {"Status": "Success", "Value": ""}

    with pytest.raises(ConnectionRefusedError):
        login(sim.urls["pool"])
    with pytest.raises(ConnectionRefusedError):
        login(sim.urls["hosts"]["hostA"]["loopback"])
    assert failure_of(login, slave_url) == ["HOST_IS_SLAVE", ADDRESS_A]

    local = XenAPI.Session(slave_url)
    local.slave_local_login_with_password(USER, PASSWORD)
    assert failure_of(local.xenapi.pool.get_all) == ["HOST_IS_SLAVE", ADDRESS_A]
    local.xenapi.pool.emergency_transition_to_master()

    session = login(sim.urls["pool"])
    host_a = host_ref(session, "hostA")
    [pool] = session.xenapi.pool.get_all()
    assert session.xenapi.pool.get_master(pool) == host_ref(session, "hostB")
    assert session.xenapi.host_metrics.get_live(session.xenapi.host.get_metrics(host_a)) is False
    assert failure_of(session.xenapi.host.call_plugin, host_a, "echo", "status", {}) == [
        "HOST_OFFLINE", host_a]
    assert failure_of(session.xenapi.pool.designate_new_master, host_a) == [
        "HOST_OFFLINE", host_a]
    assert read(tmp_path / "pool-b.conf") == "master"
    assert read(tmp_path / "pool-a.conf") == "master"  # a dead host's file is untouched

    assert control.lab.restore_host("hostA") == {"Status": "Success", "Value": ""}

    assert read(tmp_path / "pool-a.conf") == "slave:" + ADDRESS_B
    assert failure_of(login, sim.urls["hosts"]["hostA"]["loopback"]) == [
        "HOST_IS_SLAVE", ADDRESS_B]
    assert session.xenapi.host_metrics.get_live(session.xenapi.host.get_metrics(host_a)) is True
    local.xenapi.session.logout()


def test_failed_slave_comes_back_as_slave_of_the_same_master(sim, tmp_path):
    control = raw(sim.urls["control"])
    session = login(sim.urls["pool"])

    control.lab.fail_host("hostB")
    with pytest.raises(ConnectionRefusedError):
        login(sim.urls["hosts"]["hostB"]["loopback"])
    control.lab.restore_host("hostB")

    assert failure_of(login, sim.urls["hosts"]["hostB"]["loopback"]) == [
        "HOST_IS_SLAVE", ADDRESS_A]
    assert read(tmp_path / "pool-b.conf") == "slave:" + ADDRESS_A
    [pool] = session.xenapi.pool.get_all()
    assert session.xenapi.pool.get_master(pool) == host_ref(session, "hostA")


def test_lab_calls_need_a_known_host_and_the_control_listener_takes_nothing_else(sim):
    control = raw(sim.urls["control"])

    assert control.lab.fail_host("hostC") == {
        "Status": "Failure", "ErrorDescription": ["LAB_UNKNOWN_HOST", "hostC"]}
    assert failure_of(login, sim.urls["control"]) == [
        "MESSAGE_METHOD_UNKNOWN", "session.login_with_password"]


def test_audit_log_records_each_call_without_the_password(sim, tmp_path):
    login(sim.urls["pool"])
    failure_of(login, sim.urls["hosts"]["hostB"]["loopback"])

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
        deadline = time.monotonic() + 20
        while not ready_path.exists() and process.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.05)
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

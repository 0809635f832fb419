"""Behaviour of the DRBD double (tests/drbd_double/), checked as its users see it.

Python 3 only. Each test builds its own pool in a tmp dir; the netns tests create
namespaces and remove them again; background fence-peer handlers are waited for
or stopped before a test ends. Time-dependent behaviour (failure detection,
resync) is driven with ``elapse`` rather than sleeps; the pools use short DRBD
timers (ping-timeout, auto-promote-timeout) so that promotes that wait are quick.
"""

import fcntl
import json
import os
import select
import shutil
import stat
import subprocess
import sys
import time
import uuid

import pytest

from tests import drbd_double

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOSTS = ["hostA", "hostB"]
BLOCK = 4096
FAST_TIMERS = {"ping-int": "1", "ping-timeout": "1"}  # a dead peer is noticed in 1.1 s
FAST_TIMERS_9 = dict(FAST_TIMERS, **{"auto-promote-timeout": "1"})
RATE = 1 / 1024.0  # MiB/s: a resync of 1 MiB takes 1024 s of the model's time


def make_pool(tmp_path, version, size_mib=1, **extra):
    state = str(tmp_path / ("state-" + version))
    options = dict(FAST_TIMERS_9 if version == "9" else FAST_TIMERS)
    options.update(extra.pop("net_options", {}))
    drbd_double.init_pool(state, version, HOSTS, [("r0", 0, size_mib)], net_options=options,
                          **extra)
    return state


@pytest.fixture
def stopped_handlers():
    """States whose background handlers are stopped when the test ends."""
    states = []
    yield states
    for state in states:
        drbd_double.stop_handlers(state)


@pytest.fixture
def pool9(tmp_path):
    return make_pool(tmp_path, "9")


@pytest.fixture
def pool84(tmp_path):
    return make_pool(tmp_path, "8.4")


@pytest.fixture(params=["8.4", "9"])
def version(request):
    return request.param


@pytest.fixture
def pool(tmp_path, version):
    return make_pool(tmp_path, version)


def drbdadm(state, host, *args):
    return drbd_double.run_tool(state, host, "drbdadm", args)


def ok(state, host, *args):
    result = drbdadm(state, host, *args)
    assert result.returncode == 0, result
    return result.stdout


def replica(state, host):
    return drbd_double.show(state)["resources"]["r0"]["replicas"][host]


def device(state, host):
    return replica(state, host)["device"]


def disk(state, host):
    return replica(state, host)["disk"]


def write_block(path, number, payload):
    with open(path, "r+b") as target:
        target.seek(number * BLOCK)
        target.write(payload.ljust(BLOCK, b"\0"))


def read_block(path, number):
    with open(path, "rb") as source:
        source.seek(number * BLOCK)
        return source.read(BLOCK).rstrip(b"\0")


def replica_block(state, host, number):
    return read_block(drbd_double.data_path(state, host, "r0"), number)


def state_file(state, name):
    with open(os.path.join(state, name)) as opened:
        return opened.read()


def kernel_log(state):
    return state_file(state, drbd_double.KERNEL_LOG)


def version_of(state):
    return drbd_double.show(state)["version"]


def refused_primary(state, code, text):
    """What drbdadm primary prints when the kernel refuses with ``code``."""
    if version_of(state) == "9":
        name, tool = "r0", "drbdsetup"
    else:
        name, tool = "0", "drbdsetup-84"
    exit_code = 17 if code == -2 else 11
    return ("%s: State change failed: (%d) %s\nCommand '%s primary %s' terminated with "
            "exit code %d\n" % (name, code, text, tool, name, exit_code))


NOT_OUTDATED = "Refusing to be Primary while peer is not outdated"
NO_DATA = "Need access to UpToDate data"


def assert_refused(state, host, code, text, *extra):
    result = drbdadm(state, host, "primary", *extra, "r0")
    assert (result.returncode, result.stderr) == (
        17 if code == -2 else 11, refused_primary(state, code, text))
    assert replica(state, host)["role"] == "Secondary"


def handler(tmp_path, name, body):
    """A fence-peer handler script; returns its argv."""
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return [str(path)]


def exits(tmp_path, code, name=None):
    """A handler that counts its runs in ``<name>.runs`` and exits ``code``."""
    name = name or "exit%d" % code
    runs = tmp_path / (name + ".runs")
    return handler(tmp_path, name, "echo run >> %s\nexit %d" % (runs, code))


def runs(tmp_path, code, name=None):
    path = tmp_path / ((name or "exit%d" % code) + ".runs")
    return len(path.read_text().splitlines()) if path.exists() else 0


def outdating_peer(tmp_path, peer):
    """A handler that fences ``peer`` as a real one would: it runs ``drbdadm outdate``
    on the peer (through the peer's wrapper, see make_fenced_pool) and exits 4 if that
    worked."""
    return handler(tmp_path, "outdate-" + peer, "%s outdate r0 && exit 4\nexit 1"
                   % (tmp_path / ("bin-" + peer) / "drbdadm"))


def make_fenced_pool(tmp_path, version, fence_peer, **extra):
    """A pool whose hosts' resource files name the handlers ``fence_peer(state)`` gives;
    each host's drbdadm wrapper is in ``tmp_path/bin-HOST``."""
    state = str(tmp_path / ("state-" + version))
    options = dict(FAST_TIMERS_9 if version == "9" else FAST_TIMERS)
    options.update(extra.pop("net_options", {}))
    drbd_double.init_pool(state, version, HOSTS, [("r0", 0, extra.pop("size_mib", 1))],
                          net_options=options, fence_peer=fence_peer(state), **extra)
    for host in HOSTS:
        drbd_double.install_wrappers(state, host, str(tmp_path / ("bin-" + host)))
    return state


def wait_for(condition, timeout=30):
    """Wait for something a background process does (not a timing threshold)."""
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "gave up waiting for %s" % condition
        time.sleep(0.02)


def notice(state):
    """Let the ping window pass, so the hosts notice what happened to the link."""
    drbd_double.elapse(state, 2)


# -- output formats


def test_version_reports_the_kernel_of_the_chosen_generation(pool84, pool9):
    assert ok(pool84, "hostA", "--version").splitlines()[1:] == [
        "DRBDADM_API_VERSION=1",
        "DRBD_KERNEL_VERSION_CODE=0x08040b",
        "DRBDADM_VERSION_CODE=0x091600",
        "DRBDADM_VERSION=9.22.0",
    ]
    assert ok(pool9, "hostA", "--version").splitlines()[1:] == [
        "DRBDADM_API_VERSION=2",
        "DRBD_KERNEL_VERSION_CODE=0x090111",
        "DRBD_KERNEL_VERSION=9.1.17",
        "DRBDADM_VERSION_CODE=0x091600",
        "DRBDADM_VERSION=9.22.0",
    ]


def test_drbd9_status_shows_role_disk_and_the_named_peer(pool9):
    ok(pool9, "hostA", "primary", "r0")
    assert ok(pool9, "hostA", "status", "r0") == (
        "r0 role:Primary\n"
        "  disk:UpToDate\n"
        "  hostB role:Secondary\n"
        "    peer-disk:UpToDate\n\n")
    assert ok(pool9, "hostB", "role", "r0") == "Secondary\n"
    assert ok(pool9, "hostB", "cstate", "r0") == "Connected\n"
    assert ok(pool9, "hostB", "dstate", "r0") == "UpToDate/UpToDate\n"


def status_json(state, host):
    raw = drbd_double.run_tool(state, host, "drbdsetup", ["status", "--json", "r0"])
    assert raw.returncode == 0, raw
    [resource] = json.loads(raw.stdout)
    return raw.stdout, resource


def test_drbd9_status_json_has_drbdsetup_fields(pool9):
    ok(pool9, "hostA", "primary", "r0")
    raw, resource = status_json(pool9, "hostB")
    assert '"connection-state": "Connected", \n' in raw  # drbdsetup's stray blank
    assert (resource["name"], resource["node-id"], resource["role"]) == ("r0", 1, "Secondary")
    assert [resource[k] for k in ("suspended", "suspended-user", "suspended-no-data",
                                  "suspended-fencing", "suspended-quorum",
                                  "force-io-failures")] == [False] * 6
    [disk_json] = resource["devices"]
    assert (disk_json["volume"], disk_json["minor"], disk_json["disk-state"],
            disk_json["size"]) == (0, 0, "UpToDate", 1024)
    [connection] = resource["connections"]
    assert (connection["peer-node-id"], connection["name"], connection["connection-state"],
            connection["peer-role"]) == (0, "hostA", "Connected", "Primary")
    [peer_disk] = connection["peer_devices"]
    assert (peer_disk["replication-state"], peer_disk["peer-disk-state"],
            peer_disk["resync-suspended"], peer_disk["out-of-sync"],
            peer_disk["has-sync-details"], peer_disk["percent-in-sync"]) == (
        "Established", "UpToDate", "no", 0, False, 100.0)


def test_drbd84_reports_local_and_peer_state_in_one_line(pool84):
    ok(pool84, "hostA", "primary", "r0")
    assert ok(pool84, "hostA", "role", "r0") == "Primary/Secondary\n"
    assert ok(pool84, "hostA", "cstate", "r0") == "Connected\n"
    assert ok(pool84, "hostA", "dstate", "r0") == "UpToDate/UpToDate\n"
    # drbdsetup-84's status shows every connected device's replication state.
    assert ok(pool84, "hostA", "status", "r0") == (
        "r0 role:Primary\n  disk:UpToDate\n  peer role:Secondary\n"
        "    replication:Established peer-disk:UpToDate\n\n")


# -- noticing a broken link or a dead peer takes time


def test_a_cut_link_goes_unnoticed_for_the_ping_window(tmp_path):
    pool84 = make_pool(tmp_path, "8.4", ping_window=30)
    ok(pool84, "hostA", "primary", "r0")
    drbd_double.cut(pool84)
    assert ok(pool84, "hostA", "cstate", "r0") == "Connected\n"
    assert ok(pool84, "hostB", "role", "r0") == "Secondary/Primary\n"
    drbd_double.elapse(pool84, 28)
    assert ok(pool84, "hostB", "cstate", "r0") == "Connected\n"
    drbd_double.elapse(pool84, 2)
    assert ok(pool84, "hostA", "cstate", "r0") == "WFConnection\n"
    assert ok(pool84, "hostB", "role", "r0") == "Secondary/Unknown\n"
    assert "PingAck did not arrive in time." in kernel_log(pool84)


def test_by_default_a_dead_peer_goes_unnoticed_for_ping_int_plus_ping_timeout(tmp_path,
                                                                            version):
    state = make_pool(tmp_path, version, net_options={"ping-int": "10", "ping-timeout": "5"})
    assert drbd_double.show(state)["ping_window"] == 10.5
    ok(state, "hostA", "primary", "r0")
    drbd_double.crash(state, "hostA")
    drbd_double.elapse(state, 10.4)
    assert replica(state, "hostB")["connection"] == "connected"
    drbd_double.elapse(state, 0.2)
    assert replica(state, "hostB")["connection"] == "connecting"


def test_a_promote_notices_an_unnoticed_dead_peer_within_ping_timeout(tmp_path, version):
    state = make_fenced_pool(tmp_path, version, lambda s: {"hostB": exits(tmp_path, 7)},
                             ping_window=30)
    ok(state, "hostA", "primary", "r0")
    drbd_double.crash(state, "hostA")
    drbd_double.elapse(state, 1)
    # 8.4 refuses the first try (it still sees the Primary) and retries after a ping.
    if version == "8.4":
        assert_refused(state, "hostB", -7, NOT_OUTDATED)
    ok(state, "hostB", "primary", "r0")
    assert replica(state, "hostB")["role"] == "Primary"
    assert "PingAck did not arrive in time." in kernel_log(state)


def test_a_link_healed_within_the_ping_window_is_never_lost(tmp_path, version):
    pool = make_pool(tmp_path, version, ping_window=30)
    ok(pool, "hostA", "primary", "r0")
    drbd_double.cut(pool)
    write_block(device(pool, "hostA"), 1, b"while cut")
    drbd_double.heal(pool)
    drbd_double.elapse(pool, 31)
    assert replica(pool, "hostA")["connection"] == "connected"
    assert replica_block(pool, "hostB", 1) == b"while cut"
    assert "Connection closed" not in kernel_log(pool)


def test_the_survivor_sees_a_crashed_primary_until_it_notices(tmp_path, version):
    state = make_pool(tmp_path, version, ping_window=5)
    ok(state, "hostA", "primary", "r0")
    drbd_double.crash(state, "hostA")
    if version == "9":
        assert ok(state, "hostB", "status", "r0") == (
            "r0 role:Secondary\n  disk:UpToDate\n  hostA role:Primary\n"
            "    peer-disk:UpToDate\n\n")
    else:
        assert ok(state, "hostB", "role", "r0") == "Secondary/Primary\n"
    drbd_double.elapse(state, 5)
    assert replica(state, "hostB")["connection"] == "connecting"
    assert replica(state, "hostB")["peer_role"] == "Unknown"


# -- the fence-peer handler


def test_link_loss_runs_the_primarys_handler_in_the_background(tmp_path, version):
    state = make_fenced_pool(tmp_path, version,
                             lambda s: {"hostA": outdating_peer(tmp_path, "hostB")})
    ok(state, "hostA", "primary", "r0")
    drbd_double.cut(state)
    notice(state)
    drbd_double.wait_handlers(state)
    assert disk(state, "hostB") == "Outdated"
    assert replica(state, "hostA")["peer_disk"] == "Outdated"
    log = kernel_log(state)
    assert "fence-peer helper returned 4 (peer was fenced)" in log
    command = "/sbin/drbdadm fence-peer" + (" r0" if version == "8.4" else "")
    assert "helper command: %s\n" % command in log
    assert "helper command: %s exit code 4 (0x400)" % command in log
    assert_refused(state, "hostB", -2, NO_DATA)
    ok(state, "hostB", "primary", "--force", "r0")
    assert disk(state, "hostB") == "UpToDate"
    assert "Forced to consider local data as UpToDate!" in kernel_log(state)


def test_the_handler_gets_the_kernels_environment_in_the_hosts_netns(tmp_path, version,
                                                                      netns):
    report = tmp_path / "report"
    probe = handler(tmp_path, "probe",
                    "{ env; echo cwd=$(pwd); echo netns=$(ip netns identify); "
                    "read line && echo stdin=$line || echo stdin=empty; } > %s\n"
                    "echo handler-output\nexit 5" % report)
    state = make_fenced_pool(tmp_path, version, lambda s: {"hostB": probe},
                             netns={"hostB": netns})
    drbd_double.cut(state)
    notice(state)
    ok(state, "hostB", "primary", "r0")
    lines = report.read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines if "=" in line)
    assert (env["cwd"], env["netns"], env["stdin"]) == ("/", netns, "empty")
    assert (env["HOME"], env["TERM"], env["PATH"]) == ("/", "linux",
                                                       "/sbin:/usr/sbin:/bin:/usr/bin")
    config = replica(state, "hostB")["config"]
    assert (env["DRBD_RESOURCE"], env["DRBD_MINOR"], env["DRBD_PEER_ADDRESS"],
            env["DRBD_PEER_AF"], env["DRBD_CONF"]) == ("r0", "0", "192.0.2.11", "ipv4", config)
    drbd_keys = sorted(k for k in env if k.startswith("DRBD_") or k == "UP_TO_DATE_NODES")
    if version == "9":
        assert (env["DRBD_MY_ADDRESS"], env["DRBD_MY_AF"], env["DRBD_VOLUME"],
                env["DRBD_PEER_NODE_ID"], env["DRBD_MY_NODE_ID"], env["DRBD_NODE_ID_0"],
                env["DRBD_NODE_ID_1"], env["DRBD_CSTATE"], env["UP_TO_DATE_NODES"]) == (
            "192.0.2.12", "ipv4", "0", "0", "1", "hostA", "hostB", "Connecting",
            "0x00000002")
        assert drbd_keys == sorted([
            "DRBD_BACKING_DEV_0", "DRBD_CONF", "DRBD_CSTATE", "DRBD_LL_DISK", "DRBD_MINOR",
            "DRBD_MINOR_0", "DRBD_MY_ADDRESS", "DRBD_MY_AF", "DRBD_MY_NODE_ID",
            "DRBD_NODE_ID_0", "DRBD_NODE_ID_1", "DRBD_PEER_ADDRESS", "DRBD_PEER_AF",
            "DRBD_PEER_NODE_ID", "DRBD_RESOURCE", "DRBD_VOLUME", "UP_TO_DATE_NODES"])
    else:
        # The 8.4 kernel passes only the peer's address; drbdadm-84 adds the names.
        assert (env["DRBD_PEER"], env["DRBD_PEERS"]) == ("hostA", "hostA")
        assert drbd_keys == sorted(["DRBD_CONF", "DRBD_MINOR", "DRBD_PEER", "DRBD_PEERS",
                                    "DRBD_PEER_ADDRESS", "DRBD_PEER_AF", "DRBD_RESOURCE"])
    assert "handler-output\n" in kernel_log(state)


@pytest.mark.parametrize("code, fenced, text", [
    (3, True, "peer is inconsistent or worse"),
    (4, True, "peer was fenced"),
    (5, True, "peer is unreachable, assumed to be dead"),
    (7, True, "peer was stonithed"),
])
def test_a_verdict_that_fences_the_peer_lets_a_disconnected_secondary_promote(
        tmp_path, version, code, fenced, text):
    state = make_fenced_pool(tmp_path, version, lambda s: {"hostB": exits(tmp_path, code)})
    drbd_double.cut(state)
    notice(state)
    ok(state, "hostB", "primary", "r0")
    assert runs(tmp_path, code) == 1
    log = kernel_log(state)
    assert "fence-peer helper returned %d (%s)" % (code, text) in log
    assert ("fence-peer() = 7 && fencing != Stonith !!!" in log) == (code == 7)
    expected = "Inconsistent" if code == 3 else "Outdated"
    assert replica(state, "hostB")["peer_disk"] == expected


def test_a_peer_that_is_primary_outdates_the_host_that_asked(tmp_path, version):
    state = make_fenced_pool(tmp_path, version, lambda s: {"hostB": exits(tmp_path, 6)})
    drbd_double.cut(state)
    notice(state)
    assert_refused(state, "hostB", -2, NO_DATA)
    assert disk(state, "hostB") == "Outdated"
    log = kernel_log(state)
    assert "Peer is primary, outdating myself." in log
    assert "fence-peer helper returned 6 (peer is active)" in log


@pytest.mark.parametrize("make_handler", ["failing", "missing"])
def test_a_broken_handler_changes_nothing_and_the_promote_is_refused(tmp_path, version,
                                                                     make_handler):
    fence = (lambda s: {"hostB": exits(tmp_path, 1)}) if make_handler == "failing" else (
        lambda s: {})
    state = make_fenced_pool(tmp_path, version, fence)
    drbd_double.cut(state)
    notice(state)
    assert_refused(state, "hostB", -7, NOT_OUTDATED)
    assert (disk(state, "hostB"), replica(state, "hostB")["peer_disk"]) == (
        "UpToDate", "DUnknown")
    code = 1 if make_handler == "failing" else 0
    assert "fence-peer helper broken, returned %d" % code in kernel_log(state)
    if make_handler == "failing":
        # 8.4 runs the handler again on each of its four tries; 9 once.
        assert runs(tmp_path, 1) == (4 if version == "8.4" else 1)


def test_a_handler_that_hangs_is_killed_and_counts_as_broken(tmp_path):
    pid_file = tmp_path / "hang.pid"
    state = make_fenced_pool(tmp_path, "9", lambda s: {"hostB": handler(
        tmp_path, "hang", "echo $$ > %s\nexec sleep 60" % pid_file)}, handler_timeout=0.5)
    drbd_double.cut(state)
    notice(state)
    assert_refused(state, "hostB", -7, NOT_OUTDATED)
    log = kernel_log(state)
    assert "Command '/bin/sh -c %s' did not terminate within 0.5 seconds\n" % (
        tmp_path / "hang") in log
    assert "fence-peer helper broken, returned 20" in log
    assert not process_alive(int(pid_file.read_text()))


def process_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as stat_file:
            return stat_file.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_sync_handler_runs_without_the_state_lock(tmp_path, version):
    # hostB's handler outdates hostA by running drbdadm on hostA against this same pool.
    state = make_fenced_pool(tmp_path, version,
                             lambda s: {"hostB": outdating_peer(tmp_path, "hostA")})
    drbd_double.cut(state)
    notice(state)
    ok(state, "hostB", "primary", "r0")
    assert (disk(state, "hostA"), replica(state, "hostB")["role"]) == ("Outdated", "Primary")


def test_a_verdict_after_the_link_came_back_is_not_applied(tmp_path, version,
                                                          stopped_handlers):
    gate, started = tmp_path / "gate", tmp_path / "started"
    slow = handler(tmp_path, "slow", "touch %s\nwhile [ ! -e %s ]; do sleep 0.02; done\n"
                   "exit 4" % (started, gate))
    state = make_fenced_pool(tmp_path, version, lambda s: {"hostA": slow})
    stopped_handlers.append(state)
    ok(state, "hostA", "primary", "r0")
    drbd_double.cut(state)
    notice(state)
    wait_for(started.exists)
    drbd_double.heal(state)
    gate.write_text("")
    drbd_double.wait_handlers(state)
    assert replica(state, "hostA")["connection"] == "connected"
    assert disk(state, "hostB") in ("UpToDate", "Inconsistent")  # resyncing, not Outdated
    assert "fence-peer helper returned 4" in kernel_log(state)


def test_crash_stops_the_crashed_hosts_handler(tmp_path, version):
    pid_file = tmp_path / "hang.pid"
    hang = handler(tmp_path, "hang", "echo $$ > %s\nexec sleep 60" % pid_file)
    state = make_fenced_pool(tmp_path, version, lambda s: {"hostA": hang})
    ok(state, "hostA", "primary", "r0")
    drbd_double.cut(state)
    notice(state)
    wait_for(pid_file.exists)
    wait_for(lambda: pid_file.read_text().strip())
    drbd_double.crash(state, "hostA")
    assert drbd_double.show(state)["runners"] == {}
    wait_for(lambda: not process_alive(int(pid_file.read_text())))


def test_stop_handlers_kills_what_runs_in_the_background(tmp_path):
    pid_file = tmp_path / "hang.pid"
    hang = handler(tmp_path, "hang", "echo $$ > %s\nexec sleep 60" % pid_file)
    state = make_fenced_pool(tmp_path, "9", lambda s: {"hostA": hang})
    ok(state, "hostA", "primary", "r0")
    drbd_double.cut(state)
    notice(state)
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip())
    with pytest.raises(drbd_double.DoubleError, match="still running"):
        drbd_double.wait_handlers(state, timeout=0.2)
    drbd_double.stop_handlers(state)
    wait_for(lambda: not process_alive(int(pid_file.read_text())))
    drbd_double.wait_handlers(state, timeout=1)


# -- promoting without a connection


def test_promote_right_after_a_crash_is_refused_on_84_even_with_a_good_handler(tmp_path):
    state = make_fenced_pool(tmp_path, "8.4", lambda s: {"hostB": exits(tmp_path, 5)},
                             ping_window=30)
    ok(state, "hostA", "primary", "r0")
    drbd_double.crash(state, "hostA")
    # -1 while it still sees the Primary, a ping later the handler runs, tries are used up.
    assert_refused(state, "hostB", -7, NOT_OUTDATED)
    assert runs(tmp_path, 5) == 1
    assert disk(state, "hostB") == "UpToDate"  # an 8.4 Secondary keeps UpToDate
    ok(state, "hostB", "primary", "r0")  # the verdict stands: no second handler run
    assert runs(tmp_path, 5) == 1


def test_drbd9_survivor_of_a_crashed_primary_is_uptodate_again_and_fences_once(tmp_path):
    """9.1.17: Consistent only until the "lost-peer" state change, which finds no
    Primary elsewhere; the promote is then held by fencing alone, and the one
    handler run that pings the dead peer and fences it is all it waits for."""
    state = make_fenced_pool(tmp_path, "9", lambda s: {"hostB": exits(tmp_path, 7)},
                             ping_window=30)
    ok(state, "hostA", "primary", "r0")
    drbd_double.crash(state, "hostA")
    ok(state, "hostB", "primary", "r0")  # the promote's ping notices the dead peer
    assert runs(tmp_path, 7) == 1
    assert (replica(state, "hostB")["role"], disk(state, "hostB")) == ("Primary", "UpToDate")
    log = kernel_log(state)
    assert log.index("disk( UpToDate -> Consistent )") < log.index(
        "disk( Consistent -> UpToDate )") < log.index("helper command: /sbin/drbdadm fence-peer")


@pytest.mark.parametrize("code", [4, 7])
def test_drbd9_survivor_promotes_after_outdated_or_stonith(tmp_path, code):
    state = make_fenced_pool(tmp_path, "9", lambda s: {"hostB": exits(tmp_path, code)})
    ok(state, "hostA", "primary", "r0")
    drbd_double.crash(state, "hostA")
    notice(state)
    assert disk(state, "hostB") == "UpToDate"
    ok(state, "hostB", "primary", "r0")
    assert (replica(state, "hostB")["role"], disk(state, "hostB")) == ("Primary", "UpToDate")


def test_drbd9_survivor_without_a_verdict_is_refused(tmp_path):
    state = make_fenced_pool(tmp_path, "9", lambda s: {"hostB": exits(tmp_path, 1)})
    ok(state, "hostA", "primary", "r0")
    drbd_double.crash(state, "hostA")
    notice(state)
    assert_refused(state, "hostB", -7, NOT_OUTDATED)
    assert runs(tmp_path, 1) == 1


def test_a_secondary_that_loses_its_primary_keeps_uptodate(tmp_path, version):
    state = make_pool(tmp_path, version)
    ok(state, "hostA", "primary", "r0")
    drbd_double.cut(state)
    notice(state)
    drbd_double.wait_handlers(state)
    assert disk(state, "hostB") == "UpToDate"
    assert replica(state, "hostA")["peer_disk"] == "DUnknown"  # no handler: broken


def test_stale_peer_of_a_failed_fencing_can_promote_into_two_primaries(tmp_path, version):
    """hostA's handler fails after the link broke; hostB's says hostA is gone (5):
    DRBD believes it, on 9 as on 8.4. This is why iscsi-ha's handler never says 5."""
    state = make_fenced_pool(tmp_path, version, lambda s: {"hostA": exits(tmp_path, 1, "a"),
                                                           "hostB": exits(tmp_path, 5, "b")})
    ok(state, "hostA", "primary", "r0")
    drbd_double.cut(state)
    notice(state)
    drbd_double.wait_handlers(state)
    write_block(device(state, "hostA"), 2, b"only on hostA")
    ok(state, "hostB", "primary", "r0")
    assert [replica(state, h)["role"] for h in HOSTS] == ["Primary", "Primary"]
    assert replica_block(state, "hostB", 2) == b""
    drbd_double.heal(state)
    assert drbd_double.show(state)["resources"]["r0"]["split_brain"] is True


def test_force_promotes_into_split_brain_after_the_handler_failed(tmp_path, version):
    state = make_fenced_pool(tmp_path, version, lambda s: {"hostB": exits(tmp_path, 1)})
    drbd_double.cut(state)
    notice(state)
    ok(state, "hostB", "primary", "--force", "r0")
    assert runs(tmp_path, 1) == 1
    log = kernel_log(state)
    assert "Forced into split brain situation!" in log
    assert replica(state, "hostB")["peer_disk"] == "Outdated"


def consistent_alone(tmp_path, code):
    """hostA boots while hostB is away: attach leaves it Consistent (its peer was
    never seen outdated); its handler exits ``code``."""
    state = make_fenced_pool(tmp_path, "9", lambda s: {"hostA": exits(tmp_path, code)})
    drbd_double.crash(state, "hostA")
    drbd_double.cut(state)
    drbd_double.revive(state, "hostA")
    assert disk(state, "hostA") == "Consistent"
    return state


def test_drbd9_a_consistent_disk_promotes_once_the_handler_fenced_the_peer(tmp_path):
    state = consistent_alone(tmp_path, 7)
    ok(state, "hostA", "primary", "r0")
    assert runs(tmp_path, 7) == 1
    assert (replica(state, "hostA")["role"], disk(state, "hostA")) == ("Primary", "UpToDate")


def test_drbd9_a_consistent_disk_is_refused_when_the_peer_is_only_unreachable(tmp_path):
    state = consistent_alone(tmp_path, 5)
    assert_refused(state, "hostA", -2, NO_DATA)
    assert ("fence-peer helper returned 5 (peer unreachable, doing nothing since disk != "
            "UpToDate)") in kernel_log(state)


def test_drbd9_force_on_a_consistent_disk_skips_the_handler(tmp_path):
    state = consistent_alone(tmp_path, 1)
    ok(state, "hostA", "primary", "--force", "r0")
    assert runs(tmp_path, 1) == 0
    log = kernel_log(state)
    assert "Forced to consider local data as UpToDate!" in log
    assert "Forced to consider peers as Outdated!" in log


def test_fencing_dont_care_promotes_without_a_handler(tmp_path, version):
    state = make_fenced_pool(tmp_path, version, lambda s: {"hostB": exits(tmp_path, 1)},
                             net_options={"fencing": "dont-care"})
    ok(state, "hostA", "primary", "r0")
    drbd_double.crash(state, "hostA")
    notice(state)
    ok(state, "hostB", "primary", "r0")
    assert runs(tmp_path, 1) == 0


def test_second_primary_is_refused_while_connected(pool):
    ok(pool, "hostA", "primary", "r0")
    result = drbdadm(pool, "hostB", "primary", "r0")
    assert result.returncode == 11
    assert result.stderr == refused_primary(pool, -1, "Multiple primaries not allowed by config")
    assert replica(pool, "hostB")["role"] == "Secondary"


def test_allow_two_primaries_lets_both_promote(tmp_path, version):
    state = make_pool(tmp_path, version, net_options={"allow-two-primaries": "yes"})
    ok(state, "hostA", "primary", "r0")
    ok(state, "hostB", "primary", "r0")


# -- resource-and-stonith suspends I/O while fencing


def test_stonith_fencing_suspends_until_the_verdict_or_resume_io(tmp_path):
    state = make_fenced_pool(tmp_path, "9", lambda s: {"hostA": exits(tmp_path, 1)},
                             net_options={"fencing": "resource-and-stonith"})
    ok(state, "hostA", "primary", "r0")
    drbd_double.cut(state)
    notice(state)
    drbd_double.wait_handlers(state)
    _, resource = status_json(state, "hostA")
    assert (resource["suspended"], resource["suspended-fencing"]) == (True, True)
    assert ok(state, "hostA", "status", "r0").startswith("r0 role:Primary suspended:fencing\n")
    ok(state, "hostA", "resume-io", "r0")
    _, resource = status_json(state, "hostA")
    assert (resource["suspended"], resource["suspended-fencing"]) == (False, False)


def test_a_stonith_verdict_resumes_io(tmp_path):
    state = make_fenced_pool(tmp_path, "9", lambda s: {"hostA": exits(tmp_path, 7)},
                             net_options={"fencing": "resource-and-stonith"})
    ok(state, "hostA", "primary", "r0")
    drbd_double.cut(state)
    notice(state)
    drbd_double.wait_handlers(state)
    _, resource = status_json(state, "hostA")
    assert resource["suspended-fencing"] is False
    assert "fence-peer() = 7" not in kernel_log(state)


# -- revived hosts


def test_a_revived_host_is_consistent_until_it_connects(tmp_path, version):
    state = make_pool(tmp_path, version)
    drbd_double.crash(state, "hostA")
    drbd_double.cut(state)
    drbd_double.revive(state, "hostA")
    assert disk(state, "hostA") == "Consistent"
    assert_refused(state, "hostA", -2, NO_DATA)
    drbd_double.heal(state)
    assert disk(state, "hostA") == "UpToDate"


def test_without_fencing_a_revived_host_is_uptodate(tmp_path, version):
    state = make_pool(tmp_path, version, net_options={"fencing": "dont-care"})
    drbd_double.crash(state, "hostA")
    drbd_double.cut(state)
    drbd_double.revive(state, "hostA")
    assert disk(state, "hostA") == "UpToDate"


def test_revived_primary_comes_back_secondary_and_resyncs_from_the_new_primary(tmp_path,
                                                                              version):
    state = make_fenced_pool(tmp_path, version, lambda s: {"hostB": exits(tmp_path, 7)},
                             resync_rate=RATE)
    ok(state, "hostA", "primary", "r0")
    drbd_double.crash(state, "hostA")
    notice(state)
    ok(state, "hostB", "primary", "r0")
    write_block(device(state, "hostB"), 7, b"written during the failover")
    drbd_double.revive(state, "hostA")
    assert replica(state, "hostA")["role"] == "Secondary"
    assert replica(state, "hostA")["connection"] == "connected"
    assert replica(state, "hostA")["resync"] == "SyncTarget"
    drbd_double.elapse(state, 1024)  # the 1 MiB disk at 1 KiB/s
    assert disk(state, "hostA") == "UpToDate"
    assert replica_block(state, "hostA", 7) == b"written during the failover"


# -- replication and resync


def test_writes_reach_both_replicas_only_while_connected(pool9):
    ok(pool9, "hostA", "primary", "r0")
    write_block(device(pool9, "hostA"), 1, b"before the cut")
    assert replica_block(pool9, "hostB", 1) == b"before the cut"
    drbd_double.cut(pool9)
    write_block(device(pool9, "hostA"), 2, b"after the cut")
    assert replica_block(pool9, "hostA", 2) == b"after the cut"
    assert replica_block(pool9, "hostB", 2) == b""
    assert replica_block(pool9, "hostB", 1) == b"before the cut"


def resyncing_pool(tmp_path, version):
    """hostA Primary wrote while cut; healed: a 4 MiB resync at 1 KiB/s has begun."""
    state = make_pool(tmp_path, version, size_mib=4, resync_rate=RATE)
    ok(state, "hostA", "primary", "r0")
    drbd_double.cut(state)
    notice(state)
    write_block(device(state, "hostA"), 3, b"written while cut")
    write_block(device(state, "hostA"), 1000, b"near the end")
    drbd_double.heal(state)
    return state


def test_a_resync_takes_time_and_the_target_is_inconsistent_meanwhile(tmp_path, version):
    state = resyncing_pool(tmp_path, version)
    drbd_double.elapse(state, 1024)  # a quarter (plus the real time the test takes)
    if version == "9":
        lines = ok(state, "hostB", "status", "r0").splitlines()
        assert lines[1:3] == ["  disk:Inconsistent", "  hostA role:Primary"]
        assert lines[3].startswith("    replication:SyncTarget peer-disk:UpToDate done:25.0")
        assert "replication:SyncSource peer-disk:Inconsistent done:25.0" in ok(
            state, "hostA", "status", "r0")
        _, resource = status_json(state, "hostB")
        [peer] = resource["connections"][0]["peer_devices"]
        assert (peer["replication-state"], peer["has-sync-details"]) == ("SyncTarget", True)
        assert 3060 < peer["out-of-sync"] <= 3072
        assert 25.0 <= peer["percent-in-sync"] < 25.3
        assert peer["percent-resync-done"] == peer["percent-in-sync"]
    else:
        assert (ok(state, "hostA", "cstate", "r0"), ok(state, "hostB", "cstate", "r0")) == (
            "SyncSource\n", "SyncTarget\n")
        assert ok(state, "hostB", "dstate", "r0") == "Inconsistent/UpToDate\n"
        assert ok(state, "hostA", "dstate", "r0") == "UpToDate/Inconsistent\n"
    drbd_double.elapse(state, 3072)
    assert disk(state, "hostB") == "UpToDate"
    assert replica(state, "hostB")["resync"] is None
    assert replica_block(state, "hostB", 3) == b"written while cut"
    write_block(device(state, "hostA"), 4, b"after the heal")
    assert replica_block(state, "hostB", 4) == b"after the heal"


def test_a_sync_target_promotes_only_while_connected_to_uptodate_data(tmp_path, version):
    state = resyncing_pool(tmp_path, version)
    ok(state, "hostA", "secondary", "r0")
    ok(state, "hostB", "primary", "r0")
    assert replica(state, "hostB")["resync"] == "SyncTarget"
    assert read_block(device(state, "hostB"), 3) == b"written while cut"


def test_a_link_lost_mid_resync_leaves_the_target_inconsistent(tmp_path, version):
    state = resyncing_pool(tmp_path, version)
    drbd_double.elapse(state, 1024)
    drbd_double.cut(state)
    notice(state)
    assert disk(state, "hostB") == "Inconsistent"
    ok(state, "hostA", "secondary", "r0")
    assert_refused(state, "hostB", -2, NO_DATA)
    # What arrived is the first quarter: the early block, not the one near the end.
    assert replica_block(state, "hostB", 3) == b"written while cut"
    assert replica_block(state, "hostB", 1000) == b""


def test_an_inconsistent_primary_resyncs_from_its_peer_after_the_link_comes_back(tmp_path,
                                                                                version):
    state = resyncing_pool(tmp_path, version)
    ok(state, "hostA", "secondary", "r0")
    ok(state, "hostB", "primary", "r0")  # a SyncTarget Primary, reading through its peer
    drbd_double.elapse(state, 1024)
    drbd_double.cut(state)
    notice(state)
    assert (replica(state, "hostB")["role"], disk(state, "hostB")) == ("Primary",
                                                                       "Inconsistent")
    drbd_double.heal(state)
    assert replica(state, "hostB")["resync"] == "SyncTarget"  # not a split brain
    drbd_double.elapse(state, 4096)
    assert disk(state, "hostB") == "UpToDate"
    assert replica_block(state, "hostB", 1000) == b"near the end"


def test_promoting_both_sides_while_cut_is_a_split_brain(pool9):
    drbd_double.cut(pool9)
    notice(pool9)
    ok(pool9, "hostA", "primary", "--force", "r0")
    ok(pool9, "hostB", "primary", "--force", "r0")
    write_block(device(pool9, "hostA"), 5, b"A's version")
    write_block(device(pool9, "hostB"), 5, b"B's version")
    drbd_double.heal(pool9)
    assert drbd_double.show(pool9)["resources"]["r0"]["split_brain"] is True
    for host, peer in (("hostA", "hostB"), ("hostB", "hostA")):
        assert ok(pool9, host, "cstate", "r0") == "StandAlone\n"
        assert "  %s connection:StandAlone\n" % peer in ok(pool9, host, "status", "r0")
    assert kernel_log(pool9).count(
        "Split-Brain detected but unresolved, dropping connection!") == 2
    assert replica_block(pool9, "hostA", 5) == b"A's version"
    assert replica_block(pool9, "hostB", 5) == b"B's version"


def test_split_brain_victim_that_discards_its_data_resyncs_from_the_survivor(tmp_path):
    # A slow resync, so the victim is still SyncTarget when asked, however loaded the machine.
    pool84 = make_pool(tmp_path, "8.4", resync_rate=RATE)
    drbd_double.cut(pool84)
    notice(pool84)
    ok(pool84, "hostA", "primary", "--force", "r0")
    ok(pool84, "hostB", "primary", "--force", "r0")
    write_block(device(pool84, "hostA"), 6, b"survivor data")
    drbd_double.heal(pool84)
    ok(pool84, "hostB", "secondary", "r0")
    ok(pool84, "hostB", "connect", "--discard-my-data", "r0")
    assert ok(pool84, "hostB", "cstate", "r0") == "WFConnection\n"
    ok(pool84, "hostA", "connect", "r0")
    assert ok(pool84, "hostB", "cstate", "r0") == "SyncTarget\n"
    drbd_double.elapse(pool84, 1025)
    assert ok(pool84, "hostB", "dstate", "r0") == "UpToDate/UpToDate\n"
    assert replica_block(pool84, "hostB", 6) == b"survivor data"
    assert drbd_double.show(pool84)["resources"]["r0"]["split_brain"] is False


def split_pool(state):
    """Both hosts promoted while the link was cut, then the link healed: a split brain."""
    drbd_double.cut(state)
    notice(state)
    ok(state, "hostA", "primary", "--force", "r0")
    ok(state, "hostB", "primary", "--force", "r0")
    drbd_double.heal(state)


def gi(state, host):
    return ok(state, host, "get-gi", "r0").strip().split(":")


def test_split_brain_is_logged_as_each_generation_names_the_peer_device(pool):
    split_pool(pool)
    prefix = {"9": "drbd r0/0 drbd0 hostB: ", "8.4": "block drbd0: "}[version_of(pool)]
    assert (" hostA kernel: %sSplit-Brain detected but unresolved, dropping connection!\n"
            % prefix) in kernel_log(pool)


def test_get_gi_shows_a_split_brain_as_two_currents_over_one_shared_bitmap_uuid(pool):
    assert gi(pool, "hostA")[:2] == gi(pool, "hostB")[:2]
    assert gi(pool, "hostA")[1] == "0" * 16  # nothing the peer lacks
    split_pool(pool)
    first, second = gi(pool, "hostA"), gi(pool, "hostB")
    assert len(first) == {"9": 16, "8.4": 11}[version_of(pool)]
    assert first[0] != second[0] and int(first[0], 16) & 1 == 1  # both Primary
    assert first[1] == second[1] != "0" * 16  # the generation both last shared
    assert all(len(uuid) == 16 and uuid == uuid.upper() for uuid in first[:4])


def test_get_gi_names_the_peer_on_drbd_9(pool9):
    result = drbd_double.run_tool(pool9, "hostA", "drbdsetup", ["get-gi", "r0", "0", "0"])
    assert (result.returncode, result.stderr) == (10, "r0: No such peer device\n")
    assert ok_setup(pool9, "hostA", "get-gi", "r0", "1", "0") == ok(pool9, "hostA", "get-gi",
                                                                     "r0")


def test_a_discarded_split_brain_says_it_was_solved_and_ends_on_one_generation(pool):
    split_pool(pool)
    ok(pool, "hostB", "secondary", "r0")
    ok(pool, "hostB", "connect", "--discard-my-data", "r0")
    ok(pool, "hostA", "connect", "r0")
    log = kernel_log(pool)
    assert "hostB kernel: " in log and "manually solved. Sync from peer node" in log
    assert "manually solved. Sync from this node" in log
    drbd_double.elapse(pool, 60)
    assert gi(pool, "hostA")[0][:15] == gi(pool, "hostB")[0][:15]
    assert gi(pool, "hostB")[1] == "0" * 16


def test_only_a_secondary_can_discard_its_data_and_a_promote_forgets_it(pool9):
    drbd_double.cut(pool9)
    notice(pool9)
    ok(pool9, "hostA", "primary", "--force", "r0")
    ok(pool9, "hostB", "primary", "--force", "r0")
    drbd_double.heal(pool9)
    result = drbdadm(pool9, "hostB", "connect", "--discard-my-data", "r0")
    assert (result.returncode, result.stderr) == (10, (
        "r0: Failure: (123) --discard-my-data not allowed when primary.\n"
        "Command 'drbdsetup connect r0 0 --discard-my-data' terminated with exit code 10\n"))
    ok(pool9, "hostB", "secondary", "r0")
    ok(pool9, "hostB", "connect", "--discard-my-data", "r0")
    ok(pool9, "hostB", "primary", "--force", "r0")  # DRBD clears discard-my-data
    ok(pool9, "hostA", "connect", "r0")
    assert ok(pool9, "hostA", "cstate", "r0") == "StandAlone\n"
    assert kernel_log(pool9).count("Split-Brain detected but unresolved") == 4


def test_a_polite_disconnect_outdates_the_secondary(pool):
    ok(pool, "hostA", "primary", "r0")
    ok(pool, "hostA", "disconnect", "r0")
    assert disk(pool, "hostB") == "Outdated"
    assert replica(pool, "hostA")["peer_disk"] == "Outdated"
    assert drbd_double.show(pool)["runners"] == {}


# -- outdate, secondary --force, resume-io


def test_outdate_works_on_a_disconnected_secondary(pool):
    drbd_double.cut(pool)
    notice(pool)
    assert ok(pool, "hostB", "outdate", "r0") == ""
    assert disk(pool, "hostB") == "Outdated"
    ok(pool, "hostB", "outdate", "r0")  # already Outdated: nothing to do


def test_outdate_is_refused_on_a_primary_silently(pool):
    ok(pool, "hostA", "primary", "r0")
    drbd_double.cut(pool)
    notice(pool)
    result = drbdadm(pool, "hostA", "outdate", "r0")
    assert (result.returncode, result.stdout, result.stderr) == (17, "", "")
    assert disk(pool, "hostA") == "UpToDate"


def test_outdate_is_refused_while_connected_to_a_primary(pool):
    ok(pool, "hostA", "primary", "r0")
    result = drbdadm(pool, "hostB", "outdate", "r0")
    meta = "v09" if version_of(pool) == "9" else "v08"
    disk_path = os.path.join(drbd_double.show(pool)["state_dir"], "hostB", "disk", "r0")
    assert (result.returncode, result.stderr) == (20, (
        "Device '0' is configured!\n"
        "Command 'drbdmeta 0 %s %s internal outdate' terminated with exit code 20\n"
        % (meta, disk_path)))
    assert disk(pool, "hostB") == "UpToDate"


def test_outdate_of_an_inconsistent_disk_is_refused(tmp_path, version):
    state = resyncing_pool(tmp_path, version)
    ok(state, "hostA", "secondary", "r0")
    result = drbdadm(state, "hostB", "outdate", "r0")
    assert result.returncode == 5
    assert result.stderr.startswith("Device '0' is configured!\n")
    assert disk(state, "hostB") == "Inconsistent"


def test_outdate_of_a_down_resource_writes_the_metadata(pool):
    ok(pool, "hostB", "down", "r0")
    ok(pool, "hostB", "outdate", "r0")
    assert ok(pool, "hostB", "dstate", "r0") == "Outdated\n"
    ok(pool, "hostB", "up", "r0")
    assert disk(pool, "hostB") == "UpToDate"  # connected to UpToDate data, no resync needed


def test_drbdsetup_outdate_reports_the_kernels_refusal(pool84):
    ok(pool84, "hostA", "primary", "r0")
    result = drbd_double.run_tool(pool84, "hostB", "drbdsetup", ["outdate", "0"])
    assert (result.returncode, result.stderr) == (
        11, "0: State change failed: (-6) Refusing to be Outdated while Connected\n")


def test_resume_io_of_a_down_resource_fails_like_drbdsetup(pool9):
    ok(pool9, "hostA", "down", "r0")
    result = drbdadm(pool9, "hostA", "resume-io", "r0")
    assert (result.returncode, result.stderr) == (10, (
        "0: Failure: (127) Device minor not allocated\nadditional info from kernel:\n"
        "unknown minor\nCommand 'drbdsetup resume-io 0' terminated with exit code 10\n"))


# -- devices and who holds them


def test_a_secondary_device_exists_but_cannot_be_opened(pool):
    ok(pool, "hostA", "primary", "r0")
    path = device(pool, "hostB")
    mode = os.stat(path).st_mode
    assert stat.S_ISBLK(mode) or stat.S_ISSOCK(mode)
    for flags in ("rb", "r+b"):
        with pytest.raises(OSError):
            open(path, flags)
    ok(pool, "hostA", "secondary", "r0")
    ok(pool, "hostB", "primary", "r0")
    write_block(device(pool, "hostB"), 8, b"now B writes")
    assert replica_block(pool, "hostA", 8) == b"now B writes"


def test_demote_and_down_are_refused_while_the_device_is_open_for_writing(pool9):
    ok(pool9, "hostA", "primary", "r0")
    holder = open(device(pool9, "hostA"), "r+b")
    try:
        for command, why in (("secondary", []), ("down", ["failed to demote"])):
            result = drbdadm(pool9, "hostA", command, "r0")
            assert result.returncode == 11
            lines = result.stderr.splitlines()
            assert lines[:3 + len(why)] == [
                "r0: State change failed: (-12) Device is held open by someone",
                "additional info from kernel:"] + why + [
                "/dev/drbd0 open_cnt:1, writable:1; list of openers follows"]
            assert lines[-2].startswith("drbd0 opened by ")
            assert "(pid %d)" % os.getpid() in lines[-2]
            assert lines[-1] == "Command 'drbdsetup %s r0' terminated with exit code 11" % command
    finally:
        holder.close()
    ok(pool9, "hostA", "secondary", "r0")
    assert replica(pool9, "hostA")["role"] == "Secondary"


def test_drbd9_read_only_openers_do_not_block_a_demote_but_the_peers_promote(pool9):
    ok(pool9, "hostA", "primary", "r0")
    with open(device(pool9, "hostA"), "rb"):
        ok(pool9, "hostA", "secondary", "r0")
        assert_refused(pool9, "hostB", -22,
                       "Peer may not become primary while device is opened read-only")
    ok(pool9, "hostB", "primary", "r0")


def test_drbd9_read_only_openers_block_a_detach(pool9):
    ok(pool9, "hostA", "primary", "r0")
    with open(device(pool9, "hostA"), "rb"):
        down = drbdadm(pool9, "hostA", "down", "r0")
        assert down.returncode == 17
        assert down.stderr.splitlines()[:4] == [
            "r0: State change failed: (-2) Need access to UpToDate data",
            "additional info from kernel:", "failed to detach",
            "/dev/drbd0 open_cnt:1, writable:0; list of openers follows"]
        # It got as far as demoting and disconnecting.
        assert (replica(pool9, "hostA")["role"], replica(pool9, "hostA")["connection"]) == (
            "Secondary", "standalone")
    ok(pool9, "hostA", "down", "r0")


def test_drbd84_down_of_a_held_primary_fails_to_demote(pool84):
    ok(pool84, "hostA", "primary", "r0")
    with open(device(pool84, "hostA"), "rb"):
        result = drbdadm(pool84, "hostA", "down", "r0")
    assert (result.returncode, result.stderr) == (11, (
        "r0: State change failed: (-12) Device is held open by someone\n"
        "additional info from kernel:\nfailed to demote\n"
        "Command 'drbdsetup-84 down r0' terminated with exit code 11\n"))


def test_drbd84_refuses_a_demote_for_any_opener_and_names_none(pool84):
    ok(pool84, "hostA", "primary", "r0")
    with open(device(pool84, "hostA"), "rb"):
        result = drbdadm(pool84, "hostA", "secondary", "r0")
    assert (result.returncode, result.stderr) == (11, (
        "0: State change failed: (-12) Device is held open by someone\n"
        "Command 'drbdsetup-84 secondary 0' terminated with exit code 11\n"))


def test_drbd9_secondary_force_demotes_and_fails_io_until_the_openers_close(pool9):
    ok(pool9, "hostA", "primary", "r0")
    holder = open(device(pool9, "hostA"), "r+b")
    try:
        ok(pool9, "hostA", "secondary", "--force", "r0")
        assert ok(pool9, "hostA", "status", "r0").startswith(
            "r0 role:Secondary force-io-failures:yes\n")
        assert_refused(pool9, "hostA", -12, "Device is held open by someone")
    finally:
        holder.close()
    _, resource = status_json(pool9, "hostA")
    assert resource["force-io-failures"] is False
    ok(pool9, "hostA", "primary", "r0")
    assert "forced demotion" in kernel_log(pool9)


def test_drbd84_has_no_forced_demotion(pool84):
    result = drbdadm(pool84, "hostA", "secondary", "--force", "r0")
    assert (result.returncode, result.stderr) == (
        1, "drbdadm: unrecognized option '--force'\ntry 'drbdadm help secondary'\n")


@pytest.fixture
def netns():
    name = "iha" + uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=True, timeout=10)


@pytest.fixture
def hold_in_netns():
    """Start holders of a path inside a network namespace; all are stopped afterwards."""
    holders = []

    def start(namespace, path):
        holder = subprocess.Popen(
            ["ip", "netns", "exec", namespace, sys.executable, "-c",
             "import sys, time\nf = open(sys.argv[1], 'r+b')\nprint('open', flush=True)\n"
             "time.sleep(60)", path],
            stdout=subprocess.PIPE)
        holders.append(holder)
        ready, _, _ = select.select([holder.stdout], [], [], 10)
        assert ready and holder.stdout.readline() == b"open\n"
        return holder

    yield start
    for holder in holders:
        holder.kill()
        holder.wait(timeout=10)
        holder.stdout.close()


def test_only_processes_in_the_hosts_netns_hold_its_device(tmp_path, netns, hold_in_netns):
    state = make_pool(tmp_path, "9", netns={"hostA": netns})
    ok(state, "hostA", "primary", "r0")
    with open(device(state, "hostA"), "r+b"):
        ok(state, "hostA", "secondary", "r0")  # the test runs outside hostA's netns
    ok(state, "hostA", "primary", "r0")
    holder = hold_in_netns(netns, device(state, "hostA"))
    result = drbdadm(state, "hostA", "secondary", "r0")
    assert result.returncode == 11
    # ip netns exec execs, so the holder's pid is the interpreter's
    program = os.path.basename(sys.executable)[:15]
    assert "drbd0 opened by %s (pid %d)" % (program, holder.pid) in result.stderr


def test_a_missing_netns_is_reported_instead_of_ignored(tmp_path):
    state = make_pool(tmp_path, "9", netns={"hostA": "iha-never-created"})
    ok(state, "hostA", "primary", "r0")
    result = drbdadm(state, "hostA", "secondary", "r0")
    assert result.returncode == 20
    assert "network namespace iha-never-created does not exist" in result.stderr
    assert replica(state, "hostA")["role"] == "Primary"


def test_a_crashed_host_runs_no_commands(pool9):
    drbd_double.crash(pool9, "hostA")
    result = drbdadm(pool9, "hostA", "role", "r0")
    assert result.returncode == 20
    assert "hostA is crashed" in result.stderr
    assert not os.path.lexists(device(pool9, "hostA"))


# -- configuration: dump and show


def test_dump_prints_each_hosts_own_handler(tmp_path, version):
    state = make_fenced_pool(tmp_path, version, lambda s: {
        "hostA": ["/usr/local/bin/iscsi-ha-fence-peer"],
        "hostB": ["/opt/fence peer", "--peer", "hostA"]})
    dump_a = ok(state, "hostA", "dump", "r0")
    dump_b = ok(state, "hostB", "dump", "r0")
    assert "        fence-peer       /usr/local/bin/iscsi-ha-fence-peer;\n" in dump_a
    assert "        fence-peer       \"'/opt/fence peer' --peer hostA\";\n" in dump_b
    assert dump_a.startswith("# resource r0 on hostA: not ignored, not stacked\n"
                             "# defined at %s:1\nresource r0 {\n"
                             % replica(state, "hostA")["config"])
    fencing = "    disk {\n        fencing          resource-only;\n    }\n" if (
        version == "8.4") else "        fencing          resource-only;\n"
    assert fencing in dump_a
    assert ("auto-promote      no;" in dump_a) == (version == "9")
    unhandled = make_pool(tmp_path / "plain", version)
    assert "handlers" not in ok(unhandled, "hostA", "dump", "r0")


def real_drbdadm(version):
    tool = shutil.which("drbdadm") if version == "9" else "/usr/lib/drbd/drbdadm-84"
    if not tool or not os.path.exists(tool) or not shutil.which("unshare"):
        pytest.skip("drbd-utils (drbdadm) or unshare is not installed")
    return tool


def test_dump_is_what_the_real_drbdadm_prints_for_the_hosts_resource_file(tmp_path, version):
    tool = real_drbdadm(version)
    state = make_fenced_pool(tmp_path, version, lambda s: {
        "hostB": ["/usr/local/bin/iscsi-ha-fence-peer", "--timeout", "30 s"]},
        net_options={"protocol": "A", "ping-timeout": "7"})
    config = replica(state, "hostB")["config"]
    real = subprocess.run(["unshare", "-u", "sh", "-c", 'hostname hostB && exec "$0" "$@"',
                           tool, "-c", config, "dump", "r0"],
                          capture_output=True, text=True, timeout=30)
    assert real.returncode == 0, real.stderr
    assert ok(state, "hostB", "dump", "r0") == real.stdout


def plain_pool(tmp_path, version, net_options=None):
    """A pool with DRBD's default timers."""
    state = str(tmp_path / ("plain-" + version))
    drbd_double.init_pool(state, version, HOSTS, [("r0", 0, 1)], net_options=net_options)
    return state


def test_show_prints_only_options_that_differ_from_drbds_defaults(tmp_path):
    pool9, pool84 = plain_pool(tmp_path, "9"), plain_pool(tmp_path, "8.4")
    shown = ok_setup(pool9, "hostA", "show", "r0")
    assert shown.startswith('resource "r0" {\n    options {\n        auto-promote    \tno;\n'
                            '    }\n    _this_host {\n        node-id\t\t\t0;\n')
    assert ("        net {\n            fencing         \tresource-only;\n"
            '            _name           \t"hostB";\n        }\n') in shown
    assert "protocol" not in shown
    shown84 = ok_setup(pool84, "hostA", "show", "r0")
    # drbdsetup-84 opens every section, even when all its values are the defaults.
    assert shown84.startswith("resource r0 {\n    options {\n    }\n    net {\n    }\n")
    assert ("            disk {\n                fencing         \tresource-only;\n"
            "            }\n") in shown84


def ok_setup(state, host, *args):
    result = drbd_double.run_tool(state, host, "drbdsetup", list(args))
    assert result.returncode == 0, result
    return result.stdout


def test_show_reflects_a_pool_made_with_unsafe_options(tmp_path):
    state = plain_pool(tmp_path, "9", net_options={
        "protocol": "A", "fencing": "dont-care", "auto-promote": "yes",
        "allow-two-primaries": "yes"})
    shown = ok_setup(state, "hostA", "show", "r0")
    assert "auto-promote" not in shown and "fencing" not in shown  # DRBD's defaults
    assert "            protocol        \tA;\n" in shown
    assert "            allow-two-primaries\tyes;\n" in shown
    every = ok_setup(state, "hostA", "show", "--show-defaults", "r0")
    assert "        auto-promote    \tyes; # default\n" in every
    assert "            fencing         \tdont-care; # default\n" in every
    assert "            protocol        \tA;\n" in every
    assert "            timeout         \t60; # 1/10 seconds, default\n" in every


def test_unknown_options_are_refused_at_init(tmp_path):
    with pytest.raises(drbd_double.DoubleError, match="auto-promote"):
        make_pool(tmp_path, "8.4", net_options={"auto-promote": "no"})
    with pytest.raises(drbd_double.DoubleError, match="protocol must be one of A, B, C"):
        make_pool(tmp_path, "9", net_options={"protocol": "Q"})
    with pytest.raises(drbd_double.DoubleError, match="fence_peer"):
        make_pool(tmp_path, "9", fence_peer={"hostC": ["/bin/true"]})


# -- commands on a down resource and command-line errors


def test_down_resource_answers_like_drbd9(pool9):
    ok(pool9, "hostA", "down", "r0")
    ok(pool9, "hostA", "down", "r0")  # down of a down resource is fine
    role = drbdadm(pool9, "hostA", "role", "r0")
    assert (role.returncode, role.stderr) == (10, (
        "r0: Unknown resource\nCommand 'drbdsetup role r0' terminated with exit code 10\n"))
    cstate = drbdadm(pool9, "hostA", "cstate", "r0")
    assert (cstate.returncode, cstate.stderr) == (10, (
        "r0: No such connection\nCommand 'drbdsetup cstate r0 1' terminated with exit code 10\n"))
    status = drbdadm(pool9, "hostA", "status", "r0")
    assert (status.returncode, status.stdout, status.stderr) == (10, (
        "# No currently configured DRBD found.\n"), (
        "r0: No such resource\nCommand 'drbdsetup status r0' terminated with exit code 10\n"))
    primary = drbdadm(pool9, "hostA", "primary", "r0")
    assert (primary.returncode, primary.stderr) == (10, (
        "r0: Failure: (158) Unknown resource\nadditional info from kernel:\nunknown resource\n"
        "Command 'drbdsetup primary r0' terminated with exit code 10\n"))
    assert ok(pool9, "hostA", "dstate", "r0") == "Consistent\n"  # drbdmeta reads the disk
    assert not os.path.lexists(device(pool9, "hostA"))


def test_down_resource_answers_like_drbd84(pool84):
    ok(pool84, "hostA", "down", "r0")
    role = drbdadm(pool84, "hostA", "role", "r0")
    assert (role.returncode, role.stderr) == (10, (
        "0: Failure: (127) Device minor not allocated\nadditional info from kernel:\n"
        "unknown minor\nCommand 'drbdsetup-84 role 0' terminated with exit code 10\n"))


def test_configuration_errors_exit_like_drbdadm(pool):
    unknown_resource = drbdadm(pool, "hostA", "role", "r9")
    assert (unknown_resource.returncode, unknown_resource.stderr) == (
        1, "'r9' not defined in your config (for this host).\n")
    unknown_command = drbdadm(pool, "hostA", "frobnicate", "r0")
    assert (unknown_command.returncode, unknown_command.stderr) == (
        1, "drbdadm: Unknown command 'frobnicate'\n")
    misplaced_force = drbdadm(pool, "hostA", "role", "--force", "r0")
    assert (misplaced_force.returncode, misplaced_force.stderr) == (
        1, "drbdadm: unrecognized option '--force'\ntry 'drbdadm help role'\n")
    no_resource = drbdadm(pool, "hostA", "role")
    assert no_resource.returncode == 1
    assert no_resource.stdout.endswith("No resource names specified\n")
    unemulated = drbdadm(pool, "hostA", "-d", "primary", "r0")
    assert unemulated.returncode == 20
    assert "not emulated" in unemulated.stderr


def test_adjust_brings_the_resource_up_and_reconnects(pool9):
    ok(pool9, "hostB", "down", "r0")
    ok(pool9, "hostA", "disconnect", "r0")
    assert ok(pool9, "hostA", "cstate", "r0") == "StandAlone\n"
    ok(pool9, "hostB", "adjust", "r0")
    assert ok(pool9, "hostB", "cstate", "r0") == "Connecting\n"
    ok(pool9, "hostA", "adjust", "r0")
    assert ok(pool9, "hostA", "cstate", "r0") == "Connected\n"
    again = drbdadm(pool9, "hostA", "up", "r0")
    assert again.returncode == 1
    assert "r0: Failure: (161) Minor or volume exists already (delete it first)\n" in again.stderr
    assert ok(pool9, "hostA", "sh-dev", "r0") == device(pool9, "hostA") + "\n"


def test_sh_ll_dev_names_the_backing_disk(pool9):
    assert ok(pool9, "hostA", "sh-ll-dev", "r0") == \
        drbd_double.data_path(pool9, "hostA", "r0") + "\n"


# -- wrappers, locking and the admin command line


def install(state, host, bin_dir):
    drbd_double.install_wrappers(state, host, str(bin_dir))
    return str(bin_dir / "drbdadm")


def test_wrappers_act_as_their_host_and_every_command_is_logged(pool9, tmp_path):
    drbdadm_a = install(pool9, "hostA", tmp_path / "binA")
    promoted = subprocess.run([drbdadm_a, "primary", "r0"], capture_output=True, timeout=10)
    assert promoted.returncode == 0
    role = subprocess.run([str(tmp_path / "binA" / "drbdsetup"), "role", "r0"],
                          capture_output=True, timeout=10)
    assert role.stdout == b"Primary\n"
    refused = subprocess.run([drbdadm_a, "bogus"], capture_output=True, timeout=10)
    assert refused.returncode == 1
    entries = [json.loads(line) for line in state_file(pool9, "commands.log").splitlines()]
    assert [(e["host"], e["argv"], e["rc"]) for e in entries[-3:]] == [
        ("hostA", ["drbdadm", "primary", "r0"], 0),
        ("hostA", ["drbdsetup", "role", "r0"], 0),
        ("hostA", ["drbdadm", "bogus"], 1),
    ]
    assert all(e["time"] for e in entries)


def test_a_command_waits_while_another_one_runs(pool9, tmp_path):
    drbdadm_b = install(pool9, "hostB", tmp_path / "binB")
    with open(os.path.join(pool9, drbd_double.LOCK_FILE), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as a command running on hostA does
        waiting = subprocess.Popen([drbdadm_b, "primary", "r0"])
        try:
            with pytest.raises(subprocess.TimeoutExpired):
                waiting.wait(timeout=0.5)
            assert replica_unlocked(pool9, "hostB")["role"] == "Secondary"
        except BaseException:
            waiting.kill()
            raise
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            waiting.wait(timeout=10)
    assert waiting.returncode == 0
    assert replica(pool9, "hostB")["role"] == "Primary"


def replica_unlocked(state, host):
    """The saved model, read without the lock that a test itself is holding."""
    return json.loads(state_file(state, drbd_double.STATE_FILE))["resources"]["r0"][
        "replicas"][host]


def test_admin_command_line_builds_and_breaks_a_pool(tmp_path):
    state = str(tmp_path / "state")
    double = [sys.executable, "-m", "tests.drbd_double"]

    def admin(*args):
        return subprocess.run(double + list(args) + ["--state", state], cwd=REPO,
                              capture_output=True, timeout=30, text=True)

    created = admin("init", "--version", "9", "--hosts", "hostA,hostB",
                    "--resource", "r0:0:2", "--resource", "r1:1:1",
                    "--fence-peer", "hostB=/usr/local/bin/fence --peer 'host A'",
                    "--ping-window", "2", "--resync-rate", "4",
                    "--net-option", "protocol=B", "--net-option", "auto-promote=yes")
    assert created.returncode == 0, created.stderr
    assert admin("net-cut", "r1").returncode == 0
    shown = json.loads(admin("show").stdout)
    assert shown["resources"]["r0"]["replicas"]["hostA"]["connection"] == "connected"
    assert shown["resources"]["r1"]["replicas"]["hostA"]["connection"] == "connected"
    assert (shown["fence_peer"], shown["ping_window"], shown["resync_rate"]) == (
        {"hostB": ["/usr/local/bin/fence", "--peer", "host A"]}, 2.0, 4.0)
    assert (shown["options"]["protocol"], shown["options"]["auto-promote"]) == ("B", "yes")
    assert admin("elapse", "2").returncode == 0
    shown = json.loads(admin("show").stdout)
    assert shown["resources"]["r1"]["replicas"]["hostA"]["connection"] == "connecting"
    assert admin("wait-handlers").returncode == 0
    path = admin("data-path", "hostB", "r1").stdout.strip()
    assert os.path.getsize(path) == 1024 * 1024
    again = admin("init", "--version", "9", "--hosts", "hostA,hostB", "--resource", "r0:0:2")
    assert again.returncode == 20
    assert "already holds a pool" in again.stderr
    bad = admin("init", "--version", "9", "--hosts", "hostA,hostB", "--resource", "r0:0:2",
                "--fence-peer", "hostB")
    assert bad.returncode == 2
    assert "expected HOST=COMMAND" in bad.stderr

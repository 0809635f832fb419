"""Behaviour of the DRBD double (tests/drbd_double/), checked as its users see it.

Python 3 only. Each test builds its own pool in a tmp dir; only the netns test
creates kernel objects, and it removes them again.
"""

import fcntl
import json
import os
import select
import subprocess
import sys
import uuid

import pytest

from tests import drbd_double

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOSTS = ["hostA", "hostB"]
BLOCK = 4096


def make_pool(tmp_path, version, **extra):
    state = str(tmp_path / ("state-" + version))
    drbd_double.init_pool(state, version, HOSTS, [("r0", 0, 1)], **extra)
    return state


@pytest.fixture
def pool9(tmp_path):
    return make_pool(tmp_path, "9")


@pytest.fixture
def pool84(tmp_path):
    return make_pool(tmp_path, "8.4")


@pytest.fixture(params=["8.4", "9"])
def pool(request, tmp_path):
    return make_pool(tmp_path, request.param)


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


def test_drbd9_status_json_has_drbdsetup_fields(pool9):
    ok(pool9, "hostA", "primary", "r0")
    raw = drbd_double.run_tool(pool9, "hostB", "drbdsetup", ["status", "--json", "r0"])
    assert raw.returncode == 0
    assert '"connection-state": "Connected", \n' in raw.stdout  # drbdsetup's stray blank
    [resource] = json.loads(raw.stdout)
    assert (resource["name"], resource["node-id"], resource["role"]) == ("r0", 1, "Secondary")
    assert resource["suspended"] is False
    [disk] = resource["devices"]
    assert (disk["volume"], disk["minor"], disk["disk-state"], disk["size"]) == (
        0, 0, "UpToDate", 1024)
    [connection] = resource["connections"]
    assert (connection["peer-node-id"], connection["name"], connection["connection-state"],
            connection["peer-role"]) == (0, "hostA", "Connected", "Primary")
    [peer_disk] = connection["peer_devices"]
    assert (peer_disk["replication-state"], peer_disk["peer-disk-state"],
            peer_disk["resync-suspended"]) == ("Established", "UpToDate", "no")


def test_drbd84_reports_local_and_peer_state_in_one_line(pool84):
    ok(pool84, "hostA", "primary", "r0")
    assert ok(pool84, "hostA", "role", "r0") == "Primary/Secondary\n"
    assert ok(pool84, "hostA", "cstate", "r0") == "Connected\n"
    assert ok(pool84, "hostA", "dstate", "r0") == "UpToDate/UpToDate\n"
    assert ok(pool84, "hostA", "status", "r0") == (
        "r0 role:Primary\n  disk:UpToDate\n  peer role:Secondary\n    peer-disk:UpToDate\n\n")
    drbd_double.cut(pool84)
    assert ok(pool84, "hostA", "role", "r0") == "Primary/Unknown\n"
    assert ok(pool84, "hostA", "cstate", "r0") == "WFConnection\n"
    assert ok(pool84, "hostA", "dstate", "r0") == "UpToDate/Outdated\n"
    assert ok(pool84, "hostB", "dstate", "r0") == "Outdated/DUnknown\n"


def test_second_primary_is_refused_while_connected(pool):
    ok(pool, "hostA", "primary", "r0")
    result = drbdadm(pool, "hostB", "primary", "r0")
    assert result.returncode == 11
    assert result.stderr == refused_primary(pool, -1, "Multiple primaries not allowed by config")
    assert replica(pool, "hostB")["role"] == "Secondary"


def test_cut_while_primary_outdates_the_secondary_which_needs_force(pool):
    ok(pool, "hostA", "primary", "r0")
    drbd_double.cut(pool)
    assert replica(pool, "hostB")["disk"] == "Outdated"
    result = drbdadm(pool, "hostB", "primary", "r0")
    assert result.returncode == 17
    assert result.stderr == refused_primary(pool, -2, "Need access to UpToDate data")
    ok(pool, "hostB", "primary", "--force", "r0")
    assert (replica(pool, "hostB")["role"], replica(pool, "hostB")["disk"]) == (
        "Primary", "UpToDate")


def test_drbd9_status_of_cut_pair_shows_connecting_and_outdated_disk(pool9):
    ok(pool9, "hostA", "primary", "r0")
    drbd_double.cut(pool9)
    assert ok(pool9, "hostB", "status", "r0") == (
        "r0 role:Secondary\n  disk:Outdated\n  hostA connection:Connecting\n\n")


def test_crash_of_the_primary_leaves_the_peer_uptodate_and_promotable(pool):
    ok(pool, "hostA", "primary", "r0")
    drbd_double.crash(pool, "hostA")
    assert replica(pool, "hostB")["disk"] == "UpToDate"
    ok(pool, "hostB", "primary", "r0")
    assert replica(pool, "hostB")["role"] == "Primary"


def test_writes_reach_both_replicas_only_while_connected(pool9):
    ok(pool9, "hostA", "primary", "r0")
    write_block(device(pool9, "hostA"), 1, b"before the cut")
    assert replica_block(pool9, "hostB", 1) == b"before the cut"
    drbd_double.cut(pool9)
    write_block(device(pool9, "hostA"), 2, b"after the cut")
    assert replica_block(pool9, "hostA", 2) == b"after the cut"
    assert replica_block(pool9, "hostB", 2) == b""
    assert replica_block(pool9, "hostB", 1) == b"before the cut"


def test_heal_resyncs_the_stale_replica_from_the_newer_side(pool):
    ok(pool, "hostA", "primary", "r0")
    drbd_double.cut(pool)
    write_block(device(pool, "hostA"), 3, b"written while cut")
    drbd_double.heal(pool)
    assert replica_block(pool, "hostB", 3) == b"written while cut"
    assert replica(pool, "hostB")["disk"] == "UpToDate"
    assert replica(pool, "hostB")["connection"] == "connected"
    write_block(device(pool, "hostA"), 4, b"after the heal")
    assert replica_block(pool, "hostB", 4) == b"after the heal"


def test_promoting_both_sides_while_cut_is_a_split_brain(pool9):
    drbd_double.cut(pool9)
    ok(pool9, "hostA", "primary", "r0")
    ok(pool9, "hostB", "primary", "r0")
    write_block(device(pool9, "hostA"), 5, b"A's version")
    write_block(device(pool9, "hostB"), 5, b"B's version")
    drbd_double.heal(pool9)
    assert drbd_double.show(pool9)["resources"]["r0"]["split_brain"] is True
    for host, peer in (("hostA", "hostB"), ("hostB", "hostA")):
        assert ok(pool9, host, "cstate", "r0") == "StandAlone\n"
        assert "  %s connection:StandAlone\n" % peer in ok(pool9, host, "status", "r0")
    assert state_file(pool9, "kern.log").count(
        "Split-Brain detected but unresolved, dropping connection!") == 2
    assert replica_block(pool9, "hostA", 5) == b"A's version"
    assert replica_block(pool9, "hostB", 5) == b"B's version"


def test_split_brain_victim_that_discards_its_data_resyncs_from_the_survivor(pool84):
    drbd_double.cut(pool84)
    ok(pool84, "hostA", "primary", "r0")
    ok(pool84, "hostB", "primary", "r0")
    write_block(device(pool84, "hostA"), 6, b"survivor data")
    drbd_double.heal(pool84)
    ok(pool84, "hostB", "secondary", "r0")
    ok(pool84, "hostB", "connect", "--discard-my-data", "r0")
    assert ok(pool84, "hostB", "cstate", "r0") == "WFConnection\n"
    ok(pool84, "hostA", "connect", "r0")
    assert ok(pool84, "hostB", "dstate", "r0") == "UpToDate/UpToDate\n"
    assert replica_block(pool84, "hostB", 6) == b"survivor data"
    assert drbd_double.show(pool84)["resources"]["r0"]["split_brain"] is False


def test_a_primary_cannot_become_sync_target(pool9):
    drbd_double.cut(pool9)
    ok(pool9, "hostA", "primary", "r0")
    ok(pool9, "hostB", "primary", "r0")
    drbd_double.heal(pool9)
    result = drbdadm(pool9, "hostB", "connect", "--discard-my-data", "r0")
    assert (result.returncode, result.stderr) == (10, (
        "r0: Failure: (123) --discard-my-data not allowed when primary.\n"
        "Command 'drbdsetup connect r0 0 --discard-my-data' terminated with exit code 10\n"))
    ok(pool9, "hostB", "secondary", "r0")
    ok(pool9, "hostB", "connect", "--discard-my-data", "r0")
    ok(pool9, "hostB", "primary", "r0")
    ok(pool9, "hostA", "connect", "r0")
    assert ok(pool9, "hostA", "cstate", "r0") == "StandAlone\n"
    assert "I shall become SyncTarget, but I am primary!" in state_file(pool9, "kern.log")


def test_a_secondary_device_cannot_be_opened(pool):
    ok(pool, "hostA", "primary", "r0")
    with pytest.raises(OSError):
        open(device(pool, "hostB"), "rb")


def test_demote_and_down_are_refused_while_the_device_is_held_open(pool9):
    ok(pool9, "hostA", "primary", "r0")
    holder = open(device(pool9, "hostA"), "r+b")
    try:
        for command in ("secondary", "down"):
            result = drbdadm(pool9, "hostA", command, "r0")
            assert result.returncode == 11
            lines = result.stderr.splitlines()
            assert lines[0] == "r0: State change failed: (-12) Device is held open by someone"
            assert lines[1] == "additional info from kernel:"
            assert lines[2].startswith("/dev/drbd0 opened by ")
            assert "(pid %d)" % os.getpid() in lines[2]
            assert lines[3] == "Command 'drbdsetup %s r0' terminated with exit code 11" % command
    finally:
        holder.close()
    ok(pool9, "hostA", "secondary", "r0")
    assert replica(pool9, "hostA")["role"] == "Secondary"


def test_drbd84_names_no_opener_when_refusing_to_demote(pool84):
    ok(pool84, "hostA", "primary", "r0")
    with open(device(pool84, "hostA"), "rb"):
        result = drbdadm(pool84, "hostA", "secondary", "r0")
    assert (result.returncode, result.stderr) == (11, (
        "0: State change failed: (-12) Device is held open by someone\n"
        "Command 'drbdsetup-84 secondary 0' terminated with exit code 11\n"))


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
             "import sys, time\nf = open(sys.argv[1], 'rb')\nprint('open', flush=True)\n"
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
    with open(device(state, "hostA"), "rb"):
        ok(state, "hostA", "secondary", "r0")  # the test runs outside hostA's netns
    ok(state, "hostA", "primary", "r0")
    holder = hold_in_netns(netns, device(state, "hostA"))
    result = drbdadm(state, "hostA", "secondary", "r0")
    assert result.returncode == 11
    # ip netns exec execs, so the holder's pid is the interpreter's
    program = os.path.basename(sys.executable)[:15]
    assert "opened by %s (pid %d)" % (program, holder.pid) in result.stderr


def test_a_missing_netns_is_reported_instead_of_ignored(tmp_path):
    state = make_pool(tmp_path, "9", netns={"hostA": "iha-never-created"})
    ok(state, "hostA", "primary", "r0")
    result = drbdadm(state, "hostA", "secondary", "r0")
    assert result.returncode == 20
    assert "network namespace iha-never-created does not exist" in result.stderr
    assert replica(state, "hostA")["role"] == "Primary"


def test_revived_primary_comes_back_secondary_and_resyncs_from_the_new_primary(pool):
    ok(pool, "hostA", "primary", "r0")
    drbd_double.crash(pool, "hostA")
    ok(pool, "hostB", "primary", "r0")
    write_block(device(pool, "hostB"), 7, b"written during the failover")
    drbd_double.revive(pool, "hostA")
    assert replica(pool, "hostA")["role"] == "Secondary"
    assert replica(pool, "hostA")["connection"] == "connected"
    assert replica_block(pool, "hostA", 7) == b"written during the failover"


def test_a_crashed_host_runs_no_commands(pool9):
    drbd_double.crash(pool9, "hostA")
    result = drbdadm(pool9, "hostA", "role", "r0")
    assert result.returncode == 20
    assert "hostA is crashed" in result.stderr
    assert not os.path.lexists(device(pool9, "hostA"))


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
                              capture_output=True, timeout=10, text=True)

    assert admin("init", "--version", "9", "--hosts", "hostA,hostB",
                 "--resource", "r0:0:2", "--resource", "r1:1:1").returncode == 0
    assert admin("net-cut", "r1").returncode == 0
    shown = json.loads(admin("show").stdout)
    assert shown["resources"]["r0"]["replicas"]["hostA"]["connection"] == "connected"
    assert shown["resources"]["r1"]["replicas"]["hostA"]["connection"] == "connecting"
    path = admin("data-path", "hostB", "r1").stdout.strip()
    assert os.path.getsize(path) == 1024 * 1024
    again = admin("init", "--version", "9", "--hosts", "hostA,hostB", "--resource", "r0:0:2")
    assert again.returncode == 20
    assert "already holds a pool" in again.stderr

"""The plugin on a host: real tgtd in a network namespace, the DRBD double, a client.

The plugin runs as xapi runs it (tests/support/plugin.py) on the Python running
these tests, inside the host namespace; the client namespace reaches the LUN
through the floating IP with libiscsi's tools, as an initiator would.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from iscsi_ha import config as config_module
from tests.support import netns, plugin
from tests.support.tgtd import start_tgtd

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IQN = "iqn.2026-01.org.example:iscsi-ha-test"
HOST_ADDRESS, CLIENT_ADDRESS, VIP = "192.0.2.11", "192.0.2.50", "192.0.2.100"
LUN_URL = "iscsi://%s/%s/1" % (VIP, IQN)
SCSI_ID, SCSI_SN = "1fa0c0de0001", "IHA-R0-SERIAL"


def python3():
    """The DRBD double is Python 3 test infrastructure, whatever runs the tests."""
    for candidate in (os.environ.get("PY3"), "/root/.pyenv/versions/3.11.7/bin/python",
                      "python3"):
        if candidate and (os.sep not in candidate or os.path.exists(candidate)):
            return candidate
    raise RuntimeError("no python3 for the DRBD double")


def double(*args):
    output = subprocess.check_output([python3(), "-m", "tests.drbd_double"] + list(args),
                                     cwd=REPO)
    return output.decode("utf-8")


class Network(object):
    """Host and client namespaces on one link, with a real tgtd on the host."""

    def __init__(self):
        self.lab = netns.Lab()
        try:
            self.host = self.lab.namespace("host")
            self.client = self.lab.namespace("client")
            link = self.lab.link(self.host, HOST_ADDRESS + "/24", self.client,
                                 CLIENT_ADDRESS + "/24")
            self.interface = link.name_a
            self.tgtd = start_tgtd(self.host)
        except BaseException:
            self.lab.cleanup()
            raise

    def close(self):
        try:
            if self.tgtd.running():
                self.tgtd.stop()
        finally:
            self.lab.cleanup()

    def client_run(self, argv, timeout=10):
        """(exit code, output) of ``argv`` in the client namespace; timeout counts as failure."""
        process = subprocess.Popen(self.client.exec_argv(argv), stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT)
        killer = _kill_after(process, timeout)
        try:
            output = process.communicate()[0].decode("utf-8", "replace")
        finally:
            killer.cancel()
        return process.returncode, output

    def vip_here(self):
        output = self.host.run(["ip", "-o", "-4", "addr", "show"]).stdout
        return (" %s/" % VIP) in output

    def targets(self):
        return self.tgtd.target().show()


def _kill_after(process, seconds):
    import threading
    timer = threading.Timer(seconds, process.kill)
    timer.start()
    return timer


@pytest.fixture(scope="module")
def network():
    network = Network()
    yield network
    network.close()


class Host(object):
    """One test's host: a fresh DRBD pool (hostA here, hostB the peer) and a config."""

    def __init__(self, network, directory, drbd_version, lock_wait=10, ip_tool="ip",
                 init_args=()):
        self.network = network
        self.directory = directory
        self.state = os.path.join(directory, "drbd")
        self.fence_peer = self.write_fence_peer()
        double("init", "--state", self.state, "--version", drbd_version,
               "--hosts", "hostA,hostB", "--resource", "r0:0:16",
               "--netns", "hostA=%s" % network.host.name,
               "--fence-peer", "hostA=%s" % self.fence_peer,
               # These tests cut the link themselves: no detection delay to wait out.
               "--ping-window", "0", *init_args)
        for host in ("hostA", "hostB"):
            double("install-wrappers", "--state", self.state, "--host", host,
                   "--bin", os.path.join(directory, host))
        self.device = os.path.join(self.state, "hostA", "dev", "drbd0")
        self.config_path = os.path.join(directory, "iscsi-ha.conf")
        self.write_config(lock_wait=lock_wait, ip_tool=ip_tool)

    def write_fence_peer(self):
        """A stand-in for iscsi-ha's handler (there is no XAPI here): it records what
        DRBD showed it, whether the promote's peer-down word was there, and exits
        with the code in ``fence-exit`` (1, "doubt", unless a test says otherwise)."""
        path = os.path.join(self.directory, "iscsi-ha-fence-peer")
        marker = os.path.join(self.directory, "run", "peer-down.r0")
        with open(path, "w") as script:
            script.write("#!/bin/sh\n"
                         "if [ -e %(marker)s ]; then word=confirmed; else word=none; fi\n"
                         "echo \"$DRBD_RESOURCE $word\" >> %(dir)s/fence-calls\n"
                         "exit $(cat %(dir)s/fence-exit 2>/dev/null || echo 1)\n"
                         % {"marker": marker, "dir": self.directory})
        os.chmod(path, 0o755)
        return path

    def write_lvm_conf(self, rejecting=True):
        """dom0's lvm.conf, keeping LVM off this host's DRBD devices and replicas."""
        path = os.path.join(self.directory, "lvm.conf")
        with open(path, "w") as handle:
            handle.write('devices {\n    global_filter = [ %s"a|.*|" ]\n}\n'
                         % ('"r|^%s/|", ' % self.state if rejecting else ""))
        return path

    def fence_calls(self):
        try:
            with open(os.path.join(self.directory, "fence-calls")) as calls:
                return calls.read().splitlines()
        except IOError:
            return []

    def set_fence_exit(self, code):
        with open(os.path.join(self.directory, "fence-exit"), "w") as handle:
            handle.write("%d\n" % code)

    def write_config(self, lock_wait=10, ip_tool="ip"):
        bin_dir = os.path.join(self.directory, "hostA")
        text = config_module.render_sample(
            iqn=IQN, vip=VIP + "/24", vip_interface=self.network.interface,
            replication_interface="lo", drbd_version="auto",
            tgt_control_port=self.network.tgtd.control_port,
            tools={"drbdadm": os.path.join(bin_dir, "drbdadm"),
                   "drbdsetup": os.path.join(bin_dir, "drbdsetup"),
                   "tgtadm": "tgtadm", "ip": ip_tool, "arping": "arping"},
            state_dir=os.path.join(self.directory, "state"),
            run_dir=os.path.join(self.directory, "run"),
            log_file=os.path.join(self.directory, "iscsi-ha.log"),
            kernel_log=os.path.join(self.state, "kern.log"),  # the double's
            lvm_conf=self.write_lvm_conf(),
            resources=[{"name": "r0", "device": self.device, "lun": 1,
                        "scsi_id": SCSI_ID, "scsi_sn": SCSI_SN}])
        text = text.replace("lock_wait = 10", "lock_wait = %s" % lock_wait)
        with open(self.config_path, "w") as handle:
            handle.write(text)

    def call(self, fn, **args):
        return plugin.call(fn, args, config_path=self.config_path,
                           netns=self.network.host.name)

    def peer(self, *args):
        """Run the peer's (hostB's) drbdadm."""
        return subprocess.call([os.path.join(self.directory, "hostB", "drbdadm")] + list(args))

    def drbd_role(self):
        return json.loads(double("show", "--state", self.state))

    def role_of(self, host):
        output = subprocess.check_output(
            [os.path.join(self.directory, host, "drbdadm"), "role", "r0"]).decode("utf-8")
        return output.strip().split("/")[0]

    def reset(self):
        """Leave the shared network as found: no target, no VIP, no open device."""
        self.network.tgtd.target().delete(1)
        if self.network.vip_here():
            self.network.host.run(["ip", "addr", "del", VIP + "/24", "dev",
                                   self.network.interface])


def fresh_host(network, drbd_version):
    """A Host in its own temporary directory, reset and removed afterwards."""
    directory = tempfile.mkdtemp(prefix="iha-host-")
    try:
        host = Host(network, directory, drbd_version)
    except BaseException:
        shutil.rmtree(directory)
        raise
    yield host
    try:
        host.reset()
    finally:
        shutil.rmtree(directory)


@pytest.fixture(params=["9", "8.4"])
def host(request, network):
    for each in fresh_host(network, request.param):
        yield each


@pytest.fixture
def host9(network):
    for each in fresh_host(network, "9"):
        yield each


def reachable(network):
    code, output = network.client_run(["iscsi-inq", LUN_URL], timeout=3)
    return code == 0 and "ISCSIHA" in output


def assert_untouched(host):
    """What a refusal must leave behind: standby as it was."""
    assert host.role_of("hostA") == "Secondary"
    assert not host.network.vip_here()
    assert host.network.targets() == []


def test_promote_serves_the_lun_through_the_vip_and_demote_withdraws_it(host):
    network = host.network
    reply = host.call("promote", reason="test promote")
    assert reply.ok, reply.error
    result = json.loads(reply.value)
    assert result["changed"] is True
    assert [s["step"] for s in result["steps"]] == ["drbd-primary", "target-build",
                                                    "vip-claim"]
    assert result["reason"] == "test promote"
    assert reachable(network)
    code, listing = network.client_run(["iscsi-ls", "iscsi://%s" % VIP])
    assert code == 0 and IQN in listing

    again = json.loads(host.call("promote").value)
    assert again["changed"] is False
    assert again["steps"] == []
    assert again["summary"].startswith("promote: nothing to do, already in place")

    reply = host.call("demote", reason="test demote")
    assert reply.ok, reply.error
    assert [s["step"] for s in json.loads(reply.value)["steps"]] == [
        "vip-release", "target-remove", "drbd-secondary"]
    assert not reachable(network)
    assert host.role_of("hostA") == "Secondary"
    assert json.loads(host.call("demote").value)["changed"] is False


def test_the_lun_carries_the_configured_scsi_identity(host9):
    assert host9.call("promote").ok
    code, output = host9.network.client_run(["iscsi-inq", "-e", "1", "-c", "128", LUN_URL])
    assert code == 0
    assert SCSI_SN in output


def test_status_reports_roles_target_vip_and_digest(host9):
    before = json.loads(host9.call("status").value)
    assert before["role"] == "secondary"
    assert before["resources"][0]["role"] == "Secondary"
    assert before["resources"][0]["peer_role"] == "Secondary"
    assert before["target"]["exported"] is False
    assert before["vip"]["local"] is False
    assert len(before["config_digest"]) == 16
    host9.call("promote")
    after = json.loads(host9.call("status").value)
    assert after["role"] == "primary"
    assert after["target"] == {"daemon_running": True, "iqn": IQN, "exported": True,
                               "state": "ready", "luns": [1], "sessions": 0,
                               "initiators": []}
    table = host9.call("status", format="table").value
    assert "primary" in table and "r0" in table and "here" in table


def test_status_says_what_promote_accepts_and_what_is_remembered(host9):
    status = json.loads(host9.call("status").value)
    assert status["promote_accepts"] == ["await_demote", "force", "peer_down", "reason",
                                         "tickle", "vip_released"]
    assert status["connections"] == [] and status["remembered_initiators"] == []
    reply = host9.call("remember-initiators",
                       connections='["192.0.2.50:41000", "192.0.2.51:3001"]')
    assert reply.ok, reply.error
    assert json.loads(reply.value) == {"remembered": 2}
    again = host9.call("remember-initiators", connections='["192.0.2.51:3001", '
                       '"192.0.2.50:41000", "192.0.2.50:41000"]')
    assert json.loads(again.value) == {"remembered": 2}
    status = json.loads(host9.call("status").value)
    assert status["remembered_initiators"] == ["192.0.2.50:41000", "192.0.2.51:3001"]
    assert json.loads(host9.call("remember-initiators", connections="[]").value) == {
        "remembered": 0}
    assert json.loads(host9.call("status").value)["remembered_initiators"] == []


@pytest.mark.parametrize("args, named", [
    ({"tickle": "192.0.2.50:41000"}, "tickle"),
    ({"tickle": '["192.0.2.50"]'}, "tickle"),
    ({"tickle": '["192.0.2.50:0"]'}, "tickle"),
    ({"vip_released": "maybe"}, "vip_released"),
    ({"await_demote": "soon"}, "await_demote"),
    ({"await_demote": "true", "peer_down": "true"}, "await_demote"),
    ({"await_demote": "true", "vip_released": "true"}, "await_demote"),
])
def test_bad_fast_path_arguments_are_refused_before_anything_changes(host9, args, named):
    reply = host9.call("promote", **args)
    assert reply.error[0] == "ISCSI_HA_BAD_ARGUMENT"
    assert reply.error[2] == named
    assert_untouched(host9)
    reply = host9.call("remember-initiators", connections='{"not": "a list"}')
    assert reply.error[0] == "ISCSI_HA_BAD_ARGUMENT" and reply.error[2] == "connections"


def test_promote_with_a_tickle_list_reports_what_it_sent(host9):
    reply = host9.call("promote", tickle='["192.0.2.50:41000"]', vip_released="true")
    assert reply.ok, reply.error
    result = json.loads(reply.value)
    assert (result["tickled"], result["tickle_failures"]) == (1, [])
    assert host9.network.vip_here()


def test_promote_is_refused_while_the_peer_is_primary(host9):
    assert host9.peer("primary", "r0") == 0
    try:
        reply = host9.call("promote", force="true")
        assert reply.error[0] == "ISCSI_HA_PEER_PRIMARY"
        assert "demote the other host first" in reply.error[1]
        assert_untouched(host9)
    finally:
        host9.peer("secondary", "r0")


def test_a_promote_sent_beside_the_peers_demote_waits_for_it_then_serves(host9):
    import threading
    assert host9.peer("primary", "r0") == 0
    # The peer's demote lands while the promote waits; until then nothing changes here.
    demote = threading.Timer(0.5, host9.peer, ["secondary", "r0"])
    demote.start()
    try:
        reply = host9.call("promote", await_demote="true")
    finally:
        demote.join()
    assert reply.ok, reply.error
    result = json.loads(reply.value)
    assert result["awaited_demote_seconds"] > 0
    assert [s["step"] for s in result["steps"]] == ["drbd-primary", "target-build",
                                                    "vip-claim"]
    assert host9.role_of("hostA") == "Primary" and host9.role_of("hostB") == "Secondary"
    assert reachable(host9.network)


def test_a_promote_whose_peer_never_demotes_refuses_and_changes_nothing(host9):
    with open(host9.config_path) as handle:
        text = handle.read()
    with open(host9.config_path, "w") as handle:
        handle.write(text.replace("\ncommand = 20\n", "\ncommand = 1\n"))
    assert host9.peer("primary", "r0") == 0
    try:
        reply = host9.call("promote", await_demote="true")
        assert reply.error[0] == "ISCSI_HA_PEER_PRIMARY"
        assert "stayed Primary on the peer host for the 1 s" in reply.error[1]
        assert_untouched(host9)
    finally:
        host9.peer("secondary", "r0")


def local_drbdadm(host, *args):
    return subprocess.call([os.path.join(host.directory, "hostA", "drbdadm")] + list(args))


def test_promote_is_refused_while_the_peer_is_unknown(host):
    # Replication cut with both Secondary: hostA's UpToDate may be stale by now.
    double("net-cut", "--state", host.state)
    for args in ({}, {"force": "true"}):
        reply = host.call("promote", **args)
        assert reply.error[0] == "ISCSI_HA_PEER_UNKNOWN", reply.error
        assert "r0 is not connected to its peer" in reply.error[1]
        assert "peer_down=true" in reply.error[1]
        assert_untouched(host)
    assert host.fence_calls() == []  # refused before DRBD was asked


def test_an_outdated_disk_needs_the_peer_down_and_force(host9):
    double("net-cut", "--state", host9.state)
    assert local_drbdadm(host9, "outdate", "r0") == 0
    assert host9.call("promote").error[0] == "ISCSI_HA_PEER_UNKNOWN"
    reply = host9.call("promote", peer_down="true")
    assert reply.error[0] == "ISCSI_HA_DISK_NOT_UPTODATE"
    assert "Outdated" in reply.error[1] and "force=true" in reply.error[1]
    assert_untouched(host9)
    reply = host9.call("promote", peer_down="true", force="true")
    assert reply.ok, reply.error
    assert reachable(host9.network)


def test_peer_down_reaches_the_fence_peer_handler_of_that_promote_only(host):
    double("net-cut", "--state", host.state)
    host.set_fence_exit(7)
    reply = host.call("promote", peer_down="true", reason="peer powered off")
    assert reply.ok, reply.error
    assert host.fence_calls() == ["r0 confirmed"]
    assert not os.path.exists(os.path.join(host.directory, "run", "peer-down.r0"))
    assert reachable(host.network)


def test_a_handler_that_cannot_fence_makes_drbd_refuse_and_promote_roll_back(host):
    double("net-cut", "--state", host.state)
    reply = host.call("promote", peer_down="true")
    assert reply.error[0] == "ISCSI_HA_STEP_FAILED", reply.error
    assert "(-7)" in reply.error[1]
    assert "the peer may still be Primary: power it off or demote it first" in reply.error[1]
    assert "force" not in reply.error[1].split("(-7)")[1]
    # DRBD 8.4 asks the handler up to four times before it gives up.
    assert host.fence_calls() and set(host.fence_calls()) == {"r0 confirmed"}
    assert_untouched(host)
    assert not os.path.exists(os.path.join(host.directory, "run", "peer-down.r0"))


def test_outdate_marks_a_standby_outdated_and_leaves_a_primary_alone(host):
    double("net-cut", "--state", host.state)
    result = json.loads(host.call("outdate", resource="r0", reason="peer fencing").value)
    assert (result["changed"], result["role"], result["disk"]) == (True, "Secondary",
                                                                    "Outdated")
    again = json.loads(host.call("outdate", resource="r0").value)
    assert again["changed"] is False and "nothing to do" in again["summary"]
    reply = host.call("outdate", resource="nosuch")
    assert reply.error[0] == "ISCSI_HA_BAD_ARGUMENT"
    assert "use one of r0" in reply.error[1]
    assert host.call("outdate").error[0] == "ISCSI_HA_BAD_ARGUMENT"


def test_outdate_of_a_primary_says_so_and_changes_nothing(host9):
    assert host9.call("promote").ok
    result = json.loads(host9.call("outdate", resource="r0").value)
    assert (result["changed"], result["role"], result["disk"]) == (False, "Primary",
                                                                    "UpToDate")
    assert reachable(host9.network)


def test_promote_is_refused_while_another_host_answers_for_the_vip(host9):
    network = host9.network
    network.client.run(["ip", "addr", "add", VIP + "/24", "dev", network.lab.links[0].name_b])
    try:
        reply = host9.call("promote")
        assert reply.error[0] == "ISCSI_HA_VIP_IN_USE"
        assert_untouched(host9)
    finally:
        network.client.run(["ip", "addr", "del", VIP + "/24", "dev",
                            network.lab.links[0].name_b])


def test_a_failing_step_rolls_back_what_promote_did(host9):
    failing_ip = os.path.join(host9.directory, "ip-that-cannot-add")
    with open(failing_ip, "w") as script:
        script.write('#!/bin/sh\ncase "$*" in "addr add"*) echo "RTNETLINK answers: '
                     'Operation not permitted" >&2; exit 2;; esac\nexec ip "$@"\n')
    os.chmod(failing_ip, 0o755)
    host9.write_config(ip_tool=failing_ip)
    reply = host9.call("promote")
    assert reply.error[0] == "ISCSI_HA_STEP_FAILED"
    assert "promote failed at step vip-claim" in reply.error[1]
    assert "Operation not permitted" in reply.error[1]
    assert "rolled back with vip-release %s, target-remove %s, drbd-secondary r0" % (
        VIP, IQN) in reply.error[1]
    steps = json.loads(reply.error[2])["steps"]
    assert [(s["step"], s["outcome"]) for s in steps] == [
        ("drbd-primary", "done"), ("target-build", "done"), ("vip-claim", "failed"),
        ("vip-release", "rolled-back"), ("target-remove", "rolled-back"),
        ("drbd-secondary", "rolled-back")]
    assert_untouched(host9)


def test_demote_does_not_hang_on_a_connected_initiator(host9):
    network = host9.network
    assert host9.call("promote").ok
    reader = subprocess.Popen(network.client.exec_argv(
        ["iscsi-perf", "-m", "1", LUN_URL]), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_for_session(network)
        status = json.loads(host9.call("status").value)
        initiators = status["target"]["initiators"]
        assert [i["addresses"] for i in initiators] == [[CLIENT_ADDRESS]]
        # The client's end of its connection, as the kernel lists it.
        assert [c.split(":")[0] for c in status["connections"]] == [CLIENT_ADDRESS]
        reply = host9.call("demote")
        assert reply.ok, reply.error
        result = json.loads(reply.value)
        assert result["connections"] == status["connections"]
        assert result["vip_released"] is True
        assert host9.role_of("hostA") == "Secondary"
        assert network.targets() == []
        assert json.loads(host9.call("status").value)["connections"] == []
    finally:
        reader.kill()
        reader.wait()


def _wait_for_session(network):
    import time
    deadline = time.time() + 5
    while time.time() < deadline:
        targets = network.targets()
        if targets and targets[0].sessions:
            return
        time.sleep(0.05)
    raise AssertionError("the initiator never logged in")


def test_without_tgtd_promote_is_refused_and_nothing_changes(network, tmp_path):
    lab = netns.Lab()
    try:
        lonely = lab.namespace("notgtd")
        directory = str(tmp_path)
        double("init", "--state", os.path.join(directory, "drbd"), "--version", "9",
               "--hosts", "hostA,hostB", "--resource", "r0:0:16")
        double("install-wrappers", "--state", os.path.join(directory, "drbd"),
               "--host", "hostA", "--bin", os.path.join(directory, "hostA"))
        config_path = os.path.join(directory, "c.conf")
        with open(config_path, "w") as handle:
            handle.write(config_module.render_sample(
                iqn=IQN, vip=VIP + "/24", vip_interface="lo", replication_interface="lo",
                tgt_control_port=network.tgtd.control_port + 1,
                tools={"drbdadm": os.path.join(directory, "hostA", "drbdadm"),
                       "drbdsetup": os.path.join(directory, "hostA", "drbdsetup"),
                       "tgtadm": "tgtadm", "ip": "ip", "arping": "arping"},
                state_dir=directory, log_file=os.path.join(directory, "log"),
                resources=[{"name": "r0", "lun": 1,
                            "device": os.path.join(directory, "drbd", "hostA", "dev", "drbd0"),
                            "scsi_id": SCSI_ID, "scsi_sn": SCSI_SN}]))
        reply = plugin.call("promote", {}, config_path=config_path, netns=lonely.name)
        assert reply.error[0] == "ISCSI_HA_TARGET_DAEMON_DOWN"
        assert "start" in reply.error[1]
        role = subprocess.check_output([os.path.join(directory, "hostA", "drbdadm"), "role",
                                        "r0"]).decode("utf-8")
        assert role.startswith("Secondary")
    finally:
        lab.cleanup()


def test_a_second_action_waits_for_the_lock_then_fails_busy(host9):
    host9.write_config(lock_wait=0.5)
    os.makedirs(os.path.join(host9.directory, "run"))
    lock_path = os.path.join(host9.directory, "run", "action.lock")
    # Another action in progress: it holds the lock's flock and has written its pid.
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, ('%d\\n' % os.getpid()).encode())\n"
        "print('locked')\nsys.stdout.flush()\ntime.sleep(30)"), lock_path],
        stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"locked\n"
        reply = host9.call("promote")
        assert reply.error[0] == "ISCSI_HA_BUSY"
        assert "pid %d" % holder.pid in reply.error[1]
        assert_untouched(host9)
    finally:
        holder.kill()
        holder.wait()
    # The kernel dropped the dead holder's lock; its pid is still in the file.
    assert host9.call("promote").ok


def test_check_passes_on_a_ready_host(host9):
    answer = json.loads(host9.call("check").value)
    failed = [c for c in answer["checks"] if not c["ok"]]
    assert failed == []
    assert answer["ok"] is True
    names = [c["check"] for c in answer["checks"]]
    for name in ("DRBD r0 protocol", "DRBD r0 fencing", "DRBD r0 auto-promote",
                 "DRBD r0 fence-peer handler", "arping is iputils'", "LVM filter for r0"):
        assert name in names


def test_check_flags_each_unsafe_running_drbd_setting(network, tmp_path):
    unsafe = ("--net-option", "protocol=A", "--net-option", "fencing=dont-care",
              "--net-option", "auto-promote=yes")
    host = Host(network, str(tmp_path), "9", init_args=unsafe)
    answer = json.loads(host.call("check").value)
    failed = dict((c["check"], c["detail"]) for c in answer["checks"] if not c["ok"])
    assert sorted(failed) == ["DRBD r0 auto-promote", "DRBD r0 fencing", "DRBD r0 protocol"]
    assert failed["DRBD r0 protocol"].startswith("A, but iscsi-ha needs C")


def test_check_flags_an_lvm_filter_that_lets_lvm_scan_the_drbd_device(host9):
    host9.write_lvm_conf(rejecting=False)
    answer = json.loads(host9.call("check").value)
    failed = dict((c["check"], c["detail"]) for c in answer["checks"] if not c["ok"])
    assert list(failed) == ["LVM filter for r0"]
    assert "LVM would scan %s and " % host9.device in failed["LVM filter for r0"]
    assert answer["ok"] is False


def test_demote_rolls_back_to_serving_when_drbd_cannot_go_secondary(host9):
    """Something else holds the DRBD device open: DRBD refuses, and the LUN stays served."""
    network = host9.network
    assert host9.call("promote").ok
    holder = subprocess.Popen(network.host.exec_argv(
        [python3(), "-c", "import sys, time\nf = open(sys.argv[1], 'r+b')\nprint('open')\n"
         "sys.stdout.flush()\ntime.sleep(60)", host9.device]), stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"open\n"
        reply = host9.call("demote", reason="maintenance")
        assert reply.error[0] == "ISCSI_HA_STEP_FAILED"
        assert "demote failed at step drbd-secondary" in reply.error[1]
        assert "held open" in reply.error[1]
        steps = json.loads(reply.error[2])["steps"]
        assert [(s["step"], s["outcome"]) for s in steps] == [
            ("vip-release", "done"), ("target-remove", "done"), ("drbd-secondary", "failed"),
            ("drbd-primary", "rolled-back"), ("target-build", "rolled-back"),
            ("vip-claim", "rolled-back")]
        assert reachable(network)
        assert host9.role_of("hostA") == "Primary"
    finally:
        holder.kill()
        holder.wait()
    assert host9.call("demote").ok


def test_every_change_is_logged_with_its_reason(host9):
    assert host9.call("promote", reason="move for maintenance of xcp-b").ok
    assert host9.call("promote").ok  # a no-op: nothing more in the log
    with open(os.path.join(host9.directory, "iscsi-ha.log")) as log:
        lines = log.read().splitlines()
    changes = [line for line in lines if "promote:" in line]
    assert [line.split("promote: ")[1] for line in changes] == [
        "drbd-primary r0 done (reason: move for maintenance of xcp-b)",
        "target-build %s done (reason: move for maintenance of xcp-b)" % IQN,
        "vip-claim %s done (reason: move for maintenance of xcp-b)" % VIP]
    assert host9.peer("primary", "r0") != 0  # DRBD itself refuses a second Primary
    host9.call("demote")
    assert host9.peer("primary", "r0") == 0
    try:
        reply = host9.call("promote", reason="operator typo")
        assert reply.error[0] == "ISCSI_HA_PEER_PRIMARY"
    finally:
        host9.peer("secondary", "r0")
    with open(os.path.join(host9.directory, "iscsi-ha.log")) as log:
        assert "promote refused: DRBD resource r0 is Primary on the peer host" in log.read()


def test_manual_mode_is_a_flag_status_reports(host9):
    assert host9.call("manual-mode").error[0] == "ISCSI_HA_BAD_ARGUMENT"
    on = json.loads(host9.call("manual-mode", enabled="true", reason="disk swap").value)
    assert on == {"manual_mode": True, "changed": True}
    assert json.loads(host9.call("status").value)["manual_mode"] is True
    assert "MANUAL MODE" in host9.call("status", format="table").value
    again = json.loads(host9.call("manual-mode", enabled="yes").value)
    assert again == {"manual_mode": True, "changed": False}
    off = json.loads(host9.call("manual-mode", enabled="false").value)
    assert off == {"manual_mode": False, "changed": True}
    assert json.loads(host9.call("status").value)["manual_mode"] is False


def test_status_says_when_manual_mode_last_went_off_here(host9):
    # The controller compares it with the pool's flag: a database restored from an older
    # backup may bring back a flag cleared since.
    assert json.loads(host9.call("status").value)["manual_mode_off_at"] is None
    host9.call("manual-mode", enabled="true", reason="disk swap")
    before = time.time()
    host9.call("manual-mode", enabled="false")
    off_at = json.loads(host9.call("status").value)["manual_mode_off_at"]
    assert before <= off_at <= time.time()
    host9.call("manual-mode", enabled="false")  # no change: the moment stays
    assert json.loads(host9.call("status").value)["manual_mode_off_at"] == off_at
    host9.call("manual-mode", enabled="true", reason="again")
    assert json.loads(host9.call("status").value)["manual_mode_off_at"] is None


def test_a_foreign_target_on_our_tid_is_refused_before_anything_changes(host9):
    foreign = "iqn.2026-01.org.example:someone-else"
    host9.network.tgtd.target().create(1, foreign)
    reply = host9.call("promote")
    assert reply.error[0] == "ISCSI_HA_TARGET_ERROR"
    assert "tid 1 is used by another target, %s" % foreign in reply.error[1]
    assert host9.role_of("hostA") == "Secondary"
    assert not host9.network.vip_here()
    assert [t.iqn for t in host9.network.targets()] == [foreign]

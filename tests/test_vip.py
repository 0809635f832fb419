"""iscsi_ha.vip: reading addresses, the duplicate-address check, claiming, which arping.

The namespace tests put two hosts on one bridge (a third namespace, the
switch), so either can hold the VIP, or both, as after a split brain; the
FloatingIp of each host runs ip and arping inside its namespace through
two-line wrapper scripts.
"""

import json
import os
import shutil
import sys
import tempfile
import time

import pytest

from iscsi_ha import commands
from iscsi_ha.errors import VipError, VipInUse
from iscsi_ha.vip import FloatingIp, arping_flavour, parse_addresses
from tests.support import netns

VIP, PREFIX = "192.0.2.100", 24
HOSTS = {"a": "192.0.2.1/24", "b": "192.0.2.2/24"}

ADDRESSES = u"""\
2: eth0    inet 192.0.2.10/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever
2: eth0    inet 192.0.2.100/28 scope global secondary eth0\\       valid_lft forever
3: ppp0    inet 198.51.100.1 peer 198.51.100.2/32 scope global ppp0\\       valid_lft forever
"""


@pytest.fixture
def scratch(request):
    directory = tempfile.mkdtemp(prefix="iha-vip-test-")
    request.addfinalizer(lambda: shutil.rmtree(directory, ignore_errors=True))
    return directory


def script(directory, name, body):
    path = os.path.join(directory, name)
    with open(path, "w") as handle:
        handle.write(u"#!/bin/sh\n" + body)
    os.chmod(path, 0o755)
    return path


# -- parsing and comparing addresses --------------------------------------------

def test_parse_addresses_reads_each_inet_with_its_prefix():
    assert parse_addresses(ADDRESSES) == [("192.0.2.10", 24), ("192.0.2.100", 28),
                                          ("198.51.100.1", 32)]
    assert parse_addresses(u"") == []


def fake_ip(directory, output):
    """An ``ip`` that prints ``output`` for ``addr show`` and logs every call."""
    log = os.path.join(directory, "ip.log")
    with open(os.path.join(directory, "ip.out"), "w") as handle:
        handle.write(output)
    return script(directory, "ip", u'echo "$@" >> %s\ncat %s\n'
                  % (log, os.path.join(directory, "ip.out"))), log


@pytest.mark.parametrize("address, prefix", [
    ("192.0.2.100", 28),
    # The same address written another way is the same address.
    ("192.000.002.100", 28),
    ("192.0.2.10", 24),
    # A string prefix of a local address is not that address.
    ("192.0.2.1", None),
    ("198.51.100.2", None),
])
def test_local_prefix_compares_addresses_as_numbers(scratch, address, prefix):
    ip, _ = fake_ip(scratch, ADDRESSES)
    vip = FloatingIp(address, 24, "eth0", ip=ip)
    assert vip.local_prefix() == prefix
    assert vip.is_local() is (prefix is not None)


# -- claim checks again right before it adds the address ------------------------

def fake_arping(directory, exit_code):
    log = os.path.join(directory, "arping.log")
    return script(directory, "arping", u'echo "$@" >> %s\nexit %d\n' % (log, exit_code)), log


def read_lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return handle.read().splitlines()


def test_claim_refuses_without_adding_when_another_host_answers(scratch):
    ip, ip_log = fake_ip(scratch, u"")
    arping, arping_log = fake_arping(scratch, 1)
    vip = FloatingIp(VIP, PREFIX, "eth0", ip=ip, arping=arping, duplicate_check="arping")
    with pytest.raises(VipInUse) as caught:
        vip.claim()
    assert "another host answers ARP for %s on eth0" % VIP in caught.value.message
    assert [line.split()[0] for line in read_lines(arping_log)] == ["-D"]
    assert read_lines(ip_log) == []


def test_claim_checks_then_adds_then_announces(scratch):
    ip, ip_log = fake_ip(scratch, u"")
    arping, arping_log = fake_arping(scratch, 0)
    pid_file = os.path.join(scratch, "announcer.pid")
    vip = FloatingIp(VIP, PREFIX, "eth0", ip=ip, arping=arping, announcer_pid_file=pid_file,
                     duplicate_check="arping")
    vip.claim()
    assert read_lines(ip_log) == ["addr add %s/%d dev eth0" % (VIP, PREFIX)]
    with open(pid_file) as handle:
        announcer = int(handle.read())
    wait_for_exit(announcer)
    assert [line.split()[0] for line in read_lines(arping_log)] == ["-D", "-U"]


def test_a_check_started_early_is_the_one_the_claim_waits_for(scratch):
    ip, ip_log = fake_ip(scratch, u"")
    arping, arping_log = fake_arping(scratch, 1)
    vip = FloatingIp(VIP, PREFIX, "eth0", ip=ip, arping=arping, duplicate_check="arping")
    vip.start_duplicate_check()
    with pytest.raises(VipInUse):
        vip.claim()
    # One check, heard by the claim: none made again, and nothing added.
    assert [line.split()[0] for line in read_lines(arping_log)] == ["-D"]
    assert read_lines(ip_log) == []


def test_an_early_check_that_failed_fails_whoever_asks_for_its_answer(scratch):
    ip, _ = fake_ip(scratch, u"")
    arping, _ = fake_arping(scratch, 2)
    vip = FloatingIp(VIP, PREFIX, "eth0", ip=ip, arping=arping, duplicate_check="arping")
    vip.start_duplicate_check()
    with pytest.raises(VipError) as caught:
        vip.answered_elsewhere()
    assert "duplicate address check for %s on eth0 failed" % VIP in caught.value.message


def wait_for_exit(pid, patience=5.0):
    """Wait for a detached process that only logs and exits."""
    deadline = time.time() + patience
    while os.path.exists("/proc/%d" % pid) and not _zombie(pid):
        if time.time() > deadline:
            raise AssertionError("process %d is still running" % pid)
        time.sleep(0.01)


def _zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (IOError, OSError):
        return True


def test_a_failing_duplicate_check_is_an_error_not_a_free_address(scratch):
    ip, ip_log = fake_ip(scratch, u"")
    arping, _ = fake_arping(scratch, 2)
    with pytest.raises(VipError) as caught:
        FloatingIp(VIP, PREFIX, "eth0", ip=ip, arping=arping,
                   duplicate_check="arping").claim()
    assert "duplicate address check for %s on eth0 failed" % VIP in caught.value.message
    assert read_lines(ip_log) == []


# -- which arping ----------------------------------------------------------------

def test_the_installed_arping_is_iputils():
    ok, detail = arping_flavour("arping", timeout=5)
    assert ok is True
    assert "iputils" in detail


HABETS_V = u"""\
echo "arping: option requires an argument -- 'V'" >&2
echo "ARPing 2.21, by Thomas Habets <thomas@habets.se>"
echo "usage: arping [ -0aAbdDeFpPqrRuUv ] [ -w <sec> ] [ -W <sec> ] [ -S <host/ip> ]"
echo "For complete usage info, use --help or check the manpage."
exit 1
"""


def test_habets_arping_is_refused_with_the_fix(scratch):
    ok, detail = arping_flavour(script(scratch, "arping", HABETS_V), timeout=5)
    assert ok is False
    assert "Habets' arping (ARPing 2.21, by Thomas Habets" in detail
    assert "install iputils' arping" in detail


def test_an_unknown_or_missing_arping_is_not_trusted(scratch):
    ok, detail = arping_flavour(script(scratch, "arping", u"echo 'arping 0.1'\n"), timeout=5)
    assert ok is False
    assert "did not say it is iputils' arping (exit code 0: arping 0.1)" in detail
    ok, detail = arping_flavour(os.path.join(scratch, "absent"), timeout=5)
    assert ok is False
    assert "cannot run it" in detail


# -- two hosts on one bridge -------------------------------------------------------

# Runs one FloatingIp call inside a host namespace: the ARP probe's packet
# socket belongs to the namespace of the process that opens it.
_IN_NAMESPACE = u"""
import json, sys
sys.path.insert(0, %r)
from iscsi_ha.errors import IscsiHaError
from iscsi_ha.vip import FloatingIp
kwargs, calls = json.loads(sys.argv[1]), json.loads(sys.argv[2])
vip = FloatingIp(**kwargs)
results = []
for name, arguments in calls:
    try:
        results.append({"value": getattr(vip, name)(**arguments)})
    except IscsiHaError as exc:
        results.append({"error": exc.code})
print(json.dumps(results))
""" % os.path.dirname(os.path.dirname(os.path.abspath(commands.__file__)))


class NamespacedVip(object):
    """A FloatingIp of one host, each call run by a process inside its namespace."""

    def __init__(self, namespace, interface, duplicate_check, directory):
        self.namespace = namespace
        # The pid file lets release() stop arping's background announcer.
        self.settings = {"address": VIP, "prefix": PREFIX, "interface": interface,
                         "timeout": 10, "duplicate_check": duplicate_check,
                         "probe_ms": 20, "announcer_pid_file": os.path.join(
                             directory, namespace.name + ".announcer.pid")}

    def calls(self, *calls):
        """The results of ``(method, kwargs)`` calls made one after another on one object."""
        output = self.namespace.run(
            [sys.executable, "-c", _IN_NAMESPACE, json.dumps(self.settings),
             json.dumps(calls)], timeout=30).stdout
        return json.loads(output.strip().splitlines()[-1])

    def call(self, name, **arguments):
        result = self.calls((name, arguments))[0]
        if "error" in result:
            raise {"ISCSI_HA_VIP_IN_USE": VipInUse}.get(result["error"], VipError)(
                result["error"])
        return result["value"]

    def __getattr__(self, name):
        return lambda **arguments: self.call(name, **arguments)


class BridgedHosts(object):
    """Hosts ``a`` and ``b``, each on a veth port of one bridge in a switch namespace."""

    def __init__(self, lab, duplicate_check, directory):
        self.lab = lab
        self.switch = lab.namespace("sw")
        ip = commands.find_tool("ip")
        self.switch.run([ip, "link", "add", "br0", "type", "bridge"])
        self.switch.run([ip, "link", "set", "br0", "up"])
        self.namespaces, self.interfaces, self.vips = {}, {}, {}
        for name, cidr in sorted(HOSTS.items()):
            netns.check_lab_address(cidr)
            namespace = lab.namespace(name)
            host_end, switch_end = lab.prefix + name + "0", lab.prefix + name + "1"
            # Both ends live in lab namespaces, so deleting those removes the pair.
            commands.run([ip, "link", "add", host_end, "netns", namespace.name, "type",
                          "veth", "peer", "name", switch_end, "netns", self.switch.name],
                         timeout=10)
            self.switch.run([ip, "link", "set", switch_end, "master", "br0", "up"])
            namespace.run([ip, "addr", "add", cidr, "dev", host_end])
            namespace.run([ip, "link", "set", host_end, "up"])
            self.vips[name] = NamespacedVip(namespace, host_end, duplicate_check, directory)
            self.namespaces[name], self.interfaces[name] = namespace, host_end

    def hold(self, name):
        netns.check_lab_address("%s/%d" % (VIP, PREFIX))
        self.namespaces[name].run(["ip", "addr", "add", "%s/%d" % (VIP, PREFIX), "dev",
                                   self.interfaces[name]])


@pytest.fixture(params=["probe", "arping"])
def hosts(request, scratch):
    lab = netns.Lab()
    request.addfinalizer(lab.cleanup)
    return BridgedHosts(lab, request.param, scratch)


def test_nobody_answers_for_a_free_address(hosts):
    assert hosts.vips["a"].answered_elsewhere() is False


def test_the_holder_does_not_count_itself_but_the_other_host_sees_it(hosts):
    hosts.hold("a")
    assert hosts.vips["a"].is_local() and not hosts.vips["b"].is_local()
    assert hosts.vips["a"].answered_elsewhere() is False
    assert hosts.vips["b"].answered_elsewhere() is True


def test_two_holders_each_see_the_other(hosts):
    hosts.hold("a")
    hosts.hold("b")
    assert hosts.vips["a"].answered_elsewhere() is True
    assert hosts.vips["b"].answered_elsewhere() is True


def test_claim_refuses_an_address_another_host_holds(hosts):
    hosts.hold("a")
    with pytest.raises(VipInUse):
        hosts.vips["b"].claim()
    assert not hosts.vips["b"].is_local()
    assert hosts.vips["a"].is_local()


def test_claim_and_release_of_a_free_address(hosts):
    hosts.vips["b"].claim()
    assert hosts.vips["b"].local_prefix() == PREFIX
    assert hosts.vips["a"].answered_elsewhere() is True
    hosts.vips["b"].release()
    assert not hosts.vips["b"].is_local()
    hosts.vips["b"].release()
    assert hosts.vips["a"].answered_elsewhere() is False


def test_a_claim_without_probe_adds_even_an_address_another_host_holds(hosts):
    # What vip_released=true is for: the caller vouches the old owner let go.
    hosts.hold("a")
    hosts.vips["b"].claim(probe=False)
    assert hosts.vips["b"].is_local()


def test_a_claim_announces_the_address_to_the_neighbours(hosts):
    hosts.hold("a")
    # b's neighbour table learns a's MAC for the VIP, then b takes it over:
    # a must now map the VIP to b's MAC without asking.
    hosts.namespaces["b"].run(["ip", "neigh", "replace", VIP, "lladdr", "02:00:00:00:00:01",
                               "dev", hosts.interfaces["b"]])
    hosts.namespaces["a"].run(["ip", "neigh", "replace", VIP, "lladdr", "02:00:00:00:00:01",
                               "dev", hosts.interfaces["a"], "nud", "stale"])
    hosts.namespaces["a"].run(["ip", "addr", "del", "%s/%d" % (VIP, PREFIX), "dev",
                               hosts.interfaces["a"]])
    hosts.namespaces["a"].run(["ip", "neigh", "replace", VIP, "lladdr", "02:00:00:00:00:01",
                               "dev", hosts.interfaces["a"], "nud", "stale"])
    hosts.vips["b"].claim()
    mac_b = hosts.namespaces["b"].run(["cat", "/sys/class/net/%s/address"
                                       % hosts.interfaces["b"]]).stdout.strip()
    deadline = time.time() + 5  # the arping announcer runs in the background
    while time.time() < deadline:
        neighbour = hosts.namespaces["a"].run(["ip", "neigh", "show", VIP, "dev",
                                               hosts.interfaces["a"]]).stdout
        if mac_b in neighbour:
            break
        time.sleep(0.05)
    assert mac_b in neighbour


def test_the_probe_sees_a_claim_made_after_it_without_probing_again(scratch):
    """A promote probes before it changes anything, and claims after DRBD and the target:
    whatever claimed the VIP in between is on the probe's socket when it adds the VIP."""
    lab = netns.Lab()
    try:
        hosts = BridgedHosts(lab, "probe", scratch)
        # Inside a's process: probe (free), let b claim and announce, then claim.
        settings = json.dumps(hosts.vips["b"].settings)
        claim_b = ("import subprocess, sys; subprocess.check_call(['ip', 'netns', 'exec', "
                   "%r, sys.executable, '-c', %r, %r, '[[\"claim\", {}]]'])"
                   % (hosts.namespaces["b"].name, _IN_NAMESPACE, settings))
        code = _IN_NAMESPACE.replace(
            "for name, arguments in calls:",
            "for index, (name, arguments) in enumerate(calls):\n"
            "    if index == 1:\n        exec(%r)" % claim_b)
        output = hosts.namespaces["a"].run(
            [sys.executable, "-c", code, json.dumps(hosts.vips["a"].settings),
             json.dumps([["answered_elsewhere", {}], ["claim", {}]])], timeout=30).stdout
        assert json.loads(output.strip().splitlines()[-1]) == [
            {"value": False}, {"error": "ISCSI_HA_VIP_IN_USE"}]
        assert not hosts.vips["a"].is_local()
        assert hosts.vips["b"].is_local()
    finally:
        lab.cleanup()

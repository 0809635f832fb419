"""The plugin's fast switchover path in the lab: real tgtd, namespaces, a libiscsi client.

The controllers are stopped, and the test makes the plugin calls a controller
would make, through XAPI: what is checked is what the plugin does with the
contract's arguments (``tickle``, ``vip_released``) and what it reports
(``connections``), as an initiator sees it.
"""

import json
import subprocess
import sys

import pytest

from iscsi_ha import connections
from tests.lab import pool
from tests.lab.running import REPO, wait_until

# A libiscsi session that stays logged in and idle (nothing to retransmit, as a
# quiet dom0 initiator), and reads one block each time a line arrives on stdin:
# "ok" on its session, or "reconnected" after finding the session lost, which
# it then logs in again (what libiscsi's own reconnect does).
_IDLE_CLIENT = u"""
import json, sys
sys.path.insert(0, %r)
from tests.lab.iscsi_io import ConnectionLost, IscsiClient
client = IscsiClient(sys.argv[1], timeout=10)
client.connect()
client.read_blocks(0, 1)
print(json.dumps({"connected": True}), flush=True)
for line in sys.stdin:
    try:
        client.read_blocks(0, 1)
        print(json.dumps({"read": "ok"}), flush=True)
    except ConnectionLost as exc:
        client.close()
        client.connect()
        client.read_blocks(0, 1)
        print(json.dumps({"read": "reconnected", "lost": str(exc)}), flush=True)
""" % REPO


class IdleClient(object):
    def __init__(self, lab):
        self.lab = lab
        self.namespace = lab.description["client_netns"]
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace, sys.executable, "-c", _IDLE_CLIENT,
             lab.url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            universal_newlines=True)
        assert json.loads(self.process.stdout.readline()) == {"connected": True}

    def read(self):
        self.process.stdin.write("read\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def established(self):
        """The client's own ends ("ip:port") of its connections to VIP:3260, as its
        kernel lists them: a connection that was reset is no longer there."""
        found = []
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            text = subprocess.check_output(["ip", "netns", "exec", self.namespace, "cat",
                                            table], universal_newlines=True)
            # The tables list both ends; swapped, the client's end is the "remote" one.
            swapped = "\n".join(_swap_ends(line) for line in text.splitlines())
            found += connections.parse_table(swapped, pool.VIP)
        return found

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def _swap_ends(line):
    fields = line.split()
    if len(fields) > 3 and ":" in fields[1]:
        fields[1], fields[2] = fields[2], fields[1]
    return " ".join(fields)


@pytest.fixture
def quiet_lab(lab):
    """The lab with both controllers stopped: only the test's own calls move anything."""
    for host in ("hostA", "hostB"):
        lab("controller", "stop", host)
    return lab


def plugin(lab, host, fn, **args):
    state = pool.Lab.load(lab.state)
    with state.xapi() as session:
        return state.call_plugin(session, host, fn, **args)


def ok(reply):
    assert reply["ok"], reply
    return reply["result"]


@pytest.fixture
def client(quiet_lab):
    started = IdleClient(quiet_lab)
    yield started
    started.close()


def test_status_lists_the_connections_of_a_connected_client(quiet_lab, client):
    status = ok(plugin(quiet_lab, "hostA", "status"))
    assert [c.split(":")[0] for c in status["connections"]] == [pool.CLIENT_ADDRESS]
    assert status["connections"] == client.established()
    assert ok(plugin(quiet_lab, "hostB", "status"))["connections"] == []


def test_a_tickle_resets_an_idle_session_s_connection_so_it_reconnects_to_the_new_owner(
        quiet_lab, client):
    demoted = ok(plugin(quiet_lab, "hostA", "demote", reason="test: planned move"))
    assert demoted["vip_released"] is True
    old = demoted["connections"]
    assert [c.split(":")[0] for c in old] == [pool.CLIENT_ADDRESS]
    # The old owner could not tell the idle client: its connection lives on.
    assert client.established() == old

    promoted = ok(plugin(quiet_lab, "hostB", "promote", reason="test: planned move",
                         tickle=json.dumps(old), vip_released="true"))
    assert (promoted["tickled"], promoted["tickle_failures"]) == (len(old), [])
    # The client's kernel answered the tickle, hostB's kernel reset the connection:
    # gone without the client sending anything (it would wait for its keepalive).
    wait_until(lambda: client.established() != old, "the tickled connection to be reset",
               seconds=20)
    assert client.established() == []

    answer = client.read()
    assert answer["read"] == "reconnected"
    assert [c.split(":")[0] for c in ok(plugin(quiet_lab, "hostB", "status"))[
        "connections"]] == [pool.CLIENT_ADDRESS]
    assert client.read() == {"read": "ok"}


def test_the_arp_probe_refuses_a_claim_while_another_namespace_holds_the_vip(quiet_lab):
    ok(plugin(quiet_lab, "hostA", "demote", reason="test: free the VIP"))
    namespace = quiet_lab.description["client_netns"]
    holder = ["ip", "-n", namespace, "addr", "%s", "%s/%d" % (pool.VIP, pool.PREFIX), "dev",
              pool.CLIENT_INTERFACE]
    subprocess.check_call([part.replace("%s", "add") for part in holder])
    try:
        refused = plugin(quiet_lab, "hostB", "promote", reason="test: VIP held elsewhere")
        assert not refused["ok"]
        assert refused["error"][0] == "ISCSI_HA_VIP_IN_USE"
        status = ok(plugin(quiet_lab, "hostB", "status"))
        assert status["role"] == "secondary"
        assert status["vip"] == dict(status["vip"], local=False, answered_elsewhere=True)
        assert status["target"]["exported"] is False
        assert status["resources"][0]["role"] == "Secondary"
    finally:
        subprocess.check_call([part.replace("%s", "del") for part in holder])

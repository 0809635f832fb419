"""The model of one pool's DRBD: two hosts, N resources, kept in a STATE directory.

Owns ``state.json`` (roles, disk states, data generations, who is connected) and
the files behind it: one data file per replica and, per host, the device
``STATE/<host>/dev/drbd<minor>``. It decides what DRBD would do when a host asks
for a state change (refusing like the kernel), when the link breaks (resource-only
fencing outdates the peer), and when it comes back (resync from the newer side,
or split brain). Callers hold the STATE lock; see ``admin.locked_pool``.

Replication is modelled through the files: while the two hosts are connected both
replicas are one data file (protocol C: an acknowledged write is on both), a
Primary's device is a symlink to its replica and a Secondary's points nowhere.
Losing the connection forks the replicas; reconnecting resyncs by sharing the
newer file again.
"""

import datetime
import json
import os
import shutil

from .errors import (ERR_DISCARD_IMPOSSIBLE, ERR_MINOR_OR_VOLUME_EXISTS, ERR_NET_CONFIGURED,
                     SS_DEVICE_IN_USE, SS_NO_UP_TO_DATE_DISK, SS_TWO_PRIMARIES, Refusal)
from .holders import process_name, process_start, processes_holding

STATE_FILE = "state.json"
KERNEL_LOG = "kern.log"
DATA_DIR = "data"

# The DRBD generations a pool can emulate, and how their kernels identify themselves.
KERNELS = {
    "8.4": {"api": 1, "code": 0x08040B, "name": "8.4.11"},
    "9": {"api": 2, "code": 0x090111, "name": "9.1.17"},
}
PORT_BASE = 7789

PRIMARY, SECONDARY = "Primary", "Secondary"
UP_TO_DATE, OUTDATED, CONSISTENT = "UpToDate", "Outdated", "Consistent"
CONNECTED, CONNECTING, STANDALONE = "connected", "connecting", "standalone"


class Pool(object):
    """One pool's DRBD state, loaded from and saved to STATE under the caller's lock."""

    def __init__(self, state_dir, state):
        self.state_dir = os.path.realpath(state_dir)
        self.state = state

    @classmethod
    def load(cls, state_dir):
        with open(os.path.join(state_dir, STATE_FILE)) as state_file:
            return cls(state_dir, json.load(state_file))

    def save(self):
        path = os.path.join(self.state_dir, STATE_FILE)
        with open(path + ".tmp", "w") as state_file:
            json.dump(self.state, state_file, indent=1, sort_keys=True)
        os.replace(path + ".tmp", path)

    # -- lookups

    @property
    def version(self):
        return self.state["version"]

    @property
    def hosts(self):
        return self.state["hosts"]

    def peer_of(self, host):
        return [h for h in self.hosts if h != host][0]

    def alive(self, host):
        return self.state["alive"][host]

    def resource_names(self):
        return sorted(self.state["resources"])

    def resource(self, name):
        return self.state["resources"][name]

    def replica(self, host, name):
        return self.resource(name)["replicas"][host]

    def resource_by_minor(self, minor):
        for name in self.resource_names():
            if self.resource(name)["minor"] == minor:
                return name
        return None

    def node_id(self, host):
        return self.hosts.index(host)

    def address(self, host, name):
        return "ipv4:192.0.2.%d:%d" % (11 + self.node_id(host),
                                       PORT_BASE + self.resource(name)["minor"])

    def data_path(self, host, name):
        return os.path.join(self.state_dir, self.replica(host, name)["data"])

    def device_path(self, host, name):
        return os.path.join(self.state_dir, host, "dev", "drbd%d" % self.resource(name)["minor"])

    def connection(self, host, name):
        """CONNECTED, CONNECTING or STANDALONE as ``host`` sees resource ``name``."""
        if self.replica(host, name)["standalone"]:
            return STANDALONE
        return CONNECTED if self.resource(name)["connected"] else CONNECTING

    def peer_role(self, host, name):
        if self.connection(host, name) == CONNECTED:
            return self.replica(self.peer_of(host), name)["role"]
        return "Unknown"

    def peer_disk(self, host, name):
        if self.connection(host, name) == CONNECTED:
            return self.replica(self.peer_of(host), name)["disk"]
        # The fence-peer handler's verdict stands until the next connection.
        return OUTDATED if self.replica(host, name)["peer_fenced"] else "DUnknown"

    # -- logs

    def kernel_log(self, host, name, message):
        minor = self.resource(name)["minor"]
        if self.version == "9":
            prefix = "drbd %s %s" % (name, self.peer_of(host))
        else:
            prefix = "block drbd%d" % minor
        line = "%s %s kernel: %s: %s\n" % (timestamp(), host, prefix, message)
        with open(os.path.join(self.state_dir, KERNEL_LOG), "a") as log:
            log.write(line)

    # -- state changes requested by a host

    def promote(self, host, name, force):
        replica = self.replica(host, name)
        if replica["role"] == PRIMARY:
            return
        connected = self.connection(host, name) == CONNECTED
        if connected and self.peer_role(host, name) == PRIMARY:
            raise Refusal(SS_TWO_PRIMARIES)
        if replica["disk"] != UP_TO_DATE and not force:
            raise Refusal(SS_NO_UP_TO_DATE_DISK)
        replica["role"] = PRIMARY
        if force and replica["disk"] != UP_TO_DATE:
            replica["disk"] = UP_TO_DATE
            self.kernel_log(host, name, "Forced to consider local data as UpToDate!")
            self.start_generation(name, replica)
        elif not connected and replica["gen"] == replica["synced_gen"]:
            self.start_generation(name, replica)

    def demote(self, host, name):
        replica = self.replica(host, name)
        if replica["role"] == SECONDARY:
            return
        self.refuse_if_held_open(host, name)
        replica["role"] = SECONDARY

    def bring_up(self, host, name):
        replica = self.replica(host, name)
        if replica["up"]:
            raise Refusal(ERR_MINOR_OR_VOLUME_EXISTS)
        replica.update(up=True, role=SECONDARY, standalone=False)
        self.reconcile(name)

    def take_down(self, host, name):
        replica = self.replica(host, name)
        if not replica["up"]:
            return
        if replica["role"] == PRIMARY:
            self.refuse_if_held_open(host, name)
        # DRBD demotes before it disconnects, so a clean down fences nobody.
        replica.update(role=SECONDARY, up=False)
        self.reconcile(name)

    def connect(self, host, name, discard_my_data):
        replica = self.replica(host, name)
        if not replica["standalone"]:
            raise Refusal(ERR_NET_CONFIGURED)
        if discard_my_data and replica["role"] == PRIMARY:
            raise Refusal(ERR_DISCARD_IMPOSSIBLE)
        replica.update(standalone=False, discard_my_data=discard_my_data)
        self.reconcile(name)

    def disconnect(self, host, name):
        self.replica(host, name)["standalone"] = True
        self.reconcile(name)

    def refuse_if_held_open(self, host, name):
        holders = processes_holding(self.data_path(host, name), self.state["netns"].get(host))
        if not holders:
            return
        info = []
        if self.version == "9":
            # DRBD 9 names the openers; it knows the open time, /proc only the start time.
            info = ["/dev/drbd%d opened by %s (pid %d) at %s"
                    % (self.resource(name)["minor"], process_name(pid), pid,
                       process_start(pid)) for pid in holders]
        raise Refusal(SS_DEVICE_IN_USE, info)

    # -- events outside DRBD's control

    def set_link(self, names, link_up):
        for name in names:
            self.resource(name)["link_up"] = link_up
            self.reconcile(name)

    def crash(self, host):
        self.state["alive"][host] = False
        for name in self.resource_names():
            self.reconcile(name)
            self.replica(host, name).update(role=SECONDARY, up=False)

    def revive(self, host):
        """The host boots again and its DRBD resources come up as Secondary."""
        self.state["alive"][host] = True
        for name in self.resource_names():
            self.replica(host, name).update(up=True, role=SECONDARY, standalone=False)
            self.reconcile(name)

    # -- the replication link

    def reconcile(self, name):
        """Connect or disconnect ``name`` so the link matches what both hosts allow."""
        resource = self.resource(name)
        can_connect = resource["link_up"] and all(
            self.alive(h) and self.replica(h, name)["up"]
            and not self.replica(h, name)["standalone"] for h in self.hosts)
        if resource["connected"] and not can_connect:
            self.lose_connection(name)
        elif can_connect and not resource["connected"]:
            self.handshake(name)

    def lose_connection(self, name):
        resource = self.resource(name)
        resource["connected"] = False
        primaries = [h for h in self.hosts if self.replica(h, name)["role"] == PRIMARY]
        for host in primaries:
            if not self.alive(host):
                continue
            replica = self.replica(host, name)
            if replica["gen"] == replica["synced_gen"]:
                self.start_generation(name, replica)
            peer = self.peer_of(host)
            peer_replica = self.replica(peer, name)
            # fencing resource-only: the handler outdates a reachable peer, and an
            # unreachable (crashed) one counts as outdated without being touched.
            if self.alive(peer) and peer_replica["disk"] in (UP_TO_DATE, CONSISTENT):
                peer_replica["disk"] = OUTDATED
            replica["peer_fenced"] = True
            self.kernel_log(host, name, "fence-peer helper returned %d (peer %s)"
                            % ((4, "was fenced") if self.alive(peer) else
                               (5, "is unreachable, assumed to be dead")))
        keeper = primaries[0] if len(primaries) == 1 else self.hosts[0]
        self.fork_replica(name, self.peer_of(keeper))

    def handshake(self, name):
        first, second = [self.replica(h, name) for h in self.hosts]
        changed = [r["gen"] != r["synced_gen"] for r in (first, second)]
        discarding = [r["discard_my_data"] for r in (first, second)]
        first["discard_my_data"] = second["discard_my_data"] = False
        if all(changed) and discarding.count(True) != 1:
            self.mark_split_brain(name)
            return
        if any(discarding):
            target = self.hosts[discarding.index(True)]
        elif any(changed):
            target = self.hosts[changed.index(False)]
        else:
            target = None
        if target is not None and self.replica(target, name)["role"] == PRIMARY:
            for host in self.hosts:
                self.replica(host, name)["standalone"] = True
            self.kernel_log(target, name, "I shall become SyncTarget, but I am primary!")
            return
        if target is None:
            primaries = [h for h in self.hosts if self.replica(h, name)["role"] == PRIMARY]
            source = primaries[0] if primaries else self.hosts[0]
        else:
            source = self.peer_of(target)
        self.share_replica(name, source, self.peer_of(source))
        generation = self.replica(source, name)["gen"]
        for host in self.hosts:
            self.replica(host, name).update(
                disk=UP_TO_DATE, gen=generation, synced_gen=generation, peer_fenced=False)
        resource = self.resource(name)
        resource.update(connected=True, split_brain=False)

    def mark_split_brain(self, name):
        self.resource(name)["split_brain"] = True
        for host in self.hosts:
            self.replica(host, name)["standalone"] = True
            self.kernel_log(host, name, "Split-Brain detected but unresolved, dropping connection!")

    def start_generation(self, name, replica):
        resource = self.resource(name)
        resource["last_gen"] += 1
        replica["gen"] = resource["last_gen"]

    def fork_replica(self, name, host):
        """Give ``host`` its own copy of the replica it shares; it stops getting writes."""
        resource = self.resource(name)
        resource["files_made"] += 1
        fresh = os.path.join(DATA_DIR, "%s-%d.img" % (name, resource["files_made"]))
        shutil.copyfile(self.data_path(host, name), os.path.join(self.state_dir, fresh))
        self.replica(host, name)["data"] = fresh

    def share_replica(self, name, source, target):
        """Resync: ``target``'s replica becomes ``source``'s file again."""
        old = self.data_path(target, name)
        self.replica(target, name)["data"] = self.replica(source, name)["data"]
        if old != self.data_path(target, name):
            os.remove(old)

    # -- devices

    def refresh_devices(self):
        for host in self.hosts:
            for name in self.resource_names():
                self.place_device(host, name)

    def place_device(self, host, name):
        device = self.device_path(host, name)
        replica = self.replica(host, name)
        if not (self.alive(host) and replica["up"]):
            if os.path.lexists(device):
                os.remove(device)
            return
        if replica["role"] == PRIMARY:
            target = self.data_path(host, name)
        else:
            # Opening a Secondary fails, as DRBD refuses I/O there.
            target = os.path.join(os.path.dirname(device),
                                  ".drbd%d-is-secondary" % self.resource(name)["minor"])
        if os.path.islink(device) and os.readlink(device) == target:
            return
        os.symlink(target, device + ".new")
        os.replace(device + ".new", device)

    def describe(self):
        """The whole model plus what each host sees, for `show`."""
        described = json.loads(json.dumps(self.state))
        described["state_dir"] = self.state_dir
        for name in self.resource_names():
            for host in self.hosts:
                replica = described["resources"][name]["replicas"][host]
                replica.update(
                    data_path=self.data_path(host, name),
                    device=self.device_path(host, name),
                    connection=self.connection(host, name),
                    peer_role=self.peer_role(host, name),
                    peer_disk=self.peer_disk(host, name))
        return described


def timestamp():
    return datetime.datetime.now().isoformat(timespec="milliseconds")

"""The model of one pool's DRBD: two hosts, N resources, kept in a STATE directory.

Owns ``state.json`` (roles, disk states, data generations, connections, resyncs,
fence-peer requests) and the files behind it: one data file per replica and each
host's device and configuration. It decides what DRBD 8.4.11 or 9.1.17 does when
the link breaks, a host dies or comes back, and when the two hosts meet again
(resync from the newer side, or split brain); the state changes a host asks for
are checked here with the kernel's rules (``drbd_state.c``), and the promote
retry loop that runs fencing is ``setrole``'s.

Time is wall-clock time (plus the pool's ``clock_offset``, which ``elapse``
advances) and is evaluated lazily: every command first brings the model up to
now (``advance``), so no daemon is needed. What takes time:

* noticing a dead peer or a broken link: the survivors keep seeing the old
  connection for ``ping_window`` seconds (DRBD notices at its next ping, after
  up to ping-int + ping-timeout); a promote pings at once and notices within
  ping-timeout;
* resync: the SyncTarget stays Inconsistent while ``resync_rate`` MiB/s copy the
  whole device (a full resync: the double keeps no bitmap);
* fence-peer handlers, which run without the STATE lock (``fencing``).

Replication is modelled through the files: while the hosts are connected both
replicas are one data file (protocol C: an acknowledged write is on both). The
moment the link breaks (not when it is noticed) the replicas fork; a resync
shares the source's file again, and an interrupted one leaves the target the
source's data up to the resync point and its own stale data after it.
Callers hold the STATE lock; see ``admin.locked_pool``.
"""

import contextlib
import datetime
import fcntl
import json
import os
import shutil
import signal
import time
import uuid

from . import devices, resfile
from .errors import (ERR_DISCARD_IMPOSSIBLE, ERR_MINOR_OR_VOLUME_EXISTS, ERR_NET_CONFIGURED,
                     SS_CONNECTED_OUTDATES, SS_DEVICE_IN_USE, SS_LOWER_THAN_OUTDATED,
                     SS_NO_UP_TO_DATE_DISK, SS_PRIMARY_NOP, SS_PRIMARY_READER,
                     SS_TWO_PRIMARIES, DoubleError, Refusal)
from .holders import pid_alive, process_name, process_start, processes_holding
from .options import seconds

STATE_FILE = "state.json"
KERNEL_LOG = "kern.log"
DATA_DIR = "data"

# The DRBD generations a pool can emulate, and how their kernels identify themselves.
KERNELS = {
    "8.4": {"api": 1, "code": 0x08040B, "name": "8.4.11"},
    "9": {"api": 2, "code": 0x090111, "name": "9.1.17"},
}
PORT_BASE = 7789
BLOCK = 4096

PRIMARY, SECONDARY = "Primary", "Secondary"
UP_TO_DATE, CONSISTENT = "UpToDate", "Consistent"
OUTDATED, INCONSISTENT = "Outdated", "Inconsistent"
DUNKNOWN = "DUnknown"
# What a host knows of a peer it is not connected to: only a stale disk is known.
KNOWN_STALE = (INCONSISTENT, OUTDATED)
CONNECTED, CONNECTING, STANDALONE = "connected", "connecting", "standalone"
# A fence-peer request whose runner never registered is given up after this long.
RUNNER_START_GRACE = 30.0


class Pool(object):
    """One pool's DRBD state, loaded from and saved to STATE under the caller's lock.

    ``lock`` is the open STATE lock file (for ``unlocked``); ``spawner(pool, tokens)``
    starts the runners of new fence-peer requests once they are saved.
    """

    def __init__(self, state_dir, state, lock=None, spawner=None):
        self.state_dir = os.path.realpath(state_dir)
        self.state = state
        self.lock = lock
        self.spawner = spawner

    @classmethod
    def load(cls, state_dir, lock=None, spawner=None):
        return cls(state_dir, read_state(state_dir), lock, spawner)

    def save(self):
        path = os.path.join(self.state_dir, STATE_FILE)
        with open(path + ".tmp", "w") as state_file:
            json.dump(self.state, state_file, indent=1, sort_keys=True)
        os.replace(path + ".tmp", path)

    def commit(self):
        """Make the files match the model and save it (what other commands see)."""
        self.refresh_devices()
        pending = [t for t, runner in self.state["runners"].items() if not runner["spawned"]]
        for token in pending:
            self.state["runners"][token]["spawned"] = True
        self.save()
        if pending and self.spawner:
            self.spawner(self, pending)

    @contextlib.contextmanager
    def unlocked(self):
        """Let other commands run meanwhile, as the kernel drops its state lock while a
        helper runs; afterwards the model is re-read and brought up to now."""
        self.commit()
        fcntl.flock(self.lock, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(self.lock, fcntl.LOCK_EX)
            self.state = read_state(self.state_dir)
            self.advance()

    def sleep(self, duration):
        if duration > 0:
            with self.unlocked():
                time.sleep(duration)

    def now(self):
        return time.time() + self.state["clock_offset"]

    # -- lookups

    @property
    def version(self):
        return self.state["version"]

    @property
    def hosts(self):
        return self.state["hosts"]

    @property
    def options(self):
        return self.state["options"]

    @property
    def fencing(self):
        return self.options["fencing"]

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

    def is_up(self, host, name):
        return self.alive(host) and self.replica(host, name)["up"]

    def resource_by_minor(self, minor):
        for name in self.resource_names():
            if self.resource(name)["minor"] == minor:
                return name
        return None

    def node_id(self, host):
        return self.hosts.index(host)

    def ip_address(self, host):
        return "192.0.2.%d" % (11 + self.node_id(host))

    def port(self, name):
        return PORT_BASE + self.resource(name)["minor"]

    def address(self, host, name):
        return "ipv4:%s:%d" % (self.ip_address(host), self.port(name))

    def data_path(self, host, name):
        return os.path.join(self.state_dir, self.replica(host, name)["data"])

    def device_path(self, host, name):
        return devices.device_path(self.state_dir, host, self.resource(name)["minor"])

    def disk_path(self, host, name):
        return devices.disk_path(self.state_dir, host, name)

    def connection(self, host, name):
        """CONNECTED, CONNECTING or STANDALONE as ``host`` sees resource ``name``."""
        if self.replica(host, name)["standalone"]:
            return STANDALONE
        return CONNECTED if self.resource(name)["connected"] else CONNECTING

    def connected(self, host, name):
        return self.connection(host, name) == CONNECTED

    def peer_role(self, host, name):
        if self.connected(host, name):
            return self.replica(self.peer_of(host), name)["role"]
        return "Unknown"

    def peer_disk(self, host, name):
        if self.connected(host, name):
            return self.replica(self.peer_of(host), name)["disk"]
        # A fence-peer verdict (or a stale peer seen last) stands until the next connection.
        return self.replica(host, name)["peer_disk"]

    def resync_role(self, host, name):
        """"SyncSource", "SyncTarget" or None while ``name`` is connected."""
        resync = self.resource(name)["resync"]
        if not resync or not self.connected(host, name):
            return None
        return "SyncSource" if resync["source"] == host else "SyncTarget"

    def resync_seconds(self, name):
        return self.resource(name)["size_mib"] / float(self.state["resync_rate"])

    def resync_done(self, name):
        """The fraction of the running resync of ``name`` that is done."""
        resync = self.resource(name)["resync"]
        loss = self.resource(name)["loss"]
        until = loss["at"] if loss else self.now()
        return max(0.0, min(1.0, (until - resync["started"]) / self.resync_seconds(name)))

    def out_of_sync_kib(self, name):
        if not self.resource(name)["resync"]:
            return 0
        total = self.resource(name)["size_mib"] * 1024
        return total - int(total * self.resync_done(name))

    def suspended_fencing(self, host, name):
        return self.replica(host, name)["susp_fen"]

    # -- logs

    def kernel_log(self, host, name, message, scope="connection"):
        """A line of ``host``'s kernel log, prefixed like DRBD's printk of ``scope``
        (resource, connection or device)."""
        minor = self.resource(name)["minor"]
        if self.version == "9":
            prefix = {"resource": "drbd %s" % name,
                      "connection": "drbd %s %s" % (name, self.peer_of(host)),
                      "device": "drbd %s/0 drbd%d" % (name, minor)}[scope]
        else:
            prefix = "block drbd%d" % minor if scope == "device" else "drbd %s" % name
        line = "%s %s kernel: %s: %s\n" % (timestamp(), host, prefix, message)
        with open(os.path.join(self.state_dir, KERNEL_LOG), "a") as log:
            log.write(line)

    # -- the kernel's state checks for a promote

    def promote_refusal(self, host, name, assume_up_to_date=False, assume_peer_outdated=False):
        """Why DRBD would refuse to make ``host`` Primary now, or None.

        ``assume_up_to_date`` and ``assume_peer_outdated`` are what a forced or
        fenced promote asks for on top (9: CS_FP_LOCAL_UP_TO_DATE and
        CS_FP_OUTDATE_PEERS; 8.4: the disk and pdsk of its state mask).
        """
        replica = self.replica(host, name)
        connected = self.connected(host, name)
        disk = UP_TO_DATE if assume_up_to_date and replica["disk"] != UP_TO_DATE and (
            not connected or self.peer_disk(host, name) != UP_TO_DATE) else replica["disk"]
        peer_disk = self.peer_disk(host, name)
        if assume_peer_outdated and peer_disk == DUNKNOWN:
            peer_disk = OUTDATED
        if (connected and self.peer_role(host, name) == PRIMARY
                and self.options["allow-two-primaries"] == "no"):
            return SS_TWO_PRIMARIES
        fencing = self.fencing != "dont-care"
        if self.version == "9":
            if replica["fail_io"]:
                return SS_DEVICE_IN_USE
            if disk != UP_TO_DATE and not (connected and peer_disk == UP_TO_DATE):
                return SS_NO_UP_TO_DATE_DISK
            if fencing and not connected and peer_disk not in KNOWN_STALE:
                return SS_PRIMARY_NOP
            # The peer's own check, answered in the cluster-wide state change.
            if connected and self.read_only_openers(self.peer_of(host), name):
                return SS_PRIMARY_READER
            return None
        if not connected and disk != UP_TO_DATE:
            return SS_NO_UP_TO_DATE_DISK
        if fencing and not connected and peer_disk not in KNOWN_STALE:
            return SS_PRIMARY_NOP
        if disk != UP_TO_DATE and peer_disk != UP_TO_DATE:
            return SS_NO_UP_TO_DATE_DISK
        return None

    def make_primary(self, host, name, local_up_to_date=False, peer_outdated=False):
        replica = self.replica(host, name)
        replica.update(role=PRIMARY, discard_my_data=False)
        connected = self.connected(host, name)
        if local_up_to_date and replica["disk"] != UP_TO_DATE and (
                not connected or self.peer_disk(host, name) != UP_TO_DATE):
            replica["disk"] = UP_TO_DATE
        if peer_outdated and not connected and replica["peer_disk"] == DUNKNOWN:
            replica["peer_disk"] = OUTDATED
        # DRBD starts a new data generation for writes its peer does not get.
        if (local_up_to_date or not connected) and replica["gen"] == replica["synced_gen"]:
            self.start_generation(name, replica)

    # -- other state changes requested by a host

    def demote(self, host, name, force=False):
        replica = self.replica(host, name)
        if replica["role"] == SECONDARY:
            return
        openers = self.openers(host, name)
        writers = [o for o in openers if o[1]]
        if (writers if self.version == "9" else openers):
            if not force:
                raise Refusal(SS_DEVICE_IN_USE, self.opener_info(name, openers))
            # DRBD 9 demotes anyway and fails the openers' I/O until they close.
            self.kernel_log(host, name, "forced demotion", scope="resource")
            replica["fail_io"] = True
        replica["role"] = SECONDARY

    def bring_up(self, host, name):
        """``drbdadm up``: attach the disk (its state read from the metadata) and connect."""
        replica = self.replica(host, name)
        if replica["up"]:
            raise Refusal(ERR_MINOR_OR_VOLUME_EXISTS)
        replica.update(up=True, role=SECONDARY, standalone=False, fail_io=False,
                       susp_fen=False, disk=self.attached_disk(replica))
        self.reconcile(name)

    def attached_disk(self, replica):
        """The disk state attach derives from the metadata: data that was UpToDate is only
        Consistent unless fencing is off or the peer is known to be stale (8.4 drbd_nl.c
        drbd_adm_attach; 9 drbd_state.c disk_state_from_md)."""
        if replica["disk"] not in (UP_TO_DATE, CONSISTENT):
            return replica["disk"]
        if self.fencing == "dont-care" or replica["peer_disk"] in KNOWN_STALE:
            return UP_TO_DATE
        return CONSISTENT

    def take_down(self, host, name):
        replica = self.replica(host, name)
        if not replica["up"]:
            return
        if replica["role"] == PRIMARY:
            self.demote(host, name)
        self.end_connection(name)
        replica.update(up=False, standalone=False, susp_fen=False, fail_io=False)
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
        self.end_connection(name)
        self.replica(host, name)["standalone"] = True
        self.reconcile(name)

    def outdate(self, host, name):
        """``drbdsetup outdate``: mark the local disk Outdated, if DRBD allows it here."""
        replica = self.replica(host, name)
        disk = replica["disk"]
        if disk == OUTDATED:
            return
        if disk == INCONSISTENT:
            raise Refusal(SS_LOWER_THAN_OUTDATED)
        connected = self.connected(host, name)
        if replica["role"] == PRIMARY:
            if not connected or self.peer_disk(host, name) != UP_TO_DATE:
                raise Refusal(SS_NO_UP_TO_DATE_DISK)
            raise Refusal(SS_CONNECTED_OUTDATES)
        # 8.4 refuses while connected at all; 9 only while a connected peer is Primary.
        if connected and (self.version == "8.4" or self.peer_role(host, name) == PRIMARY):
            raise Refusal(SS_CONNECTED_OUTDATES)
        replica["disk"] = OUTDATED

    def outdate_metadata(self, host, name):
        """What drbdmeta outdate does to a disk that is not attached; False if Inconsistent."""
        replica = self.replica(host, name)
        if replica["disk"] == INCONSISTENT:
            return False
        replica["disk"] = OUTDATED
        return True

    def resume_io(self, host, name):
        replica = self.replica(host, name)
        if replica["susp_fen"]:
            replica["susp_fen"] = False
            if replica["gen"] == replica["synced_gen"]:
                self.start_generation(name, replica)

    # -- the kernel's per-resource configuration mutex (adm_mutex)

    @contextlib.contextmanager
    def adm_mutex(self, host, name):
        """Configuration commands on one host's resource take turns, also while one of
        them runs without the STATE lock (a promote running its fence-peer handler)."""
        deadline = time.time() + self.state["handler_timeout"] * 4 + 60
        while True:
            busy = self.replica(host, name)["adm_busy"]
            if not busy or busy == os.getpid() or not pid_alive(busy):
                break
            if time.time() > deadline:
                raise DoubleError("another command on %s %s (pid %d) does not finish"
                                  % (host, name, busy))
            self.sleep(0.05)
        self.replica(host, name)["adm_busy"] = os.getpid()
        try:
            yield
        finally:
            self.replica(host, name)["adm_busy"] = None

    # -- who has a device open (/proc)

    def openers(self, host, name):
        """[(pid, writable)] of processes in ``host``'s namespace with its replica open."""
        return processes_holding(self.data_path(host, name), self.state["netns"].get(host))

    def read_only_openers(self, host, name):
        if not self.is_up(host, name) or self.replica(host, name)["role"] == PRIMARY:
            return []
        return [pid for pid, writable in self.openers(host, name) if not writable]

    def opener_info(self, name, openers):
        """The openers as the kernel lists them; DRBD 8.4 names none."""
        if self.version != "9" or not openers:
            return []
        minor = self.resource(name)["minor"]
        info = ["/dev/drbd%d open_cnt:%d, writable:%d; list of openers follows"
                % (minor, len(openers), int(any(w for _, w in openers)))]
        # DRBD knows when each opened the device; /proc only when each started.
        info += ["drbd%d opened by %s (pid %d) at %s"
                 % (minor, process_name(pid), pid, process_start(pid)) for pid, _ in openers]
        return info

    def end_connection(self, name):
        """A host politely leaves the connection (disconnect, down); over a link that is
        already gone the loss is noticed first."""
        resource = self.resource(name)
        if resource["loss"]:
            self.detect_loss(name)
        if resource["connected"]:
            self.drop_connection(name, hard=False)

    # -- events outside DRBD's control

    def set_link(self, names, link_up):
        for name in names:
            self.resource(name)["link_up"] = link_up
            self.reconcile(name)

    def crash(self, host):
        self.state["alive"][host] = False
        self.stop_runners(host)
        for name in self.resource_names():
            self.reconcile(name)
            if not self.resource(name)["connected"]:
                self.forget_dead(host, name)

    def revive(self, host):
        """The host boots again: its resources come up (attach, connect) as Secondary."""
        self.state["alive"][host] = True
        for name in self.resource_names():
            if self.resource(name)["loss"]:
                # The peer notices the old connection is gone when the host reconnects.
                self.detect_loss(name)
            replica = self.replica(host, name)
            replica.update(up=False, role=SECONDARY)
            self.bring_up(host, name)

    def forget_dead(self, host, name):
        """A crashed host's replica is what its metadata says: down, not Primary."""
        self.replica(host, name).update(up=False, role=SECONDARY, standalone=False,
                                        susp_fen=False, fail_io=False)

    # -- time

    def advance(self):
        """Bring the model up to now: resyncs that finished, losses noticed, runners gone."""
        now = self.now()
        for name in self.resource_names():
            resource = self.resource(name)
            resync, loss = resource["resync"], resource["loss"]
            if resync:
                finish = resync["started"] + self.resync_seconds(name)
                if finish <= now and (loss is None or finish <= loss["at"]):
                    self.finish_resync(name)
            if loss and now >= loss["detect_at"]:
                self.detect_loss(name)
            self.reconcile(name)
            for host in self.hosts:
                replica = self.replica(host, name)
                if replica["fail_io"] and self.is_up(host, name) and not self.openers(host, name):
                    replica["fail_io"] = False
        self.reap_runners()

    def request_ping(self, name):
        """A promote pings the peer: a dead peer is noticed within ping-timeout."""
        loss = self.resource(name)["loss"]
        if loss:
            loss["detect_at"] = min(loss["detect_at"],
                                    self.now() + seconds(self.options, "ping-timeout"))

    def notice_dead_peer(self, name):
        """DRBD 9 promote: ping the peer and wait until it answers or is declared dead."""
        self.request_ping(name)
        while self.resource(name)["loss"]:
            self.sleep(max(0.0, self.resource(name)["loss"]["detect_at"] - self.now()))

    # -- the replication link

    def can_connect(self, name):
        return self.resource(name)["link_up"] and all(
            self.is_up(h, name) and not self.replica(h, name)["standalone"] for h in self.hosts)

    def reconcile(self, name):
        """Connect or break ``name`` so the link matches what both hosts allow."""
        resource = self.resource(name)
        possible = self.can_connect(name)
        if resource["connected"]:
            if not possible and resource["loss"] is None:
                self.start_loss(name)
            elif possible and resource["loss"] is not None:
                self.cancel_loss(name)
        elif possible and resource["loss"] is None:
            self.handshake(name)

    def keeper(self, name):
        """The host that keeps the shared file when the replicas fork: the one Primary
        (its openers hold that file), else a crashed host (so that nothing it left open
        reaches the survivor)."""
        primaries = [h for h in self.hosts if self.replica(h, name)["role"] == PRIMARY
                     and self.alive(h)]
        if len(primaries) == 1:
            return primaries[0]
        dead = [h for h in self.hosts if not self.alive(h)]
        return (dead or self.hosts)[0]

    def start_loss(self, name):
        """The link is gone: no data flows from now on, but nobody has noticed yet."""
        resource = self.resource(name)
        now = self.now()
        resource["loss"] = {"at": now, "detect_at": now + self.state["ping_window"]}
        resync = resource["resync"]
        if resync:
            self.interrupt_resync(name)
        else:
            self.fork_replica(name, self.peer_of(self.keeper(name)))

    def cancel_loss(self, name):
        """The link came back before either side noticed: TCP carried on."""
        resource = self.resource(name)
        resync = resource["resync"]
        gap = self.now() - resource["loss"]["at"]
        resource["loss"] = None
        if resync:
            resync["started"] += gap
            self.share_replica(name, resync["source"], resync["target"], keep_old=False)
        else:
            keeper = self.keeper(name)
            self.share_replica(name, keeper, self.peer_of(keeper), keep_old=False)

    def detect_loss(self, name):
        """The hosts notice the link is gone (DRBD: "PingAck did not arrive in time.")."""
        self.resource(name)["loss"] = None
        for host in self.hosts:
            if self.is_up(host, name):
                self.kernel_log(host, name, "PingAck did not arrive in time.")
        self.drop_connection(name, hard=True, forked=True)

    def drop_connection(self, name, hard, forked=False):
        """The connection of ``name`` ends: a network failure (``hard``) or a polite
        disconnect. The Primary then fences its peer unless it knows the peer is stale."""
        resource = self.resource(name)
        roles = {h: self.replica(h, name)["role"] for h in self.hosts}
        disks = {h: self.replica(h, name)["disk"] for h in self.hosts}
        if not hard and roles[self.hosts[0]] != roles[self.hosts[1]] and (
                self.fencing != "dont-care"):
            # A polite disconnect between a Primary and a Secondary outdates the Secondary.
            secondary = [h for h in self.hosts if roles[h] == SECONDARY][0]
            if disks[secondary] in (UP_TO_DATE, CONSISTENT):
                disks[secondary] = OUTDATED
                self.replica(secondary, name)["disk"] = OUTDATED
        if resource["resync"]:
            if not forked:
                self.interrupt_resync(name)
            self.end_resync(name)
        elif not forked:
            self.fork_replica(name, self.peer_of(self.keeper(name)))
        resource["connected"] = False
        for host in self.hosts:
            peer = self.peer_of(host)
            if not self.is_up(host, name):
                continue
            replica = self.replica(host, name)
            replica["peer_disk"] = disks[peer] if disks[peer] in KNOWN_STALE else DUNKNOWN
            self.kernel_log(host, name, "Connection closed")
            if (hard and self.version == "9" and replica["role"] == SECONDARY
                    and roles[peer] == PRIMARY and replica["disk"] == UP_TO_DATE):
                # DRBD 9 cannot tell a crashed Primary from a cut link: its data may be stale.
                replica["disk"] = CONSISTENT
            if replica["role"] == PRIMARY:
                if replica["gen"] == replica["synced_gen"]:
                    self.start_generation(name, replica)
                if replica["peer_disk"] == DUNKNOWN and self.fencing != "dont-care":
                    if self.fencing == "resource-and-stonith":
                        replica["susp_fen"] = True
                    self.request_fencing(host, name)
        for host in self.hosts:
            if not self.alive(host):
                self.forget_dead(host, name)

    def handshake(self, name):
        first, second = [self.replica(h, name) for h in self.hosts]
        changed = [r["gen"] != r["synced_gen"] for r in (first, second)]
        discarding = [r["discard_my_data"] for r in (first, second)]
        first["discard_my_data"] = second["discard_my_data"] = False
        if all(changed) and discarding.count(True) != 1:
            self.mark_split_brain(name)
            return
        target = self.sync_target(name, changed, discarding)
        resource = self.resource(name)
        resource.update(connected=True, split_brain=False, epoch=resource["epoch"] + 1)
        for host in self.hosts:
            self.replica(host, name).update(peer_disk=DUNKNOWN, susp_fen=False)
        if target is None:
            self.join_without_resync(name)
        else:
            self.start_resync(name, self.peer_of(target), target)

    def sync_target(self, name, changed, discarding):
        """Which host must receive the other's data, or None when they agree."""
        if any(discarding):
            return self.hosts[discarding.index(True)]
        if any(changed):
            return self.hosts[changed.index(False)]
        inconsistent = [h for h in self.hosts if self.replica(h, name)["disk"] == INCONSISTENT]
        if len(inconsistent) == 1:
            return inconsistent[0]
        return None

    def join_without_resync(self, name):
        keeper = self.keeper(name)
        self.share_replica(name, keeper, self.peer_of(keeper), keep_old=False)
        replicas = [self.replica(h, name) for h in self.hosts]
        generation = self.replica(keeper, name)["gen"]
        # Connected to a peer with good data, Consistent and Outdated disks are UpToDate.
        good = any(r["disk"] in (UP_TO_DATE, CONSISTENT) for r in replicas)
        for replica in replicas:
            replica.update(gen=generation, synced_gen=generation)
            if good and replica["disk"] in (CONSISTENT, OUTDATED):
                replica["disk"] = UP_TO_DATE

    def start_resync(self, name, source, target):
        resource = self.resource(name)
        target_replica = self.replica(target, name)
        source_replica = self.replica(source, name)
        resource["resync"] = {"source": source, "target": target, "started": self.now(),
                              "old_data": target_replica["data"]}
        self.share_replica(name, source, target, keep_old=True)
        target_replica["disk"] = INCONSISTENT
        if source_replica["disk"] == CONSISTENT:
            source_replica["disk"] = UP_TO_DATE
        kib = resource["size_mib"] * 1024
        for host, role in ((source, "SyncSource"), (target, "SyncTarget")):
            self.kernel_log(host, name, "Began resync as %s (will sync %d KB [%d bits set])."
                            % (role, kib, kib // 4), scope="device")

    def finish_resync(self, name):
        resync = self.resource(name)["resync"]
        source = self.replica(resync["source"], name)
        target = self.replica(resync["target"], name)
        self.end_resync(name)
        target["disk"] = source["disk"]
        for replica in (source, target):
            replica.update(gen=source["gen"], synced_gen=source["gen"])
        duration = max(1, int(round(self.resync_seconds(name))))
        rate = self.resource(name)["size_mib"] * 1024 // duration
        for host in (resync["source"], resync["target"]):
            self.kernel_log(host, name, "Resync done (total %d sec; paused 0 sec; %d K/sec)"
                            % (duration, rate), scope="device")

    def end_resync(self, name):
        resource = self.resource(name)
        old = os.path.join(self.state_dir, resource["resync"]["old_data"])
        if os.path.exists(old):
            os.remove(old)
        resource["resync"] = None

    def interrupt_resync(self, name):
        """The target keeps what arrived: the source's data up to the resync point."""
        resync = self.resource(name)["resync"]
        size = self.resource(name)["size_mib"] * 1024 * 1024
        done = int(size * self.resync_done(name)) // BLOCK * BLOCK
        fresh = self.new_data_file(name)
        path = os.path.join(self.state_dir, fresh)
        shutil.copyfile(os.path.join(self.state_dir, resync["old_data"]), path)
        with open(self.data_path(resync["source"], name), "rb") as source, \
                open(path, "r+b") as target:
            target.write(source.read(done))
        self.replica(resync["target"], name)["data"] = fresh

    def mark_split_brain(self, name):
        self.resource(name)["split_brain"] = True
        for host in self.hosts:
            self.replica(host, name)["standalone"] = True
            self.kernel_log(host, name, "Split-Brain detected but unresolved, dropping connection!")

    def start_generation(self, name, replica):
        resource = self.resource(name)
        resource["last_gen"] += 1
        replica["gen"] = resource["last_gen"]

    def new_data_file(self, name):
        resource = self.resource(name)
        resource["files_made"] += 1
        return os.path.join(DATA_DIR, "%s-%d.img" % (name, resource["files_made"]))

    def fork_replica(self, name, host):
        """Give ``host`` its own copy of the replica it shares; it stops getting writes."""
        fresh = self.new_data_file(name)
        shutil.copyfile(self.data_path(host, name), os.path.join(self.state_dir, fresh))
        self.replica(host, name)["data"] = fresh

    def share_replica(self, name, source, target, keep_old):
        """``target``'s replica becomes ``source``'s file again."""
        old = self.data_path(target, name)
        self.replica(target, name)["data"] = self.replica(source, name)["data"]
        if not keep_old and old != self.data_path(target, name) and os.path.exists(old):
            os.remove(old)

    # -- fence-peer requests (run by ``fencing``'s detached runner)

    def request_fencing(self, host, name):
        """Ask for the asynchronous fence-peer handler the kernel starts on link loss."""
        token = uuid.uuid4().hex
        self.state["runners"][token] = {
            "host": host, "resource": name, "epoch": self.resource(name)["epoch"],
            "requested": self.now(), "spawned": False, "pid": None}

    def stop_runners(self, host=None):
        for token, runner in list(self.state["runners"].items()):
            if host is None or runner["host"] == host:
                if runner["pid"] and pid_alive(runner["pid"]):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(runner["pid"], signal.SIGKILL)
                del self.state["runners"][token]

    def reap_runners(self):
        now = self.now()
        for token, runner in list(self.state["runners"].items()):
            if runner["pid"] is not None:
                gone = not pid_alive(runner["pid"])
            else:
                gone = runner["spawned"] and now - runner["requested"] > RUNNER_START_GRACE
            if gone:
                del self.state["runners"][token]

    # -- files a host sees

    def refresh_devices(self):
        for host in self.hosts:
            for name in self.resource_names():
                role = self.replica(host, name)["role"] if self.is_up(host, name) else None
                devices.place(self.device_path(host, name), self.disk_path(host, name),
                              self.data_path(host, name), self.resource(name)["minor"], role)

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
                    peer_disk=self.peer_disk(host, name),
                    resync=self.resync_role(host, name),
                    config=resfile.config_path(self.state_dir, host))
        return described


def read_state(state_dir):
    try:
        with open(os.path.join(state_dir, STATE_FILE)) as state_file:
            return json.load(state_file)
    except FileNotFoundError:
        raise DoubleError("%s is not a DRBD double state directory (run init first)"
                          % state_dir)


def timestamp():
    return datetime.datetime.now().isoformat(timespec="milliseconds")

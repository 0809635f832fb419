"""The model of one pool's DRBD: two hosts, N resources, kept in a STATE directory.

Owns ``state.json`` (roles, disk states, data generations, connections, resyncs,
fence-peer requests) and the files behind it: one data file per replica and each
host's device and configuration. The state changes a host asks for are checked
here with the kernel's rules (``drbd_state.c``); what DRBD 8.4.11 or 9.1.17 does
when the link breaks, a host dies or comes back, and when the two hosts meet
again is ``replication``'s (a part of ``Pool``), and the promote retry loop that
runs fencing is ``setrole``'s.

Time is wall-clock time (plus the pool's ``clock_offset``, which ``elapse``
advances) and is evaluated lazily: every command first brings the model up to
now (``advance``), so no daemon is needed. What takes time:

* noticing a dead peer or a broken link: the survivors keep seeing the old
  connection for ``ping_window`` seconds (DRBD notices at its next ping, after
  up to ping-int + ping-timeout); a promote pings at once and notices within
  ping-timeout (drbd_receiver.c ``drbd_ack_receiver``: "PingAck did not arrive
  in time."; ko-count and the net timeout only bound what a host sends its peer);
* resync: the SyncTarget stays Inconsistent while ``resync_rate`` MiB/s copy the
  whole device (a full resync: the double keeps no bitmap);
* fence-peer handlers, which run without the STATE lock (``fencing``).

Callers hold the STATE lock; see ``admin.locked_pool``.
"""

import contextlib
import datetime
import fcntl
import json
import os
import signal
import time

from . import devices, resfile
from .errors import (ERR_DISCARD_IMPOSSIBLE, ERR_MINOR_OR_VOLUME_EXISTS, ERR_NET_CONFIGURED,
                     SS_CONNECTED_OUTDATES, SS_DEVICE_IN_USE, SS_LOWER_THAN_OUTDATED,
                     SS_NO_UP_TO_DATE_DISK, SS_PRIMARY_NOP, SS_PRIMARY_READER,
                     SS_TWO_PRIMARIES, DoubleError, Refusal)
from .holders import pid_alive, process_name, process_start, processes_holding
from .replication import Replication
from .states import (CONNECTED, CONNECTING, CONSISTENT, DUNKNOWN, INCONSISTENT, KNOWN_STALE,
                     OUTDATED, PRIMARY, SECONDARY, STANDALONE, UP_TO_DATE)

STATE_FILE = "state.json"
KERNEL_LOG = "kern.log"

# The DRBD generations a pool can emulate, and how their kernels identify themselves.
KERNELS = {
    "8.4": {"api": 1, "code": 0x08040B, "name": "8.4.11"},
    "9": {"api": 2, "code": 0x090111, "name": "9.1.17"},
}
PORT_BASE = 7789
# A fence-peer request whose runner never registered is given up after this long.
RUNNER_START_GRACE = 30.0


class Pool(Replication):
    """One pool's DRBD state, loaded from and saved to STATE under the caller's lock.

    ``lock`` is the open STATE lock file (for ``unlocked``); ``spawner(pool, tokens)``
    starts the runners of new fence-peer requests once they are saved.
    """

    def __init__(self, state_dir, state, lock=None, spawner=None, saved_text=None):
        self.state_dir = os.path.realpath(state_dir)
        self.state = state
        self.lock = lock
        self.spawner = spawner
        self.saved_text = saved_text

    @classmethod
    def load(cls, state_dir, lock=None, spawner=None):
        text = read_state_text(state_dir)
        return cls(state_dir, json.loads(text), lock, spawner, saved_text=text)

    def save(self):
        # Most commands only read: rewriting an unchanged state.json would cost a
        # file replace per call, which the timing of real drbdsetup does not have.
        text = json.dumps(self.state, indent=1, sort_keys=True)
        if text != self.saved_text:
            write_state_text(self.state_dir, text)
            self.saved_text = text

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
            self.saved_text = read_state_text(self.state_dir)
            self.state = json.loads(self.saved_text)
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

    def suspended_fencing(self, host, name):
        return self.replica(host, name)["susp_fen"]

    # -- logs

    def kernel_log(self, host, name, message, scope="connection"):
        """A line of ``host``'s kernel log, prefixed like DRBD's printk of ``scope``
        (resource, connection, device or peer_device: drbd 9.2
        drbd_polymorph_printk.h; 8.4's dev_* name the device, conn_* the resource)."""
        minor = self.resource(name)["minor"]
        if self.version == "9":
            prefix = {"resource": "drbd %s" % name,
                      "connection": "drbd %s %s" % (name, self.peer_of(host)),
                      "device": "drbd %s/0 drbd%d" % (name, minor),
                      "peer_device": "drbd %s/0 drbd%d %s" % (name, minor,
                                                             self.peer_of(host))}[scope]
        else:
            prefix = ("block drbd%d" % minor if scope in ("device", "peer_device")
                      else "drbd %s" % name)
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
        """``drbdsetup down``: demote, disconnect, detach; each step may refuse."""
        replica = self.replica(host, name)
        if not replica["up"]:
            return
        if replica["role"] == PRIMARY:
            try:
                self.demote(host, name)
            except Refusal as refusal:
                raise Refusal(refusal.code, ["failed to demote"] + refusal.info)
        self.end_connection(name)
        openers = self.openers(host, name) if self.version == "9" else []
        if openers:
            # DRBD 9 let read-only openers stay through the demote; they block the detach.
            replica["standalone"] = True
            raise Refusal(SS_NO_UP_TO_DATE_DISK,
                          ["failed to detach"] + self.opener_info(name, openers))
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

    # -- fence-peer requests (run by ``fencing``'s detached runner)

    def request_fencing(self, host, name):
        """Ask for the asynchronous fence-peer handler the kernel starts on link loss."""
        token = os.urandom(16).hex()
        self.state["runners"][token] = {
            "host": host, "resource": name, "epoch": self.resource(name)["epoch"],
            "requested": self.now(), "spawned": False, "pid": None}

    def stop_runners(self, host=None):
        """Kill the background runners and every handler process group (of ``host``)."""
        for token, runner in list(self.state["runners"].items()):
            if host is None or runner["host"] == host:
                if runner["pid"] and pid_alive(runner["pid"]):
                    kill_group(runner["pid"])
                del self.state["runners"][token]
        for group, handler in list(self.state["handlers"].items()):
            if host is None or handler["host"] == host:
                kill_group(int(group))
                del self.state["handlers"][group]

    def reap_runners(self):
        now = self.now()
        for token, runner in list(self.state["runners"].items()):
            if runner["pid"] is not None:
                gone = not pid_alive(runner["pid"])
            else:
                gone = runner["spawned"] and now - runner["requested"] > RUNNER_START_GRACE
            if gone:
                del self.state["runners"][token]
        for group in list(self.state["handlers"]):
            if not group_alive(int(group)):
                del self.state["handlers"][group]

    def handler_started(self, group, host):
        """Record a running handler's process group, from a process that runs unlocked."""
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        try:
            state = read_state(self.state_dir)
            state["handlers"][str(group)] = {"host": host}
            write_state(self.state_dir, state)
        finally:
            fcntl.flock(self.lock, fcntl.LOCK_UN)

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


def write_state(state_dir, state):
    write_state_text(state_dir, json.dumps(state, indent=1, sort_keys=True))


def write_state_text(state_dir, text):
    path = os.path.join(state_dir, STATE_FILE)
    with open(path + ".tmp", "w") as state_file:
        state_file.write(text)
    os.replace(path + ".tmp", path)


def read_state(state_dir):
    return json.loads(read_state_text(state_dir))


def read_state_text(state_dir):
    try:
        with open(os.path.join(state_dir, STATE_FILE)) as state_file:
            return state_file.read()
    except FileNotFoundError:
        raise DoubleError("%s is not a DRBD double state directory (run init first)"
                          % state_dir)


def kill_group(group):
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)


def group_alive(group):
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def timestamp():
    return datetime.datetime.now().isoformat(timespec="milliseconds")

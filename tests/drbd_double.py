"""The DRBD double: drbdadm/drbdsetup stand-ins for a two-host pool without a kernel module.

Owns everything about simulated DRBD in tests and the two-host lab (Python 3 only):

* the model of one pool (two hosts, N resources) kept in a STATE directory as
  ``state.json`` plus one data file per replica, shared by both simulated hosts and
  serialized by an exclusive ``flock`` around every command;
* the emulated command lines (``--as drbdadm|drbdsetup --state STATE --host HOST ...``)
  with the output, messages and exit codes of drbd-utils 9.22 on a DRBD 8.4.11 or
  9.1.17 kernel;
* the admin commands that tests and the lab use to build a pool and break it
  (``init``, ``install-wrappers``, ``net-cut``, ``net-heal``, ``crash``, ``revive``,
  ``show``, ``data-path``), and an audit trail in ``STATE/commands.log``.

Replication is modelled through the files: while the two hosts are connected both
replicas are one data file (protocol C: an acknowledged write is on both), a
Primary's device ``STATE/<host>/dev/drbd<minor>`` is a symlink to its replica and a
Secondary's points nowhere. Losing the connection forks the replicas; reconnecting
resyncs by sharing the newer file again. Real tools are imitated only as far as the
iscsi-ha code and lab need; anything else fails loudly with exit code 20.
"""

import argparse
import collections
import contextlib
import datetime
import fcntl
import json
import os
import re
import shlex
import shutil
import sys

STATE_FILE = "state.json"
LOCK_FILE = ".lock"
COMMANDS_LOG = "commands.log"
KERNEL_LOG = "kern.log"
DATA_DIR = "data"

UTILS_VERSION = "9.22.0"
UTILS_VERSION_CODE = 0x091600
# What `drbdadm --version` of the Debian drbd-utils 9.22.0 package prints as its build tag.
BUILDTAG = ("GIT-hash:\\ 409097fe02187f83790b88ac3e0d94f3c167adab\\ reproducible\\ build\\,"
            "\\ 2023-01-09\\ 14:51:18")
KERNELS = {
    "8.4": {"api": 1, "code": 0x08040B, "name": "8.4.11"},
    "9": {"api": 2, "code": 0x090111, "name": "9.1.17"},
}
# drbdadm of utils 9.x hands an 8.4 kernel to drbdadm-84, which runs drbdsetup-84 by name.
SETUP_TOOL = {"8.4": "drbdsetup-84", "9": "drbdsetup"}
PORT_BASE = 7789

PRIMARY, SECONDARY = "Primary", "Secondary"
UP_TO_DATE, OUTDATED, CONSISTENT = "UpToDate", "Outdated", "Consistent"
CONNECTED, CONNECTING, STANDALONE = "connected", "connecting", "standalone"

# drbd.h return codes: errors are > 100, refused state changes < 0.
ERR_CODE_BASE = 100
ERR_DISCARD_IMPOSSIBLE = 123
ERR_NET_CONFIGURED = 125
ERR_MINOR_INVALID = 127
ERR_RES_NOT_KNOWN = 158
ERR_MINOR_OR_VOLUME_EXISTS = 161
ERR_INVALID_REQUEST = 162
SS_TWO_PRIMARIES = -1
SS_NO_UP_TO_DATE_DISK = -2
SS_DEVICE_IN_USE = -12
MESSAGES = {
    ERR_DISCARD_IMPOSSIBLE: "--discard-my-data not allowed when primary.",
    ERR_NET_CONFIGURED: "Device has a net-config (use disconnect first)",
    ERR_MINOR_INVALID: "Device minor not allocated",
    ERR_RES_NOT_KNOWN: "Unknown resource",
    ERR_MINOR_OR_VOLUME_EXISTS: "Minor or volume exists already (delete it first)",
    ERR_INVALID_REQUEST: "Invalid configuration request",
    SS_TWO_PRIMARIES: "Multiple primaries not allowed by config",
    SS_NO_UP_TO_DATE_DISK: "Need access to UpToDate data",
    SS_DEVICE_IN_USE: "Device is held open by someone",
}
E_USAGE = 1
E_DOUBLE = 20  # what drbdsetup uses for "could not even ask the kernel"

ToolResult = collections.namedtuple("ToolResult", "returncode stdout stderr")


class Refusal(Exception):
    """The simulated kernel said no: ``code`` is a key of MESSAGES."""

    def __init__(self, code, info=()):
        Exception.__init__(self, MESSAGES[code])
        self.code = code
        self.info = list(info)


class DoubleError(Exception):
    """A request the double cannot honour (bad admin input, unemulated option)."""


class Output(object):
    """What one emulated command printed."""

    def __init__(self):
        self.stdout = []
        self.stderr = []

    def out(self, text=""):
        self.stdout.append(text + "\n")

    def err(self, text):
        self.stderr.append(text + "\n")


# ---------------------------------------------------------------- the model

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


# ---------------------------------------------------------------- /proc helpers

def processes_holding(path, netns):
    """PIDs with ``path`` open, limited to network namespace ``netns`` when given."""
    target = os.path.realpath(path)
    namespace = None
    if netns:
        namespace_file = os.path.join("/var/run/netns", netns)
        if not os.path.exists(namespace_file):
            raise DoubleError("network namespace %s does not exist" % netns)
        namespace = inode_of(namespace_file)
    holders = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        if namespace is not None and inode_of("/proc/%s/ns/net" % pid) != namespace:
            continue
        if target in open_files(int(pid)):
            holders.append(int(pid))
    return holders


def inode_of(path):
    try:
        info = os.stat(path)
    except OSError:  # the process is gone
        return None
    return info.st_dev, info.st_ino


def open_files(pid):
    fd_dir = "/proc/%d/fd" % pid
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return set()
    files = set()
    for fd in fds:
        try:
            files.add(os.readlink(os.path.join(fd_dir, fd)))
        except OSError:
            continue
    return files


def process_name(pid):
    try:
        with open("/proc/%d/comm" % pid) as comm:
            return comm.read().strip()
    except OSError:
        return "?"


def process_start(pid):
    try:
        with open("/proc/%d/stat" % pid) as stat:
            ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as stat:
            boot = int([line.split()[1] for line in stat if line.startswith("btime")][0])
    except (OSError, IndexError, ValueError):
        return "?"
    started = boot + ticks / float(os.sysconf("SC_CLK_TCK"))
    moment = datetime.datetime.fromtimestamp(started)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + "%03d" % (moment.microsecond // 1000)


def timestamp():
    return datetime.datetime.now().isoformat(timespec="milliseconds")


# ---------------------------------------------------------------- drbdsetup

# drbdsetup's exit codes for the kernel's answers (drbdsetup.c check_error).
def refusal_exit_code(code):
    if code > ERR_CODE_BASE:
        return 10
    return 17 if code == SS_NO_UP_TO_DATE_DISK else 11


def report_refusal(objname, refusal, output):
    if refusal.code > ERR_CODE_BASE:
        output.err("%s: Failure: (%d) %s" % (objname, refusal.code, MESSAGES[refusal.code]))
    else:
        output.err("%s: State change failed: (%d) %s"
                   % (objname, refusal.code, MESSAGES[refusal.code]))
    if refusal.info:
        output.err("additional info from kernel:")
        for line in refusal.info:
            output.err(line)
    return refusal_exit_code(refusal.code)


SETUP_COMMANDS = {
    "primary": "Change the role of a node in a resource to primary.",
    "secondary": "Change the role of a node in a resource to secondary.",
    "connect": "Attempt to (re)establish a replication link to a peer host.",
    "disconnect": "Unconnect from a peer host.",
    "down": "Take a resource down.",
    "role": "Show the current role of a resource.",
    "cstate": "Show the current state of a connection.",
    "dstate": "Show the current disk state of a lower-level device.",
    "status": "Show the state of a resource, or of all resources.",
}
SETUP_OPTIONS = {"primary": {"--force"}, "connect": {"--discard-my-data"},
                 "status": {"--json"}}


def setup_usage(output, reason):
    output.out("drbdsetup - Configure the DRBD kernel module.\n")
    output.out("USAGE: drbdsetup command {arguments} [options]\n\nCommands:")
    for command in sorted(SETUP_COMMANDS):
        output.out("    %s - %s" % (command, SETUP_COMMANDS[command]))
    output.out("\nUse 'drbdsetup help command' for command-specific help.\n")
    if reason:
        output.out("\n%s" % reason)
    return E_DOUBLE


def run_drbdsetup(pool, host, args, output):
    """``drbdsetup ARGS`` (``drbdsetup-84`` on an 8.4 kernel) on ``host``; the exit code."""
    if not args or args[0] not in SETUP_COMMANDS:
        return setup_usage(output, "invalid command")
    command, rest = args[0], args[1:]
    options = {a for a in rest if a.startswith("--")}
    allowed = set(SETUP_OPTIONS.get(command, set()))
    if pool.version == "8.4":
        allowed -= {"--json"}
        if command == "connect":
            allowed.add("--protocol=C")  # 8.4 sets the protocol per connection
    unknown = options - allowed
    if unknown:
        output.err("drbdsetup: unrecognized option '%s'" % sorted(unknown)[0])
        return setup_usage(output, None)
    positional = [a for a in rest if not a.startswith("--")]
    if command == "status":
        return setup_status(pool, host, positional[0] if positional else "all",
                            "--json" in options, output)
    handler = SETUP_84 if pool.version == "8.4" else SETUP_9
    arity, function = handler[command]
    if len(positional) != arity:
        output.err("Missing argument %d to command" % (len(positional) + 1)
                   if len(positional) < arity else "Excess arguments: %s"
                   % " ".join(positional[arity:]))
        return E_DOUBLE
    return function(pool, host, positional, options, output)


def find_minor(pool, host, objname):
    """The resource of minor ``objname`` if it is up on ``host``, else None."""
    name = pool.resource_by_minor(int(objname)) if objname.isdigit() else None
    if name is not None and pool.replica(host, name)["up"]:
        return name
    return None


def change_state(pool, host, objname, name, action, output):
    """Run a state change on an up resource and report a refusal like drbdsetup does."""
    try:
        if name is None or not pool.replica(host, name)["up"]:
            if pool.version == "8.4" and objname.isdigit():
                raise Refusal(ERR_MINOR_INVALID, ["unknown minor"])
            raise Refusal(ERR_RES_NOT_KNOWN, ["unknown resource"])
        action(name)
    except Refusal as refusal:
        return report_refusal(objname, refusal, output)
    return 0


def known(pool, name):
    return name if name in pool.state["resources"] else None


def setup_primary(pool, host, args, options, output):
    name = find_minor(pool, host, args[0]) if pool.version == "8.4" else known(pool, args[0])
    return change_state(pool, host, args[0], name,
                        lambda n: pool.promote(host, n, "--force" in options), output)


def setup_secondary(pool, host, args, options, output):
    name = find_minor(pool, host, args[0]) if pool.version == "8.4" else known(pool, args[0])
    return change_state(pool, host, args[0], name, lambda n: pool.demote(host, n), output)


def setup_down(pool, host, args, options, output):
    name = known(pool, args[0])
    if name is None or not pool.replica(host, name)["up"]:
        return 0  # drbdsetup down is "missing_ok"
    return change_state(pool, host, args[0], name, lambda n: pool.take_down(host, n), output)


def setup_connect(pool, host, args, options, output):
    return change_state(pool, host, args[0], known(pool, args[0]),
                        lambda n: pool.connect(host, n, "--discard-my-data" in options), output)


def setup_disconnect_9(pool, host, args, options, output):
    return change_state(pool, host, args[0], known(pool, args[0]),
                        lambda n: pool.disconnect(host, n), output)


def setup_disconnect_84(pool, host, args, options, output):
    """8.4 names the connection by its address pair and has no resource name to print."""
    for name in pool.resource_names():
        if (args == [pool.address(host, name), pool.address(pool.peer_of(host), name)]
                and pool.replica(host, name)["up"]):
            pool.disconnect(host, name)
            return 0
    return report_refusal("??", Refusal(ERR_INVALID_REQUEST, ["unknown connection"]), output)


def setup_role_9(pool, host, args, options, output):
    name = known(pool, args[0])
    if name is None or not pool.replica(host, name)["up"]:
        output.err("%s: %s" % (args[0], MESSAGES[ERR_RES_NOT_KNOWN]))
        return 10
    output.out(pool.replica(host, name)["role"])
    return 0


def setup_cstate_9(pool, host, args, options, output):
    name = known(pool, args[0])
    if (name is None or not pool.replica(host, name)["up"]
            or args[1] != str(pool.node_id(pool.peer_of(host)))):
        output.err("%s: No such connection" % args[0])
        return 10
    output.out({CONNECTED: "Connected", CONNECTING: "Connecting",
                STANDALONE: "StandAlone"}[pool.connection(host, name)])
    return 0


def setup_dstate_9(pool, host, args, options, output):
    name = find_minor(pool, host, args[0])
    if name is None:
        output.err("%s: No such device" % args[0])
        return 10
    output.out("%s/%s" % (pool.replica(host, name)["disk"], pool.peer_disk(host, name)))
    return 0


def minor_query_84(show):
    """role/cstate/dstate of drbdsetup-84: one line about the minor, or 'unknown minor'."""
    def query(pool, host, args, options, output):
        name = find_minor(pool, host, args[0])
        if name is None:
            return report_refusal(args[0], Refusal(ERR_MINOR_INVALID, ["unknown minor"]), output)
        output.out(show(pool, host, name))
        return 0
    return query


SETUP_9 = {
    "primary": (1, setup_primary),
    "secondary": (1, setup_secondary),
    "down": (1, setup_down),
    "connect": (2, setup_connect),
    "disconnect": (2, setup_disconnect_9),
    "role": (1, setup_role_9),
    "cstate": (2, setup_cstate_9),
    "dstate": (1, setup_dstate_9),
}
SETUP_84 = {
    "primary": (1, setup_primary),
    "secondary": (1, setup_secondary),
    "down": (1, setup_down),
    "connect": (3, setup_connect),
    "disconnect": (2, setup_disconnect_84),
    "role": (1, minor_query_84(lambda pool, host, name: "%s/%s" % (
        pool.replica(host, name)["role"], pool.peer_role(host, name)))),
    "cstate": (1, minor_query_84(lambda pool, host, name: {
        CONNECTED: "Connected", CONNECTING: "WFConnection",
        STANDALONE: "StandAlone"}[pool.connection(host, name)])),
    "dstate": (1, minor_query_84(lambda pool, host, name: "%s/%s" % (
        pool.replica(host, name)["disk"], pool.peer_disk(host, name)))),
}


def setup_status(pool, host, objname, as_json, output):
    names = [n for n in pool.resource_names() if pool.replica(host, n)["up"]]
    if not names and not as_json and pool.version == "9":
        output.out("# No currently configured DRBD found.")
    shown = [n for n in names if objname in ("all", n)]
    if as_json:
        output.stdout.append(status_json(pool, host, shown))
    else:
        for name in shown:
            output.stdout.append(status_text(pool, host, name))
    if objname != "all" and not shown:
        output.err("%s: No such resource" % objname)
        return 10
    return 0


def status_text(pool, host, name):
    replica = pool.replica(host, name)
    lines = ["%s role:%s" % (name, replica["role"]), "  disk:%s" % replica["disk"]]
    # 8.4 has no peer names, drbdsetup-84 calls every connection "peer".
    peer_name = pool.peer_of(host) if pool.version == "9" else "peer"
    connection = pool.connection(host, name)
    if connection == CONNECTED:
        lines.append("  %s role:%s" % (peer_name, pool.peer_role(host, name)))
        lines.append("    peer-disk:%s" % pool.peer_disk(host, name))
    else:
        lines.append("  %s connection:%s" % (
            peer_name, "Connecting" if connection == CONNECTING else "StandAlone"))
    return "\n".join(lines) + "\n\n"


def status_json(pool, host, names):
    """`drbdsetup status --json` of utils 9.22, byte for byte in layout."""
    chunks = ["[\n"]
    for index, name in enumerate(names):
        if index:
            chunks.append(",\n")
        chunks.append(resource_json(pool, host, name))
    chunks.append("]\n\n")
    return "".join(chunks)


def resource_json(pool, host, name):
    replica = pool.replica(host, name)
    peer = pool.peer_of(host)
    connection = pool.connection(host, name)
    size_kib = pool.resource(name)["size_mib"] * 1024
    return (
        '{\n'
        '  "name": "%s",\n'
        '  "node-id": %d,\n'
        '  "role": "%s",\n'
        '  "suspended": false,\n'
        '  "suspended-user": false,\n'
        '  "suspended-no-data": false,\n'
        '  "suspended-fencing": false,\n'
        '  "suspended-quorum": false,\n'
        '  "force-io-failures": false,\n'
        '  "write-ordering": "flush",\n'
        '  "devices": [\n'
        '    {\n'
        '      "volume": 0,\n'
        '      "minor": %d,\n'
        '      "disk-state": "%s",\n'
        '      "client": false,\n'
        '      "quorum": true,\n'
        '      "size": %d,\n'
        '      "read": 0,\n'
        '      "written": 0,\n'
        '      "al-writes": 0,\n'
        '      "bm-writes": 0,\n'
        '      "upper-pending": 0,\n'
        '      "lower-pending": 0\n'
        '    } ],\n'
        '  "connections": [\n'
        '    {\n'
        '      "peer-node-id": %d,\n'
        '      "name": "%s",\n'
        '      "connection-state": "%s", \n'
        '      "congested": false,\n'
        '      "peer-role": "%s",\n'
        '      "ap-in-flight": 0,\n'
        '      "rs-in-flight": 0,\n'
        '      "peer_devices": [\n'
        '        {\n'
        '          "volume": 0,\n'
        '          "replication-state": "%s",\n'
        '          "peer-disk-state": "%s",\n'
        '          "peer-client": false,\n'
        '          "resync-suspended": "no",\n'
        '          "received": 0,\n'
        '          "sent": 0,\n'
        '          "out-of-sync": 0,\n'
        '          "pending": 0,\n'
        '          "unacked": 0,\n'
        '          "has-sync-details": false,\n'
        '          "has-online-verify-details": false,\n'
        '          "percent-in-sync": 100.00\n'
        '        } ]\n'
        '    } ]\n'
        '}\n'
    ) % (name, pool.node_id(host), replica["role"], pool.resource(name)["minor"],
         replica["disk"], size_kib, pool.node_id(peer), peer,
         {CONNECTED: "Connected", CONNECTING: "Connecting",
          STANDALONE: "StandAlone"}[connection],
         pool.peer_role(host, name),
         "Established" if connection == CONNECTED else "Off",
         pool.peer_disk(host, name))


# ---------------------------------------------------------------- drbdadm

ADM_COMMANDS = ("primary", "secondary", "up", "down", "connect", "disconnect", "adjust",
                "role", "cstate", "dstate", "status", "sh-dev")
ADM_COMMAND_OPTIONS = {"primary": {"--force"}, "connect": {"--discard-my-data"}}
ALL_COMMAND_OPTIONS = set().union(*ADM_COMMAND_OPTIONS.values())
IGNORED_GENERAL_OPTIONS = {"-c", "--config-file"}  # the double's state is the config
UNEMULATED_OPTIONS = {"-d", "--dry-run", "-v", "--verbose", "-S", "--stacked", "-s",
                      "--drbdsetup", "-m", "--drbdmeta", "-p", "--drbd-proxy-ctl", "-n",
                      "--sh-varname", "-P", "--peer", "-W", "--setup-option", "-t",
                      "--config-to-test", "-E", "--config-to-exclude", "-h", "--help"}


def adm_usage(pool, output, command, reason):
    output.out("\nUSAGE: drbdadm %s [OPTION...] {all|RESOURCE...}\n"
               % (command or "COMMAND"))
    output.out("Version: %s (api:%d)" % (UTILS_VERSION, KERNELS[pool.version]["api"]))
    output.out("GIT-hash: 409097fe02187f83790b88ac3e0d94f3c167adab reproducible build, "
               "2023-01-09 14:51:18\n")
    output.out(reason)
    return E_USAGE


def adm_version(pool, output):
    kernel = KERNELS[pool.version]
    output.out("DRBDADM_BUILDTAG=%s" % BUILDTAG)
    output.out("DRBDADM_API_VERSION=%d" % kernel["api"])
    output.out("DRBD_KERNEL_VERSION_CODE=0x%06x" % kernel["code"])
    if pool.version == "9":
        output.out("DRBD_KERNEL_VERSION=%s" % kernel["name"])
    output.out("DRBDADM_VERSION_CODE=0x%06x" % UTILS_VERSION_CODE)
    output.out("DRBDADM_VERSION=%s" % UTILS_VERSION)
    return 0


def parse_adm_args(args):
    """(command, resources, checked_options, passed_options), or the unknown option.

    Command options before a "--" are checked against the command; those after it
    go to drbdsetup unchecked (and drbdadm 9.22 drops the ones the command lacks).
    """
    command, resources, checked, passed, after_dashes = None, [], set(), set(), False
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":
            after_dashes = True
        elif arg in IGNORED_GENERAL_OPTIONS:
            index += 1
        elif arg.startswith("--config-file="):
            continue
        elif arg.split("=")[0] in UNEMULATED_OPTIONS:
            raise DoubleError("drbdadm option %s is not emulated" % arg)
        elif arg.startswith("-") and after_dashes:
            passed.add(arg)
        elif arg in ALL_COMMAND_OPTIONS:
            checked.add(arg)
        elif arg.startswith("-"):
            return arg
        elif command is None:
            command = arg
        else:
            resources.append(arg)
    return command, resources, checked, passed


def run_drbdadm(pool, host, args, output):
    """``drbdadm ARGS`` on ``host``; the exit code."""
    if "--version" in args or "-V" in args:
        return adm_version(pool, output)
    parsed = parse_adm_args(args)
    if isinstance(parsed, str):
        output.err("drbdadm: unrecognized option '%s'" % parsed)
        output.err("try 'drbdadm help'")
        return E_USAGE
    command, resources, checked, passed = parsed
    if command is None:
        return adm_usage(pool, output, None, "No command specified")
    if command not in ADM_COMMANDS:
        output.err("drbdadm: Unknown command '%s'" % command)
        return E_USAGE
    allowed = ADM_COMMAND_OPTIONS.get(command, set())
    if checked - allowed:
        output.err("drbdadm: unrecognized option '%s'" % sorted(checked - allowed)[0])
        output.err("try 'drbdadm help %s'" % command)
        return E_USAGE
    command_options = (checked | passed) & allowed
    if command == "status" and resources in ([], ["all"]):
        return run_setup_step(pool, host, ["status"], output)
    if not resources:
        return adm_usage(pool, output, command, "No resource names specified")
    if resources == ["all"]:
        names = pool.resource_names()
    else:
        for name in resources:
            if name not in pool.state["resources"]:
                output.err("'%s' not defined in your config (for this host)." % name)
                return E_USAGE
        names = resources
    worst = 0
    for name in names:
        worst = max(worst, ADM_ACTIONS[command](pool, host, name, command_options, output))
    return worst


def run_setup_step(pool, host, setup_args, output):
    """Run drbdsetup as drbdadm does: a failure >= 10 is reported with the command line."""
    code = run_drbdsetup(pool, host, setup_args, output)
    if code >= 10:
        output.err("Command '%s' terminated with exit code %d"
                   % (" ".join([SETUP_TOOL[pool.version]] + setup_args), code))
    return code


def object_name(pool, name):
    """How drbdsetup addresses the resource: 8.4 by minor, 9 by name."""
    return str(pool.resource(name)["minor"]) if pool.version == "8.4" else name


def connection_args(pool, host, name):
    """The arguments that name the replication link on the drbdsetup command line."""
    peer = pool.peer_of(host)
    if pool.version == "8.4":
        return [pool.address(host, name), pool.address(peer, name)]
    return [str(pool.node_id(peer))]


def adm_primary(pool, host, name, options, output):
    return run_setup_step(pool, host, ["primary", object_name(pool, name)] + sorted(options),
                          output)


def adm_secondary(pool, host, name, options, output):
    return run_setup_step(pool, host, ["secondary", object_name(pool, name)], output)


def adm_down(pool, host, name, options, output):
    return run_setup_step(pool, host, ["down", name], output)


def adm_connect(pool, host, name, options, output):
    extra = ["--protocol=C"] if pool.version == "8.4" else []
    return run_setup_step(pool, host, ["connect", name] + connection_args(pool, host, name)
                          + extra + sorted(options), output)


def adm_disconnect(pool, host, name, options, output):
    target = [] if pool.version == "8.4" else [name]
    return run_setup_step(pool, host, ["disconnect"] + target
                          + connection_args(pool, host, name), output)


def adm_role(pool, host, name, options, output):
    return run_setup_step(pool, host, ["role", object_name(pool, name)], output)


def adm_cstate(pool, host, name, options, output):
    target = [] if pool.version == "8.4" else connection_args(pool, host, name)
    return run_setup_step(pool, host, ["cstate", object_name(pool, name)] + target, output)


def adm_dstate(pool, host, name, options, output):
    """drbdsetup dstate, and for a resource that is down what drbdmeta reads on disk."""
    setup_output = Output()
    code = run_drbdsetup(pool, host, ["dstate", str(pool.resource(name)["minor"])], setup_output)
    output.stdout.extend(setup_output.stdout)
    # drbdadm shows drbdsetup's complaints only for state-change errors, else asks drbdmeta.
    if code in (11, 17):
        output.stderr.extend(setup_output.stderr)
    if code in (0, 11, 17):
        return code
    replica = pool.replica(host, name)
    if replica["disk"] == UP_TO_DATE and not replica["peer_fenced"]:
        output.out(CONSISTENT)  # metadata knows it was UpToDate, not that it still is
    else:
        output.out(replica["disk"])
    return 0


def adm_up(pool, host, name, options, output):
    try:
        pool.bring_up(host, name)
    except Refusal as refusal:
        minor = pool.resource(name)["minor"]
        new_minor = ["new-minor", name, str(minor), "0"]
        output.err("%s: sysfs node '/sys/devices/virtual/block/drbd%d' (already? still?) exists"
                   % (" ".join(new_minor), minor))
        report_refusal(name, refusal, output)
        output.err("Command '%s' terminated with exit code 10"
                   % " ".join([SETUP_TOOL[pool.version]] + new_minor))
        return 1  # drbdadm's deferred commands collapse any failure to 1
    return 0


def adm_adjust(pool, host, name, options, output):
    replica = pool.replica(host, name)
    if not replica["up"]:
        pool.bring_up(host, name)
    elif replica["standalone"]:
        return adm_connect(pool, host, name, set(), output)
    return 0


def adm_status(pool, host, name, options, output):
    return run_setup_step(pool, host, ["status", name], output)


def adm_sh_dev(pool, host, name, options, output):
    output.out(pool.device_path(host, name))
    return 0


ADM_ACTIONS = {
    "primary": adm_primary,
    "secondary": adm_secondary,
    "up": adm_up,
    "down": adm_down,
    "connect": adm_connect,
    "disconnect": adm_disconnect,
    "adjust": adm_adjust,
    "role": adm_role,
    "cstate": adm_cstate,
    "dstate": adm_dstate,
    "status": adm_status,
    "sh-dev": adm_sh_dev,
}
TOOLS = {"drbdadm": run_drbdadm, "drbdsetup": run_drbdsetup}


# ---------------------------------------------------------------- locking and logging

@contextlib.contextmanager
def locked_pool(state_dir):
    """The pool, exclusively ours until the block ends; saved only if the block succeeds."""
    if not os.path.isfile(os.path.join(state_dir, STATE_FILE)):
        raise DoubleError("%s is not a DRBD double state directory (run init first)" % state_dir)
    with open(os.path.join(state_dir, LOCK_FILE), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        pool = Pool.load(state_dir)
        yield pool
        pool.refresh_devices()
        pool.save()


def log_command(state_dir, host, argv, returncode):
    entry = {"time": timestamp(), "host": host, "argv": list(argv), "rc": returncode}
    with open(os.path.join(state_dir, COMMANDS_LOG), "a") as log:
        log.write(json.dumps(entry) + "\n")


def run_tool(state_dir, host, tool, args):
    """Run emulated ``tool`` (drbdadm or drbdsetup) on ``host``; a ToolResult."""
    output = Output()
    with locked_pool(state_dir) as pool:
        try:
            if host not in pool.hosts:
                raise DoubleError("unknown host %s (the pool has %s)"
                                  % (host, ", ".join(pool.hosts)))
            if not pool.alive(host):
                raise DoubleError("%s is crashed; a crashed host runs no commands" % host)
            code = TOOLS[tool](pool, host, list(args), output)
        except DoubleError as error:
            # Raised before anything changed, so the saved model stays as it was.
            output = Output()
            output.err("drbd-double: %s" % error)
            code = E_DOUBLE
        log_command(state_dir, host, [tool] + list(args), code)
    return ToolResult(code, "".join(output.stdout), "".join(output.stderr))


# ---------------------------------------------------------------- admin API

RESOURCE_SPEC = re.compile(r"^([A-Za-z0-9_.-]+):(\d+):(\d+)$")


def init_pool(state_dir, version, hosts, resources, netns=None):
    """Create a pool: every resource up, Connected, both Secondary, UpToDate.

    ``resources`` is a list of (name, minor, size_mib); ``netns`` maps host to the
    network namespace its processes run in.
    """
    if version not in KERNELS:
        raise DoubleError("version must be 8.4 or 9, not %s" % version)
    if len(hosts) != 2 or hosts[0] == hosts[1]:
        raise DoubleError("a pool has exactly two distinct hosts, not %s" % ",".join(hosts))
    if not resources:
        raise DoubleError("a pool needs at least one resource")
    names = [r[0] for r in resources]
    minors = [r[1] for r in resources]
    if len(set(names)) != len(names) or len(set(minors)) != len(minors):
        raise DoubleError("resource names and minors must be unique")
    netns = dict(netns or {})
    if set(netns) - set(hosts):
        raise DoubleError("netns given for unknown host(s) %s" % sorted(set(netns) - set(hosts)))
    if os.path.exists(os.path.join(state_dir, STATE_FILE)):
        raise DoubleError("%s already holds a pool" % state_dir)
    os.makedirs(os.path.join(state_dir, DATA_DIR), exist_ok=True)
    for host in hosts:
        os.makedirs(os.path.join(state_dir, host, "dev"), exist_ok=True)
    state = {"version": version, "hosts": list(hosts), "netns": netns,
             "alive": {h: True for h in hosts}, "resources": {}}
    for name, minor, size_mib in resources:
        data = os.path.join(DATA_DIR, "%s-0.img" % name)
        with open(os.path.join(state_dir, data), "wb") as image:
            image.truncate(size_mib * 1024 * 1024)
        state["resources"][name] = {
            "minor": minor, "size_mib": size_mib, "link_up": True, "connected": True,
            "split_brain": False, "last_gen": 1, "files_made": 0,
            "replicas": {h: {"up": True, "role": SECONDARY, "disk": UP_TO_DATE, "gen": 1,
                             "synced_gen": 1, "data": data, "standalone": False,
                             "peer_fenced": False, "discard_my_data": False}
                         for h in hosts}}
    with open(os.path.join(state_dir, LOCK_FILE), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        pool = Pool(state_dir, state)
        pool.refresh_devices()
        pool.save()
        log_command(state_dir, None, ["init", version, ",".join(hosts)], 0)


def install_wrappers(state_dir, host, bin_dir):
    """Write ``bin_dir/drbdadm`` and ``bin_dir/drbdsetup`` that act as ``host``."""
    admin(state_dir, ["install-wrappers", host, bin_dir], lambda pool: host_named(pool, host))
    os.makedirs(bin_dir, exist_ok=True)
    module = os.path.realpath(__file__)
    for tool in TOOLS:
        command = [sys.executable, "-S", module, "--as", tool,
                   "--state", os.path.realpath(state_dir), "--host", host]
        path = os.path.join(bin_dir, tool)
        with open(path, "w") as wrapper:
            wrapper.write("#!/bin/sh\nexec %s \"$@\"\n" % " ".join(shlex.quote(c) for c in command))
        os.chmod(path, 0o755)


def admin(state_dir, argv, change):
    """Apply ``change(pool)`` under the lock and log it as admin command ``argv``."""
    with locked_pool(state_dir) as pool:
        result = change(pool)
        log_command(state_dir, None, argv, 0)
    return result


def cut(state_dir, resource=None):
    """Break the replication link of ``resource`` (all when None)."""
    admin(state_dir, ["net-cut"] + ([resource] if resource else []),
          lambda pool: pool.set_link(resources_named(pool, resource), False))


def heal(state_dir, resource=None):
    admin(state_dir, ["net-heal"] + ([resource] if resource else []),
          lambda pool: pool.set_link(resources_named(pool, resource), True))


def crash(state_dir, host):
    admin(state_dir, ["crash", host], lambda pool: pool.crash(host_named(pool, host)))


def revive(state_dir, host):
    admin(state_dir, ["revive", host], lambda pool: pool.revive(host_named(pool, host)))


def show(state_dir):
    return admin(state_dir, ["show"], lambda pool: pool.describe())


def data_path(state_dir, host, resource):
    return admin(state_dir, ["data-path", host, resource],
                 lambda pool: pool.data_path(host_named(pool, host),
                                             resources_named(pool, resource)[0]))


def resources_named(pool, resource):
    if resource is None:
        return pool.resource_names()
    if resource not in pool.state["resources"]:
        raise DoubleError("unknown resource %s" % resource)
    return [resource]


def host_named(pool, host):
    if host not in pool.hosts:
        raise DoubleError("unknown host %s" % host)
    return host


# ---------------------------------------------------------------- command line

def resource_spec(text):
    match = RESOURCE_SPEC.match(text)
    if not match or int(match.group(3)) < 1:
        raise argparse.ArgumentTypeError("expected NAME:MINOR:SIZE_MIB, got %r" % text)
    return match.group(1), int(match.group(2)), int(match.group(3))


def netns_spec(text):
    host, _, namespace = text.partition("=")
    if not host or not namespace:
        raise argparse.ArgumentTypeError("expected HOST=NETNS, got %r" % text)
    return host, namespace


def admin_parser():
    parser = argparse.ArgumentParser(prog="drbd_double.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    init = commands.add_parser("init", help="create a pool")
    init.add_argument("--version", required=True, choices=sorted(KERNELS))
    init.add_argument("--hosts", required=True, type=lambda t: t.split(","))
    init.add_argument("--resource", required=True, action="append", type=resource_spec)
    init.add_argument("--netns", action="append", default=[], type=netns_spec)
    wrappers = commands.add_parser("install-wrappers", help="write drbdadm/drbdsetup scripts")
    wrappers.add_argument("--host", required=True)
    wrappers.add_argument("--bin", required=True)
    for name in ("net-cut", "net-heal"):
        commands.add_parser(name).add_argument("resource", nargs="?")
    for name in ("crash", "revive"):
        commands.add_parser(name).add_argument("host")
    commands.add_parser("show", help="JSON dump of the whole model")
    paths = commands.add_parser("data-path", help="a host's replica file")
    paths.add_argument("host")
    paths.add_argument("resource")
    for sub in commands.choices.values():
        sub.add_argument("--state", required=True)
    return parser


def run_admin(argv, stdout):
    options = admin_parser().parse_args(argv)
    state = options.state
    if options.command == "init":
        init_pool(state, options.version, options.hosts, options.resource, dict(options.netns))
    elif options.command == "install-wrappers":
        install_wrappers(state, options.host, options.bin)
    elif options.command == "net-cut":
        cut(state, options.resource)
    elif options.command == "net-heal":
        heal(state, options.resource)
    elif options.command == "crash":
        crash(state, options.host)
    elif options.command == "revive":
        revive(state, options.host)
    elif options.command == "show":
        stdout.write(json.dumps(show(state), indent=2, sort_keys=True) + "\n")
    elif options.command == "data-path":
        stdout.write(data_path(state, options.host, options.resource) + "\n")
    return 0


def split_emulation_args(argv):
    """(tool, state, host, tool_args) from ``--as T --state S --host H ARGS...``."""
    wanted = {"--as": None, "--state": None, "--host": None}
    index = 0
    while index + 1 < len(argv) and argv[index] in wanted:
        wanted[argv[index]] = argv[index + 1]
        index += 2
    if None in wanted.values() or wanted["--as"] not in TOOLS:
        raise DoubleError("usage: drbd_double.py --as drbdadm|drbdsetup --state STATE "
                          "--host HOST [ARGS...]")
    return wanted["--as"], wanted["--state"], wanted["--host"], argv[index:]


def main(argv=None, stdout=None, stderr=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        if argv and argv[0] == "--as":
            tool, state, host, args = split_emulation_args(argv)
            result = run_tool(state, host, tool, args)
            stdout.write(result.stdout)
            stderr.write(result.stderr)
            return result.returncode
        return run_admin(argv, stdout)
    except DoubleError as error:
        stderr.write("drbd-double: %s\n" % error)
        return E_DOUBLE


if __name__ == "__main__":
    sys.exit(main())

"""DRBD resources: reading their state and switching their role, on DRBD 8.4 and 9.

Owns everything iscsi-ha asks DRBD's command-line tools: which DRBD generation
the kernel runs, one resource's role, peer role, connection and disk states,
promoting and demoting it, and turning DRBD's refusals into iscsi-ha errors
that say what to do.

The ``parse_*`` functions only read what the tools printed; :class:`Drbd` runs
them. The formats are those of LINBIT drbd-utils (``user/v84/drbdsetup.c`` and
``user/v9/drbdsetup.c``); ``tests/data/drbd/`` holds recorded outputs.
"""

import io
import json
import os
import re

from iscsi_ha import commands
from iscsi_ha.errors import (BadConfig, CommandFailed, DiskNotUpToDate, DrbdError,
                             PeerPrimary, ToolMissing)

UNCONFIGURED = "Unconfigured"
ROLES = ("Primary", "Secondary", "Unknown")

# Worst first, in the order of DRBD's enum drbd_disk_state.
_DISK_STATES = ("Diskless", "Attaching", "Detaching", "Failed", "Negotiating",
                "Inconsistent", "Outdated", "DUnknown", "Consistent", "UpToDate")

# DRBD 8.4 connection states, and DRBD 9 replication states, in which the two
# hosts replicate (a resync included).
_REPLICATING = frozenset([
    "Connected", "StartingSyncS", "StartingSyncT", "WFBitMapS", "WFBitMapT",
    "WFSyncUUID", "SyncSource", "SyncTarget", "VerifyS", "VerifyT",
    "PausedSyncS", "PausedSyncT", "Ahead", "Behind"])

_WORD = re.compile(r"^[A-Za-z]+$")
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")

# What the tools print when the resource is not up here, or when no DRBD module
# is loaded (so nothing is up).
_DOWN = re.compile("|".join([
    r"No such resource",                 # drbdsetup 9 status
    r"Unknown resource",                 # drbdsetup 9, ERR_RES_NOT_KNOWN (158)
    r"Device minor not allocated",       # drbdsetup 8.4, ERR_MINOR_INVALID (127)
    r"Failed to modprobe drbd",          # drbdsetup 9 without a module
    r"Could not stat /proc/drbd",        # drbdsetup 8.4 without a module
    r"Could not connect to 'drbd' generic netlink family",
]))
_NOT_DEFINED = re.compile(r"not defined in your config")
_STATE_CHANGE_FAILED = re.compile(r"State change failed: \((-?\d+)\)\s*(.*)")
_DRBDADM_WRAPPER = re.compile(r"^Command '.*' terminated with exit code \d+$")

# What to do about each refusal, by DRBD's state change code.
_FIXES = {
    -1: "the peer is Primary: demote the other host first",
    -2: ("this host has no UpToDate data: wait for the resync to finish, or use "
         "force=true if this host's data is known to be the newest"),
    -7: ("the fence-peer handler could not confirm that the peer is outdated or gone, so "
         "the peer may still be Primary: power it off or demote it first (fn=demote there); "
         "pass peer_down=true only once it is known to be down"),
    -12: ("something holds the DRBD device open (DRBD may list the openers below): "
          "stop it (e.g. the iSCSI target) and retry"),
}
_ERROR_TYPES = {-1: PeerPrimary, -2: DiskNotUpToDate}


class ResourceState(object):
    """One DRBD resource as this host sees it, in DRBD's own words.

    ``connection`` uses DRBD 8.4's cstate names; for DRBD 9 it is the
    connection state, or the replication state (``SyncSource``, ...) while a
    connected peer is not simply ``Established``.
    """

    def __init__(self, name, role, peer_role="Unknown", connection="StandAlone",
                 disk="Diskless", peer_disk="DUnknown", suspended=(), out_of_sync_bytes=None,
                 percent_in_sync=None):
        self.name = name
        self.role = role
        self.peer_role = peer_role
        self.connection = connection
        self.disk = disk
        self.peer_disk = peer_disk
        # Why I/O is suspended (DRBD 9's suspended-* flags: user, no-data, fencing,
        # quorum); empty while I/O flows.
        self.suspended = list(suspended)
        # What is left to resync to the peer, where DRBD says it (DRBD 9's JSON status:
        # the volumes' sum, and the worst volume's percentage); None elsewhere.
        self.out_of_sync_bytes = out_of_sync_bytes
        self.percent_in_sync = percent_in_sync

    @classmethod
    def unconfigured(cls, name):
        """A resource that is not up here (DRBD's word for StandAlone and Diskless)."""
        return cls(name, UNCONFIGURED)

    @property
    def is_primary(self):
        return self.role == "Primary"

    @property
    def peer_is_primary(self):
        return self.peer_role == "Primary"

    @property
    def connected(self):
        """Replication with the peer is established (a resync counts)."""
        return self.connection in _REPLICATING

    @property
    def disk_up_to_date(self):
        return self.disk == "UpToDate"

    @property
    def peer_outdated(self):
        """DRBD knows the peer's copy is stale (a fence-peer verdict, or seen connected)."""
        return self.peer_disk == "Outdated"

    @property
    def configured(self):
        return self.role != UNCONFIGURED

    def as_dict(self):
        return {
            "name": self.name, "role": self.role, "peer_role": self.peer_role,
            "connection": self.connection, "disk": self.disk, "peer_disk": self.peer_disk,
            "is_primary": self.is_primary, "peer_is_primary": self.peer_is_primary,
            "connected": self.connected, "disk_up_to_date": self.disk_up_to_date,
            "configured": self.configured, "suspended": list(self.suspended),
            "out_of_sync_bytes": self.out_of_sync_bytes,
            "percent_in_sync": self.percent_in_sync,
        }

    def __repr__(self):
        return "<ResourceState %s %s/%s %s %s/%s>" % (
            self.name, self.role, self.peer_role, self.connection, self.disk, self.peer_disk)


def parse_version(text):
    """``"8.4"`` or ``"9"``: the DRBD generation ``drbdadm --version`` reports.

    The kernel module decides. Without a loaded module the kernel code is 0;
    drbdadm then falls back to its own generation, and so do we
    (``DRBDADM_API_VERSION`` 1 is drbdadm-84, 2 is drbdadm 9).
    """
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    try:
        code = int(fields.get("DRBD_KERNEL_VERSION_CODE", "0"), 16)
    except ValueError:
        raise ValueError("DRBD_KERNEL_VERSION_CODE is not a number: %r"
                         % fields["DRBD_KERNEL_VERSION_CODE"])
    if code == 0:
        generation = {"1": "8.4", "2": "9"}.get(fields.get("DRBDADM_API_VERSION"))
        if generation is None:
            raise ValueError("neither DRBD_KERNEL_VERSION_CODE nor DRBDADM_API_VERSION "
                             "tells the DRBD version")
        return generation
    major, minor = code >> 16, (code >> 8) & 0xff
    if (major, minor) == (8, 4):
        return "8.4"
    if major == 9:
        return "9"
    raise ValueError("DRBD %d.%d is not supported (8.4 and 9 are)" % (major, minor))


def parse_84(role_text, cstate_text, dstate_text, name):
    """State of resource ``name`` from DRBD 8.4's ``drbdadm role/cstate/dstate``.

    Each prints a line per volume: ``Primary/Secondary`` and
    ``UpToDate/DUnknown`` are local/peer; any of them says ``Unconfigured``
    for a device that is not set up. Role and connection are the first
    volume's; each disk state is the worst volume's.
    """
    roles, cstates, dstates = _lines(role_text), _lines(cstate_text), _lines(dstate_text)
    if UNCONFIGURED in roles + cstates + dstates:
        return ResourceState.unconfigured(name)
    if not (roles and cstates and dstates):
        raise ValueError("drbdadm role/cstate/dstate printed nothing for %s" % name)
    role, peer_role = _split_pair(roles[0], "role")
    for value in (role, peer_role):
        if value not in ROLES:
            raise ValueError("unknown DRBD role %r in %r" % (value, roles[0]))
    connection = _word(cstates[0], "cstate")
    disks = [_split_pair(line, "dstate") for line in dstates]
    return ResourceState(name, role, peer_role, connection,
                         _worst([disk for disk, _ in disks], "Diskless"),
                         _worst([peer for _, peer in disks], "DUnknown"))


def parse_status_json(text, name):
    """State of resource ``name`` from DRBD 9's ``drbdsetup status --json``.

    A list without ``name`` means the resource is not up here.
    """
    try:
        resources = json.loads(text)
    except ValueError:
        raise ValueError("drbdsetup status --json printed no JSON: %r" % text[:200])
    if not isinstance(resources, list):
        raise ValueError("drbdsetup status --json printed no list: %r" % text[:200])
    for resource in resources:
        if isinstance(resource, dict) and resource.get("name") == name:
            try:
                return _state_from_json(name, resource)
            except (KeyError, TypeError, AttributeError) as exc:
                raise ValueError("drbdsetup status --json for %s lacks %s" % (name, exc))
    return ResourceState.unconfigured(name)


def parse_status_text(text, name):
    """State of resource ``name`` from DRBD 9's ``drbdadm status`` (or drbdsetup's).

    The layout, by indentation: the resource line; at 2 its volumes
    (``disk:``) and its connections (peer name, ``connection:`` unless
    Connected, ``role:`` when Connected); at 4 a connection's peer volumes
    (``replication:`` unless Established, ``peer-disk:``). drbdsetup wraps
    long lines, indenting the rest further. No block for ``name`` means the
    resource is not up here.
    """
    block = _status_block(_COLOUR.sub("", text), name)
    if block is None:
        return ResourceState.unconfigured(name)
    resource = block[0].split()[1:]
    devices, connections = [], []
    current = resource
    for line in block[1:]:
        indent = len(line) - len(line.lstrip(" "))
        tokens = line.split()
        if indent >= 6 or (indent == 4 and not connections):
            current.extend(tokens)
        elif indent == 2 and tokens[0].startswith(("disk:", "volume:")):
            current = tokens
            devices.append(current)
        elif indent == 2:
            current = tokens
            connections.append((current, []))
        elif indent == 4:
            current = tokens
            connections[-1][1].append(current)
        else:
            raise ValueError("unexpected line in drbdadm status for %s: %r" % (name, line))
    role = _fields(resource).get("role")
    if role not in ROLES:
        raise ValueError("drbdadm status for %s shows no role: %r" % (name, block[0]))
    disks = [_fields(device).get("disk") for device in devices]
    if None in disks:
        raise ValueError("drbdadm status for %s has a volume without disk state" % name)
    peers = []
    for line, volume_lines in connections:
        fields = _fields(line)
        volumes = [_fields(volume) for volume in volume_lines]
        peers.append((fields.get("role", "Unknown"), fields.get("connection", "Connected"),
                      [volume.get("replication", "Established") for volume in volumes],
                      [volume.get("peer-disk", "DUnknown") for volume in volumes]))
    suspended = _fields(resource).get("suspended")
    return _resource_state(name, role, disks, peers,
                           suspended.split(",") if suspended else ())


_UUID = re.compile(r"^[0-9A-Fa-f]{16}$")
_UUID_PRIMARY = 1  # the lowest bit of a current UUID: set while the node is Primary


def parse_gi(text):
    """The data generation identifiers in ``drbdadm get-gi`` output (its first line).

    drbd-utils prints the current, bitmap and two history UUIDs as 16 hex
    digits, then flags (``dt_print_v9_uuids`` on 9, ``dt_print_uuids`` on 8.4).
    The current UUID is returned without its Primary bit, as DRBD compares it
    (``drbd_uuid_compare``); a bitmap UUID of zero means this side has nothing
    its peer lacks, otherwise it names the generation both last shared.
    """
    lines = _lines(text)
    fields = lines[0].split(":") if lines else []
    if len(fields) < 4 or not all(_UUID.match(field) for field in fields[:4]):
        raise ValueError("drbdadm get-gi printed no generation identifiers: %r" % text[:200])
    values = [int(field, 16) for field in fields[:4]]
    return {"current": "%016X" % (values[0] & ~_UUID_PRIMARY),
            "bitmap": "%016X" % values[1],
            "history": ["%016X" % value for value in values[2:4]],
            "primary_bit": bool(values[0] & _UUID_PRIMARY)}


# What DRBD runs with when `drbdsetup show` omits an option (drbd_genl.h defaults).
_OPTION_DEFAULTS = {"8.4": {"protocol": "C", "fencing": "dont-care",
                            "allow-two-primaries": "no"},
                    "9": {"protocol": "C", "fencing": "dont-care", "auto-promote": "yes",
                          "allow-two-primaries": "no"}}
_OPTION_LINE = re.compile(r"^\s*([a-z0-9-]+)\s+([^;{}\s]+)\s*;")
_FENCE_PEER_LINE = re.compile(r'^\s*fence-peer\s+("(?:[^"\\]|\\.)*"|[^;\s]+)\s*;')


def parse_show(text, version):
    """The options iscsi-ha relies on from ``drbdsetup show`` (either generation).

    drbdsetup prints ``key value;`` lines inside sections; comments start with ``#``.
    """
    options = dict(_OPTION_DEFAULTS[version])
    for line in text.splitlines():
        match = _OPTION_LINE.match(line.split("#", 1)[0])
        if match and match.group(1) in options:
            options[match.group(1)] = match.group(2).strip('"')
    return options


def parse_fence_peer(text):
    """The fence-peer handler command in ``drbdadm dump`` output, or None."""
    for line in text.splitlines():
        match = _FENCE_PEER_LINE.match(line)
        if match:
            value = match.group(1)
            if value.startswith('"'):
                value = re.sub(r'\\(.)', r'\1', value[1:-1])
            return value
    return None


FENCE_PEER_HANDLER = "iscsi-ha-fence-peer"


def check_settings(resource, options, fence_peer, version):
    """``(check, ok, detail)`` for each running DRBD setting iscsi-ha's safety rests on."""
    wanted = [
        ("protocol", ("C",), "a write is acknowledged only once it is on both hosts"),
        ("fencing", ("resource-only", "resource-and-stonith"),
         "a disconnected Primary must fence its peer"),
        ("allow-two-primaries", ("no",), "one writer at a time"),
    ]
    if version == "9":
        wanted.append(("auto-promote", ("no",), "only iscsi-ha promotes, after its checks"))
    results = []
    for key, allowed, why in wanted:
        value = options.get(key)
        results.append(("DRBD %s %s" % (resource, key), value in allowed,
                        "%s (%s)" % (value, why) if value in allowed else
                        "%s, but iscsi-ha needs %s: %s; fix the resource file and run "
                        "drbdadm adjust %s" % (value, " or ".join(allowed), why, resource)))
    program = (fence_peer or "").split()[:1]
    ours = bool(program) and program[0].rsplit("/", 1)[-1] == FENCE_PEER_HANDLER
    results.append(("DRBD %s fence-peer handler" % resource, ours,
                    fence_peer if ours else
                    "%s; name iscsi-ha's handler (%s) in the handlers section: other handlers "
                    "may report an unreachable peer as dead" % (
                        "none configured" if not fence_peer else "'%s'" % fence_peer,
                        FENCE_PEER_HANDLER)))
    return results


class Drbd(object):
    """This host's DRBD, through drbdadm and drbdsetup; reads real state every call."""

    def __init__(self, drbdadm="drbdadm", drbdsetup="drbdsetup", version="auto",
                 timeout=20.0, version_cache=None):
        if version not in ("auto", "8.4", "9"):
            raise BadConfig("DRBD version must be auto, 8.4 or 9, not %r" % (version,))
        self.drbdadm = drbdadm
        self.drbdsetup = drbdsetup
        self.timeout = timeout
        self._version = None if version == "auto" else version
        # A file keeping what drbdadm --version said, for the next call (see version()).
        self.version_cache = version_cache

    def version(self):
        """``"8.4"`` or ``"9"``; asks ``drbdadm --version`` once per DRBD installation.

        The answer depends on the kernel module and on drbdadm alone, so it is
        kept in :attr:`version_cache` (in run_dir, emptied at boot) with what
        identifies both: drbdadm's path, size and modification time, and the
        loaded module's version. Any change there asks drbdadm again.
        """
        if self._version is not None:
            return self._version
        key = self._installation() if self.version_cache else None
        if key is not None:
            self._version = _read_cached_version(self.version_cache, key)
            if self._version is not None:
                return self._version
        result = commands.run([self.drbdadm, "--version"], timeout=self.timeout)
        try:
            self._version = parse_version(result.stdout)
        except ValueError as exc:
            raise DrbdError("cannot tell the DRBD version from %s --version: %s"
                            % (self.drbdadm, exc), _output_lines(result))
        if key is not None:
            _write_cached_version(self.version_cache, key, self._version)
        return self._version

    def _installation(self):
        """What identifies this drbdadm and kernel module, or None when it cannot be told."""
        path = commands.find_tool(self.drbdadm)
        try:
            found = os.stat(path) if path else None
        except OSError:
            found = None
        if found is None:
            return None
        try:
            with io.open(_MODULE_VERSION, encoding="utf-8") as handle:
                module = handle.read().strip()
        except (IOError, OSError, UnicodeError):
            module = None  # no module loaded: drbdadm answers with its own generation
        return [os.path.realpath(path), found.st_size, found.st_mtime, module]

    def state(self, resource):
        """A :class:`ResourceState`; role ``Unconfigured`` when the resource is not up."""
        if self.version() == "8.4":
            return self._state_84(resource)
        return self._state_9(resource)

    def promote(self, resource, force=False):
        """Make ``resource`` Primary here; returns the state read back afterwards.

        ``force`` promotes without UpToDate data (DRBD's ``--force``).
        """
        argv = [self.drbdadm, "primary"] + (["--force"] if force else []) + [resource]
        result = self._run(argv)
        if result.returncode != 0:
            if _is_down(result):
                raise DrbdError("cannot promote %s: it is not up on this host; start it "
                                "with 'drbdadm up %s'" % (resource, resource),
                                _output_lines(result))
            raise _refusal("promote", resource, result)
        state = self.state(resource)
        if not state.is_primary:
            raise DrbdError("drbdadm primary %s succeeded but %s is %s; check the kernel "
                            "log (dmesg)" % (resource, resource, state.role))
        return state

    def demote(self, resource):
        """Make ``resource`` Secondary here; a resource that is not up counts as done."""
        result = self._run([self.drbdadm, "secondary", resource])
        if result.returncode != 0:
            if _is_down(result):
                return ResourceState.unconfigured(resource)
            raise _refusal("demote", resource, result)
        state = self.state(resource)
        if state.is_primary:
            raise DrbdError("drbdadm secondary %s succeeded but %s is still Primary; check "
                            "the kernel log (dmesg)" % (resource, resource))
        return state

    def outdate(self, resource):
        """Mark this host's copy of ``resource`` Outdated, so it cannot be promoted
        without force; returns the state read back. DRBD refuses on a Primary."""
        result = self._run([self.drbdadm, "outdate", resource])
        if result.returncode != 0:
            # The promote-oriented fixes of _refusal() do not apply here.
            raise DrbdError("cannot outdate %s: '%s' failed: %s; DRBD outdates only a "
                            "Secondary that is not connected to a Primary"
                            % (resource, " ".join(result.argv), _drbd_says(result)),
                            _output_lines(result))
        return self.state(resource)

    def generation(self, resource):
        """:func:`parse_gi` of ``drbdadm get-gi`` for ``resource``'s first volume and peer."""
        result = self._run([self.drbdadm, "get-gi", resource])
        if result.returncode != 0:
            raise _query_failed(resource, result)
        try:
            return parse_gi(result.stdout)
        except ValueError as exc:
            raise DrbdError("cannot read the generations of %s: %s" % (resource, exc),
                            _output_lines(result))

    def connect(self, resource, discard_my_data=False):
        """``drbdadm connect`` (with ``--discard-my-data``: this side's writes since the
        split are overwritten by the peer's data); returns the state read back."""
        argv = ([self.drbdadm, "connect"] + (["--discard-my-data"] if discard_my_data else [])
                + [resource])
        result = self._run(argv)
        if result.returncode != 0:
            raise DrbdError("cannot connect %s: '%s' failed: %s" % (
                resource, " ".join(argv), _drbd_says(result)), _output_lines(result))
        return self.state(resource)

    def disconnect(self, resource):
        """``drbdadm disconnect``: the resource goes StandAlone; returns the state."""
        result = self._run([self.drbdadm, "disconnect", resource])
        if result.returncode != 0:
            raise DrbdError("cannot disconnect %s: '%s' failed: %s" % (
                resource, " ".join(result.argv), _drbd_says(result)), _output_lines(result))
        return self.state(resource)

    def running_options(self, resource):
        """The options the kernel runs ``resource`` with that iscsi-ha relies on:
        ``{"protocol", "fencing", "auto-promote", "allow-two-primaries"}``."""
        result = self._run([self.drbdsetup, "show", "--show-defaults", resource])
        if result.returncode != 0:
            raise _query_failed(resource, result)
        return parse_show(result.stdout, self.version())

    def fence_peer_handler(self, resource):
        """The fence-peer command the DRBD config names for ``resource``, or None."""
        result = self._run([self.drbdadm, "dump", resource])
        if result.returncode != 0:
            raise _unknown_resource(resource, result)
        return parse_fence_peer(result.stdout)

    def device(self, resource):
        """The block device of ``resource`` (its first volume), e.g. ``/dev/drbd0``."""
        return self._first_path("sh-dev", resource)

    def backing_disk(self, resource):
        """The disk under ``resource`` (its first volume), as DRBD's config names it."""
        return self._first_path("sh-ll-dev", resource)

    def _first_path(self, query, resource):
        result = self._run([self.drbdadm, query, resource])
        paths = result.stdout.split()
        if result.returncode != 0 or not paths:
            raise _unknown_resource(resource, result)
        return paths[0]

    def knows(self, resource):
        """Whether this host's DRBD configuration defines ``resource``."""
        result = self._run([self.drbdadm, "sh-dev", resource])
        if result.returncode == 0:
            return True
        if _NOT_DEFINED.search(_output(result)):
            return False
        raise _unknown_resource(resource, result)

    def _state_84(self, resource):
        outputs = []
        for query in ("role", "cstate", "dstate"):
            result = self._run([self.drbdadm, query, resource])
            if result.returncode != 0:
                if _is_down(result):
                    return ResourceState.unconfigured(resource)
                raise _query_failed(resource, result)
            outputs.append(result.stdout)
        try:
            return parse_84(outputs[0], outputs[1], outputs[2], resource)
        except ValueError as exc:
            raise DrbdError("cannot read the state of %s: %s" % (resource, exc))

    def _state_9(self, resource):
        try:
            result = self._run([self.drbdsetup, "status", "--json", resource])
        except ToolMissing:
            result = None
        if result is not None:
            if _is_down(result):
                return ResourceState.unconfigured(resource)
            if result.returncode == 0:
                try:
                    return parse_status_json(result.stdout, resource)
                except ValueError:
                    pass  # the text status below says the same in an older format
        result = self._run([self.drbdadm, "status", resource])
        if result.returncode != 0:
            if _is_down(result):
                return ResourceState.unconfigured(resource)
            raise _query_failed(resource, result)
        try:
            return parse_status_text(result.stdout, resource)
        except ValueError as exc:
            raise DrbdError("cannot read the state of %s: %s" % (resource, exc),
                            _output_lines(result))

    def _run(self, argv):
        """Run a DRBD tool; its exit code is for the caller to judge, a timeout raises."""
        try:
            return commands.run(argv, timeout=self.timeout)
        except CommandFailed as exc:
            if exc.timed_out:
                raise
            return commands.Result(exc.argv, exc.returncode, exc.stdout or "",
                                   exc.stderr or "", None)


_MODULE_VERSION = "/sys/module/drbd/version"


def _read_cached_version(path, key):
    try:
        with io.open(path, encoding="utf-8") as handle:
            cached = json.loads(handle.read())
        if cached["key"] == key and cached["version"] in ("8.4", "9"):
            return cached["version"]
    except (IOError, OSError, ValueError, KeyError, TypeError):
        pass  # none yet, or unreadable: ask drbdadm
    return None


def _write_cached_version(path, key, version):
    """Keep the answer for the next call; a cache that cannot be written costs only time."""
    temporary = "%s.%d.tmp" % (path, os.getpid())
    try:
        if not os.path.isdir(os.path.dirname(path)):
            os.makedirs(os.path.dirname(path))
        with io.open(temporary, "w", encoding="utf-8") as handle:
            handle.write(json.dumps({"key": key, "version": version}) + u"\n")
        os.rename(temporary, path)
    except (IOError, OSError):
        pass


def _lines(text):
    return [line.strip() for line in text.splitlines() if line.strip()]


def _word(value, what):
    if not _WORD.match(value):
        raise ValueError("unexpected DRBD %s %r" % (what, value))
    return value


def _split_pair(line, what):
    """``local/peer`` as printed by DRBD 8.4's role and dstate."""
    parts = line.split("/")
    if len(parts) != 2:
        raise ValueError("DRBD %s %r is not local/peer" % (what, line))
    return _word(parts[0], what), _word(parts[1], what)


def _worst(states, default):
    """The worst of several disk states; a name DRBD may add later counts as worst."""
    states = list(states)
    if not states:
        return default
    return min(states, key=lambda state: _DISK_STATES.index(state)
               if state in _DISK_STATES else -1)


def _resource_state(name, role, disks, peers, suspended=()):
    """The state from what DRBD 9 lists: peers are (role, connection state,
    replication states, peer disk states), one of the latter per volume."""
    peer = _pick_peer(peers)
    if peer is None:
        return ResourceState(name, role, disk=_worst(disks, "Diskless"), suspended=suspended)
    peer_role, connection_state, replications, peer_disks = peer[:4]
    return ResourceState(name, role, peer_role, _connection_9(connection_state, replications),
                         _worst(disks, "Diskless"), _worst(peer_disks, "DUnknown"),
                         suspended)


def _pick_peer(peers):
    """The peer to report when there are several (e.g. a diskless tie-breaker node):
    a Primary one, which is what a promotion must know about, else one with a disk."""
    for peer in peers:
        if peer[0] == "Primary":
            return peer
    for peer in peers:
        if any(disk != "Diskless" for disk in peer[3]):
            return peer
    return peers[0] if peers else None


def _connection_9(connection_state, replication_states):
    if connection_state != "Connected":
        return connection_state
    for replication in replication_states:
        if replication != "Established":
            return replication
    return "Connected"


def _state_from_json(name, resource):
    # Each peer's connection record rides along, for the resync figures of the one reported.
    peers = [(connection["peer-role"], connection["connection-state"],
              [volume["replication-state"] for volume in connection["peer_devices"]],
              [volume["peer-disk-state"] for volume in connection["peer_devices"]],
              connection)
             for connection in resource["connections"]]
    state = _resource_state(name, resource["role"],
                            [device["disk-state"] for device in resource["devices"]], peers,
                            _suspended_json(resource))
    peer = _pick_peer(peers)
    volumes = peer[4]["peer_devices"] if peer is not None else []
    out_of_sync = [v.get("out-of-sync") for v in volumes]
    if volumes and all(isinstance(kib, int) for kib in out_of_sync):
        state.out_of_sync_bytes = sum(out_of_sync) * 1024  # DRBD counts KiB
    percents = [v.get("percent-in-sync") for v in volumes]
    if volumes and all(isinstance(p, (int, float)) for p in percents):
        state.percent_in_sync = float(min(percents))
    return state


def _suspended_json(resource):
    """Why I/O is suspended: ``suspended-<why>`` flags where drbdsetup prints them,
    else just "yes" for the single ``suspended`` flag of older drbd-utils."""
    reasons = sorted(key[len("suspended-"):] for key, value in resource.items()
                     if key.startswith("suspended-") and value is True)
    if reasons:
        return reasons
    return ["yes"] if resource.get("suspended") is True else []


def _status_block(text, name):
    """The lines of resource ``name`` in a status listing, or None."""
    block = None
    for line in text.splitlines():
        if block is None:
            if line.split()[:1] == [name] and not line.startswith(" "):
                block = [line]
        elif not line.strip() or not line.startswith(" "):
            break
        else:
            block.append(line)
    return block


def _fields(tokens):
    return dict(token.split(":", 1) for token in tokens if ":" in token)


def _output(result):
    return (result.stderr or "") + (result.stdout or "")


def _output_lines(result):
    return _lines(_output(result))


def _is_down(result):
    return result.returncode != 0 and bool(_DOWN.search(_output(result)))


def _drbd_says(result):
    """DRBD's own message: the first line that is not drbdadm's exit-code wrapper."""
    for line in _output_lines(result):
        if not _DRBDADM_WRAPPER.match(line):
            return line
    return "no message, exit code %s" % result.returncode


def _query_failed(resource, result):
    return DrbdError("cannot read the state of %s: '%s' failed: %s"
                     % (resource, " ".join(result.argv), _drbd_says(result)),
                     _output_lines(result))


def _unknown_resource(resource, result):
    if _NOT_DEFINED.search(_output(result)):
        return DrbdError("DRBD resource %s is not defined on this host (%s); check the "
                         "resource name and /etc/drbd.d/" % (resource, _drbd_says(result)),
                         _output_lines(result))
    return DrbdError("cannot find the device of %s: '%s' failed: %s"
                     % (resource, " ".join(result.argv), _drbd_says(result)),
                     _output_lines(result))


def _refusal(action, resource, result):
    """The iscsi-ha error for a failed ``drbdadm primary/secondary``."""
    match = _STATE_CHANGE_FAILED.search(_output(result))
    if match is None:
        return DrbdError("cannot %s %s: '%s' failed: %s"
                         % (action, resource, " ".join(result.argv), _drbd_says(result)),
                         _output_lines(result))
    code = int(match.group(1))
    fix = _FIXES.get(code, "see DRBD's message and the kernel log (dmesg)")
    message = 'cannot %s %s: DRBD refused with "(%d) %s"; %s' % (
        action, resource, code, match.group(2).strip(), fix)
    return _ERROR_TYPES.get(code, DrbdError)(message, _output_lines(result))

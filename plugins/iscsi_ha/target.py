"""iSCSI targets on a running tgtd, driven through ``tgtadm``.

Owns: the tgtadm command lines (always with ``-C <control port>``, since one
machine may run several tgtd), parsing ``tgtadm --mode target --op show``, and
turning tgtadm failures into :class:`TargetDaemonDown` or :class:`TargetError`.
Nothing is cached: every query asks tgtd again, and every change is read back.

What initiators see (tgt 1.0.85, measured): the standard INQUIRY carries
``vendor_id``/``product_id`` (which ``--op show`` never prints); VPD page 0x80
is ``scsi_sn`` right-aligned in 36 bytes; page 0x83 holds ``scsi_id`` as text,
an NAA-3 made of the tid and LUN, and an NAA-6 made of the hex digits of
``scsi_id`` (any other character counts as 0).  Linux's scsi_id, and so
XenServer's SCSIid, is "3" plus that NAA-6.  Two hosts therefore present the
same disk only with the same tid, LUN, scsi_id, scsi_sn, vendor_id and
product_id, and scsi_ids that differ only in non-hex characters collide.
"""

import os
import re
import time

from iscsi_ha import commands, validate
from iscsi_ha.errors import BadArgument, CommandFailed, TargetDaemonDown, TargetError

TARGET_STATES = ("ready", "offline")

# tgt silently truncates longer values; these are the INQUIRY field widths.
# The order tgtadm is given them in (--params key=value,...).
IDENTITY_KEYS = ("vendor_id", "product_id", "scsi_id", "scsi_sn")

# The backing store flag of a LUN without a write cache (see the module docstring).
WRITE_THROUGH_FLAG = "sync"
# tgt's default caching mode page (sbc.c) with WCE (byte 2, bit 2) cleared:
# page 8, subpage 0, 18 bytes.  Set by tgtadm it replaces the page, and with it
# the mask that let MODE SELECT switch WCE.
_WRITE_THROUGH_CACHING_PAGE = ("8:0:18:0x10:0:0xff:0xff:0:0:0xff:0xff:0xff:0xff:0x80:0x14:"
                               "0:0:0:0:0:0")

# A forced target delete is refused while one of its LUNs executes a command
# (tgtadm exit 22, "this logical unit is still active"); such a command ends
# within milliseconds, so the delete is retried for this long, every pause.
STILL_ACTIVE_RETRY_SECONDS = 0.2
_STILL_ACTIVE_PAUSE = 0.002
_STILL_ACTIVE = (22, "still active")

# What tgtadm prints when it cannot reach tgtd over the control socket.
_DAEMON_DOWN_MARKERS = ("tgt daemon", "tgtd closed the socket")

_TARGET_LINE = re.compile(r"^Target (\d+): (.*)$")
_NEXUS_LINE = re.compile(r"^I_T nexus: (\d+)$")
_INITIATOR_LINE = re.compile(r"^Initiator: (\S+)(?: alias: (.*))?$")
_SIZE_VALUE = re.compile(r"^(\d+) MB, Block size: (\d+)$")
_SECTIONS = {
    "System information:": "system",
    "I_T nexus information:": "nexus",
    "LUN information:": "lun",
    "Account information:": "account",
    "ACL information:": "acl",
}


class LunInfo(object):
    """One logical unit as tgtd reports it; LUN 0 is tgt's own controller LUN."""

    def __init__(self, lun):
        self.lun = lun
        self.type = None
        self.scsi_id = None
        self.scsi_sn = None
        self.size_mb = None  # tgt's rounded, roughly decimal megabytes
        self.block_size = None
        self.online = None
        self.readonly = None
        self.backing_type = None
        self.backing_path = None
        # tgt's open flags for the backing store ("sync", "direct"); None when
        # tgtd does not say.
        self.backing_flags = None
        # False for a write-through LUN (opened O_SYNC), True for one that writes
        # into the page cache, None when tgtd does not say or there is no backing store.
        self.write_cache = None

    def as_dict(self):
        return {
            "lun": self.lun, "type": self.type, "scsi_id": self.scsi_id,
            "scsi_sn": self.scsi_sn, "size_mb": self.size_mb, "block_size": self.block_size,
            "online": self.online, "readonly": self.readonly,
            "backing_type": self.backing_type, "backing_path": self.backing_path,
            "backing_flags": None if self.backing_flags is None else list(self.backing_flags),
            "write_cache": self.write_cache,
        }


class InitiatorInfo(object):
    """One I_T nexus (session): the initiator's IQN and its connections' addresses."""

    def __init__(self, nexus):
        self.nexus = nexus
        self.iqn = None
        self.alias = None
        self.addresses = []

    def as_dict(self):
        return {"nexus": self.nexus, "iqn": self.iqn, "alias": self.alias,
                "addresses": list(self.addresses)}


class TargetInfo(object):
    """One target from ``--op show``."""

    def __init__(self, tid, iqn):
        self.tid = tid
        self.iqn = iqn
        self.driver = None
        self.state = None
        self.luns = []
        self.initiators = []
        self.acl = []

    @property
    def sessions(self):
        return len(self.initiators)

    def lun(self, number):
        """The :class:`LunInfo` numbered ``number``, or None."""
        for lun in self.luns:
            if lun.lun == number:
                return lun
        return None

    def as_dict(self):
        return {
            "tid": self.tid, "iqn": self.iqn, "driver": self.driver, "state": self.state,
            "sessions": self.sessions,
            "luns": [lun.as_dict() for lun in self.luns],
            "initiators": [initiator.as_dict() for initiator in self.initiators],
            "acl": list(self.acl),
        }


def _key_value(line):
    key, separator, value = line.partition(":")
    if not separator:
        return None, None
    return key, value[1:] if value.startswith(" ") else value


def parse_show(text):
    """The targets in ``tgtadm --lld iscsi --mode target --op show`` output.

    Lines tgt may add in other versions are ignored; values keep their inner
    spaces (a default SCSI ID is ``IET     00010001``).
    """
    targets = []
    target = section = lun = initiator = None
    for raw_line in text.splitlines():
        match = _TARGET_LINE.match(raw_line)
        if match:
            target = TargetInfo(int(match.group(1)), match.group(2).strip())
            targets.append(target)
            section = lun = initiator = None
            continue
        line = raw_line.strip()
        if target is None or not line:
            continue
        if line in _SECTIONS:
            section = _SECTIONS[line]
            continue
        if section == "acl":
            target.acl.append(line)
        elif section == "system":
            key, value = _key_value(line)
            if key == "Driver":
                target.driver = value
            elif key == "State":
                target.state = value
        elif section == "nexus":
            initiator = _parse_nexus_line(target, initiator, line)
        elif section == "lun":
            key, value = _key_value(line)
            if key == "LUN":
                lun = LunInfo(int(value))
                target.luns.append(lun)
            elif lun is not None and key is not None:
                _set_lun_field(lun, key, value)
    return targets


def _set_lun_field(lun, key, value):
    if key == "Type":
        lun.type = value
    elif key == "SCSI ID":
        lun.scsi_id = value
    elif key == "SCSI SN":
        lun.scsi_sn = value
    elif key == "Size":
        match = _SIZE_VALUE.match(value)
        if match:
            lun.size_mb, lun.block_size = int(match.group(1)), int(match.group(2))
    elif key == "Online":
        lun.online = value == "Yes"
    elif key == "Readonly":
        lun.readonly = value == "Yes"
    elif key == "Backing store type":
        lun.backing_type = value
    elif key == "Backing store path":
        lun.backing_path = None if value == "None" else value
    elif key == "Backing store flags":
        # "sync", "direct" or "sync:direct"; nothing at all for no flags.
        lun.backing_flags = [flag for flag in value.strip().split(":") if flag]
        if lun.backing_path is not None:  # tgt prints the path first
            lun.write_cache = WRITE_THROUGH_FLAG not in lun.backing_flags


def _parse_nexus_line(target, initiator, line):
    """Feed one line of the I_T nexus section; returns the nexus being read."""
    match = _NEXUS_LINE.match(line)
    if match:
        initiator = InitiatorInfo(int(match.group(1)))
        target.initiators.append(initiator)
        return initiator
    if initiator is None:
        return None
    match = _INITIATOR_LINE.match(line)
    if match:
        initiator.iqn = match.group(1)
        alias = match.group(2)
        initiator.alias = None if alias in (None, "none") else alias
        return initiator
    key, value = _key_value(line)
    if key is not None and key.endswith("IP Address"):
        initiator.addresses.append(value.strip())
    return initiator


def _check_identity(name, value):
    # tgtadm takes the identity as a comma-separated key=value list, and tgt
    # truncates overlong values without a word: refuse both up front.
    try:
        validate.scsi_identity(name, value)
    except ValueError as exc:
        raise BadArgument("%s: %s" % (name, exc))


def _still_active(exc):
    code, marker = _STILL_ACTIVE
    return exc.returncode == code and marker in (exc.stderr or exc.stdout or "")


def _on_off(write_cache):
    return {True: "on", False: "off"}.get(write_cache, "unknown")


def _lun_spec(lun, device, scsi_id, scsi_sn, vendor_id, product_id, write_cache=False):
    """One LUN's checked settings as a dict (``lun`` a number; LUN 0 is tgt's own
    controller LUN)."""
    if not isinstance(write_cache, bool):
        raise BadArgument("write_cache %r must be True or False" % (write_cache,))
    spec = {"lun": _number("LUN", lun), "device": device, "scsi_id": scsi_id,
            "scsi_sn": scsi_sn, "vendor_id": vendor_id, "product_id": product_id,
            "write_cache": write_cache}
    for name in IDENTITY_KEYS:
        _check_identity(name, spec[name])
    return spec


def _identity_params(spec):
    return ["%s=%s" % (name, spec[name]) for name in IDENTITY_KEYS]


def _checked_lun(target, spec, what):
    """``spec``'s LUN as ``target`` lists it, or the TargetError saying how it differs.
    (vendor_id, product_id and the mode pages do not appear in --op show.)"""
    found = target.lun(spec["lun"])
    if found is None or (found.backing_path, found.scsi_id, found.scsi_sn,
                         found.write_cache) != (spec["device"], spec["scsi_id"],
                                                spec["scsi_sn"], spec["write_cache"]):
        raise TargetError("cannot %s: tgtd reports %s" % (
            what, "no LUN %s" % spec["lun"] if found is None else
            "LUN %s on %s with scsi_id=%s scsi_sn=%s write cache %s" % (
                spec["lun"], found.backing_path, found.scsi_id, found.scsi_sn,
                _on_off(found.write_cache))),
            details=[what])
    return found


def _number(name, value, minimum=1):
    """``value`` as an int (plugin arguments arrive as strings)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or number < minimum:
        raise BadArgument("%s %r must be a whole number of at least %d"
                          % (name, value, minimum))
    return number


class TgtTarget(object):
    """The targets of one tgtd, reached through its control port."""

    def __init__(self, tgtadm="tgtadm", control_port=0, timeout=20.0):
        self.tgtadm = tgtadm
        self.control_port = control_port
        self.timeout = timeout

    def _run(self, what, args, retry_still_active=False):
        """Run ``tgtadm -C PORT ARGS``; ``what`` names the operation in errors.

        ``retry_still_active`` runs it again while tgtd answers "still active",
        for up to :data:`STILL_ACTIVE_RETRY_SECONDS`.
        """
        argv = [self.tgtadm, "-C", str(self.control_port)] + list(args)
        give_up = commands.monotonic() + STILL_ACTIVE_RETRY_SECONDS
        while True:
            try:
                return commands.run(argv, timeout=self.timeout).stdout
            except CommandFailed as exc:
                if not (retry_still_active and _still_active(exc)
                        and commands.monotonic() < give_up):
                    self._raise(what, exc)
            time.sleep(_STILL_ACTIVE_PAUSE)

    def _raise(self, what, exc):
        """The iscsi-ha error for a failed tgtadm call."""
        if exc.timed_out:
            # Hung is not down: a caller must not conclude no target is exported.
            raise TargetError(
                "tgtd on control port %s did not answer within %ss (%s); it is hung "
                "or overloaded: restart the tgt service" % (self.control_port,
                                                             self.timeout, what),
                details=[what])
        message = (exc.stderr or exc.stdout or "").strip()
        if any(marker in message for marker in _DAEMON_DOWN_MARKERS):
            raise TargetDaemonDown(
                "tgtd is not running on control port %s (%s: %s); start the tgt "
                "service" % (self.control_port, what, message), details=[what, message])
        raise TargetError("cannot %s on tgtd control port %s: %s"
                          % (what, self.control_port, message or "tgtadm exited with "
                             "code %s" % exc.returncode), details=[what, message])

    def daemon_running(self):
        """True when tgtd answers on our control port."""
        try:
            self._run("show the system state", ["--mode", "sys", "--op", "show"])
        except TargetDaemonDown:
            return False
        return True

    def show(self):
        """Every target tgtd has now, as :class:`TargetInfo` objects."""
        return parse_show(self._run("list targets", ["--lld", "iscsi", "--mode", "target",
                                                     "--op", "show"]))

    def show_if_running(self):
        """:meth:`show`, or None when tgtd does not answer: one tgtadm call where
        :meth:`daemon_running` and :meth:`show` take two."""
        try:
            return self.show()
        except TargetDaemonDown:
            return None

    def find(self, iqn):
        """The target named ``iqn``, or None."""
        for target in self.show():
            if target.iqn == iqn:
                return target
        return None

    def get(self, tid):
        """The target with ``tid``, or None."""
        tid = _number("target id", tid)
        for target in self.show():
            if target.tid == tid:
                return target
        return None

    def _existing(self, tid, what):
        target = self.get(tid)
        if target is None:
            raise TargetError("cannot %s: target %s does not exist on tgtd control port %s"
                              % (what, tid, self.control_port), details=[what])
        return target

    def create(self, tid, iqn):
        """Create target ``tid`` named ``iqn``; a no-op when exactly that exists."""
        tid = _number("target id", tid)
        what = "create target %s (%s)" % (tid, iqn)
        for target in self.show():
            if target.tid == tid and target.iqn == iqn:
                return target
            if target.tid == tid or target.iqn == iqn:
                raise TargetError("cannot %s: target %s (%s) is in the way"
                                  % (what, target.tid, target.iqn), details=[what])
        self._run(what, ["--lld", "iscsi", "--mode", "target", "--op", "new",
                         "--tid", tid, "--targetname", iqn])
        return self._existing(tid, what + " (read back)")

    def add_lun(self, tid, lun, device, scsi_id, scsi_sn, vendor_id, product_id,
                write_cache=False):
        """Export ``device`` as LUN ``lun`` of target ``tid`` with a fixed SCSI identity.

        ``write_cache`` False (the default) makes the LUN write-through: every
        write is on the device before the initiator hears it is done, and the
        caching mode page says so (WCE=0).  True writes into this host's page
        cache and advertises WCE=1, leaving durability to the initiator's
        SYNCHRONIZE CACHE.  tgt fixes the mode when it creates the LUN, so an
        existing LUN with the other mode is a :class:`TargetError`; an existing
        LUN on the same device and mode just gets the identity (again).
        Returns the :class:`LunInfo` read back.
        """
        tid = _number("target id", tid)
        spec = _lun_spec(lun, device, scsi_id, scsi_sn, vendor_id, product_id, write_cache)
        lun = spec["lun"]
        what = "add LUN %s (%s) to target %s" % (lun, device, tid)
        present = self._existing(tid, what).lun(lun)
        if present is not None and present.backing_path != device:
            raise TargetError("cannot %s: LUN %s already exports %s"
                              % (what, lun, present.backing_path), details=[what])
        if present is not None and present.write_cache != write_cache:
            raise TargetError(
                "cannot %s: LUN %s is exported with the write cache %s, not %s; tgt cannot "
                "change that in place: delete the LUN (demote this host) and add it again"
                % (what, lun, _on_off(present.write_cache), _on_off(write_cache)),
                details=[what])
        if present is None:
            self._new_lun(tid, spec)
        else:
            self._set_identity(tid, lun, _identity_params(spec))
        what = "set the SCSI identity and caching of LUN %s of target %s" % (lun, tid)
        return _checked_lun(self._existing(tid, what + " (read back)"), spec, what)

    def build(self, tid, iqn, luns, initiators):
        """Create target ``tid`` named ``iqn`` from nothing: its LUNs (keyword dicts of
        :meth:`add_lun`'s arguments), the initiators allowed, online. Returns the
        :class:`TargetInfo` read back.

        A promote's path: each step's answer is checked, and one read-back at the
        end checks them all (what :meth:`create`, :meth:`add_lun`, :meth:`bind`
        and :meth:`set_state` each read back), so the build costs one tgtadm
        call per change. A target already there is in the way: a caller that
        may find one uses those methods instead. On a failure the caller removes
        what was made (:meth:`delete`).
        """
        tid = _number("target id", tid)
        specs = [_lun_spec(**lun) for lun in luns]
        what = "create target %s (%s)" % (tid, iqn)
        self._run(what, ["--lld", "iscsi", "--mode", "target", "--op", "new",
                         "--tid", tid, "--targetname", iqn])
        for spec in specs:
            self._new_lun(tid, spec)
        for address in initiators:
            self._run("allow %s on target %s" % (address, tid),
                      ["--lld", "iscsi", "--mode", "target", "--op", "bind", "--tid", tid,
                       "--initiator-address", address])
        self._run("set target %s ready" % tid, ["--lld", "iscsi", "--mode", "target",
                                                "--op", "update", "--tid", tid, "--name",
                                                "state", "--value", "ready"])
        what += " (read back)"
        target = self._existing(tid, what)
        problems = []
        if target.iqn != iqn:
            problems.append("it is named %s" % target.iqn)
        problems += ["it does not list initiators %s" % address for address in initiators
                     if address not in target.acl]
        if target.state != "ready":
            problems.append("its state is %s" % target.state)
        if problems:
            raise TargetError("cannot %s: tgtd reports that %s" % (what, "; ".join(problems)),
                              details=[what])
        for spec in specs:
            _checked_lun(target, spec, what)
        return target

    def _new_lun(self, tid, spec):
        """Add the LUN ``spec`` describes (it is not there) and give it its identity."""
        lun, device = spec["lun"], spec["device"]
        what = "add LUN %s (%s) to target %s" % (lun, device, tid)
        # tgtadm answers a missing backing store with just "invalid request".
        if not os.path.exists(device):
            raise TargetError("cannot %s: %s does not exist" % (what, device), details=[what])
        write_cache = spec["write_cache"]
        flags = [] if write_cache else ["--bsoflags", WRITE_THROUGH_FLAG]
        self._run(what, ["--lld", "iscsi", "--mode", "logicalunit", "--op", "new",
                         "--tid", tid, "--lun", lun, "--backing-store", device] + flags)
        params = _identity_params(spec)
        if not write_cache:
            # Only on a new LUN: tgt swaps the page without a lock against its
            # I/O threads, which read it on every write.
            params.append("mode_page=" + _WRITE_THROUGH_CACHING_PAGE)
        self._set_identity(tid, lun, params)

    def _set_identity(self, tid, lun, params):
        what = "set the SCSI identity and caching of LUN %s of target %s" % (lun, tid)
        self._run(what, ["--lld", "iscsi", "--mode", "logicalunit", "--op", "update",
                         "--tid", tid, "--lun", lun, "--params", ",".join(params)])

    def bind(self, tid, initiator_address="ALL"):
        """Let ``initiator_address`` (an address, a network or ALL) log in to ``tid``."""
        tid = _number("target id", tid)
        what = "allow %s on target %s" % (initiator_address, tid)
        if initiator_address in self._existing(tid, what).acl:
            return
        self._run(what, ["--lld", "iscsi", "--mode", "target", "--op", "bind", "--tid", tid,
                         "--initiator-address", initiator_address])
        if initiator_address not in self._existing(tid, what + " (read back)").acl:
            raise TargetError("cannot %s: tgtd does not list it" % what, details=[what])

    def delete_lun(self, tid, lun):
        """Stop exporting LUN ``lun`` of ``tid``; absent already is fine."""
        tid, lun = _number("target id", tid), _number("LUN", lun)
        what = "delete LUN %s of target %s" % (lun, tid)
        if self._existing(tid, what).lun(lun) is None:
            return
        self._run(what, ["--lld", "iscsi", "--mode", "logicalunit", "--op", "delete",
                         "--tid", tid, "--lun", lun])

    def unbind(self, tid, initiator_address="ALL"):
        """Withdraw what :meth:`bind` allowed; not allowed already is fine."""
        tid = _number("target id", tid)
        what = "disallow %s on target %s" % (initiator_address, tid)
        if initiator_address not in self._existing(tid, what).acl:
            return
        self._run(what, ["--lld", "iscsi", "--mode", "target", "--op", "unbind", "--tid", tid,
                         "--initiator-address", initiator_address])

    def set_state(self, tid, state):
        """``ready`` serves initiators; ``offline`` holds their commands (not an error)."""
        if state not in TARGET_STATES:
            raise BadArgument("target state %r must be one of %s"
                              % (state, ", ".join(TARGET_STATES)))
        tid = _number("target id", tid)
        what = "set target %s %s" % (tid, state)
        self._run(what, ["--lld", "iscsi", "--mode", "target", "--op", "update", "--tid", tid,
                         "--name", "state", "--value", state])
        found = self._existing(tid, what + " (read back)").state
        if found != state:
            raise TargetError("cannot %s: tgtd reports %s" % (what, found), details=[what])

    def delete(self, tid, iqn=None):
        """Remove target ``tid`` even with initiators logged in; gone already is fine.

        With ``iqn``, a target ``tid`` of another name is left alone (a
        :class:`TargetError`): it is not ours to remove.
        """
        tid = _number("target id", tid)
        what = "delete target %s" % tid
        target = self.get(tid)
        if target is None:
            return
        if iqn is not None and target.iqn != iqn:
            raise TargetError("tid %d belongs to %s, not to %s; not removing it"
                              % (tid, target.iqn, iqn), details=[what])
        # tgtadm refuses to delete a target with sessions ("still active") unless
        # forced; going offline first stops it from taking new commands meanwhile.
        # Not read back: the delete right after is, and it is the one that counts.
        if target.state != "offline":
            self._run("set target %s offline" % tid,
                      ["--lld", "iscsi", "--mode", "target", "--op", "update", "--tid", tid,
                       "--name", "state", "--value", "offline"])
        self._run(what, ["--lld", "iscsi", "--mode", "target", "--op", "delete", "--force",
                         "--tid", tid], retry_still_active=True)
        if self.get(tid) is not None:
            raise TargetError("cannot %s: tgtd still lists it" % what, details=[what])

"""The floating IP: is it here, is another host answering for it, claim, release.

Another holder is found by duplicate address detection, in one of two ways
(``[vip] duplicate_check``):

- ``probe`` (the default): our own ARP probe for ``probe_ms`` milliseconds
  (:mod:`iscsi_ha.packets`), then the announcements from the same socket;
- ``arping``: iputils' ``arping -D``, which exits 1 when some host answers and
  0 when nobody did by its deadline (``dad_wait`` seconds, whole ones only),
  then a background ``arping -U`` for the announcements.  Habets' arping takes
  the same flags with other meanings (its ``-D`` prints dots), hence
  :func:`arping_flavour`.

Both ask from sender address 0.0.0.0, which our own kernel never answers, so
the check also finds a second holder while the VIP is here. Both mostly wait,
so a caller may start the check early (:meth:`FloatingIp.start_duplicate_check`)
and do its other work meanwhile.
"""

import os
import socket

from iscsi_ha import commands
from iscsi_ha.errors import CommandFailed, ToolMissing, VipError, VipInUse

# arping -D exits 1 when some host answered for the address.
_ARPING_DUPLICATE = 1
# What iputils' arping -V prints ("arping from iputils 20221126", or
# "arping utility, iputils-s20161105" before 2019); Habets' starts its usage with this.
_IPUTILS_MARK = "iputils"
_HABETS_MARK = "Habets"


def _packed(address):
    """The 4 bytes of a dotted IPv4 address, or None when it is not one."""
    try:
        return socket.inet_aton(address)
    except (socket.error, TypeError, ValueError):
        return None


def parse_addresses(text):
    """(address, prefix) pairs from ``ip -o -4 addr show`` output, as ip printed them."""
    found = []
    for line in text.splitlines():
        words = line.split()
        if "inet" in words:
            address, _, prefix = words[words.index("inet") + 1].partition("/")
            if _packed(address) is not None:
                found.append((address, int(prefix or 32)))
    return found


def interface_exists(interface, ip="ip", timeout=20.0):
    return commands.run([ip, "link", "show", "dev", interface], timeout=timeout,
                        check=False).ok


def arping_flavour(arping="arping", timeout=20.0):
    """Whether ``arping`` is iputils' one, whose ``-D`` exit codes the VIP check reads.

    Returns ``(ok, detail)`` for a check report; never raises.
    """
    try:
        result = commands.run([arping, "-V"], timeout=timeout, check=False)
    except (ToolMissing, CommandFailed) as exc:
        return False, exc.message
    output = "\n".join(part.strip() for part in (result.stdout, result.stderr) if part.strip())
    lines = output.splitlines()
    if _IPUTILS_MARK in output:
        return True, [line for line in lines if _IPUTILS_MARK in line][0]
    if _HABETS_MARK in output:
        banner = [line for line in lines if _HABETS_MARK in line][0]
        return False, ("%s is Habets' arping (%s), whose -D and exit codes mean something "
                       "else: install iputils' arping (Debian iputils-arping, XenServer "
                       "iputils) and point [tools] arping at it" % (arping, banner))
    return False, ("%s -V did not say it is iputils' arping (exit code %s: %s); install "
                   "iputils' arping and point [tools] arping at it"
                   % (arping, result.returncode, lines[0] if lines else "no output"))


class FloatingIp(object):
    """The VIP on one interface of this host, read back from the kernel every time.

    In ``probe`` mode one ARP socket serves the whole call: the probe, the
    look at what arrived since right before the address is added, and the
    announcements. Closing it costs the kernel milliseconds, so it is closed
    only when the process ends.
    """

    def __init__(self, address, prefix, interface, ip="ip", arping="arping", dad_wait=1,
                 announcements=3, timeout=20.0, announcer_pid_file=None,
                 duplicate_check="probe", probe_ms=50):
        self.address = address
        self.prefix = prefix
        self.interface = interface
        self.ip = ip
        self.arping = arping
        self.dad_wait = dad_wait
        self.announcements = announcements
        self.timeout = timeout
        # The background arping -U must stop when the VIP is released: its
        # announcements would make the next owner's duplicate check fail.
        self.announcer_pid_file = announcer_pid_file
        self.duplicate_check = duplicate_check
        self.probe_seconds = probe_ms / 1000.0
        self._arp = None
        self._pending_check = None

    @property
    def cidr(self):
        return "%s/%d" % (self.address, self.prefix)

    def local_prefix(self):
        """The prefix length the VIP has on our interface, or None when it is not there."""
        try:
            result = commands.run([self.ip, "-o", "-4", "addr", "show", "dev", self.interface],
                                  timeout=self.timeout)
        except CommandFailed as exc:
            raise VipError("cannot read the addresses of interface %s: %s; check [vip] "
                           "interface" % (self.interface, exc.message))
        wanted = _packed(self.address)
        for address, prefix in parse_addresses(result.stdout):
            if _packed(address) == wanted:
                return prefix
        return None

    def is_local(self):
        return self.local_prefix() is not None

    def start_duplicate_check(self):
        """Begin the check :meth:`answered_elsewhere` makes, in the background: the next
        :meth:`answered_elsewhere` or :meth:`claim` of this call waits for its end and
        uses its answer."""
        self._pending_check = commands.Background(self._check_now)

    def answered_elsewhere(self):
        """True when another host answers ARP for the VIP, whether or not it is here too."""
        if self._pending_check is not None:
            pending, self._pending_check = self._pending_check, None
            return pending.result()
        return self._check_now()

    def _check_now(self):
        if self.duplicate_check == "probe":
            return self._with_arp("duplicate address check",
                                  lambda arp: arp.probe(self.probe_seconds))
        result = commands.run([self.arping, "-D", "-q", "-c", str(self.dad_wait + 1),
                               "-w", str(self.dad_wait), "-I", self.interface, self.address],
                              timeout=self.timeout + self.dad_wait, check=False)
        if result.returncode not in (0, _ARPING_DUPLICATE):
            raise VipError("duplicate address check for %s on %s failed: %s"
                           % (self.address, self.interface,
                              (result.stderr or result.stdout).strip()))
        return result.returncode == _ARPING_DUPLICATE

    def _with_arp(self, what, use):
        """``use(socket)`` on this call's ARP socket, opened on first use; a socket error
        is a :class:`VipError` naming ``what``."""
        try:
            if self._arp is None:
                from iscsi_ha.packets import ArpSocket  # only calls that send ARP pay for it
                self._arp = ArpSocket(self.interface, self.address)
            return use(self._arp)
        except (socket.error, OSError) as exc:
            raise VipError("%s for %s on %s failed: %s; check [vip] interface"
                           % (what, self.address, self.interface, exc))

    def _in_use(self):
        """The duplicate check right before the add.

        A probe made earlier in this call still listens: whatever claimed the
        VIP since is queued on its socket, so reading the queue is as good as
        probing again, without the wait.
        """
        if self._pending_check is not None and self.answered_elsewhere():
            return True
        if self.duplicate_check == "probe" and self._arp is not None and self._arp.probed:
            return self._with_arp("duplicate address check",
                                  lambda arp: arp.claimed_since_probe())
        return self.answered_elsewhere()

    def claim(self, probe=True):
        """Add the VIP unless another host answers for it, then announce it.

        The check runs right before the add, whatever the caller saw earlier,
        so two hosts cannot both take the address on stale observations.
        ``probe=False`` skips it, for a caller that knows the old owner
        released the address in this same switchover.
        """
        if probe and self._in_use():
            raise VipInUse("another host answers ARP for %s on %s; not claiming it: find "
                           "that host and demote it (fn=demote there) first"
                           % (self.address, self.interface))
        try:
            commands.run([self.ip, "addr", "add", self.cidr, "dev", self.interface],
                         timeout=self.timeout)
        except CommandFailed as exc:
            raise VipError("cannot add %s to %s: %s" % (self.cidr, self.interface,
                                                         exc.message))
        if not self.announcements:
            return
        if self.duplicate_check == "probe":
            self._with_arp("announcing", lambda arp: arp.announce(self.announcements))
            return
        # iputils' arping -U blocks about a second, so it runs on in the background.
        pid = commands.spawn_detached([self.arping, "-U", "-q", "-c", str(self.announcements),
                                       "-I", self.interface, self.address])
        if self.announcer_pid_file:
            with open(self.announcer_pid_file, "w") as handle:
                handle.write("%d\n" % pid)

    def stop_announcing(self):
        try:
            with open(self.announcer_pid_file) as handle:
                pid = int(handle.read())
        except (IOError, OSError, ValueError, TypeError):
            return
        commands.stop_detached(pid, os.path.basename(self.arping))
        os.remove(self.announcer_pid_file)

    def release(self):
        """Remove the VIP; gone already is fine."""
        self.stop_announcing()
        prefix = self.local_prefix()
        if prefix is None:
            return
        # The kernel's prefix, not the config's: the config may have changed since.
        cidr = "%s/%d" % (self.address, prefix)
        try:
            commands.run([self.ip, "addr", "del", cidr, "dev", self.interface],
                         timeout=self.timeout)
        except CommandFailed as exc:
            raise VipError("cannot remove %s from %s: %s" % (cidr, self.interface,
                                                              exc.message))


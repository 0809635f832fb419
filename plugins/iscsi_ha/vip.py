"""The floating IP: is it here, is another host answering for it, claim, release."""

import os

from iscsi_ha import commands
from iscsi_ha.errors import CommandFailed, VipError

# arping -D exits 1 when some host answered for the address.
_ARPING_DUPLICATE = 1


def parse_addresses(text):
    """(address, prefix) pairs from ``ip -o -4 addr show`` output."""
    found = []
    for line in text.splitlines():
        words = line.split()
        if "inet" in words:
            address, _, prefix = words[words.index("inet") + 1].partition("/")
            found.append((address, int(prefix or 32)))
    return found


def interface_exists(interface, ip="ip", timeout=20.0):
    return commands.run([ip, "link", "show", "dev", interface], timeout=timeout,
                        check=False).ok


class FloatingIp(object):
    """The VIP on one interface of this host, read back from the kernel every time."""

    def __init__(self, address, prefix, interface, ip="ip", arping="arping", dad_wait=1,
                 announcements=3, timeout=20.0, announcer_pid_file=None):
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
        for address, prefix in parse_addresses(result.stdout):
            if address == self.address:
                return prefix
        return None

    def is_local(self):
        return self.local_prefix() is not None

    def answered_elsewhere(self):
        """True when another host answers ARP for the VIP (duplicate address detection)."""
        result = commands.run([self.arping, "-D", "-q", "-c", str(self.dad_wait + 1),
                               "-w", str(self.dad_wait), "-I", self.interface, self.address],
                              timeout=self.timeout + self.dad_wait, check=False)
        if result.returncode not in (0, _ARPING_DUPLICATE):
            raise VipError("duplicate address check for %s on %s failed: %s"
                           % (self.address, self.interface,
                              (result.stderr or result.stdout).strip()))
        return result.returncode == _ARPING_DUPLICATE

    def claim(self):
        """Add the VIP, then announce it; the announcements run on in the background."""
        try:
            commands.run([self.ip, "addr", "add", self.cidr, "dev", self.interface],
                         timeout=self.timeout)
        except CommandFailed as exc:
            raise VipError("cannot add %s to %s: %s" % (self.cidr, self.interface,
                                                         exc.message))
        if self.announcements:
            pid = commands.spawn_detached([self.arping, "-U", "-q", "-c",
                                           str(self.announcements), "-I", self.interface,
                                           self.address])
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

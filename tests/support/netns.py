"""Throwaway network namespaces and veth links for lab tests.

Owns: unique names (one random prefix per lab, so parallel runs never
collide and leftovers can be found), creating and deleting namespaces and veth
pairs, running commands inside a namespace, and removing whatever an earlier
run left behind.  Only documentation addresses (192.0.2.0/24, 198.51.100.0/24)
can be assigned, so no test can send traffic anywhere real.

    PYTHONPATH=plugins python -m tests.support.netns cleanup [PREFIX]

removes every namespace and root-namespace link whose name starts with PREFIX
(default ``iha``), killing the processes still inside those namespaces.
"""

import binascii
import os
import signal
import subprocess
import sys
import time

from iscsi_ha import commands
from iscsi_ha.errors import CommandFailed

PREFIX = "iha"
LAB_NETWORKS = ("192.0.2.", "198.51.100.")
# Linux interface names hold at most 15 characters.
MAX_INTERFACE_NAME = 15
# A prefix shorter than this could match namespaces nobody meant to remove.
MIN_CLEANUP_PREFIX = 3


def unique_prefix(base=PREFIX):
    """``base`` plus six random hex digits, e.g. ``iha3fa09c``."""
    return base + binascii.hexlify(os.urandom(3)).decode("ascii")


def check_lab_address(cidr):
    """Refuse anything but ``A.B.C.D/LEN`` inside the documentation networks."""
    address, _, length = cidr.partition("/")
    octets = address.split(".")
    valid = (len(octets) == 4 and all(o.isdigit() and int(o) <= 255 for o in octets)
             and length.isdigit() and 24 <= int(length) <= 32
             and any(address.startswith(network) for network in LAB_NETWORKS))
    if not valid:
        raise ValueError("%r is not a lab address: use A.B.C.D/LEN (LEN 24..32) inside "
                         "192.0.2.0/24 or 198.51.100.0/24" % (cidr,))


class Namespace(object):
    """One named network namespace."""

    def __init__(self, name, ip="ip"):
        self.name = name
        self.ip = ip

    def __repr__(self):
        return "Namespace(%r)" % self.name

    @classmethod
    def create(cls, name, ip="ip"):
        """Add the namespace and bring its loopback up."""
        namespace = cls(name, ip)
        commands.run([ip, "netns", "add", name], timeout=10)
        try:
            namespace.run([ip, "link", "set", "lo", "up"])
        except Exception:
            namespace.delete()
            raise
        return namespace

    def exists(self):
        return os.path.exists(os.path.join("/var/run/netns", self.name))

    def exec_argv(self, argv):
        """``argv`` wrapped to run inside this namespace."""
        return [self.ip, "netns", "exec", self.name] + [str(a) for a in argv]

    def run(self, argv, timeout=10.0, check=True):
        return commands.run(self.exec_argv(argv), timeout=timeout, check=check)

    def popen(self, argv, **kwargs):
        """Start ``argv`` inside the namespace and return the Popen (for daemons, clients)."""
        kwargs.setdefault("close_fds", True)
        return subprocess.Popen(self.exec_argv(argv), **kwargs)

    def pids(self):
        if not self.exists():
            return []
        result = commands.run([self.ip, "netns", "pids", self.name], timeout=10, check=False)
        return [int(word) for word in result.stdout.split() if word.isdigit()]

    def delete(self, timeout=5.0):
        """Kill what still runs inside, then remove the namespace; absent is fine."""
        _kill_and_wait(self.pids(), timeout)
        if self.exists():
            commands.run([self.ip, "netns", "delete", self.name], timeout=10)


def _kill_and_wait(pids, timeout):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.time() + timeout
    while pids and time.time() < deadline:
        pids = [pid for pid in pids if os.path.exists("/proc/%d" % pid)
                and not _is_zombie(pid)]
        if pids:
            time.sleep(0.02)


def _is_zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (IOError, OSError, IndexError):
        return True


class VethLink(object):
    """A veth pair: ``name_a`` in ``namespace_a``, ``name_b`` in ``namespace_b``."""

    def __init__(self, name_a, namespace_a, name_b, namespace_b, ip="ip"):
        self.name_a = name_a
        self.namespace_a = namespace_a
        self.name_b = name_b
        self.namespace_b = namespace_b
        self.ip = ip

    @classmethod
    def create(cls, name_a, namespace_a, cidr_a, name_b, namespace_b, cidr_b, ip="ip"):
        """Create the pair with each end already inside its namespace, address it, up it."""
        for cidr in (cidr_a, cidr_b):
            check_lab_address(cidr)
        for name in (name_a, name_b):
            if len(name) > MAX_INTERFACE_NAME:
                raise ValueError("interface name %r is longer than %d characters"
                                 % (name, MAX_INTERFACE_NAME))
        link = cls(name_a, namespace_a, name_b, namespace_b, ip)
        commands.run([ip, "link", "add", name_a, "netns", namespace_a.name, "type", "veth",
                      "peer", "name", name_b, "netns", namespace_b.name], timeout=10)
        try:
            for name, namespace, cidr in ((name_a, namespace_a, cidr_a),
                                          (name_b, namespace_b, cidr_b)):
                commands.run([ip, "-n", namespace.name, "addr", "add", cidr, "dev", name],
                             timeout=10)
                commands.run([ip, "-n", namespace.name, "link", "set", name, "up"],
                             timeout=10)
        except Exception:
            link.delete()
            raise
        return link

    def delete(self):
        """Remove the pair (deleting one end removes both); absent is fine."""
        for name, namespace in ((self.name_a, self.namespace_a),
                                (self.name_b, self.namespace_b)):
            if namespace.exists() and _link_exists(self.ip, namespace.name, name):
                commands.run([self.ip, "-n", namespace.name, "link", "delete", name],
                             timeout=10)
                return


def _link_exists(ip, namespace_name, name):
    argv = [ip] + (["-n", namespace_name] if namespace_name else []) + [
        "link", "show", "dev", name]
    return commands.run(argv, timeout=10, check=False).ok


class Lab(object):
    """The namespaces and links of one test; ``cleanup()`` removes all of them.

    Use as a context manager or call ``cleanup()`` from a finalizer: it is
    safe on a half-built lab and when called twice.
    """

    def __init__(self, prefix=None, ip="ip"):
        self.prefix = prefix or unique_prefix()
        self.ip = ip
        self.namespaces = []
        self.links = []

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.cleanup()

    def namespace(self, role):
        """A new namespace called ``<prefix>-<role>``."""
        namespace = Namespace.create("%s-%s" % (self.prefix, role), self.ip)
        self.namespaces.append(namespace)
        return namespace

    def link(self, namespace_a, cidr_a, namespace_b, cidr_b):
        """A veth pair between two namespaces, named ``<prefix>a<n>`` / ``<prefix>b<n>``."""
        number = len(self.links)
        link = VethLink.create("%sa%d" % (self.prefix, number), namespace_a, cidr_a,
                               "%sb%d" % (self.prefix, number), namespace_b, cidr_b,
                               self.ip)
        self.links.append(link)
        return link

    def cleanup(self):
        """Delete links, then namespaces; raise the first failure after trying all."""
        failures = []
        for item in list(reversed(self.links)) + list(reversed(self.namespaces)):
            try:
                item.delete()
            except CommandFailed as exc:
                failures.append(exc)
        self.links, self.namespaces = [], []
        if failures:
            raise failures[0]


def cleanup_all(prefix=PREFIX, ip="ip"):
    """Remove every namespace and root-namespace link named ``prefix...``.

    For ``make clean`` after interrupted runs; returns the names removed.
    """
    if len(prefix) < MIN_CLEANUP_PREFIX:
        raise ValueError("prefix %r is too short to clean up safely" % (prefix,))
    removed = []
    listing = commands.run([ip, "netns", "list"], timeout=10).stdout
    for line in listing.splitlines():
        name = line.split(" ", 1)[0]
        if name.startswith(prefix):
            Namespace(name, ip).delete()
            removed.append(name)
    links = commands.run([ip, "-o", "link", "show"], timeout=10).stdout
    for line in links.splitlines():
        # "7: ihaXXa0@if6: <BROADCAST,..." -> ihaXXa0
        name = line.split(":", 2)[1].strip().split("@", 1)[0] if ":" in line else ""
        if name.startswith(prefix) and _link_exists(ip, None, name):
            commands.run([ip, "link", "delete", name], timeout=10)
            removed.append(name)
    # Lab hosts' own /etc entries (tests/lab/host_etc.py, Python 3 only).
    netns_etc = "/etc/netns"
    leftovers = [name for name in (os.listdir(netns_etc) if os.path.isdir(netns_etc) else [])
                 if name.startswith(prefix)]
    if leftovers:
        from tests.lab import host_etc
        for name in leftovers:
            host_etc.remove(name)
            removed.append(os.path.join(netns_etc, name))
    return removed


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "cleanup" or len(argv) > 2:
        sys.stderr.write("usage: python -m tests.support.netns cleanup [PREFIX]\n")
        return 2
    try:
        removed = cleanup_all(argv[1] if len(argv) > 1 else PREFIX)
    except (ValueError, CommandFailed) as exc:
        sys.stderr.write("netns cleanup: %s\n" % exc)
        return 1
    for name in removed:
        sys.stdout.write("removed %s\n" % name)
    return 0


if __name__ == "__main__":
    sys.exit(main())

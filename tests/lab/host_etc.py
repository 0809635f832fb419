"""Each lab host's own /etc/iscsi-ha, the way ``ip netns exec`` provides one (Python 3 only).

``ip netns exec NS CMD`` runs CMD in a mount namespace of its own where every
entry of ``/etc/netns/NS/`` is bind-mounted over the same name in ``/etc``, if
that name exists there.  The XAPI simulator starts each host's plugin that way,
so a host reads ``/etc/iscsi-ha/iscsi-ha.conf``, the plugin's default path, and
finds its own config there: ``/etc/netns/NS/iscsi-ha/iscsi-ha.conf``, a link to
the file the lab rendered in its state directory.

Owns: creating and removing those entries, and the one mount point they need
in the machine's own ``/etc`` (an ``iscsi-ha`` directory holding only a marker,
made only when missing and removed with the last lab host that used it); a
lock, so that labs starting and stopping at the same time agree on it.
"""

import contextlib
import fcntl
import os

ETC = "/etc"
NETNS_ETC = "/etc/netns"
CONFIG_DIR = "iscsi-ha"
CONFIG_FILE = "iscsi-ha.conf"
# Marks a mount point this module made (and may therefore remove).
MARKER = ".made-by-the-iscsi-ha-lab"
LOCK = "/run/lock/iscsi-ha-lab-etc.lock"


@contextlib.contextmanager
def _locked():
    os.makedirs(os.path.dirname(LOCK), exist_ok=True)
    with open(LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def config_link(namespace):
    """Where a host in ``namespace`` finds its config as /etc/iscsi-ha/iscsi-ha.conf."""
    return os.path.join(NETNS_ETC, namespace, CONFIG_DIR, CONFIG_FILE)


def install(namespace, config_path):
    """Make ``config_path`` the config that processes in ``namespace`` read by default."""
    with _locked():
        mount_point = os.path.join(ETC, CONFIG_DIR)
        if not os.path.isdir(mount_point):
            os.mkdir(mount_point, 0o755)
            with open(os.path.join(mount_point, MARKER), "w") as marker:
                marker.write("mount point for the iscsi-ha lab's /etc/netns/*/%s\n" % CONFIG_DIR)
        link = config_link(namespace)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(os.path.abspath(config_path), link)


def remove(namespace):
    """Undo :func:`install` for ``namespace``; fine to run when there is nothing to undo."""
    with _locked():
        link = config_link(namespace)
        if os.path.lexists(link):
            os.remove(link)
        for directory in (os.path.dirname(link), os.path.join(NETNS_ETC, namespace), NETNS_ETC):
            _remove_empty(directory)
        mount_point = os.path.join(ETC, CONFIG_DIR)
        still_used = os.path.isdir(NETNS_ETC) and any(
            os.path.isdir(os.path.join(NETNS_ETC, name, CONFIG_DIR))
            for name in os.listdir(NETNS_ETC))
        if not still_used and _listing(mount_point) == [MARKER]:
            os.remove(os.path.join(mount_point, MARKER))
            os.rmdir(mount_point)


def _listing(directory):
    try:
        return os.listdir(directory)
    except FileNotFoundError:
        return []


def _remove_empty(directory):
    try:
        os.rmdir(directory)
    except OSError:
        pass  # missing, or not empty: someone else's

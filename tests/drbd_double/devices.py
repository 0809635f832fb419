"""What a host sees at its DRBD device and backing disk, kept as files under STATE.

A host's device ``STATE/<host>/dev/drbd<minor>`` is:

* on a Primary, a symlink to its replica file: opens, reads and writes work as on
  the real device;
* on a Secondary, a block device node with DRBD's major (147) and the resource's
  minor. It exists (``test -b`` is true) but no driver answers here, so every
  open fails with ENXIO. Real DRBD also refuses every open of a Secondary
  (8.4.11 and 9.1.17 with auto-promote off, ``drbd_main.c`` ``drbd_open``:
  EROFS for writers, EMEDIUMTYPE for readers); only the errno differs. Where
  mknod of a block node is not permitted, a socket node stands in (also ENXIO);
* absent while the resource is down or the host crashed.

Not modelled: auto-promote on open (a pool with ``auto-promote yes`` still
refuses writers on a Secondary), the read-only opens DRBD 9 allows with
auto-promote on or the ``allow_oos`` module parameter, failing the I/O of
openers after a forced demotion, and freezing I/O while a fence-peer handler
runs (writes through a Primary's open device always go through).

The backing disk ``STATE/<host>/disk/<resource>`` that the resource file, the
handler's ``DRBD_LL_DISK`` and ``drbdsetup show`` name is a symlink to the replica.
"""

import os
import stat

DRBD_MAJOR = 147


def device_path(state_dir, host, minor):
    return os.path.join(state_dir, host, "dev", "drbd%d" % minor)


def disk_path(state_dir, host, name):
    return os.path.join(state_dir, host, "disk", name)


def place(device, disk, data, minor, role):
    """Make ``device`` what a host with ``role`` (None: down) sees; ``disk`` -> ``data``."""
    point(disk, data)
    if role is None:
        if os.path.lexists(device):
            os.remove(device)
    elif role == "Primary":
        point(device, data)
    else:
        refusing_node(device, minor)


def point(link, target):
    if os.path.islink(link) and os.readlink(link) == target:
        return
    os.makedirs(os.path.dirname(link), exist_ok=True)
    os.symlink(target, link + ".new")
    os.replace(link + ".new", link)


def refusing_node(device, minor):
    """A device node that exists but that nobody can open (no driver answers)."""
    try:
        mode = os.lstat(device).st_mode
    except FileNotFoundError:
        mode = 0
    if stat.S_ISBLK(mode) or stat.S_ISSOCK(mode):
        return
    fresh = device + ".new"
    if os.path.lexists(fresh):
        os.remove(fresh)
    try:
        os.mknod(fresh, stat.S_IFBLK | 0o600, os.makedev(DRBD_MAJOR, minor))
    except PermissionError:
        os.mknod(fresh, stat.S_IFSOCK | 0o600)
    os.replace(fresh, device)

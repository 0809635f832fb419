"""What ``drbdsetup get-gi`` prints: a replica's data generation UUIDs and metadata flags.

Owns the double's mapping from its generation numbers (``gen``, ``synced_gen``)
to DRBD's 64-bit UUIDs, and the one-line layouts of drbd-utils 9.22
(``drbdtool_common.c`` ``dt_print_v9_uuids`` for DRBD 9, ``shared_tool.c``
``dt_print_uuids`` for drbdsetup-84): current, bitmap and two history UUIDs in
upper-case hex, then the flags as 0/1. The kernel keeps a non-zero bitmap UUID
(the generation both hosts last shared) while this side holds writes its peer
lacks, and sets the lowest bit of the current UUID while Primary
(``UUID_PRIMARY``). The double keeps no older generations: its history UUIDs
are zero.
"""

import hashlib

from .states import CONSISTENT, PRIMARY, UP_TO_DATE


def uuid(name, generation):
    """A stable 64-bit UUID for generation number ``generation`` of ``name`` (even:
    the lowest bit is the Primary flag)."""
    digest = hashlib.sha1(("%s:%d" % (name, generation)).encode()).hexdigest()
    return int(digest[:16], 16) & ~1


def uuids(pool, host, name):
    """(current, bitmap, history1, history2) of ``host``'s replica."""
    replica = pool.replica(host, name)
    current = uuid(name, replica["gen"])
    if replica["role"] == PRIMARY and pool.is_up(host, name):
        current |= 1
    shared = uuid(name, replica["synced_gen"])
    if replica["gen"] != replica["synced_gen"]:
        return current, shared, 0, 0
    return current, 0, 0, 0


def get_gi(pool, host, name):
    """The line ``drbdsetup get-gi`` prints for ``host``'s replica."""
    replica = pool.replica(host, name)
    consistent = replica["disk"] in (UP_TO_DATE, CONSISTENT, "Outdated")
    up_to_date = replica["disk"] in (UP_TO_DATE, CONSISTENT)
    primary = replica["role"] == PRIMARY and pool.is_up(host, name)
    connected = pool.is_up(host, name) and pool.connected(host, name)
    peer_outdated = pool.peer_disk(host, name) == "Outdated"
    head = ":".join("%016X" % value for value in uuids(pool, host, name))
    if pool.version == "9":
        # consistent, was up-to-date, primary, crashed primary, al clean, al disabled,
        # primary lost quorum; then per peer: connected, outdated, fencing, full sync, seen.
        flags = [consistent, up_to_date, primary, False, True, False, False,
                 connected, peer_outdated, pool.fencing != "dont-care", False, True]
    else:
        # consistent, was up-to-date, primary, connected, full sync, peer outdated,
        # crashed primary.
        flags = [consistent, up_to_date, primary, connected, False, peer_outdated, False]
    return head + ":" + ":".join("1" if flag else "0" for flag in flags)

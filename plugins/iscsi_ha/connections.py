"""Initiator connections: the ones established to the VIP now, and the ones remembered.

A new owner of the VIP can reset an initiator's dead connection at once
(a tickle ACK, :mod:`iscsi_ha.packets`) only if it knows the client's port,
which tgtadm does not print. The established connections are read from the
kernel's socket tables (``/proc/net/tcp`` and ``tcp6``, where a dual-stack
listener's IPv4 connections appear as ``::ffff:a.b.c.d``), which costs a file
read where ``ss`` costs a process. The standby keeps the master's latest list
in ``[host] run_dir``/initiators.json, for a takeover after the master died.

A connection is written ``"ip:port"`` (the client's end) everywhere.
"""

import errno
import io
import json
import os
import socket
import struct

import six

ISCSI_PORT = 3260
_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
_ESTABLISHED = "01"  # TCP_ESTABLISHED in the st column
_V4_MAPPED = b"\x00" * 10 + b"\xff\xff"
STORE_NAME = "initiators.json"


def _address(hex_text):
    """The IPv4 address in a socket table's hex field, or None (a true IPv6 one).

    The kernel prints each 32-bit word of the address in host byte order.
    """
    words = [hex_text[i:i + 8] for i in range(0, len(hex_text), 8)]
    raw = b"".join(struct.pack("=I", int(word, 16)) for word in words)
    if len(raw) == 16 and raw[:12] == _V4_MAPPED:
        raw = raw[12:]
    return socket.inet_ntoa(raw) if len(raw) == 4 else None


def parse_table(text, address, port=ISCSI_PORT):
    """The ``"ip:port"`` of each client with a connection established to
    ``address:port``, in a ``/proc/net/tcp`` or ``tcp6`` table."""
    found = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != _ESTABLISHED:
            continue
        local, remote = fields[1].split(":"), fields[2].split(":")
        if int(local[1], 16) != port or _address(local[0]) != address:
            continue
        client = _address(remote[0])
        if client is not None:
            found.append("%s:%d" % (client, int(remote[1], 16)))
    return found


def established(address, port=ISCSI_PORT, tables=_TABLES):
    """The clients connected to ``address:port`` on this host now, sorted."""
    found = set()
    for path in tables:
        try:
            with io.open(path, encoding="ascii") as handle:
                found.update(parse_table(handle.read(), address, port))
        except (IOError, OSError) as exc:
            if exc.errno != errno.ENOENT:  # no IPv6 in this kernel: nothing to read
                raise
    return sorted(found)


def split(connection):
    """``"192.0.2.50:41000"`` as ``("192.0.2.50", 41000)``."""
    address, _, port = connection.rpartition(":")
    return address, int(port)


def remember(path, connections):
    """Store ``connections`` in ``path`` atomically: a reader sees the old list or the new."""
    temporary = "%s.%d.tmp" % (path, os.getpid())
    with io.open(temporary, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(sorted(set(connections))) + u"\n")
    os.rename(temporary, path)


def remembered(path):
    """The list :func:`remember` stored last, or [] when there is none (or it is unreadable)."""
    try:
        with io.open(path, encoding="utf-8") as handle:
            stored = json.loads(handle.read())
    except (IOError, OSError, ValueError):
        return []
    if not isinstance(stored, list):
        return []
    return [connection for connection in stored
            if isinstance(connection, six.string_types)]

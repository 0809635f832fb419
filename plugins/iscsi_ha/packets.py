"""The packets a switchover sends itself: ARP probes and announcements, tickle ACKs.

Owns every socket iscsi-ha opens. The frame builders and the ARP reader are
pure (tested on bytes); :class:`ArpSocket` and :func:`tickle` are the only
code that touches the network.

- ARP probe (RFC 5227): a request from sender address 0.0.0.0 for the VIP. The
  address is in use when any ARP arrives whose sender address is the VIP (an
  owner answering, or announcing), or when another host probes for it too.
  Our own kernel never answers a probe we send, so this finds a second holder
  while the VIP is here as well.
- Announcement (gratuitous ARP): a request whose sender and target are the
  VIP, broadcast so that every neighbour moves the VIP to our MAC at once.
- Tickle ACK: a TCP segment VIP:port -> client with seq 0 / ack 0 and one byte
  of payload. The client answers with its real sequence numbers; the new
  owner's kernel knows no such connection and resets it, so the initiator
  reconnects at once instead of waiting for its keepalive. The payload matters:
  Linux rate-limits its answers to out-of-window segments
  (``net.ipv4.tcp_invalid_ratelimit``), and an empty one sent too early would
  use up the answer.

The ARP socket is created with protocol 0 and bound to ETH_P_ARP: creating it
with the protocol makes the kernel hook it to every interface first, which
costs milliseconds. Nothing here depends on the Python version.
"""

import errno
import select
import socket
import struct

from iscsi_ha.commands import monotonic

ETH_P_ARP = 0x0806
_ETH_P_IP = 0x0800
_BROADCAST = b"\xff" * 6
_NO_MAC = b"\x00" * 6
_ANY = b"\x00" * 4
_ARP_REQUEST = 1
_PACKET_OUTGOING = 4  # sll_pkttype of a frame this host sent (linux/if_packet.h)
# Ethernet header, then ARP for IPv4 over Ethernet.
_ETHERNET = struct.Struct("!6s6sH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")
_FRAME_LENGTH = _ETHERNET.size + _ARP.size
# One probe every this many seconds within the probe window, at least two in all.
PROBE_INTERVAL = 0.01
_TCP_ACK, _TCP_PUSH = 0x10, 0x08
_TICKLE_PAYLOAD = b"\x00"
_TICKLE_WINDOW = 1024


def _packed(address):
    return socket.inet_aton(address)


def arp_frame(source_mac, sender_ip, target_ip):
    """A broadcast ARP request frame; ``sender_ip`` 0.0.0.0 makes it a probe."""
    return (_ETHERNET.pack(_BROADCAST, source_mac, ETH_P_ARP)
            + _ARP.pack(1, _ETH_P_IP, 6, 4, _ARP_REQUEST, source_mac, _packed(sender_ip),
                        _NO_MAC, _packed(target_ip)))


def probe_frame(source_mac, address):
    return arp_frame(source_mac, "0.0.0.0", address)


def announcement_frame(source_mac, address):
    return arp_frame(source_mac, address, address)


def claims(frame, own_mac, address):
    """Whether ``frame`` says another host holds or wants ``address``.

    True for any ARP from another MAC whose sender address is ``address``, and
    for another host's probe for it; everything else (other addresses, our
    own frames, what is not IPv4-over-Ethernet ARP) is False.
    """
    if len(frame) < _FRAME_LENGTH:
        return False
    ethertype = _ETHERNET.unpack(frame[:_ETHERNET.size])[2]
    if ethertype != ETH_P_ARP:
        return False
    hardware, protocol, hlen, plen, _, sender_mac, sender_ip, _, target_ip = _ARP.unpack(
        frame[_ETHERNET.size:_FRAME_LENGTH])
    if (hardware, protocol, hlen, plen) != (1, _ETH_P_IP, 6, 4) or sender_mac == own_mac:
        return False
    wanted = _packed(address)
    return sender_ip == wanted or (sender_ip == _ANY and target_ip == wanted)


class ArpSocket(object):
    """A packet socket on one interface that sends and watches ARP for one address.

    It stays open between the probe and the announcement, so what arrives
    between them (another host announcing the VIP while we promote) is still
    seen right before the address is added: :meth:`claimed_since_probe`.
    """

    def __init__(self, interface, address):
        self.interface = interface
        self.address = address
        self.probed = False
        self._socket = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            self._socket.bind((interface, ETH_P_ARP))
            self._socket.setblocking(False)
            self.mac = self._socket.getsockname()[4][:6]
        except BaseException:
            self._socket.close()
            raise

    def close(self):
        self._socket.close()

    def probe(self, seconds):
        """Probe for ``seconds``; True as soon as another host claims the address."""
        self.probed = True
        deadline = monotonic() + seconds
        next_probe = monotonic()
        while True:
            now = monotonic()
            if now >= next_probe:
                self._socket.send(probe_frame(self.mac, self.address))
                next_probe = now + min(PROBE_INTERVAL, seconds / 2.0)
            if now >= deadline:
                return False
            if self._wait(min(next_probe, deadline) - now) and self._drain():
                return True

    def claimed_since_probe(self):
        """Whether another host claimed the address in the frames queued since the probe."""
        return self._drain()

    def announce(self, count):
        """Send ``count`` announcements at once (each well under a millisecond)."""
        frame = announcement_frame(self.mac, self.address)
        for _ in range(count):
            self._socket.send(frame)

    def _wait(self, seconds):
        try:
            return bool(select.select([self._socket], [], [], max(0.0, seconds))[0])
        except (select.error, OSError) as exc:  # 2.7 does not retry after a signal itself
            if exc.args[0] == errno.EINTR:
                return False
            raise

    def _drain(self):
        """Read every queued frame; True when one of them claims the address."""
        claimed = False
        while True:
            try:
                frame, where = self._socket.recvfrom(2048)
            except (socket.error, OSError) as exc:
                if exc.args[0] in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                    return claimed
                raise
            if where[2] != _PACKET_OUTGOING and claims(frame, self.mac, self.address):
                claimed = True


def _checksum(data):
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    return ~total & 0xffff


def tickle_packet(source, source_port, destination, destination_port):
    """The IPv4 packet of a tickle ACK, headers and checksums complete."""
    src, dst = _packed(source), _packed(destination)
    header = struct.pack("!HHIIBBHHH", source_port, destination_port, 0, 0, 5 << 4,
                         _TCP_ACK | _TCP_PUSH, _TICKLE_WINDOW, 0, 0)
    segment = header + _TICKLE_PAYLOAD
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(segment))
    checksum = _checksum(pseudo + segment)
    segment = header[:16] + struct.pack("!H", checksum) + header[18:] + _TICKLE_PAYLOAD
    ip_header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(segment), 0, 0x4000, 64,
                            socket.IPPROTO_TCP, 0, src, dst)
    ip_header = ip_header[:10] + struct.pack("!H", _checksum(ip_header)) + ip_header[12:]
    return ip_header + segment


def tickle(source, source_port, connections):
    """Send a tickle ACK from ``source:source_port`` to each ``(ip, port)``.

    Returns ``[((ip, port), error text)]`` for those that could not be sent;
    one failure does not stop the others.
    """
    failures = []
    try:
        sender = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    except (socket.error, OSError) as exc:
        return [(connection, "cannot open a raw socket: %s" % exc)
                for connection in connections]
    try:
        for address, port in connections:
            try:
                sender.sendto(tickle_packet(source, source_port, address, port),
                              (address, 0))
            except (socket.error, OSError) as exc:
                failures.append(((address, port), str(exc)))
    finally:
        sender.close()
    return failures

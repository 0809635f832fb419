"""iscsi_ha.packets: the frames a switchover sends and how ARP frames are read.

The sockets are exercised in namespaces by test_vip.py (probe, announcements)
and tests/lab/test_fast_path.py (tickles); here only bytes.
"""

import socket
import struct

from iscsi_ha import packets

OURS, THEIRS = b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x02"
VIP = "192.0.2.100"


def test_a_probe_asks_for_the_address_from_no_address():
    frame = packets.probe_frame(OURS, VIP)
    assert frame[:6] == b"\xff" * 6 and frame[6:12] == OURS
    assert struct.unpack("!H", frame[12:14])[0] == packets.ETH_P_ARP
    assert frame[28:32] == b"\x00" * 4 and frame[38:42] == socket.inet_aton(VIP)


def test_an_announcement_names_the_address_as_sender_and_target():
    frame = packets.announcement_frame(OURS, VIP)
    assert frame[28:32] == frame[38:42] == socket.inet_aton(VIP)


def test_another_host_holding_or_probing_for_the_address_claims_it():
    assert packets.claims(packets.announcement_frame(THEIRS, VIP), OURS, VIP)
    # A reply to our probe: sender address is the VIP.
    reply = packets.arp_frame(THEIRS, VIP, "0.0.0.0")
    assert packets.claims(reply, OURS, VIP)
    # Another host probing at the same moment: both must back off.
    assert packets.claims(packets.probe_frame(THEIRS, VIP), OURS, VIP)


def test_our_own_frames_and_other_addresses_claim_nothing():
    assert not packets.claims(packets.probe_frame(OURS, VIP), OURS, VIP)
    assert not packets.claims(packets.announcement_frame(OURS, VIP), OURS, VIP)
    assert not packets.claims(packets.announcement_frame(THEIRS, "192.0.2.7"), OURS, VIP)
    assert not packets.claims(packets.arp_frame(THEIRS, "192.0.2.7", VIP), OURS, VIP)
    assert not packets.claims(b"\x00" * 20, OURS, VIP)
    ipv4 = b"\xff" * 6 + THEIRS + b"\x08\x00" + b"\x00" * 28
    assert not packets.claims(ipv4, OURS, VIP)


def _sum_is_zero(data):
    return packets._checksum(data) == 0  # pylint: disable=protected-access


def test_a_tickle_is_an_ack_with_seq_and_ack_zero_and_one_byte_of_payload():
    packet = packets.tickle_packet(VIP, 3260, "192.0.2.50", 41000)
    assert len(packet) == 20 + 20 + 1
    version, total, protocol = packet[0:1], struct.unpack("!H", packet[2:4])[0], packet[9:10]
    assert (version, total, protocol) == (b"\x45", 41, b"\x06")
    assert packet[12:16] == socket.inet_aton(VIP)
    assert packet[16:20] == socket.inet_aton("192.0.2.50")
    assert _sum_is_zero(packet[:20])
    segment = packet[20:]
    ports, seq, ack = struct.unpack("!HH", segment[:4]), segment[4:8], segment[8:12]
    assert ports == (3260, 41000) and seq == ack == b"\x00" * 4
    assert struct.unpack("!B", segment[13:14])[0] & 0x10  # ACK
    pseudo = packet[12:20] + struct.pack("!BBH", 0, 6, len(segment))
    assert _sum_is_zero(pseudo + segment)


def test_a_tickle_that_cannot_be_sent_is_reported_not_raised():
    # The kernel refuses a broadcast destination on a socket without SO_BROADCAST
    # before anything is sent (EACCES); the next one is still tried.
    failures = packets.tickle("192.0.2.100", 3260, [("255.255.255.255", 1),
                                                    ("255.255.255.255", 2)])
    assert [connection for connection, _ in failures] == [("255.255.255.255", 1),
                                                         ("255.255.255.255", 2)]
    assert "ermission" in failures[0][1]

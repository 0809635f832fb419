"""iscsi_ha.connections: the kernel's socket tables, and the remembered list."""

import json
import os
import socket
import struct

from iscsi_ha import connections

HEADER = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
          "timeout inode\n")


def _hex4(address):
    # What the kernel prints: the 32-bit word in host byte order, as %08X.
    return "%08X" % struct.unpack("=I", socket.inet_aton(address))[0]


def _hex6(address):
    raw = b"\x00" * 10 + b"\xff\xff" + socket.inet_aton(address)
    return "".join("%08X" % struct.unpack("=I", raw[i:i + 4])[0] for i in range(0, 16, 4))


def line(number, local, local_port, remote, remote_port, state, hexer=_hex4):
    return ("%4d: %s:%04X %s:%04X %s 00000000:00000000 00:00000000 00000000     0        0 "
            "1 1 0000000000000000 20 4 30 10 -1\n"
            % (number, hexer(local), local_port, hexer(remote), remote_port, state))


def write(path, text):
    with open(str(path), "w") as handle:
        handle.write(text)


def test_only_established_connections_to_the_vip_portal_count():
    table = HEADER + "".join([
        line(0, "0.0.0.0", 3260, "0.0.0.0", 0, "0A"),                    # listening
        line(1, "192.0.2.100", 3260, "192.0.2.50", 41000, "01"),
        line(2, "192.0.2.100", 3260, "192.0.2.51", 42000, "06"),          # TIME_WAIT
        line(3, "192.0.2.11", 3260, "192.0.2.52", 43000, "01"),           # host address
        line(4, "192.0.2.100", 22, "192.0.2.53", 44000, "01"),            # other port
    ])
    assert connections.parse_table(table, "192.0.2.100") == ["192.0.2.50:41000"]


def test_a_dual_stack_listener_lists_ipv4_clients_as_mapped_addresses():
    table = HEADER + line(0, "192.0.2.100", 3260, "192.0.2.50", 41000, "01", _hex6)
    assert connections.parse_table(table, "192.0.2.100") == ["192.0.2.50:41000"]


def test_established_reads_both_tables_and_tolerates_a_missing_one(tmp_path):
    four, six = tmp_path / "tcp", tmp_path / "tcp6"
    write(four, HEADER + line(0, "192.0.2.100", 3260, "192.0.2.50", 41000, "01"))
    write(six, HEADER + line(0, "192.0.2.100", 3260, "192.0.2.49", 40000, "01", _hex6))
    assert connections.established("192.0.2.100", tables=(str(four), str(six))) == [
        "192.0.2.49:40000", "192.0.2.50:41000"]
    assert connections.established(
        "192.0.2.100", tables=(str(four), str(tmp_path / "absent"))) == ["192.0.2.50:41000"]


def test_this_machine_s_own_tables_parse():
    assert isinstance(connections.established("192.0.2.100"), list)


def test_remember_replaces_the_list_atomically_and_remembered_reads_it(tmp_path):
    path = str(tmp_path / connections.STORE_NAME)
    assert connections.remembered(path) == []
    connections.remember(path, ["192.0.2.51:2", "192.0.2.50:1", "192.0.2.50:1"])
    assert connections.remembered(path) == ["192.0.2.50:1", "192.0.2.51:2"]
    connections.remember(path, [])
    assert connections.remembered(path) == []
    assert os.listdir(str(tmp_path)) == [connections.STORE_NAME]


def test_a_damaged_store_reads_as_nothing_remembered(tmp_path):
    path = tmp_path / connections.STORE_NAME
    write(path, "{not json")
    assert connections.remembered(str(path)) == []
    write(path, json.dumps({"a": 1}))
    assert connections.remembered(str(path)) == []


def test_split_takes_the_port_after_the_last_colon():
    assert connections.split("192.0.2.50:41000") == ("192.0.2.50", 41000)

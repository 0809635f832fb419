"""What ``drbdsetup status`` prints: the text layout of either generation and 9's JSON.

Owns drbd-utils 9.22's ``status_cmd`` output as the double fills it in: the
resource line (role, ``suspended:``, ``force-io-failures:``), the disk, and per
connection the peer's role and disk, ``replication:`` unless Established (8.4's
compat layout always shows it) and ``done:`` while a resync runs; ``--json`` in
drbdsetup's exact layout, with the resync details of ``peer_device_status_json``.
"""

from .states import CONNECTED, CONNECTING, STANDALONE

CSTATE_9 = {CONNECTED: "Connected", CONNECTING: "Connecting", STANDALONE: "StandAlone"}


def replication_state(pool, host, name):
    if not pool.connected(host, name):
        return "Off"
    return pool.resync_role(host, name) or "Established"


def percent_in_sync(pool, name):
    total = pool.resource(name)["size_mib"] * 1024
    return 100.0 * (1 - pool.out_of_sync_kib(name) / float(total))


def status_text(pool, host, name):
    """drbdsetup status (9: status_cmd; 8.4: its compat layout, "peer" for the connection)."""
    replica = pool.replica(host, name)
    first = "%s role:%s" % (name, replica["role"])
    if replica["susp_fen"]:
        first += " suspended:fencing"
    if replica["fail_io"]:
        first += " force-io-failures:yes"
    lines = [first, "  disk:%s" % replica["disk"]]
    peer_name = pool.peer_of(host) if pool.version == "9" else "peer"
    connection = pool.connection(host, name)
    if connection == CONNECTED:
        lines.append("  %s role:%s" % (peer_name, pool.peer_role(host, name)))
        replication = replication_state(pool, host, name)
        words = []
        # 8.4's compat layout shows every connected device's replication state.
        if replication != "Established" or pool.version == "8.4":
            words.append("replication:%s" % replication)
        words.append("peer-disk:%s" % pool.peer_disk(host, name))
        if pool.resync_role(host, name):
            words.append("done:%.2f" % percent_in_sync(pool, name))
        lines.append("    " + " ".join(words))
    else:
        lines.append("  %s connection:%s" % (peer_name, CSTATE_9[connection]))
    return "\n".join(lines) + "\n\n"


def status_json(pool, host, names):
    """`drbdsetup status --json` of utils 9.22, byte for byte in layout."""
    chunks = ["[\n"]
    for index, name in enumerate(names):
        if index:
            chunks.append(",\n")
        chunks.append(resource_json(pool, host, name))
    chunks.append("]\n\n")
    return "".join(chunks)


def json_bool(value):
    return "true" if value else "false"


def resource_json(pool, host, name):
    replica = pool.replica(host, name)
    peer = pool.peer_of(host)
    connection = pool.connection(host, name)
    size_kib = pool.resource(name)["size_mib"] * 1024
    return (
        '{\n'
        '  "name": "%s",\n'
        '  "node-id": %d,\n'
        '  "role": "%s",\n'
        '  "suspended": %s,\n'
        '  "suspended-user": false,\n'
        '  "suspended-no-data": false,\n'
        '  "suspended-fencing": %s,\n'
        '  "suspended-quorum": false,\n'
        '  "force-io-failures": %s,\n'
        '  "write-ordering": "flush",\n'
        '  "devices": [\n'
        '    {\n'
        '      "volume": 0,\n'
        '      "minor": %d,\n'
        '      "disk-state": "%s",\n'
        '      "client": false,\n'
        '      "quorum": true,\n'
        '      "size": %d,\n'
        '      "read": 0,\n'
        '      "written": 0,\n'
        '      "al-writes": 0,\n'
        '      "bm-writes": 0,\n'
        '      "upper-pending": 0,\n'
        '      "lower-pending": 0\n'
        '    } ],\n'
        '  "connections": [\n'
        '    {\n'
        '      "peer-node-id": %d,\n'
        '      "name": "%s",\n'
        '      "connection-state": "%s", \n'
        '      "congested": false,\n'
        '      "peer-role": "%s",\n'
        '      "ap-in-flight": 0,\n'
        '      "rs-in-flight": 0,\n'
        '      "peer_devices": [\n'
        '%s'
        '        } ]\n'
        '    } ]\n'
        '}\n'
    ) % (name, pool.node_id(host), replica["role"], json_bool(replica["susp_fen"]),
         json_bool(replica["susp_fen"]), json_bool(replica["fail_io"]),
         pool.resource(name)["minor"], replica["disk"], size_kib, pool.node_id(peer), peer,
         CSTATE_9[connection], pool.peer_role(host, name), peer_device_json(pool, host, name))


def peer_device_json(pool, host, name):
    """peer_device_status_json: with resync details while a resync runs."""
    syncing = pool.resync_role(host, name) is not None
    out_of_sync = pool.out_of_sync_kib(name) if syncing else 0
    text = (
        '        {\n'
        '          "volume": 0,\n'
        '          "replication-state": "%s",\n'
        '          "peer-disk-state": "%s",\n'
        '          "peer-client": false,\n'
        '          "resync-suspended": "no",\n'
        '          "received": 0,\n'
        '          "sent": 0,\n'
        '          "out-of-sync": %d,\n'
        '          "pending": 0,\n'
        '          "unacked": 0,\n'
        '          "has-sync-details": %s,\n'
        '          "has-online-verify-details": false,\n'
        '          "percent-in-sync": %.2f%s\n'
    ) % (replication_state(pool, host, name), pool.peer_disk(host, name), out_of_sync,
         json_bool(syncing), percent_in_sync(pool, name) if syncing else 100.0,
         "," if syncing else "")
    if not syncing:
        return text
    resync = pool.resource(name)["resync"]
    total_sectors = pool.resource(name)["size_mib"] * 2048
    to_go = out_of_sync * 2
    elapsed_ms = max(1, int((pool.now() - resync["started"]) * 1000))
    done_sectors = total_sectors - to_go
    rate = pool.state["resync_rate"] if done_sectors else 0.0
    remaining = to_go / 2048.0 / pool.state["resync_rate"]
    return text + (
        '          "rs-total": %d,\n'
        '          "rs-dt-start-ms": %d,\n'
        '          "rs-paused-ms": 0,\n'
        '          "rs-dt0-ms": %d,\n'
        '          "rs-db0-sectors": %d,\n'
        '          "rs-dt1-ms": %d,\n'
        '          "rs-db1-sectors": %d,\n'
        '          "rs-failed": 0,\n'
        '          "rs-same-csum": 0,\n'
        '          "want": 0.00,\n'
        '          "db0/dt0 [MiB/s]": %.2f,\n'
        '          "db1/dt1 [MiB/s]": %.2f,\n'
        '          "estimated-seconds-to-finish": %.0f,\n'
        '          "db/dt [MiB/s]": %.2f,\n'
        '          "percent-resync-done": %.2f\n'
    ) % (total_sectors, elapsed_ms, elapsed_ms, done_sectors, elapsed_ms, done_sectors,
         rate, rate, remaining, rate, 100.0 * done_sectors / total_sectors)

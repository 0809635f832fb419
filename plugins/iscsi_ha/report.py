"""Readable tables for people; scripts use the JSON these are made from."""

import six


def table(headers, rows):
    """A plain text table with columns padded to their widest cell.

    Text, not str: on 2.7 a host named in UTF-8 must not end the table.
    """
    cells = [[six.text_type(h) for h in headers]] + [
        ["" if c is None else six.text_type(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines) + "\n"


def status_table(status):
    """One host's ``status`` result as text."""
    target, vip = status["target"], status["vip"]
    head = ("host %s%s: %s  (iscsi-ha %s, config %s%s)\n" % (
        status["host"], " uuid %s" % status["host_uuid"] if status.get("host_uuid") else "",
        status["role"], status["version"], status["config_digest"],
        ", MANUAL MODE" if status["manual_mode"] else ""))
    resources = table(
        ["resource", "device", "lun", "role", "peer", "connection", "disk", "peer disk",
         "write cache", "I/O"],
        [[r["name"], r["device"], r["lun"], r["role"], r["peer_role"], r["connection"],
          r["disk"], r["peer_disk"], "on" if r["write_cache"] else "off",
          "SUSPENDED (%s)" % ",".join(r["suspended"]) if r["suspended"] else "flowing"]
         for r in status["resources"]])
    if not target["daemon_running"]:
        serving = "tgtd not running"
    elif target["exported"]:
        serving = "%s %s, LUNs %s, %d session(s)" % (
            target["iqn"], target["state"], ",".join(str(l) for l in target["luns"]) or "none",
            target["sessions"])
    else:
        serving = "%s not exported" % target["iqn"]
    if vip["local"] and vip["answered_elsewhere"]:
        where = "here AND ON ANOTHER HOST: two holders, demote the other one"
    elif vip["local"]:
        where = "here"
    else:
        where = ("not here; another host answers for it" if vip["answered_elsewhere"]
                 else "not here, and no host answers for it")
    tail = "target: %s\nvip:    %s/%d on %s: %s\n" % (
        serving, vip["address"], vip["prefix"], vip["interface"], where)
    return head + resources + tail

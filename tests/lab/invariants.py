"""The lab's storage as seen from outside the product, and the rules it must keep (Python 3
only).

Owns one look at both hosts that never asks iscsi-ha: each live host's DRBD role,
connection and disk from the DRBD double's own state (``drbdsetup status`` reads
the same), each host's targets from its tgtd (``tgtadm -C PORT --mode target --op
show``), and who has the VIP on an interface that is up (``ip addr`` in each
namespace); and the rules, as pure functions of that look:

- ``always``: at most one DRBD Primary, at most one VIP holder, a target only on a
  Primary, at every moment whatever is going on;
- ``settled``: once things have settled, exactly one Primary, the pool master
  (unless manual mode is on), holding the VIP and the target, and every live
  replica connected and UpToDate.

The parts of a look are not read at one instant. The targets are read before and
after DRBD, and a target counts only when both reads show it, so that a promote
(DRBD first, then the target) or a demote (the target first, then DRBD) between
the reads is never taken for a target on a Secondary.
"""

import re
import subprocess

from tests.drbd_double import show as drbd_show
from tests.drbd_double.states import CONNECTED, UP_TO_DATE
from tests.lab.pool import RESOURCE, VIP

PRIMARY = "Primary"
_TARGET_LINE = re.compile(r"^Target \d+: (\S+)$", re.MULTILINE)
_TOOL_SECONDS = 10


def look(lab):
    """One outside look at the lab: a dict per host name (alive, role, connection,
    disk, targets, vip)."""
    alive = dict((name, host["alive"]) for name, host in lab.hosts.items())
    before = dict((name, targets(lab, name)) for name in lab.hosts)
    replicas = drbd_show(lab.path("drbd"))["resources"][RESOURCE["name"]]["replicas"]
    after = dict((name, targets(lab, name)) for name in lab.hosts)
    seen = {}
    for name in sorted(lab.hosts):
        replica = replicas[name]
        seen[name] = {"alive": alive[name], "role": replica["role"] if alive[name] else None,
                      "connection": replica["connection"], "disk": replica["disk"],
                      "targets": sorted(set(before[name]) & set(after[name])),
                      "vip": holds_vip(lab, name)}
    return seen


def writers(lab):
    """(live DRBD Primaries, VIP holders): the cheap part of a look, for sampling often."""
    replicas = drbd_show(lab.path("drbd"))["resources"][RESOURCE["name"]]["replicas"]
    primaries = sorted(name for name, replica in replicas.items()
                       if lab.hosts[name]["alive"] and replica["role"] == PRIMARY)
    return primaries, sorted(name for name in lab.hosts if holds_vip(lab, name))


def targets(lab, name):
    """The IQNs host ``name``'s tgtd exports; none when it does not run (a dead host's,
    a killed one)."""
    daemon = (lab.hosts[name].get("tgtd") or {})
    if not daemon or not lab.hosts[name]["alive"]:
        return []
    process = subprocess.run(["tgtadm", "-C", str(daemon["control_port"]), "--lld", "iscsi",
                              "--mode", "target", "--op", "show"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, universal_newlines=True,
                             timeout=_TOOL_SECONDS)
    if process.returncode != 0:
        return []  # no tgtd on that port: nothing exported
    return _TARGET_LINE.findall(process.stdout)


def holds_vip(lab, name):
    """Whether host ``name`` has the VIP on an interface that is up (a dead host's links
    are down)."""
    shown = subprocess.run(["ip", "-n", lab.record["namespaces"][name], "-o", "-4", "addr",
                            "show", "up"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, universal_newlines=True,
                           timeout=_TOOL_SECONDS).stdout
    return (" %s/" % VIP) in shown


def always(seen):
    """What must hold at every moment: a list of sentences, empty when all is well."""
    broken = []
    primaries = [name for name, host in sorted(seen.items()) if host["role"] == PRIMARY]
    holders = [name for name, host in sorted(seen.items()) if host["vip"]]
    if len(primaries) > 1:
        broken.append("two DRBD Primaries: %s" % ", ".join(primaries))
    if len(holders) > 1:
        broken.append("two hosts hold the VIP: %s" % ", ".join(holders))
    for name, host in sorted(seen.items()):
        if host["targets"] and host["role"] != PRIMARY:
            broken.append("%s exports %s while DRBD there is %s"
                          % (name, ", ".join(host["targets"]), host["role"]))
    return broken


def settled(seen, master, manual):
    """What must hold once the pool has settled, beyond ``always``: a list of sentences.
    In manual mode the sysadmin chooses who serves, so only one host serving is asked."""
    broken = always(seen)
    primaries = [name for name, host in sorted(seen.items()) if host["role"] == PRIMARY]
    if manual:
        serving = primaries
    else:
        serving = [master]
        if primaries != [master]:
            broken.append("the DRBD Primaries are %s, not the pool master %s"
                          % (", ".join(primaries) or "none", master))
    if len(serving) != 1:
        broken.append("nobody serves (manual mode)")
        return broken
    server = seen[serving[0]]
    if not server["vip"]:
        broken.append("%s should serve but does not hold the VIP" % serving[0])
    if not server["targets"]:
        broken.append("%s should serve but exports no target" % serving[0])
    for name, host in sorted(seen.items()):
        if host["alive"] and (host["connection"] != CONNECTED or host["disk"] != UP_TO_DATE):
            broken.append("%s's replica is %s/%s, not %s/%s"
                          % (name, host["connection"], host["disk"], CONNECTED, UP_TO_DATE))
    return broken

"""SR repair: which PBDs to plug again once the storage serves after a move. Pure.

When the target was away (the whole pool booted before iscsi-ha served it, or
a move left a host's SR detached), xapi leaves an lvmoiscsi SR's PBD unplugged
on that host (``currently_attached`` false): its VG is missing there, and its
VMs cannot start, until someone plugs it. The controller does that after a
pass that moved the storage (and after the first pass of a new master), when
``[controller] sr_repair`` is on.

:func:`plan` turns the PBDs XAPI lists (:class:`PbdView`) and the pass's
snapshot into a :class:`RepairPlan`: the PBDs to plug, in order, and a reason
sentence for the log. Only PBDs of SRs of type ``lvmoiscsi`` whose
``device_config`` ``target`` names the VIP count (a multipath SR lists several
addresses, separated by commas). A PBD whose host did not answer its status in
this pass is left alone: xapi would fail the plug (``HOST_OFFLINE``) or retry it
for minutes (``CANNOT_CONTACT_HOST``), and that host plugs its PBDs itself when
its xapi starts.
"""

SR_TYPE = "lvmoiscsi"


class PbdView(object):
    """One PBD as XAPI records it, with its SR's fields the repair needs."""

    def __init__(self, ref, uuid, host_ref, sr_name, sr_uuid, sr_type, device_config,
                 attached):
        self.ref = ref
        self.uuid = uuid
        self.host_ref = host_ref
        self.sr_name = sr_name
        self.sr_uuid = sr_uuid
        self.sr_type = sr_type
        self.device_config = dict(device_config or {})
        self.attached = attached

    def targets(self):
        return [part.strip() for part in (self.device_config.get("target") or "").split(",")
                if part.strip()]


class RepairPlan(object):
    """``plugs``: ``(PbdView, host view)`` to plug in order; ``skipped``: the unplugged
    PBDs left alone; ``reason``: one sentence."""

    def __init__(self, plugs, reason, skipped=()):
        self.plugs = list(plugs)
        self.skipped = list(skipped)
        self.reason = reason


def plan(pbds, snapshot, vip_address):
    """What to plug, given ``pbds`` (:class:`PbdView`) and the pass's ``snapshot``
    (its views carry ``ref``)."""
    hosts = dict((getattr(h, "ref", None), h) for h in snapshot.hosts)
    ours = [p for p in pbds if p.sr_type == SR_TYPE and vip_address in p.targets()]
    if not ours:
        return RepairPlan([], "no %s SR has a PBD whose target is the VIP %s"
                          % (SR_TYPE, vip_address))
    detached = [p for p in ours if p.attached is not True]
    if not detached:
        return RepairPlan([], "every PBD of the %s SRs on the VIP is attached"
                          % SR_TYPE)
    plugs, skipped = [], []
    for pbd in sorted(detached, key=lambda p: (p.sr_name, _host_name(hosts, p))):
        host = hosts.get(pbd.host_ref)
        if host is not None and host.answered:
            plugs.append((pbd, host))
        else:
            skipped.append(pbd)
    parts = []
    if plugs:
        parts.append("plugging %s, unplugged since the target was away"
                     % _list(plugs, hosts))
    if skipped:
        parts.append("leaving %s: %s" % (
            _list([(p, hosts.get(p.host_ref)) for p in skipped], hosts),
            "its host did not answer this pass (it plugs its PBDs when its xapi starts)"))
    return RepairPlan(plugs, "; ".join(parts), skipped)


def _host_name(hosts, pbd):
    host = hosts.get(pbd.host_ref)
    return host.name if host is not None else pbd.host_ref


def _list(pairs, hosts):
    return ", ".join("SR %s on %s" % (pbd.sr_name, _host_name(hosts, pbd))
                     for pbd, _ in pairs)

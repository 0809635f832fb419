"""DRBD split brain across the pool: finding it, the sysadmin's guide, and its resolution.

:func:`find` is pure: from the hosts' plugin statuses it lists the resources in
split brain, by either sign. A host's plugin saw DRBD's own verdict in its
kernel log (``split_brain``), or both hosts are StandAlone and their data
generations show that both wrote since the generation they last shared (their
bitmap UUIDs name the same generation and their current UUIDs differ:
``drbd_uuid_compare``'s rule for a split brain). The controller's decision
holds the storage where it is on either sign and alerts; nothing here ever
chooses a victim.

``iscsi-ha split-brain`` (:func:`command`) shows both sides (role, whether it
serves, generations, what discarding it would lose) and resolves only on an
explicit ``--discard HOST --yes``: the victim's plugin goes Secondary and
reconnects with ``--discard-my-data``, then the survivor's reconnects.
"""

NO_UUID = "0" * 16
VICTIM_REQUIRED = "ISCSI_HA_VICTIM_REQUIRED"
CONFIRM_REQUIRED = "ISCSI_HA_CONFIRM_REQUIRED"
VICTIM_SERVING = "ISCSI_HA_VICTIM_SERVING"
BAD_ARGUMENT = "ISCSI_HA_BAD_ARGUMENT"


class SplitBrain(object):
    """One resource in split brain: ``sides`` are ``(HostView, resource status dict)``."""

    def __init__(self, name, sides, why):
        self.name = name
        self.sides = sides
        self.why = why

    @property
    def hosts(self):
        return [view for view, _ in self.sides]

    def side(self, view):
        return dict((v.uuid, r) for v, r in self.sides)[view.uuid]

    def as_dict(self):
        return {"resource": self.name, "why": self.why,
                "sides": [describe_side(view, resource) for view, resource in self.sides]}


def diverged(first, second):
    """Whether two hosts' generations (``generation`` of their status) show a split brain:
    each wrote since the generation both last shared. One side with nothing new, or
    generations without a shared one, are not (DRBD resyncs or calls the data unrelated)."""
    if not (first and second):
        return False
    shared = first["bitmap"]
    return (shared != NO_UUID and shared == second["bitmap"]
            and first["current"] != second["current"]
            and NO_UUID not in (first["current"], second["current"]))


def find(hosts):
    """The :class:`SplitBrain` of each resource the answering ``hosts`` show in split brain."""
    answered = [h for h in hosts if h.answered]
    names = []
    for view in answered:
        names += [r["name"] for r in view.status.get("resources", []) if r["name"] not in names]
    found = []
    for name in names:
        sides = [(view, r) for view in answered for r in view.status.get("resources", [])
                 if r["name"] == name]
        logged = [view.name for view, r in sides if r.get("split_brain")]
        standalone = [r for _, r in sides if r.get("connection") == "StandAlone"]
        if logged:
            why = "DRBD reported a split brain on %s" % " and ".join(logged)
        elif len(sides) == 2 and len(standalone) == 2 and diverged(
                sides[0][1].get("generation"), sides[1][1].get("generation")):
            why = ("both hosts wrote since their last shared data generation %s"
                   % sides[0][1]["generation"]["bitmap"])
        else:
            continue
        found.append(SplitBrain(name, sides, why))
    return found


def reason(split_brains):
    """The sentence the controller's plan and alert carry."""
    return ("DRBD split brain on %s: both copies took writes the other lacks, and iscsi-ha "
            "never picks whose writes to throw away; the storage stays where it is. Run "
            "`iscsi-ha split-brain` to compare both sides and resolve it" % "; ".join(
                "%s (%s)" % (s.name, s.why) for s in split_brains))


def serving_parts(status):
    """What serves on a host, from its status: the target, the VIP."""
    parts = []
    if (status.get("target") or {}).get("exported"):
        parts.append("target")
    if (status.get("vip") or {}).get("local"):
        parts.append("VIP")
    return parts


def describe_side(view, resource):
    generation = resource.get("generation") or {}
    wrote = generation.get("bitmap", NO_UUID) != NO_UUID if generation else None
    return {"host": view.name, "role": resource.get("role"),
            "storage_role": view.status.get("role"), "serves": serving_parts(view.status),
            "connection": resource.get("connection"), "disk": resource.get("disk"),
            "current_uuid": generation.get("current"),
            "shared_uuid": generation.get("bitmap"),
            "wrote_since_split": wrote, "kernel_log": resource.get("split_brain_logged")}


def guide_text(split_brain):
    """What the sysadmin reads before choosing: both sides and what discarding each loses."""
    lines = ["DRBD split brain on %s: %s." % (split_brain.name, split_brain.why)]
    for view, resource in split_brain.sides:
        side = describe_side(view, resource)
        serves = " and ".join(side["serves"]) or "nothing"
        lines.append("  %s: DRBD %s, disk %s, %s; serves %s" % (
            side["host"], side["role"], side["disk"], side["connection"], serves))
        if side["current_uuid"]:
            lines.append("    data generation %s (last shared with the peer: %s)"
                         % (side["current_uuid"], side["shared_uuid"]))
        if side["kernel_log"]:
            lines.append("    kernel: %s" % side["kernel_log"])
        loses = ("every write made on %s since the split" % side["host"] if side[
            "wrote_since_split"] is not False else "nothing it wrote (it has no writes of its "
                                                    "own since the split)")
        lines.append("    --discard %s loses %s" % (side["host"], loses))
    keep = [v for v, r in split_brain.sides if serving_parts(v.status)]
    lines.append("  Keep the copy the initiators used (%s), unless you know the other holds "
                 "the writes that matter. To resolve: iscsi-ha split-brain %s --discard HOST "
                 "--yes" % (keep[0].name if keep else "the host that served", split_brain.name))
    return "\n".join(lines) + "\n"


def command(cli, pool, error):
    """``iscsi-ha split-brain [RESOURCE] [--discard HOST] [--yes]``; ``error`` is the CLI's
    error class. Changes nothing unless both the victim and --yes are given."""
    options = cli.options
    pool.read_status()
    found = find(pool.hosts)
    if options.resource:
        found = [s for s in found if s.name == options.resource]
    result = {"split_brains": [s.as_dict() for s in found], "resolved": None}
    if not found:
        if options.discard or options.yes:
            result["resolved"] = []
        cli.result(result, "no DRBD split brain%s: nothing to resolve\n" % (
            " on %s" % options.resource if options.resource else ""))
        return 0
    guide = "".join(guide_text(s) for s in found)
    if options.discard is None:
        if options.yes:
            raise error(VICTIM_REQUIRED, "--yes needs the host whose writes since the split "
                        "are thrown away: add --discard HOST (%s); nothing was changed"
                        % " or ".join(v.name for v in found[0].hosts), status=2)
        cli.result(result, guide)
        return 0
    if len(found) > 1:
        raise error(BAD_ARGUMENT, "%d resources are in split brain (%s): name the one to "
                    "resolve (iscsi-ha split-brain RESOURCE --discard HOST --yes)"
                    % (len(found), ", ".join(s.name for s in found)), status=2)
    split_brain = found[0]
    victim = pool.host(options.discard)
    if victim.uuid not in [v.uuid for v in split_brain.hosts]:
        raise error(BAD_ARGUMENT, "%s holds no copy of %s; discard one of %s" % (
            victim.name, split_brain.name, ", ".join(v.name for v in split_brain.hosts)),
            status=2)
    survivors = [v for v in split_brain.hosts if v.uuid != victim.uuid]
    if not options.yes:
        raise error(CONFIRM_REQUIRED, "this throws away every write made on %s to %s since the "
                    "split and keeps %s's copy: add --yes to do it; nothing was changed"
                    % (victim.name, split_brain.name, ", ".join(v.name for v in survivors)),
                    {"split_brains": result["split_brains"]})
    serves = serving_parts(victim.status)
    if serves:
        raise error(VICTIM_SERVING, "%s serves %s (its %s): its copy cannot be discarded while "
                    "initiators use it. Demote it first (iscsi-ha manual on --reason TEXT, "
                    "then iscsi-ha demote %s), or discard the other host's copy; nothing was "
                    "changed" % (victim.name, split_brain.name, " and ".join(serves),
                                 victim.name))
    why = "iscsi-ha split-brain: keep %s's copy of %s, discard %s's" % (
        ", ".join(v.name for v in survivors), split_brain.name, victim.name)
    steps, done = [], []
    for view, role in [(victim, "victim")] + [(v, "survivor") for v in survivors]:
        step, _ = cli.act(pool, view, "resolve-split-brain", {
            "resource": split_brain.name, "role": role, "reason": why}, steps)
        steps.append(step)
        cli.say(step_line(step))
    result["resolved"] = steps
    cli.result(result, "%s: DRBD reconnects and resyncs %s from %s (iscsi-ha status shows "
                       "the progress)\n" % (why, victim.name,
                                            ", ".join(v.name for v in survivors)))
    return 0


def step_line(step):
    return "resolve-split-brain on %s: %s (%.2f s)" % (step["host"], step.get("summary")
                                                       or "done", step["seconds"])

"""DRBD split brain on this host: seeing it, and ending it only on the sysadmin's word.

DRBD finds a split brain when the two hosts meet again and both wrote while
apart (their bitmap UUIDs name the same shared generation, their current UUIDs
differ: ``drbd_uuid_compare``). iscsi-ha's resource files let DRBD resolve it
only where no written data is lost, so a real one ends with the kernel saying
"Split-Brain detected but unresolved, dropping connection!" and the resource
StandAlone on both hosts, until a human reconnects it. Nothing else shows it:
``drbdsetup status`` (JSON or text) and 8.4's ``/proc/drbd`` say only
StandAlone, and ``events2`` reports the split-brain helper call as it happens.
So :func:`annotate` reads the kernel log (``[host] kernel_log``) for a
StandAlone resource, and adds its data generations (``drbdadm get-gi``), which
the controller compares across both hosts.

:func:`resolve` is half of a resolution, run on each host: the victim (whose
writes since the split are thrown away) goes Secondary and reconnects with
``--discard-my-data``; the survivor reconnects. A victim that serves (target
or VIP here) is refused: demote it first.
"""

import io
import logging
import os
import re
import time

from iscsi_ha.errors import DrbdError, IscsiHaError, VictimServing

LOG = logging.getLogger("iscsi-ha")

UNRESOLVED = "Split-Brain detected but unresolved"
# Lines after which an earlier split brain of the resource is over (drbd_receiver.c
# drbd_sync_handshake; both generations print these).
_OVER = ("Split-Brain detected, manually solved", "automatically solved", "Began resync",
         "Resync done")
# The end of the kernel log that is read: a split brain is news from its last lines.
LOG_TAIL = 1 << 20
_MINOR = re.compile(r"drbd(\d+)$")
ROLES = ("victim", "survivor")


def logged(text, resource, minor):
    """The kernel log line reporting an unresolved split brain of ``resource`` (DRBD 9's
    ``drbd RES/0 drbdN PEER:`` or 8.4's ``block drbdN:`` prefix), if none resolved it
    since; else None. ``minor`` may be None when the device name does not tell it."""
    patterns = [r"(^|\s)drbd %s[/ :]" % re.escape(resource)]
    if minor is not None:
        patterns.append(r"(^|\s)block drbd%d:" % minor)
    mine = re.compile("|".join(patterns))
    found = None
    for line in text.splitlines():
        if not mine.search(line):
            continue
        if UNRESOLVED in line:
            found = line.strip()
        elif any(marker in line for marker in _OVER):
            found = None
    return found


def minor_of(device):
    match = _MINOR.search(device or "")
    return int(match.group(1)) if match else None


def read_log_tail(path):
    """The last LOG_TAIL bytes of the kernel log as text, or "" when it cannot be read
    (a missing log hides the evidence, which status then does not claim)."""
    try:
        with io.open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - LOG_TAIL))
            return handle.read().decode("utf-8", "replace")
    except (IOError, OSError):
        return ""


def annotate(config, drbd, resources):
    """Add ``split_brain``, ``split_brain_logged`` and ``generation`` to each status
    resource dict. Only a StandAlone resource, where DRBD leaves a split brain, costs
    anything (one ``get-gi``, and the kernel log): a takeover, whose survivor is
    Connecting, reads its status no slower."""
    text = None
    for resource in resources:
        resource.update(split_brain=False, split_brain_logged=None, generation=None)
        if resource["connection"] != "StandAlone" or not resource["configured"]:
            continue
        try:
            resource["generation"] = drbd.generation(resource["name"])
        except IscsiHaError as exc:
            LOG.debug("status: no generations for %s: %s", resource["name"], exc.message)
        if text is None:
            text = read_log_tail(config.kernel_log)
        line = logged(text, resource["name"], minor_of(resource["device"]))
        resource.update(split_brain=line is not None, split_brain_logged=line)


def plan(state, role, serving):
    """The DRBD steps that make this host's copy of a split resource the ``role``:
    ``[(step, subject)]`` in order, or a refusal. ``serving`` names what serves here
    (the target, the VIP), which a victim must not."""
    name = state.name
    if not state.configured:
        raise DrbdError("DRBD %s is not up on this host; bring it up with 'drbdadm up %s' "
                        "and run this again" % (name, name))
    if state.connected:
        return []  # DRBD replicates again: nothing left to resolve here
    steps = []
    if role == "victim":
        if serving:
            raise VictimServing(
                "this host serves %s (%s), so its copy of %s cannot be discarded: demote it "
                "first (iscsi-ha manual on, then iscsi-ha demote HOST), or keep this host's "
                "data and discard the other host's" % (name, " and ".join(serving), name),
                details=serving)
        if state.is_primary:
            steps.append(("drbd-secondary", name))
        if state.connection != "StandAlone":
            # Already connecting, maybe without --discard-my-data: start that again.
            steps.append(("drbd-disconnect", name))
        steps.append(("drbd-connect-discarding", name))
    elif state.connection == "StandAlone":
        steps.append(("drbd-connect", name))
    return steps


def resolve(config, host, resource, role, reason=""):
    """Make this host the ``role`` (victim or survivor) of ``resource``'s split brain."""
    started = time.time()
    observed = host.observe()
    state = observed.resources[resource]
    serving = []
    if observed.target is not None:
        serving.append("the target %s" % config.iqn)
    if observed.vip_local:
        serving.append("the VIP %s" % config.vip_address)
    steps = plan(state, role, serving)
    done = []
    for step, subject in steps:
        LOG.warning("resolve-split-brain: %s %s as the %s (reason: %s)", step, subject, role,
                    reason)
        if step == "drbd-secondary":
            host.drbd.demote(subject)
        elif step == "drbd-disconnect":
            host.drbd.disconnect(subject)
        else:
            host.drbd.connect(subject, discard_my_data=step == "drbd-connect-discarding")
        done.append({"step": step, "subject": subject})
    after = host.drbd.state(resource)
    summary = ("resolve-split-brain: %s as the %s: %s" % (
        resource, role, ", ".join(s["step"] for s in done)) if done else
        "resolve-split-brain: nothing to do, %s is %s" % (resource, state.connection))
    return {"action": "resolve-split-brain", "resource": resource, "role": role,
            "changed": bool(done), "steps": done, "reason": reason,
            "state": after.as_dict(), "summary": summary,
            "seconds": round(time.time() - started, 4)}

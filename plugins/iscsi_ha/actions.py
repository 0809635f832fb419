"""Promote, demote and status of this host's storage role.

Each action is three parts: observe the real state (DRBD, target, VIP), plan
(a pure function from what was observed to an ordered list of steps, or a
refusal), and execute the plan; when a step fails, its partial work and the
completed steps are undone, newest first. Promote goes DRBD -> target -> VIP, so the
portal is serving before the VIP answers, then resets the old owner's initiator
connections (tickles) so they reconnect at once; demote records those
connections, then goes VIP -> target -> DRBD, so no initiator can reach a
target whose disk is about to become read-only, and DRBD is Secondary (the new
owner may become the one writer) only once nothing here serves.
"""

import json
import logging
import os
import socket
import time

from iscsi_ha import __version__, commands, connections
from iscsi_ha.drbd import Drbd
from iscsi_ha.errors import (BadConfig, DiskNotUpToDate, DrbdError, IscsiHaError, PeerPrimary,
                             PeerUnknown, StepFailed, TargetDaemonDown, TargetError, VipInUse)
from iscsi_ha.target import TgtTarget
from iscsi_ha.vip import FloatingIp

LOG = logging.getLogger("iscsi-ha")
# In [host] run_dir: what drbdadm --version said (see Drbd.version).
DRBD_VERSION_CACHE = "drbd-version.json"
# How often a promote sent beside the peer's demote looks whether DRBD shows the
# peer Secondary yet: each look is one drbdsetup call.
AWAIT_DEMOTE_POLL_SECONDS = 0.005


class Observation(object):
    """What this host looks like now, as read from DRBD, tgtd and the kernel."""

    def __init__(self, resources, daemon_running, target, vip_local,
                 vip_answered_elsewhere=False, tid_taken_by=None, drbd_devices=None,
                 connections=()):
        self.resources = resources  # name -> drbd.ResourceState
        self.daemon_running = daemon_running
        self.target = target  # target.TargetInfo of our IQN, or None
        self.vip_local = vip_local
        self.vip_answered_elsewhere = vip_answered_elsewhere
        self.tid_taken_by = tid_taken_by  # IQN of another target using our tid
        # name -> the device DRBD itself names for the resource (drbdadm sh-dev),
        # when it was read.
        self.drbd_devices = drbd_devices or {}
        # "ip:port" of the initiators connected to the VIP here, when they were read.
        self.connections = list(connections)


class Step(object):
    """One change to the host; ``inverse()`` is the change that undoes it."""

    INVERSES = {
        "drbd-primary": "drbd-secondary", "drbd-secondary": "drbd-primary",
        "target-build": "target-remove", "target-remove": "target-build",
        "lun-add": "lun-delete", "lun-delete": "lun-add",
        "target-bind": "target-unbind", "target-unbind": "target-bind",
        "target-online": "target-offline", "target-offline": "target-online",
        "vip-claim": "vip-release", "vip-release": "vip-claim",
    }

    def __init__(self, kind, subject, force=False, peer_down=False, probe=True):
        self.kind = kind
        self.subject = subject
        self.force = force
        # Set on a DRBD promote whose caller confirmed the peer is gone: the
        # fence-peer handler, which DRBD runs during the promote, may then report
        # an unreachable peer as fenced.
        self.peer_down = peer_down
        # False on a VIP claim whose caller confirmed the old owner released it
        # in this switchover: the duplicate-address check is skipped. Every
        # other claim, a rollback's included, checks.
        self.probe = probe

    def inverse(self):
        return Step(self.INVERSES[self.kind], self.subject)

    def _key(self):
        return (self.kind, self.subject, self.force, self.peer_down, self.probe)

    def __eq__(self, other):
        return self._key() == other._key()

    def __ne__(self, other):
        return not self == other

    def __repr__(self):
        return "Step(%r, %r%s%s%s)" % (self.kind, self.subject,
                                       ", force=True" if self.force else "",
                                       ", peer_down=True" if self.peer_down else "",
                                       "" if self.probe else ", probe=False")


class Plan(object):
    """Steps to run, and what was found already in place (for the result)."""

    def __init__(self, steps, already):
        self.steps = steps
        self.already = already


def plan_promote(config, observed, force=False, peer_down=False, vip_released=False):
    """Steps that make this host serve the storage, or raise the refusal.

    ``force`` promotes a local disk that is not UpToDate, and nothing else: it
    never overrides a Primary peer or an unknown one. ``peer_down`` is the
    caller's word that the peer is powered off or fenced; only it lets a
    disconnected resource whose peer DRBD has not seen outdated be promoted.
    ``vip_released`` is the caller's word that the old owner released the VIP
    in this switchover: the claim then skips the duplicate-address check.
    """
    needs_force = {}
    for resource in config.resources:
        state = observed.resources[resource.name]
        _check_drbd_device(resource, observed)
        if not state.configured:
            raise DrbdError("DRBD resource %s is not up on this host; bring it up "
                            "(drbdadm up %s) and retry" % (resource.name, resource.name))
        # DRBD notices a dead Primary peer only at its next ping; with the
        # caller's word that the peer is down, DRBD's promote pings it first and
        # refuses while it answers, so no second writer can come of going ahead.
        if state.peer_is_primary and not peer_down:
            raise PeerPrimary("DRBD resource %s is Primary on the peer host; demote the "
                              "other host first (fn=demote there), or, only once that host "
                              "is known to be powered off, pass peer_down=true"
                              % resource.name)
        if state.is_primary:
            continue
        if not state.connected and not state.peer_outdated and not peer_down:
            raise PeerUnknown(
                "DRBD resource %s is not connected to its peer (%s, peer disk %s): the peer "
                "may still be Primary or hold newer data. Reconnect the replication link "
                "(drbdadm adjust %s on both hosts), or, only once the peer host is known to "
                "be powered off or demoted, pass peer_down=true"
                % (resource.name, state.connection, state.peer_disk, resource.name))
        # A Consistent disk (DRBD 9, attached while its peer was away) is
        # promoted by DRBD itself once the fence-peer handler has fenced the peer.
        fenced_promote = state.disk == "Consistent" and not state.connected
        needs_force[resource.name] = not (state.disk_up_to_date or fenced_promote)
        if needs_force[resource.name] and not force:
            raise DiskNotUpToDate(
                "DRBD resource %s: local disk is %s, not UpToDate; promoting it would serve "
                "stale data. Wait for the resync to finish, or pass force=true if you know "
                "this copy is the one to keep" % (resource.name, state.disk))
    if not observed.daemon_running:
        raise TargetDaemonDown("tgtd is not running on this host; start it (service tgtd "
                               "start) and retry")
    if observed.vip_local and observed.vip_answered_elsewhere:
        raise VipInUse("this host has the floating IP %s, and another host answers for it "
                       "too; find that host and demote it (fn=demote there) before promoting "
                       "this one" % config.vip_address)
    if observed.vip_answered_elsewhere:
        raise VipInUse("another host answers for the floating IP %s/%d; find and demote "
                       "it (fn=demote on that host) before promoting this one"
                       % (config.vip_address, config.vip_prefix))
    _refuse_foreign_target(config, observed)

    steps, already = [], []
    for resource in config.resources:
        state = observed.resources[resource.name]
        if state.is_primary:
            already.append("DRBD %s is Primary" % resource.name)
        else:
            steps.append(Step("drbd-primary", resource.name,
                              force=needs_force[resource.name],
                              peer_down=peer_down and (not state.connected
                                                       or state.peer_is_primary)))
    target = observed.target
    if target is None:
        steps.append(Step("target-build", config.iqn))
    else:
        present = set(lun.lun for lun in target.luns)
        for resource in config.resources:
            if resource.lun in present:
                already.append("LUN %d (%s) is exported" % (resource.lun, resource.name))
            else:
                steps.append(Step("lun-add", resource.name))
        for address in config.initiators:
            if address in target.acl:
                already.append("initiators %s allowed" % address)
            else:
                steps.append(Step("target-bind", address))
        if target.state == "ready":
            already.append("target %s is online" % config.iqn)
        else:
            steps.append(Step("target-online", config.iqn))
    if observed.vip_local:
        already.append("VIP %s is on this host" % config.vip_address)
    else:
        steps.append(Step("vip-claim", config.vip_address, probe=not vip_released))
    return Plan(steps, already)


def _check_drbd_device(resource, observed):
    """Refuse to export anything but the resource's DRBD device: a LUN on the
    backing disk itself would take writes that never reach the peer."""
    named = observed.drbd_devices.get(resource.name)
    if named is None or named == resource.device:
        return
    raise BadConfig("[resource %s] device is %s, but DRBD's device for %s is %s; exporting "
                    "anything else would bypass replication: set device = %s"
                    % (resource.name, resource.device, resource.name, named, named))


def _refuse_foreign_target(config, observed):
    """Refuse when tgtd holds something under our IQN or tid that we did not put there."""
    if observed.tid_taken_by is not None:
        raise TargetError("tid %d is used by another target, %s; remove it or choose another "
                          "[target] tid (the same on both hosts)"
                          % (config.tid, observed.tid_taken_by))
    target = observed.target
    if target is None:
        return
    if target.tid != config.tid:
        raise TargetError("target %s exists with tid %d, but the config says tid %d; remove "
                          "it (tgtadm --op delete --mode target --tid %d) or fix [target] tid"
                          % (config.iqn, target.tid, config.tid, target.tid))
    wanted = dict((r.lun, r) for r in config.resources)
    for lun in target.luns:
        resource = wanted.get(lun.lun)
        if resource is None:
            continue
        if lun.backing_path != resource.device:
            raise TargetError("target %s LUN %d is backed by %s, not by %s as configured; "
                              "demote this host to clear it" % (config.iqn, lun.lun,
                                                                 lun.backing_path,
                                                                 resource.device))
        if lun.write_cache != resource.write_cache:
            raise TargetError("target %s LUN %d is exported with the write cache %s, but the "
                              "config says write_cache = %s; demote this host to clear it"
                              % (config.iqn, lun.lun, _on_off(lun.write_cache),
                                 _on_off(resource.write_cache)))
        if (lun.scsi_id, lun.scsi_sn) != (resource.scsi_id, resource.scsi_sn):
            # XenServer finds the SR by this identity: serving another one would
            # make the LUN look like a different disk.
            raise TargetError("target %s LUN %d has SCSI ID %s serial %s, not %s serial %s "
                              "as configured; demote this host to clear it"
                              % (config.iqn, lun.lun, lun.scsi_id, lun.scsi_sn,
                                 resource.scsi_id, resource.scsi_sn))


def _on_off(flag):
    return "on" if flag else "off"


def plan_demote(config, observed):
    """Steps that make this host stop serving: VIP, then target, then DRBD.

    The VIP goes first so that no initiator reconnects here to a target about
    to go (it would back off for seconds); the target goes before DRBD turns
    Secondary, since DRBD refuses while the target holds the device open; and
    only a Secondary lets the new owner become Primary, so two hosts never
    write at once.
    """
    steps, already = [], []
    if observed.vip_local:
        steps.append(Step("vip-release", config.vip_address))
    else:
        already.append("VIP %s is not on this host" % config.vip_address)
    if observed.target is not None:
        steps.append(Step("target-remove", config.iqn))
    elif observed.daemon_running:
        already.append("no target %s on this host" % config.iqn)
    else:
        already.append("tgtd is not running, so no target is exported")
    for resource in config.resources:
        state = observed.resources[resource.name]
        if state.is_primary:
            steps.append(Step("drbd-secondary", resource.name))
        else:
            already.append("DRBD %s is %s" % (resource.name, state.role))
    return Plan(steps, already)


class Host(object):
    """The system-touching side: DRBD, tgtd and the VIP of this host, per config."""

    def __init__(self, config):
        self.config = config
        tools, timeout = config.tools, config.command_timeout
        self.drbd = Drbd(drbdadm=tools["drbdadm"], drbdsetup=tools["drbdsetup"],
                         version=config.drbd_version, timeout=timeout,
                         version_cache=os.path.join(config.run_dir, DRBD_VERSION_CACHE))
        self.target = TgtTarget(tgtadm=tools["tgtadm"], control_port=config.tgt_control_port,
                                timeout=timeout)
        self.vip = FloatingIp(config.vip_address, config.vip_prefix, config.vip_interface,
                              ip=tools["ip"], arping=tools["arping"], dad_wait=config.dad_wait,
                              announcements=config.arp_announcements, timeout=timeout,
                              announcer_pid_file=config.announcer_pid_path,
                              duplicate_check=config.duplicate_check,
                              probe_ms=config.probe_ms)
        self._resources = dict((r.name, r) for r in config.resources)
        # The initiator connections the last vip-release found (see _vip_release).
        self.released_connections = []

    def connections(self):
        """The initiators connected to the VIP here now ("ip:port")."""
        return connections.established(self.config.vip_address)

    def tickle(self, targets):
        """Reset each of ``targets`` ("ip:port") from VIP:3260; returns the failures."""
        from iscsi_ha import packets  # only a promote with a tickle list pays for it
        failed = packets.tickle(self.config.vip_address, connections.ISCSI_PORT,
                                [connections.split(target) for target in targets])
        return [{"connection": "%s:%d" % target, "error": error} for target, error in failed]

    def observe(self, detect_vip_elsewhere=False, read_devices=False, read_connections=False):
        if detect_vip_elsewhere:
            # The probe mostly waits for answers: it runs while DRBD and tgtd are read.
            self.vip.start_duplicate_check()
        # DRBD's own device names come from its config, not its state: read beside it.
        naming = commands.Background(self._drbd_devices) if read_devices else None
        resources = dict((r.name, self.drbd.state(r.name)) for r in self.config.resources)
        devices = {}
        for name, device in (naming.result() if naming else {}).items():
            if not resources[name].configured:
                continue  # DRBD's own answer for it was not needed before either
            if isinstance(device, DrbdError):
                raise device
            devices[name] = device
        targets = self.target.show_if_running()
        daemon_running = targets is not None
        targets = targets or []
        ours = [t for t in targets if t.iqn == self.config.iqn]
        tid_taken_by = [t.iqn for t in targets
                        if t.tid == self.config.tid and t.iqn != self.config.iqn]
        vip_local = self.vip.is_local()
        elsewhere = detect_vip_elsewhere and self.vip.answered_elsewhere()
        found = self.connections() if read_connections and vip_local else []
        return Observation(resources, daemon_running, ours[0] if ours else None, vip_local,
                           elsewhere, tid_taken_by[0] if tid_taken_by else None, devices,
                           found)

    def _drbd_devices(self):
        """The device DRBD names for each resource, or the DrbdError asking for it gave
        (raised by the caller only for a resource that is up)."""
        named = {}
        for resource in self.config.resources:
            try:
                named[resource.name] = self.drbd.device(resource.name)
            except DrbdError as exc:
                named[resource.name] = exc
        return named

    def await_peer_demote(self, observed, seconds):
        """Wait until no resource of ``observed`` has a Primary peer, at most ``seconds``;
        then start the check for another holder of the VIP. Returns ``observed`` brought up to date.

        The peer's demote goes Secondary last, after releasing the VIP and removing
        its target, so a Secondary peer has let go of all three. The duplicate
        check still makes sure before this host claims the address: it starts now
        and runs while DRBD goes Primary and the target is built, and the claim
        waits for its answer (another holder then fails the claim, and the promote
        is rolled back).
        """
        deadline = commands.monotonic() + seconds
        waiting = [name for name, state in observed.resources.items() if state.peer_is_primary]
        while waiting:
            if commands.monotonic() >= deadline:
                raise PeerPrimary(
                    "DRBD resource %s stayed Primary on the peer host for the %g s this "
                    "promote waited for its demote; nothing changed here. See the peer's "
                    "iscsi-ha log for why its demote did not finish, and retry"
                    % (", ".join(sorted(waiting)), seconds))
            time.sleep(AWAIT_DEMOTE_POLL_SECONDS)
            for name in waiting:
                observed.resources[name] = self.drbd.state(name)
            waiting = [name for name in waiting if observed.resources[name].peer_is_primary]
        if observed.vip_local:
            # No claim will follow to hear the answer: a second holder refuses now.
            observed.vip_answered_elsewhere = self.vip.answered_elsewhere()
        else:
            self.vip.start_duplicate_check()
        return observed

    def apply(self, step):
        getattr(self, "_" + step.kind.replace("-", "_"))(step)

    def _drbd_primary(self, step):
        if not step.peer_down:
            self.drbd.promote(step.subject, force=step.force)
            return
        from iscsi_ha import fence  # only a peer-down promote pays for its imports
        marker = self.config.peer_down_marker_path(step.subject)
        # The confirmation lasts as long as the promote may: DRBD runs the
        # handler within it, and nothing later may reuse the word.
        fence.confirm_peer_down(marker, step.subject, self.config.command_timeout)
        try:
            self.drbd.promote(step.subject, force=step.force)
        finally:
            fence.withdraw_peer_down(marker)

    def _drbd_secondary(self, step):
        self.drbd.demote(step.subject)

    def _target_build(self, step):
        # A build that fails halfway is removed by execute(), which undoes the failed step.
        self.target.build(self.config.tid, self.config.iqn,
                          [self._lun_settings(r) for r in self.config.resources],
                          self.config.initiators)

    def _add_lun(self, resource):
        self.target.add_lun(self.config.tid, **self._lun_settings(resource))

    def _lun_settings(self, resource):
        return {"lun": resource.lun, "device": resource.device, "scsi_id": resource.scsi_id,
                "scsi_sn": resource.scsi_sn, "vendor_id": resource.vendor_id,
                "product_id": resource.product_id, "write_cache": resource.write_cache}

    def _target_remove(self, step):
        self.target.delete(self.config.tid, iqn=self.config.iqn)

    def _lun_add(self, step):
        self._add_lun(self._resources[step.subject])

    def _lun_delete(self, step):
        self.target.delete_lun(self.config.tid, self._resources[step.subject].lun)

    def _target_bind(self, step):
        self.target.bind(self.config.tid, step.subject)

    def _target_unbind(self, step):
        self.target.unbind(self.config.tid, step.subject)

    def _target_online(self, step):
        self.target.set_state(self.config.tid, "ready")

    def _target_offline(self, step):
        self.target.set_state(self.config.tid, "offline")

    def _vip_claim(self, step):
        if self.vip.is_local():
            return
        # claim() probes for another holder itself, right before adding the
        # address: a rollback that claims it back is checked the same way.
        self.vip.claim(probe=step.probe)

    def _vip_release(self, step):
        # Read at the last moment, so the new owner can reset every connection;
        # once the VIP is gone the kernel still lists them, but nothing more connects.
        self.released_connections = self.connections()
        self.vip.release()


def host_identity(config):
    return {"host": socket.gethostname(), "host_uuid": config.host_uuid()}


def execute(action, plan, host, reason, observed_seconds=0.0):
    """Run the plan's steps in order; on a failure undo it and the done ones, newest first.

    ``observed_seconds`` is what reading the state (and the VIP check) took
    before planning; the result's ``seconds`` includes it.
    """
    started = time.time() - observed_seconds
    records, done = [], []
    for step in plan.steps:
        step_started = time.time()
        try:
            host.apply(step)
        except Exception as exc:  # whatever broke, what was started is undone
            error = _describe(exc)
            records.append(_record(step, "failed", step_started, error))
            LOG.error("%s: step %s %s failed: %s (reason: %s)", action, step.kind,
                      step.subject, error, reason, exc_info=not isinstance(exc, IscsiHaError))
            # The failed step may have done part of its work (a target set offline
            # before its delete failed), so it is undone too; every undo is
            # idempotent, so undoing what never happened is harmless.
            undone = _roll_back(action, done + [step], host)
            records.extend(undone)
            result = _result(action, plan, records, started, reason, False, host.config,
                             observed_seconds)
            raise StepFailed(
                "%s failed at step %s %s: %s; %s" % (
                    action, step.kind, step.subject, error, _rollback_summary(undone)),
                details=[json.dumps(result, sort_keys=True)])
        records.append(_record(step, "done", step_started))
        done.append(step)
        LOG.info("%s: %s %s done (reason: %s)", action, step.kind, step.subject, reason)
    return _result(action, plan, records, started, reason, bool(done), host.config,
                   observed_seconds)


def _roll_back(action, done, host):
    records = []
    for step in reversed(done):
        undo = step.inverse()
        undo_started = time.time()
        try:
            host.apply(undo)
        except Exception as exc:  # keep undoing the rest; the summary says what failed
            error = _describe(exc)
            records.append(_record(undo, "rollback-failed", undo_started, error))
            LOG.error("%s: rollback %s %s failed: %s", action, undo.kind, undo.subject, error,
                      exc_info=not isinstance(exc, IscsiHaError))
        else:
            records.append(_record(undo, "rolled-back", undo_started))
            LOG.warning("%s: rolled back with %s %s", action, undo.kind, undo.subject)
    return records


def _describe(exc):
    if isinstance(exc, IscsiHaError):
        return exc.message
    return "%s: %s" % (exc.__class__.__name__, exc)


def _rollback_summary(undone):
    failed = [r for r in undone if r["outcome"] == "rollback-failed"]
    if failed:
        return ("rollback FAILED for %s: check this host by hand (fn=status)"
                % ", ".join("%s %s" % (r["step"], r["subject"]) for r in failed))
    return "rolled back with %s" % ", ".join("%s %s" % (r["step"], r["subject"])
                                             for r in undone)


def _record(step, outcome, started, error=None):
    record = {"step": step.kind, "subject": step.subject, "outcome": outcome,
              "seconds": round(time.time() - started, 4)}
    if error:
        record["error"] = error
    return record


def _result(action, plan, records, started, reason, changed, config, observed_seconds):
    result = {"action": action, "reason": reason, "changed": changed, "steps": records,
              "already": plan.already, "seconds": round(time.time() - started, 4),
              "observe_seconds": round(observed_seconds, 4),
              "summary": _summary(action, records, plan.already)}
    result.update(host_identity(config))
    return result


def _summary(action, records, already):
    done = ["%s %s" % (r["step"], r["subject"]) for r in records if r["outcome"] == "done"]
    if not done:
        return "%s: nothing to do, already in place (%s)" % (action, "; ".join(already))
    return "%s: %s" % (action, ", ".join(done))


def promote(config, host, force=False, peer_down=False, reason="", tickle=(),
            vip_released=False, await_demote=False):
    """Serve from this host; then reset ``tickle``'s connections ("ip:port").

    ``await_demote``: the caller started this promote beside the peer's demote,
    so that this call's start and observation overlap the demote; it waits (at
    most ``[timeouts] command``) for DRBD to show the peer Secondary before it
    plans anything, and refuses, having changed nothing, if it never does.

    A tickle that cannot be sent is reported in ``tickle_failures`` and never
    fails the promote: the initiator then finds out by its own timers.
    """
    started = time.time()
    observed = host.observe(detect_vip_elsewhere=not (vip_released or await_demote),
                            read_devices=True)
    if await_demote:
        waiting_since = time.time()
        observed = host.await_peer_demote(observed, config.command_timeout)
        awaited = time.time() - waiting_since
        LOG.info("promote: the peer was Secondary after %.3f s of waiting for its demote",
                 awaited)
    plan = plan_promote(config, observed, force=force, peer_down=peer_down,
                        vip_released=vip_released)
    result = execute("promote", plan, host, reason, time.time() - started)
    if await_demote:
        result["awaited_demote_seconds"] = round(awaited, 4)
    failures = host.tickle(tickle) if tickle else []
    for failure in failures:
        LOG.warning("promote: tickle of %s failed: %s", failure["connection"],
                    failure["error"])
    result.update({"tickled": len(tickle) - len(failures), "tickle_failures": failures})
    return result


def demote(config, host, reason=""):
    """Stop serving here; the result names the initiators that were connected.

    ``vip_released`` says the VIP is gone from this host (released now, or
    not here to begin with), so the new owner may skip its duplicate check.
    """
    started = time.time()
    plan = plan_demote(config, host.observe())
    result = execute("demote", plan, host, reason, time.time() - started)
    result.update({"connections": host.released_connections, "vip_released": True})
    return result


def outdate(config, host, resource, reason=""):
    """Outdate this host's copy of ``resource`` unless it is Primary here."""
    started = time.time()
    state = host.drbd.state(resource)
    if state.is_primary or state.disk in ("Outdated", "Inconsistent"):
        outdated = False
        summary = "outdate: nothing to do, %s is %s with disk %s" % (resource, state.role,
                                                                     state.disk)
    else:
        before = state.disk
        state = host.drbd.outdate(resource)
        outdated = True
        summary = "outdate: %s disk %s -> %s" % (resource, before, state.disk)
        LOG.warning("outdate: %s marked %s (reason: %s)", resource, state.disk, reason)
    result = {"action": "outdate", "resource": resource, "role": state.role,
              "disk": state.disk, "changed": outdated, "reason": reason, "summary": summary,
              "seconds": round(time.time() - started, 4)}
    result.update(host_identity(config))
    return result


def status(config, host, manual_mode):
    """This host's view: DRBD per resource, target, VIP, config digest.

    The VIP probe runs even when the VIP is here: two holders must show.
    """
    observed = host.observe(detect_vip_elsewhere=True, read_connections=True)
    target = observed.target
    result = host_identity(config)
    result.update({
        "version": __version__,
        "config_digest": config.digest(),
        "manual_mode": manual_mode,
        "role": storage_role(observed),
        "resources": [dict(observed.resources[r.name].as_dict(), device=r.device, lun=r.lun,
                           write_cache=r.write_cache)
                      for r in config.resources],
        "target": {
            "daemon_running": observed.daemon_running,
            "iqn": config.iqn,
            "exported": target is not None,
            "state": target.state if target else None,
            "luns": [lun.lun for lun in target.luns if lun.lun != 0] if target else [],
            "sessions": target.sessions if target else 0,
            "initiators": [i.as_dict() for i in target.initiators] if target else [],
        },
        "vip": {"address": config.vip_address, "prefix": config.vip_prefix,
                "interface": config.vip_interface, "local": observed.vip_local,
                "answered_elsewhere": observed.vip_answered_elsewhere},
        "connections": observed.connections,
    })
    return result


def storage_role(observed):
    """``primary`` when everything serves here, ``secondary`` when nothing does, else ``mixed``.

    A target that is not ``ready`` (offline) takes no commands, so it does not serve.
    """
    serving = [state.is_primary for state in observed.resources.values()]
    serving += [observed.target is not None and observed.target.state == "ready",
                observed.vip_local]
    exported = observed.target is not None
    if all(serving):
        return "primary"
    if not any(serving) and not exported:
        return "secondary"
    return "mixed"

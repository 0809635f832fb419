"""What the pool master's controller does, given what it observed: one pure function.

The invariant it keeps: the pool master is the DRBD Primary, exports the target
and holds the VIP; every other host is a demoted standby. :func:`decide` turns a
:class:`Snapshot` into a :class:`Plan`: ordered plugin calls and a one-line
reason, which is the log line, the alert text and what ``iscsi-ha status``
shows. Nothing here touches a host, so the table of decisions is tested
without processes.

The rules, in the order they are applied:

1. Manual mode: change nothing, report.
2. The master's own status cannot be read: change nothing, retry.
3. Another host claims to be pool master too (its pool.conf says so): change
   nothing; two masters means the pool itself is split.
4. Another host serves anything while the master serves: demote it (two
   writers are the one outcome worse than no writer).
   A DRBD split brain (:mod:`splitbrain`; also alerted in manual mode): besides
   that demote, nothing moves, since either copy may hold writes the other
   lacks, and only the sysadmin chooses which to throw away.
5. The master serves and the others are demoted standbys: in place.
6. The master does not serve. Each other host must be confirmed demoted (its
   status says secondary), confirmed demoted by the plan (serving now, demoted
   first), or confirmed gone (see :func:`gone`); the config digests must agree;
   and the master must be able to serve safely (tgtd up; each replica UpToDate
   and connected, or, with its peer gone, UpToDate or Consistent). Then:
   demote the serving others, then promote the master, with ``peer_down``
   when a peer is gone. Otherwise nothing is demoted: the storage stays where
   it is and the reason says what would make the move safe.

For a fast switchover (one round trip per host) the promote of a planned move
starts beside the demote and waits for it through DRBD (``await_demote``; see
:func:`_promote_beside_demote`), tickling the connections its host remembered.
Where it cannot, the promote follows the demote and is told what the demote
saw (:meth:`Action.args_after`): the initiator connections to tickle and
whether the VIP was released. For an
unplanned one, in-place passes keep each standby's record of the master's
initiator connections current (``remember-initiators``), and a takeover's
promote tickles the survivor's record. A promote is sent only the arguments its
host's plugin says it accepts, so a half-upgraded pool keeps working.
"""

import json
import time

import six

from iscsi_ha_controller import splitbrain

# Plan outcomes, also the controller's state and what `iscsi-ha status` shows.
IN_PLACE, MOVE, REPAIR, WAITING, REFUSED, OBSERVING = (
    "in-place", "move", "repair", "waiting", "refused", "observing")
# A pass's outcome once run: a move or repair whose calls all succeeded is done.
DONE, FAILED = "done", "failed"
# The outcomes of a pass that left the master serving.
SERVING_OUTCOMES = (IN_PLACE, DONE)
# Plugin failures (XAPI's or ours) that mean "the host did not answer", as
# opposed to an answer that was a refusal.
UNREACHABLE_CODES = ("HOST_OFFLINE", "CANNOT_CONTACT_HOST", "HOST_NOT_LIVE",
                     "ISCSI_HA_NO_ANSWER")
# What every plugin's promote accepts, also one from before its status listed
# ``promote_accepts`` (a host not upgraded yet during a rolling upgrade).
LEGACY_PROMOTE_ARGS = ("force", "peer_down", "reason")


class HostView(object):
    """One pool host as the master's controller sees it.

    ``status`` is the host's plugin ``status`` result, or None with ``error``
    (a XAPI ErrorDescription list) saying why it could not be had. ``live``
    is XAPI's host_metrics.live.
    """

    def __init__(self, name, uuid, address, live, status=None, error=None):
        self.name = name
        self.uuid = uuid
        self.address = address
        self.live = live
        self.status = status
        self.error = list(error or [])

    @property
    def answered(self):
        return self.status is not None

    @property
    def unreachable(self):
        return not self.answered and bool(self.error) and self.error[0] in UNREACHABLE_CODES

    @property
    def role(self):
        return self.status["role"] if self.answered else None

    def describe_error(self):
        return " ".join(str(part) for part in self.error) or "no answer"


class Snapshot(object):
    """What one pass observed.

    ``took_over_from`` is the uuid of the host the pool mastership moved here
    from while this host's controller watched (None when it did not see it
    move): only a host that lost the mastership to this one can count as gone
    without XAPI saying it is not live.
    """

    def __init__(self, master, others, manual_mode=None, took_over_from=None,
                 fresh_master=False, tickle=True, overlap=True):
        self.master = master
        self.others = list(others)
        self.manual_mode = manual_mode  # None, or {"reason": ..., "by": ..., "at": ...}
        self.took_over_from = took_over_from
        self.fresh_master = fresh_master  # the first pass since this host became master
        self.tickle = tickle  # [controller] tickle: tell a new owner whom to tickle
        self.overlap = overlap  # [controller] overlap: a promote may start beside a demote

    @property
    def hosts(self):
        return [self.master] + self.others


class Action(object):
    """One plugin call: ``fn`` on host ``host`` (a :class:`HostView`) with ``args``.

    ``relay_tickle``: a promote that passes on, as its ``tickle``, the initiator
    connections an earlier demote of the same plan read (see :meth:`args_after`).
    ``beside_previous``: the call starts right after the previous one, without
    waiting for its answer (a promote with ``await_demote``, which waits for the
    demote through DRBD itself).
    """

    def __init__(self, host, fn, **args):
        self.host = host
        self.fn = fn
        self.relay_tickle = False
        self.beside_previous = False
        self.args = args

    def args_after(self, done):
        """The args to send, given ``done``: ``(Action, result or None)`` of the plan's
        calls made before this one.

        A promote after a demote learns from the demote's result in this same
        switchover: its ``connections`` become the tickle list (when this action
        relays them), and ``vip_released`` lets the new owner skip its
        duplicate-address probe. A promote meant to start beside the demote
        that is called after it all the same (the CLI calls one at a time) is
        such a promote: it no longer awaits the demote. Either way a promote
        gets only what its plugin accepts (:func:`promote_args`).
        """
        if self.fn != "promote":
            return dict(self.args)
        args = dict(self.args)
        for action, result in done:
            if action.fn != "demote" or not isinstance(result, dict):
                continue
            args.pop("await_demote", None)
            if result.get("vip_released") is True:
                args["vip_released"] = "true"
            connections = result.get("connections")
            # Only a list of "ip:port" strings is passed on (the promote checks each).
            if self.relay_tickle and connections and isinstance(connections, list) and all(
                    isinstance(item, six.string_types) for item in connections):
                args["tickle"] = json.dumps(sorted(connections))
        return promote_args(self.host, args)

    def __eq__(self, other):
        return (self.host.uuid, self.fn, self.args) == (other.host.uuid, other.fn, other.args)

    def __ne__(self, other):
        return not self == other

    def __repr__(self):
        return "Action(%s, %s, %r)" % (self.host.name, self.fn, self.args)

    def as_dict(self):
        shown = {"host": self.host.name, "fn": self.fn, "args": dict(self.args)}
        if self.relay_tickle:
            shown["relay_tickle"] = True
        if self.beside_previous:
            shown["beside_previous"] = True
        return shown


def promote_args(host, args):
    """``args`` without what ``host``'s plugin does not accept: its status lists
    ``promote_accepts``; a plugin without that list takes only LEGACY_PROMOTE_ARGS."""
    status = host.status or {}
    accepts = status.get("promote_accepts")
    if not isinstance(accepts, list):
        accepts = LEGACY_PROMOTE_ARGS
    return dict((key, value) for key, value in args.items() if key in accepts)


class Plan(object):
    """Ordered actions, the one-line reason, and the alerts it raises.

    ``alerts`` are ``(kind, text, host_uuid)``; ``retry`` asks for the next pass
    soon (with back-off) rather than at the safety interval.
    """

    def __init__(self, outcome, reason, actions=(), alerts=(), retry=False):
        self.outcome = outcome
        self.reason = reason
        self.actions = list(actions)
        self.alerts = list(alerts)
        self.retry = retry
        # Set when the pool's manual-mode flag must be written back from a host's copy.
        self.restore_manual_mode = False
        # Set when the pool's flag is older than the master's record of turning it off.
        self.clear_manual_mode = False

    def as_dict(self):
        return {"outcome": self.outcome, "reason": self.reason, "retry": self.retry,
                "actions": [a.as_dict() for a in self.actions],
                "alerts": [{"kind": k, "text": t, "host_uuid": u} for k, t, u in self.alerts]}

    def __repr__(self):
        return "Plan(%s, %r, %r)" % (self.outcome, self.reason, self.actions)


def decide(snapshot):
    master = snapshot.master
    # A pool flag set before the master's own copy last went off is on its way out
    # (`iscsi-ha manual off` clears the copies, then the flag) or came back with an
    # older database (an emergency transition restores a backup): either way it no
    # longer rules, and is removed.
    cleared = _cleared_since(master, snapshot.manual_mode)
    # Only the first pass after this host became master may find a pool database
    # that lost the flag (an emergency transition restores an older copy); later,
    # a master's copy without the pool's flag is stale, and is cleared.
    manual = (snapshot.manual_mode is not None and not cleared) or (
        snapshot.fresh_master and master.answered and master.status.get("manual_mode"))
    plan = _manual(snapshot) if manual else _storage(snapshot)
    if manual:
        plan.alerts += _drbd_split_brain(snapshot)
    if cleared:
        plan.clear_manual_mode = True
        plan.reason = ("manual mode is off (the pool's flag, set %s, is older than %s's "
                       "record of turning it off); %s"
                       % (_when(snapshot.manual_mode["at"]), master.name, plan.reason))
    plan.actions += _manual_views(snapshot, bool(manual))
    return plan


def _cleared_since(view, flag):
    """Whether the host's copy of the manual-mode flag went off after the pool's ``flag``
    was set (False when either moment is unknown: an older plugin, an undated flag)."""
    if flag is None or not view.answered or view.status.get("manual_mode"):
        return False
    off_at, set_at = view.status.get("manual_mode_off_at"), flag.get("at")
    if not isinstance(off_at, (int, float)) or not isinstance(set_at, (int, float)):
        return False
    return off_at > set_at


def _when(moment):
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(moment))


def _storage(snapshot):
    master = snapshot.master
    if not master.answered:
        reason = ("not acting: the master %s's own status cannot be read (%s); check its "
                  "plugin (xe host-call-plugin ... fn=check)" % (master.name,
                                                                  master.describe_error()))
        return Plan(WAITING, reason, alerts=[("storage-blocked", reason, master.uuid)],
                    retry=True)
    claimants = [h for h in snapshot.others if h.answered and h.status.get("pool_role")
                 == "master"]
    if claimants:
        reason = ("not acting: %s also says it is pool master; the pool is split: make one "
                  "of them a slave of the other (xe pool-recover-slaves on the right one)"
                  % ", ".join(h.name for h in claimants))
        return Plan(REFUSED, reason, alerts=[("storage-blocked", reason, None)], retry=True)
    serving = [h for h in snapshot.others if h.answered and h.role != "secondary"]
    silent = [h for h in snapshot.others if not h.answered]
    split_brain = _drbd_split_brain(snapshot)
    # One split-brain alert per pass: the repeat window would hold back a second one.
    alerts = (split_brain or _split_brain(snapshot)) + _config_mismatch(snapshot)
    if master.role == "primary":
        if serving:
            return Plan(REPAIR, "demoting %s: it serves (%s) while the pool master %s does"
                        % (_names(serving), _roles(serving), master.name),
                        [Action(h, "demote", reason="another host is pool master")
                         for h in serving], alerts)
        if split_brain:
            return Plan(IN_PLACE, "%s serves the storage as pool master; %s" % (
                master.name, split_brain[0][1]), alerts=alerts)
        # A standby that did not answer has no record of the initiators yet: look
        # again soon (with back-off) rather than leave a takeover nothing to tickle.
        return Plan(IN_PLACE, _in_place_reason(master, silent),
                    _remember_initiators(snapshot), alerts + _degraded(master),
                    retry=snapshot.tickle and bool(silent))
    if split_brain:
        return Plan(REFUSED, "not moving the storage to %s: %s" % (
            master.name, split_brain[0][1]), alerts=alerts, retry=True)
    return _move(snapshot, serving, silent, alerts)


def _move(snapshot, serving, silent, alerts):
    master = snapshot.master
    if all(r["is_primary"] for r in master.status["resources"]):
        # DRBD already made the master the one writer; a silent host need not be
        # confirmed gone to rebuild the target or the VIP (the VIP probe still runs).
        silent = []
    verdicts = [(h, gone(h, snapshot)) for h in silent]
    unconfirmed = [(h, why) for h, (is_gone, why) in verdicts if not is_gone]
    if unconfirmed:
        reason = ("not promoting %s: %s; it may still serve. Once it is powered off or "
                  "fenced, `iscsi-ha promote %s --peer-down` moves the storage"
                  % (master.name, "; ".join("%s is neither confirmed demoted nor gone (%s)"
                                            % (h.name, why) for h, why in unconfirmed),
                     master.name))
        return Plan(WAITING, reason, alerts=alerts + [("storage-blocked", reason, None)],
                    retry=True)
    peer_gone = bool(silent)
    mismatch = [a for a in alerts if a[0] == "config-mismatch"]
    blockers = [text for _, text, _ in mismatch] + _cannot_serve(master, peer_gone)
    if blockers:
        reason = "not moving the storage to %s: %s" % (master.name, "; ".join(blockers))
        if serving:
            reason += "; %s keeps serving" % _names(serving)
        return Plan(REFUSED, reason, alerts=alerts + [("storage-blocked", reason, None)],
                    retry=True)
    if serving:
        why = "demoting %s, then promoting %s, because %s is pool master" % (
            _names(serving), master.name, master.name)
    elif peer_gone:
        why = "promoting %s because it is pool master and %s" % (
            master.name, "; ".join("%s is confirmed gone: %s" % (h.name, verdict[1])
                                   for h, verdict in verdicts))
    elif snapshot.others:
        why = "promoting %s because it is pool master and %s confirmed demoted" % (
            master.name, _names(snapshot.others))
    else:
        why = "promoting %s because it is pool master" % master.name
    args = {"reason": why}
    beside = snapshot.overlap and _promote_beside_demote(master, serving)
    if peer_gone:
        args["peer_down"] = "true"
    elif beside:
        args["await_demote"] = "true"
    # The old owner's connections: a takeover has no demote to ask, so it takes
    # those this host last stored; a promote beside the demote starts before the
    # demote answers, so it takes those the old owner's status listed in this
    # snapshot too (the stored record lags an initiator that just reconnected).
    known = _connection_list(master.status.get("remembered_initiators"))
    if beside:
        known |= _connection_list(serving[0].status.get("connections"))
    if (peer_gone or beside) and snapshot.tickle and known:
        args["tickle"] = json.dumps(sorted(known))
    actions = [Action(h, "demote", reason="%s is pool master now" % master.name)
               for h in serving]
    promote = Action(master, "promote", **promote_args(master, args))
    promote.relay_tickle = snapshot.tickle and bool(serving)
    promote.beside_previous = beside
    actions.append(promote)
    # The initiators reconnect to the new owner within moments: the next pass, soon,
    # gives the standbys their new connections for a takeover's tickle.
    return Plan(MOVE if (serving or peer_gone or master.role == "secondary") else REPAIR,
                why, actions, alerts, retry=snapshot.tickle)


def _connection_list(value):
    """The ``"ip:port"`` strings of a status's connection list (none if it is no list)."""
    if not isinstance(value, list):
        return set()
    return set(item for item in value if isinstance(item, six.string_types))


def _promote_beside_demote(master, serving):
    """Whether the master's promote may start beside the demote of the one host that
    serves, rather than after its answer: the master's plugin can wait for it
    (``await_demote``), and DRBD, connected on every resource, shows that host as
    the Primary whose demote the promote will see. The promote's start and
    observation then overlap the demote instead of adding to the dark time."""
    if len(serving) != 1 or "await_demote" not in (master.status.get("promote_accepts")
                                                   or ()):
        return False
    ours, theirs = master.status["resources"], serving[0].status.get("resources") or []
    return (bool(ours) and len(theirs) == len(ours)
            and all(r["is_primary"] for r in theirs)
            and all(r["connected"] and r["peer_is_primary"] for r in ours))


def gone(host, snapshot):
    """``(True, why)`` when ``host`` cannot be serving any more, else ``(False, why not)``.

    XAPI's ``live`` false is enough: with XenServer HA it turns false once HA
    fenced the host. Without HA it stays true for minutes after a death, so
    then all of these are needed: the mastership moved here from that host
    (the elector's word that it failed), it does not answer its plugin, and
    nobody answers ARP for the VIP.  DRBD may still show the peer connected: it
    notices a dead peer only at its next ping (up to ping-int + ping-timeout).
    That is no reason to wait, because DRBD's promote pings the peer first and
    refuses while a Primary peer answers; the promote is the last check.
    """
    if host.answered:
        return False, "%s answers" % host.name
    if host.live is False:
        return True, "XAPI says it is not live"
    missing = []
    if not host.unreachable:
        missing.append("that failure comes from a running host, not an unreachable one")
    if snapshot.took_over_from != host.uuid:
        missing.append("the pool mastership did not move here from it while this controller "
                       "watched")
    status = snapshot.master.status
    if status["vip"]["answered_elsewhere"]:
        missing.append("another host answers for the VIP %s" % status["vip"]["address"])
    if missing:
        return False, "it gives no status (%s); XAPI says it is live, and %s" % (
            host.describe_error(), "; ".join(missing))
    return True, ("it lost the mastership to %s, does not answer (%s) and nobody answers "
                  "for the VIP" % (snapshot.master.name, host.describe_error()))


def _cannot_serve(master, peer_gone):
    """Why ``master`` cannot serve safely now; empty when it can."""
    status = master.status
    problems = []
    if not status["target"]["daemon_running"]:
        problems.append("tgtd is not running on %s (start it)" % master.name)
    for resource in status["resources"]:
        name = resource["name"]
        if resource["is_primary"]:
            continue
        if not resource["configured"]:
            problems.append("DRBD %s is not up on %s (drbdadm up %s)" % (name, master.name,
                                                                          name))
        elif peer_gone:
            if resource["disk"] not in ("UpToDate", "Consistent"):
                problems.append("%s's copy of %s is %s, not UpToDate; the newest data is on "
                                "the host that is gone" % (master.name, name,
                                                           resource["disk"]))
        elif not resource["connected"]:
            problems.append("DRBD %s on %s is %s, not connected to its peer, which may hold "
                            "newer data (reconnect the replication link)"
                            % (name, master.name, resource["connection"]))
        elif not resource["disk_up_to_date"]:
            problems.append("%s's copy of %s is %s, not UpToDate (wait for the resync)"
                            % (master.name, name, resource["disk"]))
    return problems


def _manual(snapshot):
    """Observe only. The pool's flag rules; the master's own copy stands in for it when
    the pool database lost it (an emergency transition restores an older copy)."""
    mode = snapshot.manual_mode
    restore = mode is None
    why = ("no reason given" if restore or not mode.get("reason") else mode["reason"])
    if restore:
        why = "the pool database lost the flag; %s's copy of it is on" % snapshot.master.name
    roles = ", ".join("%s %s" % (h.name, h.role or "unknown") for h in snapshot.hosts)
    plan = Plan(OBSERVING, "manual mode is on (%s): only observing; %s" % (why, roles),
                alerts=[("manual-mode-on", "manual mode is on (%s): iscsi-ha does not move "
                         "the storage" % why, None)])
    plan.restore_manual_mode = restore
    return plan


def _manual_views(snapshot, manual):
    """Calls that make each host's copy of the manual-mode flag match the pool's; a copy
    that went off after the flag was set is not turned on again (`iscsi-ha manual off`
    is clearing them)."""
    return [Action(h, "manual-mode", enabled="true" if manual else "false",
                   reason="the pool's manual mode is %s" % ("on" if manual else "off"))
            for h in snapshot.hosts if h.answered and bool(h.status.get("manual_mode"))
            != manual and not (manual and _cleared_since(h, snapshot.manual_mode))]


def _remember_initiators(snapshot):
    """In place: store the master's initiator connections on each standby whose record of
    them differs, for a takeover should the master die. Nothing when they agree (an idle
    pool makes no call), with tickle off, or with a plugin that keeps no record."""
    connections = snapshot.master.status.get("connections")
    if not snapshot.tickle or not isinstance(connections, list):
        return []
    return [Action(h, "remember-initiators", connections=json.dumps(sorted(connections)))
            for h in snapshot.others
            if h.answered and isinstance(h.status.get("remembered_initiators"), list)
            and sorted(h.status["remembered_initiators"]) != sorted(connections)]


def _in_place_reason(master, silent):
    reason = "%s serves the storage as pool master" % master.name
    if silent:
        return reason + "; %s does not answer (%s)" % (
            _names(silent), "; ".join(h.describe_error() for h in silent))
    return reason + " and the other hosts are demoted standbys"


def _degraded(master):
    worse = ["%s is %s, peer disk %s" % (r["name"], r["connection"], r["peer_disk"])
             for r in master.status["resources"]
             if not (r["connected"] and r["peer_disk"] == "UpToDate")]
    if not worse:
        return []
    return [("replication-degraded", "replication from %s is degraded: %s" % (
        master.name, "; ".join(worse)), master.uuid)]


def _split_brain(snapshot):
    master = snapshot.master
    primaries = [r["name"] for r in master.status["resources"] if r["is_primary"]]
    both = []
    for other in snapshot.others:
        if other.answered:
            both += ["%s on %s and %s" % (r["name"], master.name, other.name)
                     for r in other.status["resources"]
                     if r["is_primary"] and r["name"] in primaries]
    if not both:
        return []
    return [("split-brain", "DRBD is Primary on two hosts: %s; their data may have diverged: "
             "after the demote, compare both copies before reconnecting DRBD (README: split "
             "brain)" % "; ".join(both), None)]


def _drbd_split_brain(snapshot):
    found = splitbrain.find(snapshot.hosts)
    return [("split-brain", splitbrain.reason(found), None)] if found else []


def _config_mismatch(snapshot):
    digests = [(h.name, h.status["config_digest"]) for h in snapshot.hosts if h.answered]
    if len(set(d for _, d in digests)) <= 1:
        return []
    return [("config-mismatch", "the hosts' configs differ (%s): make the pool-wide settings "
             "of /etc/iscsi-ha/iscsi-ha.conf the same on every host"
             % ", ".join("%s %s" % pair for pair in digests), None)]


def _names(hosts):
    return ", ".join(h.name for h in hosts)


def _roles(hosts):
    return ", ".join("%s %s" % (h.name, h.role) for h in hosts)

"""The controller's loop: idle on a slave, reconcile on the pool master.

On a slave it only watches xapi's record of this host's role (``[host]
pool_conf``, a small file) and tries its own xapi when that says "master":
cheap when idle, and awake within a poll when the host becomes master. On the
master it blocks in ``event.from`` and starts a pass as soon as the master,
a host's liveness or the manual-mode flag changes, and at least every
``[controller] interval`` seconds. With ``[controller] events = off`` it only
polls, at that interval, on the master and on a slave alike (the baseline the
benchmark compares with: the prior tool polls every 10 s). A pass observes, decides
(:func:`decide.decide`) and runs the plan's plugin calls in order, stopping at
the first failure. Every master change restarts xapi, so any broken call sends
the loop back to logging in, with nothing kept but what the controller saw
itself: the host the mastership moved here from.

After a pass, the master plugs again the SR's PBDs a move left unplugged
(:mod:`srrepair`, ``[controller] sr_repair``), and every controller rewrites
its metrics file (:mod:`metrics`, ``[controller] metrics_file``) with its
counters, which its state file keeps across restarts.

The controller never demotes its own host because it lost the mastership: the
new master's controller does that, after which the old one stays a standby.
"""

import json
import logging
import os
import time

from iscsi_ha import config as config_module, poolconf
from iscsi_ha_controller import decide as decisions, metrics, srrepair
from iscsi_ha_controller.observe import (CONTROLLER_KEY, MANUAL_KEY, NotMaster, PoolClient,
                                         XapiLost)

LOG = logging.getLogger("iscsi-ha")
STATE_FILE = "controller.json"
SLAVE_POLL = 0.1      # seconds between looks at pool.conf on a slave
LOGIN_RETRY = 0.02    # first wait between logins while this host's xapi restarts
FIRST_BACKOFF = 1.0   # first wait before a pass that asked to retry
# Passes kept in the state file, newest last: a reader that looks now and then (the
# lab's waits, a sysadmin) still finds a move a safety pass followed at once.
KEPT_PASSES = 10
ACTION_FNS = ("promote", "demote")
# What a pass keeps of a plugin call's result: its summary and timings, and, when
# the plugin gives them, what a fast switchover passed on (a demote's
# vip_released, a promote's tickles).
RECORDED = ("summary", "observe_seconds", "steps")
RECORDED_IF_GIVEN = ("vip_released", "tickled", "tickle_failures", "awaited_demote_seconds")
BECAME_MASTER = "became master"
# Passes in a row that try the SR repair again after a failed PBD.plug; then the
# repair waits for the next move (the alert said what failed).
SR_REPAIR_ATTEMPTS = 3


class Controller(object):
    """One host's controller: ``run()`` until ``stop()``; ``connect()`` then
    ``reconcile()`` for a single pass."""

    def __init__(self, config, alerter=None, client_factory=PoolClient, clock=time.time,
                 sleep=time.sleep):
        self.config = config
        self.alerter = alerter
        self.client_factory = client_factory
        self.clock = clock
        self.sleep = sleep
        self.own_uuid = config.host_uuid()
        self.events = bool(config.controller_events)
        # How often a slave looks at pool.conf: cheap, so often, unless only polling.
        self.slave_poll = SLAVE_POLL if self.events else config.controller_interval
        self.state_path = os.path.join(config.run_dir, STATE_FILE)
        self.stopping = False
        self.idle = False  # blocked in a wait that a stop may cut short
        self.state = self._load_state()
        self.client = None
        self.published = None
        # The SR repair runs after a move, and in the first pass as master; a failed
        # plug is tried again in the next passes, SR_REPAIR_ATTEMPTS in all.
        self.sr_repair_left = 0
        self.metrics_problem = None

    # -- state -----------------------------------------------------------------------

    def _load_state(self):
        """What a previous run of this controller saw, while the host has not rebooted."""
        state = {"mode": "starting", "since": self.clock(), "last_pass": None, "passes": [],
                 "took_over_from": None, "counters": metrics.new_counters(),
                 "last_failover": None}
        try:
            with open(self.state_path) as handle:
                previous = json.load(handle)
            state["took_over_from"] = previous.get("took_over_from")
            state["last_pass"] = previous.get("last_pass")
            state["passes"] = list(previous.get("passes") or [])[-KEPT_PASSES:]
            # Counters survive a restart of the controller (not a reboot: run_dir is
            # emptied then, and Prometheus takes that as a counter reset).
            state["counters"].update((key, int(value)) for key, value in
                                     (previous.get("counters") or {}).items()
                                     if key in state["counters"])
            state["last_failover"] = previous.get("last_failover")
        except (IOError, OSError, ValueError, AttributeError, TypeError):
            pass
        return state

    def _save_state(self):
        config_module.ensure_directory(self.config.run_dir, "[host] run_dir")
        self.state.update({"pid": os.getpid(), "host_uuid": self.own_uuid,
                           "updated": self.clock()})
        temporary = "%s.%d" % (self.state_path, os.getpid())
        with open(temporary, "w") as handle:
            json.dump(self.state, handle, sort_keys=True)
        os.rename(temporary, self.state_path)

    def _set_mode(self, mode, why):
        if self.state["mode"] != mode:
            LOG.info("controller: %s (%s)", mode, why)
            self.state.update({"mode": mode, "since": self.clock()})
            self._save_state()
            # Away from the master: the pool's part of the metrics would go stale.
            self._write_metrics()

    def _write_metrics(self, snapshot=None):
        """``[controller] metrics_file``: this controller's counters, and the pool as the
        pass that just ran saw it (``snapshot``); none when off."""
        path = self.config.metrics_file
        if path is None:
            return
        hosts, master = (snapshot.hosts, snapshot.master.name) if snapshot else ((), None)
        text = metrics.render(hosts, master, {
            "master": self.state["mode"] == "master", "counters": self.state["counters"],
            "last_failover": self.state["last_failover"]})
        try:
            metrics.write(path, text)
        except (IOError, OSError) as exc:
            problem = "cannot write [controller] metrics_file %s (%s)" % (
                path, exc.strerror or exc)
            if problem != self.metrics_problem:  # once, not every pass
                LOG.warning("controller: %s; make its directory writable", problem)
            self.metrics_problem = problem
        else:
            self.metrics_problem = None

    # -- the loop --------------------------------------------------------------------

    def stop(self, why="asked to"):
        self.stopping = why

    def run(self):
        LOG.info("controller: started on host %s", self.own_uuid)
        self._save_state()
        self._write_metrics()
        try:
            while not self.stopping:
                if self._wait_for_mastership():
                    self._serve()
        finally:  # also when a stop cut an idle wait short
            if self.client is not None:
                self.client.logout()
            if self.alerter is not None:
                self.alerter.close(2)  # let queued e-mail go out, briefly
            LOG.info("controller: stopped (%s)", self.stopping or "on an unexpected error")

    def _wait_for_mastership(self):
        """Idle until this host's xapi takes a login as master; True then."""
        wait, seen = LOGIN_RETRY, None
        while not self.stopping:
            role, master_address = poolconf.read(self.config.pool_conf)
            if (role, master_address) != seen:
                seen = (role, master_address)
                if role == "slave":
                    # Remembered until this host is master: the host it took over from.
                    self.state["took_over_from"] = {"address": master_address,
                                                    "at": self.clock()}
            if role == "slave":
                self._set_mode("slave", "pool.conf names %s as master" % master_address)
                self._idle(self.sleep, self.slave_poll)
                wait = LOGIN_RETRY
                continue
            if self.connect():
                return True
            self._idle(self.sleep, wait)
            # pool.conf says "master" while xapi restarts into that role: keep trying
            # at once, since that is when the storage must move. Without pool.conf,
            # nothing says when to try, so try less and less often.
            if role is None:
                wait = min(wait * 2, self.config.controller_interval)
        return False

    def connect(self):
        """Log in at this host's xapi; True when it answers as pool master."""
        client = self.client_factory(self.config)
        try:
            client.login()
        except NotMaster as exc:
            self._set_mode("slave", str(exc))
        except XapiLost as exc:
            self._set_mode("unreachable", str(exc))
        else:
            self.client = client
            return True
        return False

    def _idle(self, wait, *args):
        if self.stopping:
            # A stop that came while busy ends here, as it would have had it come now.
            raise SystemExit(0)
        self.idle = True
        try:
            return wait(*args)
        finally:
            self.idle = False

    def _serve(self):
        """Reconcile as master until the session breaks or the host is a slave."""
        self._set_mode("master", "this host's xapi answers as pool master")
        # Another master may have published since this host last did: say it afresh.
        self.published = None
        token, watched, trigger = "", None, BECAME_MASTER
        due, backoff = self.clock(), FIRST_BACKOFF
        try:
            while not self.stopping:
                if self.clock() >= due:
                    plan = self.reconcile(trigger, fresh_master=trigger == BECAME_MASTER)
                    if plan.retry:
                        due, backoff = self.clock() + backoff, min(
                            backoff * 2, self.config.controller_interval)
                    else:
                        due, backoff = self.clock() + self.config.controller_interval, \
                            FIRST_BACKOFF
                    trigger = "safety pass" if self.events else "poll"
                wait = max(0.0, due - self.clock())
                if not self.events:
                    # Polling only: a lost mastership shows in the next pass's snapshot.
                    self._idle(self.sleep, wait)
                    continue
                token, events = self._idle(self.client.events, token, wait)
                now_watched = _watched(events, watched)
                if watched is not None and now_watched != watched:
                    trigger, due = "XAPI event: %s" % _describe_change(
                        watched, now_watched), self.clock()
                watched = now_watched
        except NotMaster as exc:
            self._set_mode("slave", str(exc))
        except XapiLost as exc:
            self._set_mode("unreachable", str(exc))
        self.client = None

    # -- one pass --------------------------------------------------------------------

    def reconcile(self, trigger, dry_run=False, fresh_master=False):
        """Observe, decide and (unless ``dry_run``) act; returns the plan.

        ``fresh_master``: the first pass since this host's xapi answered as master.
        """
        started = self.clock()
        took_over = self.state.get("took_over_from") or {}
        snapshot, pool_ref = self.client.snapshot(self.own_uuid, took_over.get("address"),
                                                  fresh_master)
        observed = self.clock()
        plan = decisions.decide(snapshot)
        if dry_run:
            return plan
        if took_over and (snapshot.took_over_from is None or any(
                h.uuid == snapshot.took_over_from and h.role == "secondary"
                for h in snapshot.others)):
            # That host is a standby now, or not in the pool: should it vanish
            # later, it will not have lost the mastership while serving.
            self.state["took_over_from"] = None
        records = self._execute(plan, snapshot)
        acted = self.clock()
        if plan.restore_manual_mode:
            self.client.set_pool_key(pool_ref, MANUAL_KEY, json.dumps(
                {"reason": "restored from %s's copy" % snapshot.master.name,
                 "by": "iscsi-ha-controller", "at": self.clock()}))
        if plan.clear_manual_mode:
            self.client.remove_pool_key(pool_ref, MANUAL_KEY)
        outcome = plan.outcome
        counters = self.state["counters"]
        if any(not r["ok"] for r in records):
            outcome = decisions.FAILED
            counters["reconcile_errors"] += 1
        elif plan.outcome in (decisions.MOVE, decisions.REPAIR):
            outcome = decisions.DONE
        if outcome == decisions.DONE and plan.outcome == decisions.MOVE:
            counters["failovers"] += 1
            self.state["last_failover"] = {"seconds": round(acted - started, 3), "at": acted}
        if fresh_master or (outcome == decisions.DONE and plan.outcome == decisions.MOVE):
            self.sr_repair_left = SR_REPAIR_ATTEMPTS if self.config.sr_repair else 0
        this_pass = {
            "started": started, "observed": observed, "finished": self.clock(),
            "trigger": trigger, "reason": plan.reason, "outcome": outcome,
            "actions": records}
        self.state["last_pass"] = this_pass
        self.state["passes"] = self.state["passes"][-(KEPT_PASSES - 1):] + [this_pass]
        self._save_state()
        # Before the alerts: `iscsi-ha switchover` waits for this record.
        self._publish(pool_ref, snapshot, plan.reason, outcome)
        self._log(plan, outcome, trigger, records)
        for kind, text, host_uuid in plan.alerts:
            self._alert(kind, text, host_uuid)
        if outcome == decisions.FAILED:
            plan.retry = True
        if self.sr_repair_left and outcome in decisions.SERVING_OUTCOMES:
            # After the record and the alerts: a switchover is done once the master
            # serves, and PBD.plug may take a while.
            this_pass["sr_repair"] = self._repair_srs(snapshot)
            self._save_state()
            plan.retry = plan.retry or bool(self.sr_repair_left)
        self._write_metrics(snapshot)
        return plan

    def _repair_srs(self, snapshot):
        """Plug the PBDs :func:`srrepair.plan` names, each within ``[timeouts] action``;
        a failure raises an alert and leaves the repair for the next pass."""
        pbds, error = self.client.pbds()
        if error is not None:
            self.sr_repair_left -= 1
            LOG.error("controller: SR repair: cannot list the PBDs: %s", " ".join(error))
            return {"reason": "cannot list the PBDs: %s" % " ".join(error), "plugs": []}
        repair = srrepair.plan(pbds, snapshot, self.config.vip_address)
        records = []
        for pbd, host in repair.plugs:
            started = self.clock()
            error = self.client.plug_pbd(pbd, self.config.action_timeout)
            record = {"sr": pbd.sr_name, "pbd": pbd.uuid, "host": host.name,
                      "ok": error is None, "seconds": round(self.clock() - started, 3)}
            if error is None:
                self.state["counters"]["pbd_plugs"] += 1
                LOG.info("controller: SR repair: plugged SR %s on %s in %.2f s",
                         pbd.sr_name, host.name, record["seconds"])
            else:
                record["error"] = error
                self.state["counters"]["pbd_plug_failures"] += 1
                LOG.error("controller: SR repair: PBD.plug of SR %s on %s FAILED: %s",
                          pbd.sr_name, host.name, " ".join(error))
                self._alert("sr-repair-failed", "PBD.plug of SR %s on %s failed (%s); its "
                            "VMs cannot start there until it is plugged: check the host's "
                            "iSCSI session to the VIP %s, then xe pbd-plug uuid=%s" % (
                                pbd.sr_name, host.name, " ".join(error[:3]),
                                self.config.vip_address, pbd.uuid), host.uuid)
            records.append(record)
        failed = any(not r["ok"] for r in records)
        self.sr_repair_left = self.sr_repair_left - 1 if failed else 0
        if repair.plugs or repair.skipped:
            LOG.info("controller: SR repair: %s%s", repair.reason,
                     "; trying again in the next pass" if self.sr_repair_left else "")
        return {"reason": repair.reason, "plugs": records}

    def _execute(self, plan, snapshot):
        records = []
        moving = plan.outcome == decisions.MOVE
        if moving:
            self._alert("failover-started", plan.reason, snapshot.master.uuid)
        done = []
        for batch in _side_by_side(plan.actions):
            calls = [(action.host, action.fn, action.args_after(done),
                      self.config.action_timeout if action.fn in ACTION_FNS
                      else self.config.peer_timeout) for action in batch]
            if len(calls) == 1:
                started = self.clock()
                result, error = self.client.call_plugin(*calls[0])
                outcomes = [(result, error, self.clock() - started)]
            else:
                outcomes = self.client.call_plugins_beside(calls)
            failed = None
            for action, (result, error, seconds) in zip(batch, outcomes):
                done.append((action, result))
                records.append(_record(action, result, error, seconds))
                if error is not None and failed is None:
                    failed = (action, error)
            if failed is not None:
                action, error = failed
                if moving:
                    self._alert("failover-failed", "%s; %s on %s failed: %s" % (
                        plan.reason, action.fn, action.host.name, " ".join(error[:2])),
                        action.host.uuid)
                break
        else:
            if moving:
                self._alert("failover-done", "%s: done" % plan.reason, snapshot.master.uuid)
        return records

    def _log(self, plan, outcome, trigger, records):
        last = self.state.get("logged")
        line = (plan.reason, outcome)
        for record in records:
            LOG.log(logging.INFO if record["ok"] else logging.ERROR,
                    "controller: %s on %s %s in %.2f s%s", record["fn"], record["host"],
                    "done" if record["ok"] else "FAILED", record["seconds"],
                    ": %s" % " ".join(record["error"]) if not record["ok"] else "")
        if records or list(line) != last:
            level = logging.INFO if outcome in decisions.SERVING_OUTCOMES else logging.WARNING
            LOG.log(level, "controller: %s: %s (%s)", outcome, plan.reason, trigger)
            self.state["logged"] = list(line)

    def _alert(self, kind, text, host_uuid):
        if self.alerter is not None:
            self.alerter.alert(kind, text, host_uuid=host_uuid,
                               pool_uuid=self.client.pool_uuid)

    def _publish(self, pool_ref, snapshot, reason, outcome):
        """The reason for ``iscsi-ha status`` on any host: in the pool, when it changes."""
        # The counters too, for `iscsi-ha status --prometheus` on any host.
        published = (reason, outcome, json.dumps(self.state["counters"], sort_keys=True))
        if published == self.published:
            return
        self.client.set_pool_key(pool_ref, CONTROLLER_KEY, json.dumps({
            "host_uuid": self.own_uuid, "host": snapshot.master.name, "reason": reason,
            "outcome": outcome, "at": self.clock(), "counters": self.state["counters"],
            "last_failover": self.state["last_failover"]}, sort_keys=True))
        self.published = published

    def send_message(self, name, priority, cls, obj_uuid, body):
        """For the alerter: a XAPI message through the current master session."""
        if self.client is None:
            raise XapiLost("not connected to XAPI as master")
        self.client.message(name, priority, cls, obj_uuid, body)


def _side_by_side(actions):
    """The plan's actions in the groups they are called in: each action that starts
    beside the previous one joins that one's group."""
    batches = []
    for action in actions:
        if action.beside_previous and batches:
            batches[-1].append(action)
        else:
            batches.append([action])
    return batches


def _record(action, result, error, seconds):
    """What the pass's record keeps of one plugin call."""
    record = {"host": action.host.name, "fn": action.fn, "ok": error is None,
              "seconds": round(seconds, 3)}
    if error is not None:
        record["error"] = error
        return record
    # The plugin's own timing stays with the record: where a switchover's time
    # went, for the log reader and the bench.
    answer = result if isinstance(result, dict) else {}
    for key in RECORDED:
        record[key] = answer.get(key)
    record.update((key, answer[key]) for key in RECORDED_IF_GIVEN if key in answer)
    return record


def _watched(events, before):
    """What of the events' objects wakes a pass: the master, liveness, manual mode."""
    watched = dict(before or {})
    for event in events:
        cls, ref, record = event.get("class"), event.get("ref"), event.get("snapshot") or {}
        if event.get("operation") == "del":
            watched.pop((cls, ref), None)
        elif cls == "pool":
            watched[(cls, ref)] = (record.get("master"),
                                   (record.get("other_config") or {}).get(MANUAL_KEY))
        elif cls == "host_metrics":
            watched[(cls, ref)] = record.get("live")
        elif cls == "host":
            watched[(cls, ref)] = record.get("metrics")
    return watched


def _describe_change(before, after):
    changed = sorted(set(k for k in set(before) | set(after) if before.get(k) != after.get(k)))
    return ", ".join("%s %s" % key for key in changed) or "objects changed"


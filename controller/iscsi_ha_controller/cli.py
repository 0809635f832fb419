"""The ``iscsi-ha`` command: the whole pool's storage at a glance, and the sysadmin's levers.

It runs on any host of the pool: it logs in at this host's xapi, follows
HOST_IS_SLAVE to the pool master, and reaches every host only through its
plugin (``host.call_plugin``), as the controller does. Outside manual mode
the controller moves the storage, so a planned move is a master change
(``switchover``) and hand-made promotes and demotes are refused; in manual
mode the controller only observes, and these commands move the storage.
Every refusal names the fix and a stable code (ISCSI_HA_* or XAPI's).
"""

import argparse
import collections
import getpass
import io
import json
import socket
import sys
import time

import six

from iscsi_ha import config as config_module, logs, report, xapi
from iscsi_ha.commands import monotonic
from iscsi_ha.errors import IscsiHaError
from iscsi_ha_controller import answers, configstore, hostfiles, metrics, splitbrain
from iscsi_ha_controller.decide import (IN_PLACE, REFUSED, SERVING_OUTCOMES, WAITING,
                                        HostView, Snapshot, decide)
from iscsi_ha_controller.observe import (CONTROLLER_KEY, MANUAL_KEY, NotMaster, PoolClient,
                                         XapiLost, manual_mode, read_statuses)

ORIGINATOR = "iscsi-ha-cli"
DEFAULT_WAIT = 120.0
DEFAULT_LINES = 50
POLL_SECONDS = 0.5
# The CLI's own codes; a plugin's or XAPI's code is passed on as it came.
BAD_ARGUMENT = "ISCSI_HA_BAD_ARGUMENT"
NOT_MANUAL = "ISCSI_HA_NOT_MANUAL_MODE"
ROLES_DISAGREE = "ISCSI_HA_ROLES_DISAGREE"
MOVE_REFUSED = "ISCSI_HA_MOVE_REFUSED"
TIMED_OUT = "ISCSI_HA_TIMEOUT"
NO_MASTER = "ISCSI_HA_NO_MASTER"
XAPI_UNREACHABLE = "ISCSI_HA_XAPI_UNREACHABLE"
CHECK_FAILED = "ISCSI_HA_CHECK_FAILED"
NO_LOG = "ISCSI_HA_NO_LOG"
BAD_ANSWER = "ISCSI_HA_BAD_ANSWER"


class CliError(Exception):
    """What the user reads instead of a result: ``code``, a message with the fix, and for
    ``--json`` any ``details`` (such as the steps done before a failure)."""

    def __init__(self, code, message, details=None, status=1):
        Exception.__init__(self, message)
        self.code = code
        self.message = message
        self.details = details or {}
        self.status = status


# -- the command line ----------------------------------------------------------------

def parser():
    common = argparse.ArgumentParser(add_help=False)
    # Also after the command (`iscsi-ha status --config X`); SUPPRESS keeps the top one.
    common.add_argument("--config", default=argparse.SUPPRESS, metavar="PATH",
                        help="config file (default: $%s or %s)"
                        % (config_module.PATH_VARIABLE, config_module.DEFAULT_PATH))
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true",
                         help="print one JSON object instead of text")
    reason = argparse.ArgumentParser(add_help=False)
    reason.add_argument("--reason", default="",
                        help="why, for the hosts' logs")
    top = argparse.ArgumentParser(
        prog="iscsi-ha",
        description="iscsi-ha's storage across the pool, from any host: it talks to the pool "
                    "master's xapi and acts on each host through its iscsi-ha plugin. Errors "
                    "name the fix and a code (ISCSI_HA_* or XAPI's); the exit status is 0 on "
                    "success, 1 on a refusal or failure, 2 on bad usage or config.")
    top.add_argument("--config", metavar="PATH", help="config file (default: $%s or %s)"
                     % (config_module.PATH_VARIABLE, config_module.DEFAULT_PATH))
    commands = top.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    command = commands.add_parser(
        "status", parents=[common, as_json],
        help="every host's roles, DRBD, target and VIP; manual mode; the controller's last "
             "reason",
        description="Every host as one table (pool role, liveness, storage role, DRBD per "
                    "resource, target, VIP, config digest, its copy of manual mode), who "
                    "serves, manual mode and the controller's last reason. Exit status 1 "
                    "when a host's status could not be read.")
    command.add_argument("--prometheus", action="store_true",
                         help="print Prometheus text format instead (the metrics the "
                              "controller writes to [controller] metrics_file, with the pool "
                              "master's controller counters as it last published them)")
    command = commands.add_parser(
        "switchover", parents=[common, as_json, reason],
        help="planned move of the storage to HOST",
        description="Outside manual mode: make HOST pool master (pool.designate_new_master) "
                    "and wait until its controller has made it serve. In manual mode: move "
                    "only the storage (demote the host that serves, then promote HOST); the "
                    "pool master stays. Nothing changes when the move would be unsafe.")
    command.add_argument("host", nargs="?", metavar="HOST",
                         help="host name or uuid (default: the other host)")
    command.add_argument("--wait", type=float, default=DEFAULT_WAIT, metavar="SECONDS",
                         help="how long to wait for HOST to serve after a master change "
                              "(default %(default)g)")
    command = commands.add_parser(
        "promote", parents=[common, as_json, reason],
        help="serve the storage from HOST (manual mode only)",
        description="Runs the plugin's promote on HOST. Only in manual mode: otherwise the "
                    "controller moves the storage, and this is refused.")
    command.add_argument("host", metavar="HOST", help="host name or uuid")
    command.add_argument("--peer-down", action="store_true",
                         help="the other host is known to be powered off or fenced")
    command.add_argument("--force", action="store_true",
                         help="promote a local copy that is not UpToDate (only if it is the "
                              "copy to keep)")
    command = commands.add_parser(
        "demote", parents=[common, as_json, reason],
        help="stop serving from HOST (manual mode only)",
        description="Runs the plugin's demote on HOST. Only in manual mode: otherwise the "
                    "controller moves the storage, and this is refused.")
    command.add_argument("host", metavar="HOST", help="host name or uuid")
    manual = commands.add_parser(
        "manual", parents=[common], help="turn the pool's manual mode on or off",
        description="Manual mode is pool-wide (pool other_config %s) and survives reboots; "
                    "while it is on, the controller only observes." % MANUAL_KEY)
    switch = manual.add_subparsers(dest="switch", metavar="on|off")
    switch.required = True
    switch.add_parser("on", parents=[common, as_json],
                      help="the controller stops moving the storage").add_argument(
                          "--reason", required=True, help="why (shown by status)")
    switch.add_parser("off", parents=[common, as_json, reason],
                      help="the controller moves the storage again; refused while the "
                           "roles disagree with the pool")
    commands.add_parser("check", parents=[common, as_json],
                        help="every host's config and environment (plugin check)",
                        description="The plugin's check on every host, as one table. Exit "
                                    "status 1 when any check fails.")
    command = commands.add_parser(
        "setup", parents=[common, as_json],
        help="render and install every host's DRBD, tgtd, multipath and controller files",
        description="From each host's own iscsi-ha.conf: its DRBD resource files (iscsi-ha's "
                    "fence-peer handler), the tgtd drop-in whose stop ends the target with its "
                    "sessions, the multipath blacklist for drbd*, and the controller's unit, "
                    "installed through each host's plugin (the files it replaces are kept "
                    "under [host] state_dir/replaced). Every host checks its files before any "
                    "is written. The LVM filter is checked, not written: exit status 1 (%s) "
                    "with the line to put in lvm.conf when a host's LVM would scan a DRBD "
                    "device or its disk." % hostfiles.LVM_FILTER_NEEDED)
    command.add_argument("--dry-run", action="store_true",
                         help="show each host's diffs and change nothing")
    store = commands.add_parser(
        "config", parents=[common], help="the config's backup in the pool database",
        description="The config's text in the pool's other_config (%s), so that a rebuilt "
                    "host gets the same config; status compares every host with it."
                    % configstore.KEY)
    action = store.add_subparsers(dest="action", metavar="backup|restore")
    action.required = True
    action.add_parser("backup", parents=[common, as_json],
                      help="store THIS host's config in the pool (refused if it holds a "
                           "password)")
    command = action.add_parser("restore", parents=[common, as_json],
                                help="write the pool's backup to HOST's config file, through "
                                     "its plugin")
    command.add_argument("host", metavar="HOST", help="host name or uuid")
    command.add_argument("--dry-run", action="store_true",
                         help="show the diff and change nothing")
    command = commands.add_parser(
        "split-brain", parents=[common, as_json],
        help="compare both copies of a DRBD split brain; resolve it on your choice",
        description="Shows each resource in DRBD split brain: both hosts' roles, data "
                    "generations and what discarding each copy would lose. Changes nothing "
                    "unless both --discard HOST and --yes are given: then HOST's copy goes "
                    "Secondary and reconnects with --discard-my-data (its writes since the "
                    "split are lost), the other host reconnects, and DRBD resyncs HOST from "
                    "it. A host that serves (target or VIP) is refused: demote it first.")
    command.add_argument("resource", nargs="?", metavar="RESOURCE",
                         help="the DRBD resource (default: every one in split brain)")
    command.add_argument("--discard", metavar="HOST",
                         help="the host whose writes since the split are thrown away")
    command.add_argument("--yes", action="store_true",
                         help="confirm: really discard HOST's writes")
    command = commands.add_parser(
        "log", parents=[common],
        help="the end of THIS host's iscsi-ha log",
        description="Prints the end of this host's log ([host] log_file of the config), read "
                    "from the local file: the other host's log is on the other host.")
    command.add_argument("--lines", type=int, default=DEFAULT_LINES, metavar="N",
                         help="how many lines (default %(default)d)")
    return top


def main(argv=None, client_factory=PoolClient, stdout=None, stderr=None, sleep=time.sleep):
    out, err = stdout or sys.stdout, stderr or sys.stderr
    options = parser().parse_args(argv)
    if six.PY2:  # argv is bytes there; everything shown or sent is text
        for name in ("reason", "host", "resource", "discard"):
            if isinstance(getattr(options, name, None), bytes):
                setattr(options, name, getattr(options, name).decode("utf-8", "replace"))
    as_json = getattr(options, "json", False)
    config = None
    try:
        config = config_module.load(options.config)
        return Cli(config, options, client_factory, out, err, sleep).run()
    except CliError as exc:
        return _fail(out, err, as_json, exc)
    except IscsiHaError as exc:
        return _fail(out, err, as_json, CliError(exc.code, exc.message, status=2))
    except NotMaster as exc:
        return _fail(out, err, as_json, CliError(NO_MASTER, (
            "cannot reach the pool master: %s. xapi restarts on every host after a master "
            "change: try again in a minute" % exc)))
    except XapiLost as exc:
        return _fail(out, err, as_json, CliError(XAPI_UNREACHABLE, (
            "%s; check that xapi runs on this host and the [xapi] section of the config"
            % exc)))
    except xapi.Failure as failure:
        details = [six.text_type(part) for part in failure.details] or ["XAPI_FAILURE"]
        return _fail(out, err, as_json, CliError(details[0], "XAPI refused: %s"
                                                 % " ".join(details)))
    except KeyboardInterrupt:
        return _fail(out, err, as_json, CliError(
            "ISCSI_HA_INTERRUPTED", "interrupted; a plugin call under way runs on: `iscsi-ha "
            "status` shows where it left the storage", status=130))
    except Exception as exc:  # pylint: disable=broad-except
        # A user must never see a traceback: it goes to this host's log instead.
        where = ""
        if config is not None:
            logs.configure(config.log_file).exception("cli: %s failed unexpectedly",
                                                      options.command)
            where = "; the traceback is in the iscsi-ha log (%s)" % config.log_file
        return _fail(out, err, as_json, CliError("ISCSI_HA_INTERNAL_ERROR", (
            "%s failed unexpectedly (%r)%s" % (options.command, exc, where))))


def _fail(out, err, as_json, exc):
    if as_json:
        _emit(out, _dumps({"error": dict(exc.details, code=exc.code, message=exc.message)}))
    _emit(err, "iscsi-ha: %s: %s\n" % (exc.code, exc.message))
    return exc.status


def _emit(stream, text):
    """Write ``text`` whatever the stream's encoding: a reason or host name may hold any
    character, and cron or systemd may run this with the C locale."""
    encoding = getattr(stream, "encoding", None) or "ascii"
    safe = six.text_type(text).encode(encoding, "replace")
    stream.write(safe if six.PY2 else safe.decode(encoding))


def _dumps(value):
    return json.dumps(value, indent=2, sort_keys=True, separators=(",", ": ")) + "\n"


# -- the pool as one look through its master -----------------------------------------

class Pool(object):
    """The pool record and its hosts (``HostView``, with ``ref``), read through the master."""

    def __init__(self, client):
        self.client = client
        self.ref, self.record = client.pool_record()
        master_ref = self.record.get("master")
        self.hosts = client.hosts(master_ref)
        self.master = next((h for h in self.hosts if h.ref == master_ref), None)

    @property
    def other_config(self):
        return self.record.get("other_config") or {}

    @property
    def manual_mode(self):
        """The pool's flag, which rules. (Only in its first pass as master does a controller
        take the master's copy for it; a copy without the pool's flag is stale then.)"""
        return manual_mode(self.other_config)

    @property
    def controller(self):
        """What the master's controller last published, or None."""
        text = self.other_config.get(CONTROLLER_KEY)
        if text is None:
            return None
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        return value if isinstance(value, dict) else {"reason": text}

    def host(self, name):
        for view in self.hosts:
            if name in (view.name, view.uuid):
                return view
        raise CliError(BAD_ARGUMENT, "there is no host \"%s\" in this pool; name one of %s (or "
                                     "its uuid)" % (name, _names(self.hosts)), status=2)

    def others(self, view):
        return [h for h in self.hosts if h is not view]

    def read_status(self, views=None):
        read_statuses(self.client, self.hosts if views is None else views)

    def pool_role(self, view):
        return "master" if view is self.master else "slave"


def reported_serving(controller, target):
    """Whether the controller's record in the pool is ``target``'s own, saying it serves.

    The plugin says primary as soon as the promote is done, a moment before the
    controller that called it publishes its pass; until then the record is the
    old master's, which would be reported as the switchover's.
    """
    return bool(controller) and controller.get("host_uuid") == target.uuid and \
        controller.get("outcome") in SERVING_OUTCOMES


def serving(hosts):
    return [h for h in hosts if h.role == "primary"]


def _names(hosts):
    return ", ".join(h.name for h in hosts) or "none"


def _when(at):
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(at)))
    except (TypeError, ValueError):
        return "at an unknown time"


def _error_text(error):
    return " ".join(six.text_type(part) for part in error) or "no answer"


def _preview(pool, target):
    """The controller's decision as if ``target`` were pool master and manual mode off: the
    one place that says whether a move is safe and which calls make it."""
    def view(host):
        status = None
        if host.status is not None:
            status = dict(host.status, manual_mode=False, pool_role=None)
        copy = HostView(host.name, host.uuid, host.address, host.live, status, host.error)
        copy.ref = host.ref
        return copy
    return decide(Snapshot(view(target), [view(h) for h in pool.others(target)],
                           tickle=bool(pool.client.config.controller_tickle)))


# -- the commands --------------------------------------------------------------------

class Cli(object):
    def __init__(self, config, options, client_factory, out, err, sleep):
        self.config = config
        self.options = options
        self.client_factory = client_factory
        self.out = out
        self.err = err
        self.sleep = sleep
        self.json = getattr(options, "json", False)

    def run(self):
        if self.options.command == "log":
            return self.log()
        client = self.connect()
        try:
            # `config` would be the Config itself.
            command = {"config": "pool_config"}.get(self.options.command,
                                                    self.options.command.replace("-", "_"))
            return getattr(self, command)(Pool(client))
        finally:
            client.logout()

    def connect(self):
        client = self.client_factory(self.config, originator=ORIGINATOR)
        client.login(follow_master=True)
        return client

    def say(self, text):
        if not self.json:
            _emit(self.out, text + "\n")

    def result(self, value, text):
        _emit(self.out, _dumps(value) if self.json else text)

    # status ------------------------------------------------------------------------

    def status(self, pool):
        if self.options.prometheus and self.json:
            raise CliError(BAD_ARGUMENT, "status takes --json or --prometheus, not both",
                           status=2)
        pool.read_status()
        if self.options.prometheus:
            _emit(self.out, status_prometheus(pool))
        else:
            self.result(status_json(pool), status_text(pool))
        return 0 if all(h.answered for h in pool.hosts) else 1

    def split_brain(self, pool):
        return splitbrain.command(self, pool, CliError)

    # check -------------------------------------------------------------------------

    def check(self, pool):
        hosts = []
        for view in pool.hosts:
            result, error = self.client_call(pool, view, "check")
            problem = answers.check_problem(result) if error is None else None
            if problem:
                result, error = None, [BAD_ANSWER, "fn=check on %s answered what iscsi-ha's "
                                       "plugin never does (%s); check that the same iscsi-ha "
                                       "version is installed there" % (view.name, problem)]
            hosts.append({"host": view.name, "result": result, "error": error})
        ok = all(h["result"] is not None and h["result"].get("ok") for h in hosts)
        rows = []
        for host in hosts:
            if host["result"] is None:
                rows.append([host["host"], "plugin check", "FAIL", _error_text(host["error"])])
                continue
            for check in host["result"].get("checks", []):
                rows.append([host["host"], check.get("check"),
                             "ok" if check.get("ok") else "FAIL", check.get("detail")])
        self.result({"ok": ok, "hosts": hosts}, report.table(["host", "check", "ok",
                                                              "detail"], rows))
        if ok:
            return 0
        _emit(self.err, "iscsi-ha: %s: a check failed or a host did not answer: the lines "
                        "marked FAIL say what to fix\n" % CHECK_FAILED)
        return 1

    def client_call(self, pool, view, fn, args=None, timeout=None):
        """The plugin's ``fn`` on ``view``: ``(result, None)`` or ``(None, error)``."""
        if six.PY2:  # observe makes every argument a str: UTF-8 bytes, not unicode
            args = dict((key, value.encode("utf-8") if isinstance(value, six.text_type)
                         else value) for key, value in (args or {}).items())
        return pool.client.call_plugin(view, fn, args or {}, timeout or
                                       self.config.peer_timeout)

    # promote, demote ---------------------------------------------------------------

    def promote(self, pool):
        args = {"reason": self.options.reason or "iscsi-ha promote (manual mode)"}
        if self.options.peer_down:
            args["peer_down"] = "true"
        if self.options.force:
            args["force"] = "true"
        return self._manual_action(pool, "promote", args)

    def demote(self, pool):
        return self._manual_action(pool, "demote", {
            "reason": self.options.reason or "iscsi-ha demote (manual mode)"})

    def _manual_action(self, pool, fn, args):
        view = pool.host(self.options.host)
        if pool.manual_mode is None:
            raise CliError(NOT_MANUAL, (
                "%s is for manual mode only, and manual mode is off: the controller keeps the "
                "pool master serving and would undo a hand-made move. For a planned move run "
                "`iscsi-ha switchover %s`; to take over by hand first run `iscsi-ha manual on "
                "--reason TEXT`" % (fn, view.name)))
        step, _ = self.act(pool, view, fn, args)
        self.result({"steps": [step]}, _step_text(step))
        return 0

    def act(self, pool, view, fn, args, done=()):
        """One promote or demote: ``(step, result)``; a failure is a CliError listing
        ``done`` before it."""
        started = monotonic()
        result, error = self.client_call(pool, view, fn, args, self.config.action_timeout)
        step = {"host": view.name, "fn": fn, "ok": error is None,
                "seconds": round(monotonic() - started, 3)}
        if error is None:
            step["summary"] = result.get("summary") if isinstance(result, dict) else None
            return step, result
        step["error"] = error
        steps = list(done) + [step]
        before = ("; done before it: %s" % "; ".join(_step_text(s).strip() for s in done)
                  if done else "")
        raise CliError(error[0], "%s on %s failed: %s%s" % (
            fn, view.name, error[1] if len(error) > 1 else _error_text(error), before),
            {"steps": steps})

    # switchover --------------------------------------------------------------------

    def switchover(self, pool):
        pool.read_status()
        manual = pool.manual_mode is not None
        target = self._switchover_target(pool, manual)
        if manual:
            return self._move_storage(pool, target)
        return self._designate(pool, target)

    def _switchover_target(self, pool, manual):
        if self.options.host:
            return pool.host(self.options.host)
        current = pool.master
        if manual and len(serving(pool.hosts)) == 1:
            current = serving(pool.hosts)[0]
        others = pool.others(current)
        if len(others) != 1:
            raise CliError(BAD_ARGUMENT, "cannot tell which host to switch over to (the pool "
                                         "has %s): name it" % _names(pool.hosts), status=2)
        return others[0]

    def _refuse_unsafe(self, plan, target, mode):
        if plan.outcome in (REFUSED, WAITING):
            raise CliError(MOVE_REFUSED, "not switching over to %s (%s); nothing was changed: "
                                         "%s" % (target.name, mode, plan.reason))

    def _move_storage(self, pool, target):
        """Manual mode: demote whoever serves, then promote ``target``; the master stays."""
        mode = "manual mode: the storage only"
        plan = _preview(pool, target)
        if plan.outcome == IN_PLACE:
            self.result({"switchover": {"host": target.name, "mode": "storage", "steps": []}},
                        "%s already serves the storage, and the other hosts are demoted\n"
                        % target.name)
            return 0
        self._refuse_unsafe(plan, target, mode)
        reason = "iscsi-ha switchover to %s (manual mode)%s" % (
            target.name, ": " + self.options.reason if self.options.reason else "")
        by_uuid = dict((h.uuid, h) for h in pool.hosts)
        steps, done = [], []
        for action in plan.actions:
            # The promote learns from the demote before it (the VIP released, whom to
            # tickle): one round trip per host.
            args = dict(action.args_after(done), reason=reason)
            step, result = self.act(pool, by_uuid[action.host.uuid], action.fn, args, steps)
            steps.append(step)
            done.append((action, result))
            self.say(_step_text(step).rstrip("\n"))
        text = ""
        if pool.master is not target:
            text = ("%s serves the storage; %s stays pool master (manual mode). `iscsi-ha "
                     "manual off` is refused until the pool master serves\n"
                     % (target.name, pool.master.name if pool.master else "the master"))
        self.result({"switchover": {"host": target.name, "mode": "storage", "steps": steps}},
                    text)
        return 0

    def _designate(self, pool, target):
        """Outside manual mode: make ``target`` pool master; its controller moves the storage."""
        previous = pool.master
        designated = False
        started = monotonic()
        if previous is not target:
            self._refuse_unsafe(_preview(pool, target), target, "a pool master change")
            self.say("making %s pool master (xapi restarts on every host) ..." % target.name)
            designated = self._designate_call(pool, target)
        elif target.role == "primary":
            self.result({"switchover": {"host": target.name, "mode": "pool-master",
                                        "designated": False, "seconds": 0.0}},
                        "%s is pool master and serves the storage already\n" % target.name)
            return 0
        self.say("waiting up to %g s for %s to serve the storage ..." % (self.options.wait,
                                                                         target.name))
        final = self._wait_serving(target.uuid, started + self.options.wait)
        final.read_status(final.others(final.master))
        seconds = round(monotonic() - started, 3)
        roles = dict((h.name, h.role or _error_text(h.error)) for h in final.hosts)
        controller = final.controller
        text = "%s is pool master and serves the storage (%.1f s); %s\n" % (
            target.name, seconds, ", ".join("%s %s" % item for item in sorted(roles.items())))
        if controller:
            text += "controller: %s: %s\n" % (controller.get("outcome"),
                                             controller.get("reason"))
        self.result({"switchover": {
            "host": target.name, "mode": "pool-master", "designated": designated,
            "previous_master": previous.name if previous else None, "seconds": seconds,
            "roles": roles, "controller": controller}}, text)
        return 0

    def _designate_call(self, pool, target):
        try:
            pool.client.designate_new_master(target)
        except xapi.Failure as failure:
            details = [six.text_type(part) for part in failure.details] or ["XAPI_FAILURE"]
            if details[0] == "HA_IS_ENABLED":
                raise CliError(details[0], (
                    "XAPI refuses to designate a new pool master while XenServer HA is "
                    "enabled, and iscsi-ha does not disable HA by itself; nothing was changed. "
                    "Disable HA (xe pool-ha-disable), run `iscsi-ha switchover %s` again, then "
                    "enable HA again (xe pool-ha-enable heartbeat-sr-uuids=...)" % target.name))
            raise CliError(details[0], "XAPI refused to make %s pool master: %s; nothing was "
                                       "changed" % (target.name, " ".join(details)))
        except (NotMaster, XapiLost):
            # The master's xapi may restart before it answers: the wait tells whether the
            # change happened.
            return False
        return True

    def _wait_serving(self, target_uuid, deadline):
        """The pool once ``target_uuid`` is master and primary and its controller has
        reported the pass that made it so; reconnects while xapi restarts (connections
        refused, HOST_IS_SLAVE, SESSION_INVALID)."""
        client, seen = None, "no answer yet"
        while True:
            try:
                if client is None:
                    client = self.connect()
                pool = Pool(client)
                target = pool.host(target_uuid)
                if pool.master is not target:
                    seen = "XAPI names %s as pool master" % (
                        pool.master.name if pool.master else "no host")
                else:
                    pool.read_status([target])
                    controller = pool.controller
                    if target.role == "primary" and reported_serving(controller, target):
                        return pool
                    seen = "%s is pool master and its status says %s" % (
                        target.name, target.role or _error_text(target.error))
                    if controller:
                        seen += "; the controller's last word (%s, %s): %s: %s" % (
                            controller.get("host"), _when(controller.get("at")),
                            controller.get("outcome"), controller.get("reason"))
            except (NotMaster, XapiLost) as exc:
                client, seen = None, six.text_type(exc)
            except xapi.Failure as failure:
                client, seen = None, _error_text(failure.details)
            if monotonic() >= deadline:
                raise CliError(TIMED_OUT, (
                    "the storage did not move within the wait (last seen: %s). `iscsi-ha "
                    "status` shows why; `iscsi-ha log` on the pool master shows the "
                    "controller's lines; run `iscsi-ha switchover` again to wait longer (with "
                    "--wait)" % seen))
            self.sleep(POLL_SECONDS)

    # manual on|off -----------------------------------------------------------------

    def manual(self, pool):
        if self.options.switch == "on":
            return self._manual_on(pool)
        return self._manual_off(pool)

    def _manual_on(self, pool):
        record = {"reason": self.options.reason, "at": time.time(), "by": _who()}
        pool.client.set_pool_key(pool.ref, MANUAL_KEY, json.dumps(record, sort_keys=True))
        copies, lines = {}, ["manual mode is on (%s): the controller only observes now"
                             % record["reason"]]
        for view in pool.hosts:
            result, error = self.client_call(pool, view, "manual-mode", {
                "enabled": "true", "reason": record["reason"]})
            copies[view.name] = error is None
            if error is not None:
                lines.append("%s's copy of the flag was not set (%s); the controller sets it "
                             "once the host answers" % (view.name, _error_text(error)))
        self.result({"manual_mode": record, "host_copies_set": copies},
                    "\n".join(lines) + "\n")
        return 0

    def _manual_off(self, pool):
        pool.read_status()
        on_hosts = [h for h in pool.hosts if h.answered and h.status.get("manual_mode")]
        if pool.manual_mode is None and not on_hosts and all(h.answered for h in pool.hosts):
            self.result({"manual_mode": None, "changed": False}, "manual mode is off already\n")
            return 0
        why = roles_disagree(pool)
        if why:
            raise CliError(ROLES_DISAGREE, "manual mode stays on: %s" % why)
        reason = "manual mode off%s" % (": " + self.options.reason if self.options.reason
                                        else "")
        # The hosts' copies first: the controller takes the master's copy for the flag
        # when the pool's has vanished.
        for view in on_hosts:
            result, error = self.client_call(pool, view, "manual-mode", {
                "enabled": "false", "reason": reason})
            if error is not None:
                raise CliError(error[0], "manual mode stays on: %s's copy of the flag could "
                                         "not be cleared (%s); run `iscsi-ha manual off` again"
                                         % (view.name, _error_text(error)))
        if MANUAL_KEY in pool.other_config:
            pool.client.remove_pool_key(pool.ref, MANUAL_KEY)
        self.result({"manual_mode": None, "changed": True},
                    "manual mode is off: the controller keeps the pool master (%s) serving "
                    "again\n" % pool.master.name)
        return 0

    # setup, config backup|restore --------------------------------------------------

    def setup(self, pool):
        return hostfiles.setup(self, pool, self.options.dry_run)

    def pool_config(self, pool):
        if self.options.action == "backup":
            return self._config_backup(pool)
        return self._config_restore(pool)

    def _config_backup(self, pool):
        try:
            text = configstore.read_local(self.config)
            config = config_module.parse(text, self.config.path)
        except (IOError, OSError) as exc:
            raise CliError(configstore.BACKUP_REFUSED, "cannot read %s (%s); nothing was "
                                                       "stored" % (self.config.path, exc))
        why = configstore.check(text, config)
        if why:
            raise CliError(configstore.BACKUP_REFUSED, "nothing was stored: %s" % why)
        own = config.host_uuid()
        name = next((h.name for h in pool.hosts if h.uuid == own), socket.gethostname())
        value = configstore.record(text, config, name)
        pool.client.set_pool_key(pool.ref, configstore.KEY, json.dumps(value, sort_keys=True))
        shown = dict(value, text=None, bytes=len(text.encode("utf-8")))
        self.result({"backup": shown}, "stored %s of %s (%d bytes, digest %s) in the pool "
                                       "(other_config %s)\n" % (
                                           config.path, name, shown["bytes"], value["digest"],
                                           configstore.KEY))
        return 0

    def _config_restore(self, pool):
        backup = configstore.stored(pool.other_config)
        if backup is None:
            raise CliError(configstore.NO_BACKUP, (
                "the pool holds no config backup (other_config %s); take one with `iscsi-ha "
                "config backup` on a host whose config is right" % configstore.KEY))
        view = pool.host(self.options.host)
        dry_run = self.options.dry_run
        result, error = self.client_call(pool, view, "install-files", {
            "files": hostfiles.wire([{"kind": "config", "name": None,
                                      "content": backup["text"]}]),
            "dry_run": "true" if dry_run else "false"}, self.config.action_timeout)
        if error is not None:
            raise CliError(error[0], "%s did not take the config: %s; nothing was changed" % (
                view.name, " ".join(error[1:2]) or error[0]))
        entry = result["files"][0]
        value = {"host": view.name, "dry_run": dry_run, "path": entry["path"],
                 "outcome": entry["outcome"], "diff": entry.get("diff"),
                 "replaced_kept_at": entry.get("backup"),
                 "backup": dict((k, backup.get(k)) for k in ("digest", "host", "at"))}
        text = "%s: %s %s (the backup taken %s from %s)\n%s" % (
            view.name, entry["outcome"], entry["path"], _when(backup.get("at")),
            backup.get("host"), entry.get("diff") or "")
        self.result({"restore": value}, text)
        return 0

    # log ---------------------------------------------------------------------------

    def log(self):
        if self.options.lines < 1:
            raise CliError(BAD_ARGUMENT, "--lines must be at least 1", status=2)
        path = self.config.log_file
        try:
            with io.open(path, encoding="utf-8", errors="replace") as handle:
                lines = collections.deque(handle, maxlen=self.options.lines)
        except (IOError, OSError) as exc:
            raise CliError(NO_LOG, "cannot read this host's log %s (%s): nothing was logged on "
                                   "this host yet, or [host] log_file in %s names another "
                                   "file" % (path, exc.strerror or exc, self.config.path))
        _emit(self.out, "".join(lines))
        return 0


def _who():
    try:
        user = getpass.getuser()
    except Exception:  # pylint: disable=broad-except
        user = "unknown"  # no login name in this environment: the host still says where
    return "%s@%s (iscsi-ha manual on)" % (user, socket.gethostname())


def _step_text(step):
    if step["ok"]:
        return "%s on %s: %s (%.2f s)\n" % (step["fn"], step["host"], step.get("summary")
                                            or "done", step["seconds"])
    return "%s on %s FAILED: %s\n" % (step["fn"], step["host"], _error_text(step["error"]))


# -- manual off's rule ---------------------------------------------------------------

def roles_disagree(pool):
    """Why the storage's roles differ from the pool's (the master primary, every other host
    secondary), with the fix; None when they agree. Statuses must have been read."""
    again = "; then run `iscsi-ha manual off` again"
    silent = [h for h in pool.hosts if not h.answered]
    if silent:
        return ("%s did not answer (%s), so its role is unknown: bring it back until "
                "`iscsi-ha status` shows its role%s" % (
                    _names(silent), "; ".join(_error_text(h.error) for h in silent), again))
    master = pool.master
    if master is None:
        return "XAPI names no pool master: make one host master%s" % again
    others = pool.others(master)
    servers = serving(others)
    if master.role != "primary" and servers:
        server = servers[0]
        return ("%s serves but %s is pool master: make %s pool master (xe "
                "pool-designate-new-master host-uuid=%s; in manual mode the storage stays "
                "where it is), or move the storage to %s with `iscsi-ha switchover %s` while "
                "still in manual mode%s" % (server.name, master.name, server.name, server.uuid,
                                            master.name, master.name, again))
    if master.role != "primary":
        return ("%s is pool master but its storage role is %s, and no other host serves: "
                "serve from it with `iscsi-ha promote %s` while still in manual mode%s"
                % (master.name, master.role, master.name, again))
    stray = [h for h in others if h.role != "secondary"]
    if stray:
        return ("%s, the pool master, serves, but %s: demote it with `iscsi-ha demote %s` "
                "while still in manual mode%s" % (
                    master.name, ", ".join("%s is %s" % (h.name, h.role) for h in stray),
                    stray[0].name, again))
    return None


# -- status as JSON and as text -------------------------------------------------------

def status_json(pool):
    master = pool.master
    return {
        "pool": {"name": pool.record.get("name_label"), "uuid": pool.record.get("uuid"),
                 "master": master.name if master else None,
                 "ha_enabled": bool(pool.record.get("ha_enabled"))},
        "hosts": [{"name": h.name, "uuid": h.uuid, "address": h.address,
                   "pool_role": pool.pool_role(h), "live": h.live, "status": h.status,
                   "error": h.error or None} for h in pool.hosts],
        "serving": [h.name for h in serving(pool.hosts)],
        "split_brains": [found.as_dict() for found in splitbrain.find(pool.hosts)],
        "manual_mode": pool.manual_mode,
        "controller": pool.controller,
        "config_backup": configstore.comparison(configstore.stored(pool.other_config),
                                                pool.hosts),
    }


def status_prometheus(pool):
    record = pool.controller or {}
    controller = None
    if "counters" in record:  # a controller from before the metrics publishes none
        controller = {"master": bool(pool.master) and record.get("host_uuid") ==
                      pool.master.uuid, "counters": record["counters"],
                      "last_failover": record.get("last_failover")}
    return metrics.render(pool.hosts, pool.master.name if pool.master else None, controller)


def status_text(pool):
    lines = ["pool %s: master %s, XenServer HA %s" % (
        pool.record.get("name_label") or pool.record.get("uuid"),
        pool.master.name if pool.master else "unknown",
        "on" if pool.record.get("ha_enabled") else "off"),
        "serving:     %s" % _serving_text(pool),
        "manual mode: %s" % _manual_text(pool),
        "controller:  %s" % _controller_text(pool.controller),
        "config backup: %s" % configstore.line(configstore.comparison(
            configstore.stored(pool.other_config), pool.hosts), _when), "", ""]
    rows = []
    for view in pool.hosts:
        rows += _host_rows(pool, view)
    text = "\n".join(lines) + report.table(
        ["host", "pool", "live", "storage", "resource", "drbd", "connection", "disk",
         "peer disk", "target", "vip", "config", "manual"], rows)
    notes = ["%s: status failed: %s" % (h.name, _error_text(h.error))
             for h in pool.hosts if not h.answered]
    notes += ["SPLIT BRAIN: %s; `iscsi-ha split-brain %s` compares both copies and resolves "
              "it on your choice" % (found.why, found.name)
              for found in splitbrain.find(pool.hosts)]
    digests = set(h.status.get("config_digest") for h in pool.hosts if h.answered)
    if len(digests) > 1:
        notes.append("the hosts' config digests differ: make the pool-wide settings of their "
                     "iscsi-ha.conf the same (the controller does not promote meanwhile)")
    return text + "".join(note + "\n" for note in notes)


def _host_rows(pool, view):
    live = {True: "yes", False: "no"}.get(view.live, "?")
    head = [view.name, pool.pool_role(view), live]
    if not view.answered:
        return [head + ["unknown"] + [""] * 9]
    status = view.status
    target, vip = status.get("target") or {}, status.get("vip") or {}
    if not target.get("daemon_running"):
        exported = "tgtd down"
    else:
        exported = target.get("state") if target.get("exported") else "no"
    if vip.get("local"):
        here = "HERE+ELSEWHERE" if vip.get("answered_elsewhere") else "here"
    else:
        here = "no"
    tail = [exported, here, status.get("config_digest"),
            "on" if status.get("manual_mode") else "off"]
    resources = status.get("resources") or [{}]
    rows = []
    for index, resource in enumerate(resources):
        drbd = [resource.get("name"), resource.get("role"), resource.get("connection"),
                resource.get("disk"), resource.get("peer_disk")]
        if index == 0:
            rows.append(head + [status.get("role")] + drbd + tail)
        else:
            rows.append([""] * 4 + drbd + [""] * 4)
    return rows


def _serving_text(pool):
    servers = serving(pool.hosts)
    silent = [h for h in pool.hosts if not h.answered]
    partly = [h for h in pool.hosts if h.role == "mixed"]
    if len(servers) > 1:
        text = "TWO HOSTS SERVE: %s" % _names(servers)
    elif servers and servers[0] is pool.master:
        text = "%s (the pool master)" % servers[0].name
    elif servers:
        text = "%s, but %s is pool master" % (servers[0].name,
                                               pool.master.name if pool.master else "no host")
    else:
        text = "nobody"
    if partly:
        text += "; %s half serving (mixed)" % _names(partly)
    if silent:
        text += "; %s did not answer" % _names(silent)
    return text


def _manual_text(pool):
    record = pool.manual_mode
    copies = [h for h in pool.hosts if h.answered
              and bool(h.status.get("manual_mode")) != (record is not None)]
    if record is None:
        text = "off"
    else:
        text = "ON since %s by %s: %s" % (_when(record.get("at")), record.get("by") or
                                          "unknown", record.get("reason") or "no reason given")
    if copies:
        text += " (the copy on %s differs; the controller aligns it)" % _names(copies)
    return text


def _controller_text(record):
    if record is None:
        return ("no report in the pool yet (is iscsi-ha-controller running on the pool "
                "master?)")
    return "%s at %s on %s: %s" % (record.get("outcome") or "?", _when(record.get("at")),
                                   record.get("host") or "?", record.get("reason"))

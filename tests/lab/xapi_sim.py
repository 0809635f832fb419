"""A stand-in for xapi on a two-host XenServer/XCP-ng pool, for the lab (Python 3 only).

Owns: :class:`XapiSimulator`, the simulated pool as its clients see it: the API
methods, who may call them where (sessions, roles, emergency mode) and what
each does, including ``host.call_plugin`` forwarded from the master to the
host; the lab controls (a host dies, comes back, the audit trail); the audit
log; and the command line.  The rest lives in the modules it imports: the
config and xapi's timers in ``xapi_config``; the hosts and each one's xapi run
by run (roles, restarts, liveness, HA) in ``xapi_pool``; the database, the
messages and ``event.from``'s generations in ``xapi_db``; the listeners and the
XML-RPC encoding in ``xapi_listeners``; how a plugin process runs in
``xapi_plugins``.

    python3 -m tests.lab.xapi_sim --config lab/xapi.json [--ready lab/ready.json]

runs in the foreground, writes the listener URLs (:attr:`XapiSimulator.urls` plus
``pid``) to ``ready.json`` once every listener accepts connections, and exits
cleanly on SIGTERM.  Tests use :class:`XapiSimulator` directly.

Lab calls take no session and are answered on loopback listeners only:
``lab.fail_host(name)``, ``lab.restore_host(name)``, ``lab.restart_xapi(name)``,
``lab.audit()``,
``lab.hold_plugin(name, fns)``, ``lab.held_calls(name)`` and
``lab.release_plugin(name, reached)``.  Send them
to the "control" URL: a dying host cuts every connection it has, including the one
that asked for its death.

A hold is a host whose plugin calls get stuck on the way, as when its xapi is
overloaded or its management link flaps: a ``host.call_plugin`` of one of
``fns`` on that host waits, before its plugin starts, until the release, with
nothing sent back meanwhile (so a caller's own timeout is what ends its wait).
Released with ``reached`` true, a held call runs its plugin then, even when
its caller has gone, as xapi does; with ``reached`` false it ends with
``CANNOT_CONTACT_HOST`` and its plugin never runs.

What is modelled, after xapi's source (xapi-project/xen-api):

* Wire: replies are ``{"Status": "Success", "Value": ...}`` or ``{"Status":
  "Failure", "ErrorDescription": [code, ...]}``; 64-bit ints travel as decimal
  strings; void calls return ``""``; every method also answers under its name
  with ``_`` in place of ``.`` (``event_from``).
* Roles: a host's xapi reads its role from ``pool.conf`` when it starts and keeps
  it until it exits.  A slave answers logins with ``HOST_IS_SLAVE [master
  address]``; calls that need the database (any but the emergency calls with a
  ``slave_local`` session) wait while its master is unreachable, then answer
  ``HOST_IS_SLAVE`` (or ``SESSION_INVALID`` for a session the master does not
  know).  A slave that starts while its master is unreachable is in emergency
  mode: ``HOST_STILL_BOOTING`` to everything but the emergency calls, retrying
  its master every ``slave_retry`` seconds.
* Master changes: ``pool.designate_new_master`` returns once committed; the old
  master answers as master until the ``fuse`` blows, then exits; the new master
  restarts as soon as the old one is gone.  Every session and connection of an
  exiting xapi is gone; a restart takes ``xapi_start`` seconds.  The new master
  starts from the database synchronised at the commit (later writes to the old
  master are lost) and sets ``pool.master`` then.  HA on: ``HA_IS_ENABLED``;
  during another pool operation: that operation's ``*_IN_PROGRESS`` code.
  ``pool.emergency_transition_to_master`` (``HA_IS_ENABLED`` when HA is armed)
  restarts that xapi as master after the fuse, from its last backup of the
  database (``db_backup_interval``: writes and event tokens after it are lost);
  if another running xapi answers as master then, it turns itself back into
  that one's slave (xapi's check for other masters); an unreachable one makes
  two masters until it starts (and yields).
* Liveness: without HA, ``host_metrics.live`` turns false once the master has
  not heard from a host for ``host_assumed_dead`` seconds, checked every
  ``gc_interval``; a new master starts that clock afresh (and marks everyone
  live meanwhile).  With HA it follows fencing, ``ha_fence`` seconds after death.
* ``host.call_plugin``: ``HOST_OFFLINE`` at once for a host that is not live;
  for an unreachable live host 10 connection attempts ``call_plugin_retry``
  seconds apart, then ``CANNOT_CONTACT_HOST``; a call in flight when its host
  dies ends ``in_flight_hang`` seconds later with ``CANNOT_CONTACT_HOST``, one
  whose host's xapi restarts at once.  Plugins run as xapi runs them (see
  ``xapi_plugins``).
* Sessions expire after ``session_idle`` seconds unused and beyond
  ``max_sessions_per_originator`` (oldest first).
* ``event.from``: 50 ms batching; a negative or huge timeout means 24 h; the
  token carries the message generation too; ``valid_ref_counts`` covers every
  table; blocked calls see SESSION_INVALID when their session goes, a dropped
  connection when their xapi exits.

What is not modelled: network partitions (a dead host is dead to everyone; so
two masters never last, and ``pool.recover_slaves`` and
``pool.emergency_reset_master`` are absent), task objects and async calls, VMs
and VDIs, SR operations but ``PBD.plug``/``unplug`` (``xapi_storage`` attaches),
RBAC, pool secrets, and the messages' own
24-hour sync (messages reach a new master only through the sync of
``pool.designate_new_master``).  A slave answers even
database reads with a ``slave_local`` session with ``HOST_IS_SLAVE`` (real
slaves forward them to the master).
"""

import argparse
import copy
import datetime
import json
import os
import signal
import sys
import threading
import time
import traceback
import uuid

from .xapi_config import TIMERS, load_config, validate_config
from .xapi_db import (TABLES, Subscriptions, XapiFailure, make_token, new_ref, parse_token,
                      xapi_now)
from .xapi_listeners import Listener, in_netns
from .xapi_plugins import PluginRun, find_plugin, plugin_result
from .xapi_pool import ConnectionDropped, Pool, Session, write_atomically
from .xapi_storage import attach

# What callers import from here; the rest lives in the modules above.
__all__ = ["XapiSimulator", "XapiFailure", "TIMERS", "load_config", "validate_config",
           "plugin_result", "in_netns", "main"]

# What PAM's failure reads as in xapi's SESSION_AUTHENTICATION_FAILED.
AUTHENTICATION_FAILURE = "Authentication failure"
REDACTED = "********"

CALL_PLUGIN_ATTEMPTS = 10
# event.from's batching (Xapi_globs.event_from_delay): before and between rounds.
EVENT_BATCHING = 0.05
# What event.from makes of a timeout Mtime cannot hold (negative, NaN, >= 2^53 ns).
EVENT_FROM_LONGEST = 86400.0
# xapi's message classes (message.create's cls); the lab has objects of some.
MESSAGE_CLASSES = ("VM", "Host", "SR", "Pool", "VMPP", "VMSS", "PVS_proxy", "VDI",
                   "Certificate")
MESSAGE_CLASS_TABLES = {"Host": "host", "Pool": "pool", "SR": "SR"}
# Pool operations that refuse each other, with the code each gives the others.
POOL_OPERATIONS = {"designate_new_master": "DESIGNATE_NEW_MASTER_IN_PROGRESS",
                   "ha_enable": "HA_ENABLE_IN_PROGRESS",
                   "ha_disable": "HA_DISABLE_IN_PROGRESS"}
# The calls a host answers in emergency mode, and a slave with a slave_local session.
EMERGENCY_METHODS = frozenset([
    "session.slave_local_login_with_password", "session.local_logout",
    "pool.emergency_transition_to_master"])


class _Method(object):
    """How a method is called: its handler and how many arguments follow the session.

    Handlers run with the state lock held; one that waits releases it by waiting
    on the lock's condition (``XapiSimulator._sleep``).
    """

    def __init__(self, handler, min_args, max_args=None, needs_session=True):
        self.handler = handler
        self.min_args = min_args
        self.max_args = min_args if max_args is None else max_args
        self.needs_session = needs_session
        self.wire_name = None  # the name with its ".", set by the method table


class _Call(object):
    """One incoming call: where it arrived, the xapi run answering it, on whose behalf."""

    def __init__(self, listener, host):
        self.listener = listener
        self.host = host
        self.xapi = host.xapi if host else None
        self.session_ref = None


class _Hold(object):
    """A host's stuck plugin calls (see the module docstring): which functions, how many
    calls it caught, and once released whether they reach the host."""

    def __init__(self, fns):
        self.fns = frozenset(fns)
        self.calls = 0
        self.reached = None


class XapiSimulator(object):
    """The simulated pool: ``start()``, talk to ``urls``, ``stop()``.

    ``urls`` is ``{"pool": url, "control": url, "hosts": {name: {"loopback": url,
    "netns": url or None}}}``.  "pool" is a lab convenience no real pool has: it
    reaches the host whose xapi runs as master, and refuses connections while no
    host (or more than one) does.  "control" only takes lab calls and stays up
    whatever happens to the hosts.
    """

    def __init__(self, config):
        self.config = validate_config(config)
        self.timers = self.config["timers"]
        self.pool = Pool(self.config, self)
        self._lock = self.pool.lock
        self._audit = []
        self._control = Listener(self, "control", "control", "127.0.0.1")
        self._methods = self._method_table()
        self._lab_methods = {
            "lab.fail_host": _Method(self._lab_fail_host, 1, needs_session=False),
            "lab.restore_host": _Method(self._lab_restore_host, 1, needs_session=False),
            "lab.restart_xapi": _Method(self._lab_restart_xapi, 1, needs_session=False),
            "lab.audit": _Method(self._lab_audit, 0, needs_session=False),
            "lab.hold_plugin": _Method(self._lab_hold_plugin, 2, needs_session=False),
            "lab.release_plugin": _Method(self._lab_release_plugin, 2, needs_session=False),
            "lab.held_calls": _Method(self._lab_held_calls, 1, needs_session=False),
        }
        self._holds = {}  # host name -> _Hold

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def start(self):
        try:
            self._control.open()
            self.pool.start()
        except Exception:
            self.stop()
            raise

    def stop(self):
        self._control.close()
        self.pool.stop()

    @property
    def urls(self):
        with self._lock:
            return dict(self.pool.urls(), control=self._control.url)

    def running_masters(self):
        """Names of the hosts whose xapi runs as master now (two after a split)."""
        with self._lock:
            return self.pool.running_masters()

    # -- lab controls (also reachable as lab.* calls) --------------------------

    def fail_host(self, name):
        """The host dies: its listeners refuse connections, its plugins are killed."""
        with self._lock:
            self.pool.fail_host(self._lab_host(name))

    def restore_host(self, name):
        """The host boots again; its xapi starts with the role its pool.conf names."""
        with self._lock:
            self.pool.restore_host(self._lab_host(name))

    def restart_xapi(self, name):
        """Host ``name``'s xapi exits and starts again (a crash, ``xe-toolstack-restart``):
        its sessions and connections are gone until it answers again."""
        with self._lock:
            self.pool.restart_xapi(self._lab_host(name))

    def hold_plugin(self, name, fns):
        """From now on, calls of plugin functions ``fns`` on host ``name`` wait before their
        plugin starts, until :meth:`release_plugin`."""
        with self._lock:
            self._lab_host(name)
            if name in self._holds:
                raise XapiFailure("LAB_ALREADY_HELD", name)
            self._holds[name] = _Hold(fns)

    def release_plugin(self, name, reached):
        """End the hold on ``name``: its held calls run their plugin (``reached``) or end
        with CANNOT_CONTACT_HOST without running it. Returns how many calls were held."""
        with self._lock:
            hold = self._holds.pop(name, None)
            if hold is None:
                raise XapiFailure("LAB_NOT_HELD", name)
            hold.reached = bool(reached)
            self._lock.notify_all()
            return hold.calls

    def audit_entries(self):
        with self._lock:
            return copy.deepcopy(self._audit)

    def _lab_host(self, name):
        if name not in self.pool.hosts:
            raise XapiFailure("LAB_UNKNOWN_HOST", name)
        return self.pool.hosts[name]

    def _lab_fail_host(self, call, name):
        self.fail_host(name)
        return ""

    def _lab_restore_host(self, call, name):
        self.restore_host(name)
        return ""

    def _lab_restart_xapi(self, call, name):
        self.restart_xapi(name)
        return ""

    def _lab_audit(self, call):
        return self.audit_entries()

    def _lab_hold_plugin(self, call, name, fns):
        if not isinstance(fns, list) or not all(isinstance(fn, str) for fn in fns):
            raise XapiFailure("FIELD_TYPE_ERROR", "fns")
        self.hold_plugin(name, fns)
        return ""

    def _lab_release_plugin(self, call, name, reached):
        return self.release_plugin(name, reached)

    def _lab_held_calls(self, call, name):
        """How many calls the hold on ``name`` has caught (released or not: 0)."""
        self._lab_host(name)
        hold = self._holds.get(name)
        return hold.calls if hold else 0

    # -- calls: who may call what, and the audit trail -------------------------

    def answer(self, listener, method, params):
        """The reply struct to one call arriving at ``listener``, or None to drop the connection.

        Every call, whatever its outcome, goes to the audit trail.
        """
        started = time.monotonic()
        with self._lock:
            behind = self.pool.behind(listener)
        try:
            reply = {"Status": "Success", "Value": self._dispatch(listener, method or "", params)}
            outcome = "Success"
        except XapiFailure as failure:
            reply = {"Status": "Failure", "ErrorDescription": failure.description}
            outcome = failure.description[0]
        except ConnectionDropped:
            reply, outcome = None, "CONNECTION_DROPPED"
        except Exception as exc:  # a simulator bug must still reach the client as an error
            traceback.print_exc()
            reply = {"Status": "Failure", "ErrorDescription": ["INTERNAL_ERROR", str(exc)]}
            outcome = "INTERNAL_ERROR"
        self._record(listener, behind.name if behind else None, method, params, outcome,
                     time.monotonic() - started)
        return reply

    def _method_spec(self, listener, method):
        if method.startswith("lab."):
            return self._lab_methods.get(method) if listener.loopback else None
        if listener.kind == "control":
            return None
        return self._methods.get(method)

    def _dispatch(self, listener, method, params):
        args = list(params)
        with self._lock:
            call = _Call(listener, self.pool.behind(listener))
            spec = self._method_spec(listener, method)
            if listener.kind != "control":
                if call.xapi is None:
                    raise ConnectionDropped()  # the listener is closing under this call
                emergency = spec is not None and spec.wire_name in EMERGENCY_METHODS
                if call.xapi.booting and not emergency:
                    raise XapiFailure("HOST_STILL_BOOTING")
            if spec is None:
                raise XapiFailure("MESSAGE_METHOD_UNKNOWN", method)
            leading = 1 if spec.needs_session else 0
            if not spec.min_args + leading <= len(args) <= spec.max_args + leading:
                raise XapiFailure("MESSAGE_PARAMETER_COUNT_MISMATCH", method,
                                  spec.max_args + leading, len(args))
            if spec.needs_session:
                call.session_ref = args.pop(0)
                self._check_session(call, spec.wire_name)
            return spec.handler(call, *args)

    def _live_session(self, xapi, ref):
        session = xapi.sessions.get(ref) if isinstance(ref, str) else None
        if session is None:
            return None
        now = time.monotonic()
        if now - session.last_active > self.timers["session_idle"]:
            del xapi.sessions[ref]
            return None
        session.last_active = now
        return session

    def _check_session(self, call, method):
        """Raise the error xapi gives when this call's session may not be used here."""
        xapi = call.xapi
        session = self._live_session(xapi, call.session_ref)
        if xapi.is_master:
            if session is None:
                raise XapiFailure("SESSION_INVALID", call.session_ref or "")
            return
        if session is not None and method in EMERGENCY_METHODS:
            return
        # Everything else needs the master's database, which a slave waits for.
        while True:
            master = self.pool.master_at(xapi.master_address)
            if master is not None:
                break
            self.pool.assert_serving(call)
            self._lock.wait()
        if session is None and self._live_session(master, call.session_ref) is None:
            raise XapiFailure("SESSION_INVALID", call.session_ref or "")
        raise XapiFailure("HOST_IS_SLAVE", xapi.master_address)

    def _record(self, listener, host_name, method, params, outcome, seconds):
        shown = list(params)
        if method in ("session.login_with_password",
                      "session.slave_local_login_with_password") and len(shown) > 1:
            shown[1] = REDACTED
        entry = {
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "listener": listener.name, "host": host_name, "method": method,
            "params": shown, "outcome": outcome, "seconds": round(seconds, 6),
        }
        # Round-trip through JSON so that entries hold plain values (DateTime -> str).
        line = json.dumps(entry, default=str, sort_keys=True)
        with self._lock:
            self._audit.append(json.loads(line))
            if self.config["audit_log"]:
                with open(self.config["audit_log"], "a") as log:
                    log.write(line + "\n")

    # -- the API ---------------------------------------------------------------

    def _method_table(self):
        methods = {
            "session.login_with_password": _Method(self._login_with_password, 2, 4,
                                                   needs_session=False),
            "session.slave_local_login_with_password": _Method(self._slave_local_login, 2,
                                                               needs_session=False),
            "session.logout": _Method(self._logout, 0),
            "session.local_logout": _Method(self._logout, 0),
            "pool.add_to_other_config": _Method(self._pool_add_to_other_config, 3),
            "pool.remove_from_other_config": _Method(self._pool_remove_from_other_config, 2),
            "pool.designate_new_master": _Method(self._pool_designate_new_master, 1),
            "pool.emergency_transition_to_master": _Method(self._pool_emergency_transition, 0),
            "pool.enable_ha": _Method(self._pool_enable_ha, 2),
            "pool.disable_ha": _Method(self._pool_disable_ha, 0),
            "host.call_plugin": _Method(self._host_call_plugin, 4),
            "PBD.plug": _Method(self._pbd_plug, 1),
            "PBD.unplug": _Method(self._pbd_unplug, 1),
            "message.create": _Method(self._message_create, 5),
            "message.get_all": _Method(lambda call: sorted(self._messages(call).records()), 0),
            "message.get_all_records": _Method(lambda call: self._messages(call).records(), 0),
            "message.get_record": _Method(lambda call, ref: self._messages(call).record(ref), 1),
            "message.get_by_uuid": _Method(
                lambda call, message_uuid: self._messages(call).ref_by_uuid(message_uuid), 1),
            "event.from": _Method(self._event_from, 3),
        }
        fields = {cls: self.pool.initial_db.rows(cls)[0].record for cls in TABLES}
        for cls in TABLES:
            methods[cls + ".get_all"] = _Method(self._getter_all(cls), 0)
            methods[cls + ".get_all_records"] = _Method(self._getter_all_records(cls), 0)
            methods[cls + ".get_record"] = _Method(self._getter_record(cls), 1)
            methods[cls + ".get_by_uuid"] = _Method(self._getter_by_uuid(cls), 1)
            for field in fields[cls]:
                methods["%s.get_%s" % (cls, field)] = _Method(self._getter_field(cls, field), 1)
        # Every method also answers with "_" in place of its ".".
        for name, spec in list(methods.items()):
            spec.wire_name = name
            methods[name.replace(".", "_", 1)] = spec
        return methods

    def _db(self, call):
        return call.xapi.db

    def _messages(self, call):
        return call.xapi.messages

    def _getter_all(self, cls):
        return lambda call: [row.ref for row in self._db(call).rows(cls)]

    def _getter_all_records(self, cls):
        return lambda call: {row.ref: copy.deepcopy(row.record)
                             for row in self._db(call).rows(cls)}

    def _getter_record(self, cls):
        return lambda call, ref: self._db(call).record(cls, ref)

    def _getter_by_uuid(self, cls):
        return lambda call, object_uuid: self._db(call).ref_by_uuid(cls, object_uuid)

    def _getter_field(self, cls, field):
        return lambda call, ref: self._db(call).record(cls, ref)[field]

    def _authenticate(self, username, password):
        if (username, password) != (self.config["username"], self.config["password"]):
            raise XapiFailure("SESSION_AUTHENTICATION_FAILED", username, AUTHENTICATION_FAILURE)

    def _login_with_password(self, call, username, password, version="1.1", originator=""):
        # xapi checks the role before the password.
        if not call.xapi.is_master:
            raise XapiFailure("HOST_IS_SLAVE", call.xapi.master_address)
        self._authenticate(username, password)
        sessions = call.xapi.sessions
        ref = new_ref()
        sessions[ref] = Session(None, str(originator), time.monotonic())
        if originator:
            same = sorted((session.last_active, known) for known, session in sessions.items()
                          if session.local_host is None and session.originator == originator)
            for _, oldest in same[:max(0, len(same) - self.config["max_sessions_per_originator"])]:
                del sessions[oldest]
            self._lock.notify_all()
        return ref

    def _slave_local_login(self, call, username, password):
        self._authenticate(username, password)
        ref = new_ref()
        call.xapi.sessions[ref] = Session(call.host.name, "", time.monotonic())
        return ref

    def _logout(self, call):
        del call.xapi.sessions[call.session_ref]
        # Blocked event.from calls of this session now fail with SESSION_INVALID.
        self._lock.notify_all()
        return ""

    def _pool_add_to_other_config(self, call, ref, key, value):
        self._db(call).add_to_map("pool", ref, "other_config", key, value)
        self._lock.notify_all()
        return ""

    def _pool_remove_from_other_config(self, call, ref, key):
        self._db(call).remove_from_map("pool", ref, "other_config", key)
        self._lock.notify_all()
        return ""

    def _host_by_ref(self, db, ref):
        db.row("host", ref)
        return next(host for host in self.pool.hosts.values() if host.ref == ref)

    def _check_live(self, call, target):
        """xapi's check before it forwards a call: the master itself is always live."""
        if target is call.host:
            return
        if not self._db(call).record("host_metrics", target.metrics_ref)["live"]:
            raise XapiFailure("HOST_OFFLINE", target.ref)

    def _reach(self, call, target):
        """Connect to ``target``'s xapi as the master does: 10 attempts, then give up."""
        for _ in range(CALL_PLUGIN_ATTEMPTS):
            if target.alive and target.xapi is not None:
                if target.xapi.booting:
                    raise XapiFailure("HOST_STILL_BOOTING")
                return target.xapi
            self.pool.sleep(call, self.timers["call_plugin_retry"])
        raise XapiFailure("CANNOT_CONTACT_HOST", target.ref)

    def _pool_operation(self, call, operation):
        """Enter a pool operation; the others refuse while it runs.  Returns its key."""
        db = self._db(call)
        running = db.record("pool", self.pool.pool_ref)["current_operations"]
        for other in running.values():
            raise XapiFailure(POOL_OPERATIONS[other])
        key = new_ref()
        db.update(self.pool.pool_ref, {"current_operations": dict(running, **{key: operation})})
        self._lock.notify_all()
        return key

    def _end_pool_operation(self, call, key):
        db = self._db(call)
        running = dict(db.record("pool", self.pool.pool_ref)["current_operations"])
        running.pop(key, None)
        db.update(self.pool.pool_ref, {"current_operations": running})
        self._lock.notify_all()

    def _pool_designate_new_master(self, call, host_ref):
        target = self._host_by_ref(self._db(call), host_ref)
        operation = self._pool_operation(call, "designate_new_master")
        try:
            if target is call.host:
                return ""  # xapi: this host is master already, nothing to do
            self._check_live(call, target)
            self._reach(call, target)
            if self.pool.ha_enabled(self._db(call)):
                raise XapiFailure("HA_IS_ENABLED")
            self.pool.sleep(call, self.timers["designate_call"])
            if not target.alive or target.xapi is None:
                raise XapiFailure("CANNOT_CONTACT_HOST", target.ref)
            self.pool.sync_backups(call.host, messages=True)
            self.pool.set_disk_role(call.host, "slave:" + target.address)
            self.pool.set_disk_role(target, "master")
            target.xapi.restart_with_master = True
            self.pool.light_fuse(call.host)
        finally:
            if call.host.xapi is call.xapi:
                self._end_pool_operation(call, operation)
        return ""

    def _pool_emergency_transition(self, call):
        if call.host.ha_armed:
            raise XapiFailure("HA_IS_ENABLED")
        self.pool.set_disk_role(call.host, "master")
        self.pool.light_fuse(call.host)
        return ""

    def _pool_enable_ha(self, call, heartbeat_srs, configuration):
        db = self._db(call)
        if self.pool.ha_enabled(db):
            raise XapiFailure("HA_IS_ENABLED")
        if not isinstance(heartbeat_srs, list) or not isinstance(configuration, dict):
            raise XapiFailure("FIELD_TYPE_ERROR", "heartbeat_srs")
        for ref in heartbeat_srs:
            db.row("SR", ref)
        operation = self._pool_operation(call, "ha_enable")
        try:
            for host in self.pool.hosts.values():
                if not db.record("host_metrics", host.metrics_ref)["live"]:
                    raise XapiFailure("HOST_OFFLINE", host.ref)
            candidates = heartbeat_srs or [row.ref for row in db.rows("SR")
                                           if row.record["shared"]]
            if not candidates:
                raise XapiFailure("CANNOT_CREATE_STATE_FILE")
            db.update(self.pool.pool_ref, {"ha_enabled": True, "ha_statefiles": [candidates[0]]})
            for host in self.pool.hosts.values():
                if host is call.host or self.pool.connected_slave(host, call.host):
                    host.ha_armed = True
        finally:
            self._end_pool_operation(call, operation)
        return ""

    def _pool_disable_ha(self, call):
        db = self._db(call)
        if not self.pool.ha_enabled(db):
            raise XapiFailure("HA_NOT_ENABLED")
        operation = self._pool_operation(call, "ha_disable")
        try:
            db.update(self.pool.pool_ref, {"ha_enabled": False, "ha_statefiles": []})
            now = time.monotonic()
            for host in self.pool.hosts.values():
                if host is call.host or self.pool.connected_slave(host, call.host):
                    host.ha_armed = False
                # Heartbeats take over from HA: their clocks start now.
                call.xapi.heard[host.name] = now
        finally:
            self._end_pool_operation(call, operation)
        return ""

    def _message_create(self, call, name, priority, cls, obj_uuid, body):
        if cls not in MESSAGE_CLASSES:
            raise XapiFailure("INTERNAL_ERROR", "Unmarshalling error: cls %r" % (cls,))
        try:
            priority = str(int(priority))
        except (TypeError, ValueError):
            raise XapiFailure("FIELD_TYPE_ERROR", "priority") from None
        table = MESSAGE_CLASS_TABLES.get(cls)
        try:
            if table is None:
                raise XapiFailure("UUID_INVALID")
            self._db(call).ref_by_uuid(table, obj_uuid)
        except XapiFailure:
            raise XapiFailure("UUID_INVALID", cls, obj_uuid) from None
        ref = self._messages(call).add({
            "uuid": str(uuid.uuid4()), "name": name, "priority": priority, "cls": cls,
            "obj_uuid": obj_uuid, "timestamp": xapi_now(), "body": body})
        self._lock.notify_all()
        return ref

    def _event_from(self, call, classes, token, timeout):
        subscriptions = Subscriptions(classes)
        since, since_messages = parse_token(token)
        try:
            duration = float(timeout)
        except (TypeError, ValueError):
            raise XapiFailure("FIELD_TYPE_ERROR", "timeout") from None
        if not 0 <= duration * 1e9 < 2 ** 53:  # NaN fails this too
            duration = EVENT_FROM_LONGEST
        deadline = time.monotonic() + duration
        db, messages = self._db(call), self._messages(call)
        self.pool.sleep(call, EVENT_BATCHING)
        while True:
            self._assert_session(call)
            events = (db.changes_since(since, subscriptions)
                      + messages.events_since(since_messages, subscriptions))
            if events or time.monotonic() >= deadline:
                break
            seen = (db.generation, messages.generation)
            while (db.generation, messages.generation) == seen:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._assert_session(call)
                self._lock.wait(remaining)
            self.pool.sleep(call, EVENT_BATCHING)
        return {"events": events, "valid_ref_counts": db.counts(),
                "token": make_token(db.generation, messages.generation)}

    def _assert_session(self, call):
        """A blocked call ends the way it would on real xapi when the world changes under it."""
        self.pool.assert_serving(call)
        if call.session_ref not in call.xapi.sessions:
            raise XapiFailure("SESSION_INVALID", call.session_ref)

    # -- PBDs ------------------------------------------------------------------

    def _pbd_host(self, call, ref):
        """The PBD's record and its host, reached as xapi forwards a PBD call to it."""
        record = self._db(call).record("PBD", ref)
        target = self._host_by_ref(self._db(call), record["host"])
        self._check_live(call, target)
        if target is not call.host:
            self._reach(call, target)
        return record, target

    def _pbd_plug(self, call, ref):
        """xapi's Xapi_pbd.plug: nothing for an attached PBD; else its host's storage
        manager attaches the SR (``xapi_storage``), and only then is it attached."""
        record, target = self._pbd_host(call, ref)
        if record["currently_attached"]:
            return ""
        sr = self._db(call).record("SR", record["SR"])
        self._outside_lock(call, target, lambda: attach(
            sr["type"], record["device_config"], target.netns, self.config["ip_tool"]))
        self._db(call).update(ref, {"currently_attached": True})
        self._lock.notify_all()
        return ""

    def _pbd_unplug(self, call, ref):
        """xapi's Xapi_pbd.unplug: nothing for a detached PBD; HA's statefile SR stays
        (HA_IS_ENABLED). The lab has no VMs, so no VDI_IN_USE."""
        record, _ = self._pbd_host(call, ref)
        if not record["currently_attached"]:
            return ""
        db = self._db(call)
        pool = db.record("pool", self.pool.pool_ref)
        if pool["ha_enabled"] and record["SR"] in pool["ha_statefiles"]:
            raise XapiFailure("HA_IS_ENABLED")
        db.update(ref, {"currently_attached": False})
        self._lock.notify_all()
        return ""

    def _outside_lock(self, call, target, work):
        """``work()`` in a thread without the simulator's lock (it runs processes), ended
        as xapi ends a forwarded call: the host dying under it makes it hang, this xapi
        exiting drops the connection. Raises the XapiFailure ``work`` raised."""
        box = {}

        def run():
            try:
                work()
            except XapiFailure as failure:
                box["failure"] = failure
            except Exception as exc:  # a simulator bug still reaches the client as an error
                traceback.print_exc()
                box["failure"] = XapiFailure("INTERNAL_ERROR", str(exc))
            finally:
                with self._lock:
                    box["done"] = True
                    self._lock.notify_all()
        threading.Thread(target=run, daemon=True, name="storage " + target.name).start()
        while "done" not in box:
            self.pool.assert_serving(call)
            if not target.alive:
                self._hang_until_given_up(call, target)
            self._lock.wait()
        self.pool.assert_serving(call)
        if "failure" in box:
            raise box["failure"]

    # -- host plugins ----------------------------------------------------------

    def _host_call_plugin(self, call, host_ref, plugin, fn, args):
        if not isinstance(args, dict) or not all(
                isinstance(key, str) and isinstance(value, str) for key, value in args.items()):
            raise XapiFailure("FIELD_TYPE_ERROR", "args")
        target = self._host_by_ref(self._db(call), host_ref)
        self._check_live(call, target)
        serving = target.xapi if target is call.host else self._reach(call, target)
        path = find_plugin(target.plugin_dir, plugin)
        self._wait_while_held(call, target, fn)

        def done(run):
            with self._lock:
                target.plugin_runs.discard(run)
                self._lock.notify_all()
        run = PluginRun(path, call.session_ref, fn, args, target.netns,
                        self.config["ip_tool"], done)
        target.plugin_runs.add(run)
        return self._wait_for_plugin(call, target, serving, run)

    def _hang_until_given_up(self, call, target):
        """Nothing answers a call to a dead host, nothing closes its connection: it hangs."""
        self.pool.sleep(call, max(0.0, target.died_at + self.timers["in_flight_hang"]
                              - time.monotonic()))
        raise XapiFailure("CANNOT_CONTACT_HOST", target.ref)

    def _wait_while_held(self, call, target, fn):
        hold = self._holds.get(target.name)
        if hold is None or fn not in hold.fns:
            return
        hold.calls += 1
        while hold.reached is None:
            self.pool.assert_serving(call)
            if not target.alive:
                self._hang_until_given_up(call, target)
            self._lock.wait()
        if not hold.reached:
            raise XapiFailure("CANNOT_CONTACT_HOST", target.ref)

    def _wait_for_plugin(self, call, target, serving, run):
        while not run.done:
            self.pool.assert_serving(call)
            if not target.alive:
                self._hang_until_given_up(call, target)
            if target.xapi is not serving:
                raise XapiFailure("CANNOT_CONTACT_HOST", target.ref)  # its xapi restarted
            self._lock.wait()
        self.pool.assert_serving(call)
        if not target.alive:
            # Killed with its host before this call woke up: no answer ever comes back.
            self._hang_until_given_up(call, target)
        return run.result()

def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python3 -m tests.lab.xapi_sim",
        description="Simulated xapi for the iscsi-ha lab; runs until SIGTERM.")
    parser.add_argument("--config", required=True, help="the lab's simulator config (JSON)")
    parser.add_argument("--ready", help="where to write the listener URLs once listening "
                                        "(default: ready.json next to the config)")
    options = parser.parse_args(argv)
    ready_path = options.ready or os.path.join(
        os.path.dirname(os.path.abspath(options.config)), "ready.json")
    try:
        simulator = XapiSimulator(load_config(options.config))
    except (OSError, ValueError) as exc:
        sys.stderr.write("xapi_sim: %s\n" % exc)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    # A ready file left by an earlier run must not announce this one early.
    if os.path.exists(ready_path):
        os.remove(ready_path)
    try:
        simulator.start()
    except OSError as exc:
        sys.stderr.write("xapi_sim: cannot listen: %s\n" % exc)
        return 2
    try:
        write_atomically(ready_path, json.dumps(dict(simulator.urls, pid=os.getpid()),
                                                indent=2, sort_keys=True))
        while not stop.wait(0.5):
            pass
    finally:
        simulator.stop()
        if os.path.exists(ready_path):
            os.remove(ready_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A stand-in for xapi on a two-host XenServer/XCP-ng pool, for the lab (Python 3 only).

Owns: the simulated pool as a whole (:class:`XapiSimulator`): its config and its
validation; each host's xapi, which runs, exits and starts again as xapi does
(as master or as slave of the address in its ``pool.conf``); the API methods,
who may call them where and what each does, including ``host.call_plugin``
forwarded from the master to the host; the timers that xapi's behaviour hangs
on, scaled by lab settings; the lab controls (a host dies, comes back, the
audit trail); the audit log and each host's ``pool.conf``; and the command
line.  The database, the messages and ``event.from``'s generations live in
``xapi_db``; the listeners, network namespaces and the XML-RPC encoding in
``xapi_listeners``; how a plugin process is run in ``xapi_plugins``.

    python3 -m tests.lab.xapi_sim --config lab/xapi.json [--ready lab/ready.json]

runs in the foreground, writes the listener URLs (:attr:`XapiSimulator.urls` plus
``pid``) to ``ready.json`` once every listener accepts connections, and exits
cleanly on SIGTERM.  Tests use :class:`XapiSimulator` directly.

Config (JSON): ``username``, ``password``, ``master`` (a host name) and ``hosts``,
each ``{name, uuid, address, plugin_dir}`` plus optional ``netns`` (null: no
listener in a namespace, plugins run where the simulator runs) and ``pool_conf``
(path to keep as the host's pool.conf); optional ``pool_name``, ``audit_log``
(JSON lines), ``ip_tool``, ``elector`` and ``timers``:

* ``elector``: ``"external"`` (default: xapi's HA is off and something outside
  xapi, such as HA-Lizard, fences a dead host and calls
  ``pool.emergency_transition_to_master`` on the survivor) or ``"xapi-ha"``
  (XenServer HA is on: it fences a dead host, marks it not live and makes the
  survivor master by itself).
* ``timers``: xapi's timers, scaled so that the lab is fast; see
  :data:`TIMERS` for each one's meaning, xapi's value and the lab's default.
* ``max_sessions_per_originator`` (xapi: 500).

Lab calls take no session and are answered on loopback listeners only:
``lab.fail_host(name)``, ``lab.restore_host(name)``, ``lab.audit()``.  Send them to
the "control" URL: a dying host cuts every connection it has, including the one
that asked for its death.

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
and SRs beyond one heartbeat SR, RBAC, pool secrets, and the messages' own
24-hour sync (messages reach a new master only through the sync of
``pool.designate_new_master``).  A slave answers even
database reads with a ``slave_local`` session with ``HOST_IS_SLAVE`` (real
slaves forward them to the master).
"""

import argparse
import copy
import datetime
import json
import math
import os
import signal
import sys
import threading
import time
import traceback
import uuid

from .xapi_db import (NULL_REF, TABLES, Database, Messages, Subscriptions, XapiFailure,
                      make_token, new_ref, parse_token, xapi_now)
from .xapi_listeners import Listener, in_netns
from .xapi_plugins import PluginRun, find_plugin, plugin_result

# What callers import from here; the rest lives in the modules above.
__all__ = ["XapiSimulator", "XapiFailure", "TIMERS", "load_config", "validate_config",
           "plugin_result", "in_netns", "main"]

# What PAM's failure reads as in xapi's SESSION_AUTHENTICATION_FAILED.
AUTHENTICATION_FAILURE = "Authentication failure"
REDACTED = "********"
XAPI_PORT = 80

# xapi's timers: name -> (xapi's value, the lab's default, what it is).  The
# defaults keep the lab fast; tests that show the real-length behaviour set
# short values of their own.
TIMERS = {
    "fuse": (10.0, 0.5, "seconds from a committed master change (or an emergency "
                        "transition) until xapi exits to restart (Constants.fuse_time)"),
    "xapi_start": (30.0, 0.2, "seconds a restarting xapi takes until it answers again "
                              "(xapi: tens of seconds)"),
    "host_assumed_dead": (600.0, 600.0, "seconds without word from a host before the "
                                        "master marks it not live, HA off "
                                        "(host_assumed_dead_interval)"),
    "gc_interval": (30.0, 1.0, "seconds between the master's liveness and session "
                               "checks (db_GC_TIMER)"),
    "call_plugin_retry": (10.0, 0.1, "seconds between the 10 attempts to reach an "
                                     "unreachable live host (xmlrpc_client)"),
    "in_flight_hang": (43200.0, 60.0, "seconds a call hangs when its host dies under it "
                                      "(xapi: until the connection times out)"),
    "session_idle": (86400.0, 86400.0, "seconds unused before a session expires "
                                       "(inactive_session_timeout)"),
    "db_backup_interval": (300.0, 300.0, "seconds between the master's database syncs "
                                         "to the slaves (pool_db_sync_interval)"),
    "slave_retry": (5.0, 0.2, "seconds between a starting slave's attempts to reach its "
                              "master"),
    "ha_fence": (60.0, 0.5, "seconds from a host's death until HA has fenced it "
                            "(ha_default_timeout_base)"),
    "designate_call": (2.0, 0.05, "seconds pool.designate_new_master takes (database "
                                  "sync and two-phase commit)"),
}
# Timers that repeat: zero would make them spin.
PERIODIC_TIMERS = ("gc_interval", "db_backup_interval", "slave_retry")
ELECTORS = ("external", "xapi-ha")
MAX_SESSIONS_PER_ORIGINATOR = 500
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

CONFIG_KEYS = {"username", "password", "pool_name", "audit_log", "master", "hosts",
               "ip_tool", "elector", "timers", "max_sessions_per_originator"}
HOST_KEYS = {"name", "uuid", "address", "netns", "plugin_dir", "pool_conf"}


class ConnectionDropped(Exception):
    """The xapi behind a listener exited (or its host died) during the call."""


def write_atomically(path, text):
    """Replace ``path`` so that a reader sees the old or the new text, never a mix."""
    temporary = "%s.tmp-%d" % (path, os.getpid())
    with open(temporary, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


def load_config(path):
    with open(path) as handle:
        return json.load(handle)


def validate_config(config):
    """The config with defaults filled in; ValueError names what is wrong."""
    unknown = set(config) - CONFIG_KEYS
    if unknown:
        raise ValueError("unknown config keys: %s" % ", ".join(sorted(unknown)))
    for key in ("username", "password", "master", "hosts"):
        if key not in config:
            raise ValueError("config lacks %r" % key)
    result = dict(config)
    result.setdefault("pool_name", "iscsi-ha-lab")
    result.setdefault("audit_log", None)
    result.setdefault("ip_tool", "ip")
    result.setdefault("elector", "external")
    result.setdefault("max_sessions_per_originator", MAX_SESSIONS_PER_ORIGINATOR)
    if result["elector"] not in ELECTORS:
        raise ValueError("elector must be one of %s, not %r"
                         % (", ".join(ELECTORS), result["elector"]))
    limit = result["max_sessions_per_originator"]
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError("max_sessions_per_originator must be a whole number >= 1, not %r"
                         % (limit,))
    timers = dict(config.get("timers") or {})
    unknown = set(timers) - set(TIMERS)
    if unknown:
        raise ValueError("unknown timers: %s (known: %s)"
                         % (", ".join(sorted(unknown)), ", ".join(sorted(TIMERS))))
    for name, (_, default, _) in TIMERS.items():
        value = timers.setdefault(name, default)
        least = 0 if name not in PERIODIC_TIMERS else 0.001
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value) or value < least):
            raise ValueError("timer %s must be a number of seconds >= %s, not %r"
                             % (name, least, value))
    result["timers"] = timers
    hosts = []
    for spec in config["hosts"]:
        unknown = set(spec) - HOST_KEYS
        if unknown:
            raise ValueError("unknown keys in host %s: %s"
                             % (spec.get("name"), ", ".join(sorted(unknown))))
        for key in ("name", "uuid", "address", "plugin_dir"):
            if not spec.get(key):
                raise ValueError("host %s lacks %r" % (spec.get("name"), key))
        host = dict(spec)
        host.setdefault("netns", None)
        host.setdefault("pool_conf", None)
        hosts.append(host)
    names = [host["name"] for host in hosts]
    if not names or len(set(names)) != len(names):
        raise ValueError("hosts need distinct names: %s" % names)
    if config["master"] not in names:
        raise ValueError("master %r is not one of the hosts %s" % (config["master"], names))
    result["hosts"] = hosts
    return result


class _Session(object):
    def __init__(self, local_host, originator, now):
        # Name of the host a slave_local login is valid on; None for a pool session.
        self.local_host = local_host
        self.originator = originator
        self.last_active = now


class _Xapi(object):
    """One run of a host's xapi, from its start until it exits."""

    def __init__(self, run, role, master_address, now):
        self.run = run
        self.role = role  # "master" or "slave", read from pool.conf at start
        self.master_address = master_address  # a slave's master, as pool.conf named it
        # A slave is in emergency mode until its master has answered.
        self.booting = role == "slave"
        self.started = now
        self.sessions = {}
        self.fuse_lit = False
        # The designated new master restarts once its connection to the old one drops.
        self.restart_with_master = False
        # A master's: its database and messages, and when it last heard from each host.
        self.db = None
        self.messages = None
        self.heard = {}

    @property
    def is_master(self):
        return self.role == "master"


class _Host(object):
    """One machine of the pool: alive or not, its xapi (None while it is not running)."""

    def __init__(self, spec, disk_role):
        self.name = spec["name"]
        self.uuid = spec["uuid"]
        self.address = spec["address"]
        self.netns = spec["netns"]
        self.plugin_dir = spec["plugin_dir"]
        self.pool_conf = spec["pool_conf"]
        self.ref = None
        self.metrics_ref = None
        self.alive = True
        self.boots = 0  # counts the machine's lives, so that a timer of an earlier one is void
        self.died_at = None
        self.disk_role = disk_role  # pool.conf: "master" or "slave:<address>"
        self.xapi = None
        # What this host starts from should it become master: its own database when
        # it was master, else the last copy the master sent it.
        self.backup = None
        self.message_backup = None
        self.ha_armed = False
        self.fenced = False  # HA declared it dead
        self.listeners = []
        self.plugin_runs = set()


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
        self._lock = threading.Condition(threading.RLock())
        self._audit = []
        self._hosts = {}
        self._started = False
        self._runs = 0
        self._timers = set()
        self._build_database()
        self._control = Listener(self, "control", "control", "127.0.0.1")
        self._pool_listener = Listener(self, "pool", "pool", "127.0.0.1")
        for host in self._hosts.values():
            host.listeners.append(Listener(self, host.name + "/loopback", "host",
                                           "127.0.0.1", host_name=host.name))
            if host.netns:
                host.listeners.append(Listener(self, host.name + "/netns", "host",
                                               host.address, XAPI_PORT, host.name, host.netns))
        self._methods = self._method_table()
        self._lab_methods = {
            "lab.fail_host": _Method(self._lab_fail_host, 1, needs_session=False),
            "lab.restore_host": _Method(self._lab_restore_host, 1, needs_session=False),
            "lab.audit": _Method(self._lab_audit, 0, needs_session=False),
        }

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()

    # -- lifecycle -------------------------------------------------------------

    def start(self):
        """Every host's xapi starts at once (the lab begins with a settled pool)."""
        with self._lock:
            self._started = True
            try:
                self._control.open()
                # The master first, so that the slaves find it as they start.
                for host in sorted(self._hosts.values(), key=lambda h: h.disk_role != "master"):
                    self._write_pool_conf(host)
                    self._start_xapi(host, host.boots)
                self._every(self.timers["gc_interval"], self._collect_garbage)
            except Exception:
                self.stop()
                raise

    def stop(self):
        with self._lock:
            self._started = False
            for timer in list(self._timers):
                timer.cancel()
            self._timers.clear()
            for listener in self._all_listeners():
                listener.close()
            for host in self._hosts.values():
                host.xapi = None
                self._kill_plugins(host)
            self._lock.notify_all()

    @property
    def urls(self):
        with self._lock:
            return {
                "pool": self._pool_listener.url,
                "control": self._control.url,
                "hosts": {
                    host.name: {
                        "loopback": host.listeners[0].url,
                        "netns": host.listeners[1].url if host.netns else None,
                    }
                    for host in self._hosts.values()
                },
            }

    def running_masters(self):
        """Names of the hosts whose xapi runs as master now (two after a split)."""
        with self._lock:
            return sorted(host.name for host in self._hosts.values()
                          if host.xapi and host.xapi.is_master)

    def _all_listeners(self):
        listeners = [self._control, self._pool_listener]
        for host in self._hosts.values():
            listeners.extend(host.listeners)
        return listeners

    def _build_database(self):
        db = Database()
        master = self.config["master"]
        master_address = next(spec["address"] for spec in self.config["hosts"]
                              if spec["name"] == master)
        for spec in self.config["hosts"]:
            role = "master" if spec["name"] == master else "slave:" + master_address
            host = _Host(spec, role)
            host.metrics_ref = db.add("host_metrics", {
                "uuid": str(uuid.uuid4()), "live": True,
                "last_updated": xapi_now(), "other_config": {}})
            host.ref = db.add("host", {
                "uuid": host.uuid, "name_label": host.name, "name_description": "",
                "hostname": host.name, "address": host.address, "enabled": True,
                "metrics": host.metrics_ref, "other_config": {},
                "API_version_major": "2", "API_version_minor": "21"})
            self._hosts[host.name] = host
        # HA's heartbeat needs an SR outside the pair (the one iscsi-ha serves cannot be it).
        db.add("SR", {"uuid": str(uuid.uuid4()), "name_label": "ha-statefile",
                      "name_description": "shared storage outside the pair, for HA",
                      "type": "nfs", "shared": True, "other_config": {}})
        ha = self.config["elector"] == "xapi-ha"
        self._pool_ref = db.add("pool", {
            "uuid": str(uuid.uuid4()), "name_label": self.config["pool_name"],
            "name_description": "", "master": self._hosts[master].ref,
            "default_SR": NULL_REF, "other_config": {}, "ha_enabled": ha,
            "ha_statefiles": [], "current_operations": {}})
        for host in self._hosts.values():
            host.backup = db.copy()
            host.message_backup = Messages()
            host.ha_armed = ha

    # -- timers ----------------------------------------------------------------

    def _after(self, seconds, function, *args):
        """Run ``function(*args)`` under the lock in ``seconds``, unless the simulator stops."""
        def fire():
            with self._lock:
                self._timers.discard(timer)
                if self._started:
                    function(*args)
        timer = threading.Timer(seconds, fire)
        timer.daemon = True
        self._timers.add(timer)
        timer.start()

    def _every(self, seconds, function):
        """Run ``function()`` every ``seconds`` for as long as it returns True."""
        def tick():
            if function():
                self._after(seconds, tick)
        self._after(seconds, tick)

    def _sleep(self, call, seconds):
        """Wait ``seconds`` with the lock released; the call ends if its xapi exits."""
        deadline = time.monotonic() + seconds
        while True:
            self._assert_serving(call)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._lock.wait(remaining)

    def _assert_serving(self, call):
        if call.host.xapi is not call.xapi:
            raise ConnectionDropped()

    # -- each host's xapi --------------------------------------------------------

    def _write_pool_conf(self, host):
        if host.pool_conf:
            # xapi writes the role without a trailing newline.
            write_atomically(host.pool_conf, host.disk_role)

    def _set_disk_role(self, host, role):
        host.disk_role = role
        self._write_pool_conf(host)

    def _host_at(self, address):
        return next((host for host in self._hosts.values() if host.address == address), None)

    def _master_at(self, address):
        """The running master xapi at ``address``, or None: what a slave can reach."""
        host = self._host_at(address)
        if host is None or not host.alive or host.xapi is None or not host.xapi.is_master:
            return None
        return host.xapi

    def _connected_slave(self, host, master):
        """Whether ``host`` runs as a slave in touch with ``master``'s xapi."""
        xapi = host.xapi
        return (host.alive and xapi is not None and not xapi.is_master and not xapi.booting
                and xapi.master_address == master.address)

    def _start_xapi(self, host, boots):
        if not host.alive or host.boots != boots or host.xapi is not None:
            return
        now = time.monotonic()
        self._runs += 1
        if host.disk_role == "master":
            # xapi's check for other masters: whoever starts later yields.
            for other in self._hosts.values():
                if other is not host and self._master_at(other.address):
                    self._set_disk_role(host, "slave:" + other.address)
                    self._after(self.timers["xapi_start"], self._start_xapi, host, boots)
                    return
            xapi = _Xapi(self._runs, "master", None, now)
            xapi.db = host.backup.copy()
            xapi.messages = host.message_backup.copy()
            host.xapi = xapi
            self._become_master(host)
        else:
            xapi = _Xapi(self._runs, "slave", host.disk_role[len("slave:"):], now)
            host.xapi = xapi
            self._join_master(host, xapi.run)
        if self._started:
            for listener in host.listeners:
                listener.open()
        self._sync_pool_listener()
        self._lock.notify_all()

    def _become_master(self, host):
        xapi = host.xapi
        db = xapi.db
        db.update(self._pool_ref, {"master": host.ref, "current_operations": {}})
        ha = self._ha_enabled(db)
        for other in self._hosts.values():
            xapi.heard[other.name] = xapi.started
            if other is host:
                live = True
            elif ha:
                live = not other.fenced
            else:
                # A new master's clocks start afresh: every host looks alive for a while.
                live = True
            if db.record("host_metrics", other.metrics_ref)["live"] != live:
                db.update(other.metrics_ref, {"live": live})
        self._every(self.timers["db_backup_interval"],
                    lambda: self._back_up_database(host, xapi))

    def _join_master(self, host, run):
        """A starting slave's hello to its master, retried until the master answers."""
        xapi = host.xapi
        if xapi is None or xapi.run != run or not xapi.booting:
            return
        master = self._master_at(xapi.master_address)
        if master is None:
            self._after(self.timers["slave_retry"], self._join_master, host, run)
            return
        xapi.booting = False
        host.ha_armed = self._ha_enabled(master.db)
        master.heard[host.name] = time.monotonic()
        if not master.db.record("host_metrics", host.metrics_ref)["live"]:
            master.db.update(host.metrics_ref, {"live": True})
        self._lock.notify_all()

    def _stop_xapi(self, host):
        """xapi exits: its sessions and connections are gone; a master flushes its database."""
        xapi = host.xapi
        if xapi is None:
            return
        host.xapi = None
        if xapi.is_master:
            host.backup = xapi.db.copy()
            host.message_backup = xapi.messages.copy()
        for listener in host.listeners:
            listener.close()
        self._sync_pool_listener()
        for other in self._hosts.values():
            if (other.xapi and other.xapi.restart_with_master
                    and other.xapi.master_address == host.address):
                self._restart_xapi(other)
        self._lock.notify_all()

    def _restart_xapi(self, host):
        self._stop_xapi(host)
        self._after(self.timers["xapi_start"], self._start_xapi, host, host.boots)

    def _light_fuse(self, host):
        xapi = host.xapi
        if xapi.fuse_lit:
            return  # xapi lights its fuse once
        xapi.fuse_lit = True

        def blow():
            if host.xapi is xapi:
                self._restart_xapi(host)
        self._after(self.timers["fuse"], blow)

    def _back_up_database(self, host, xapi):
        if host.xapi is not xapi:
            return False
        self._sync_backups(host, messages=False)
        return True

    def _sync_backups(self, host, messages):
        """The master's database (and messages) copied to every slave in touch with it."""
        xapi = host.xapi
        for other in self._hosts.values():
            if other is not host and self._connected_slave(other, host):
                other.backup = xapi.db.copy()
                if messages:
                    other.message_backup = xapi.messages.copy()

    def _sync_pool_listener(self):
        masters = [host for host in self._hosts.values()
                   if host.alive and host.xapi and host.xapi.is_master]
        target = masters[0].name if len(masters) == 1 else None
        listener = self._pool_listener
        if listener.is_open and listener.host_name == target:
            return
        listener.close()
        listener.host_name = target
        if target is not None and self._started:
            listener.open()

    def _collect_garbage(self):
        """The master's periodic pass: host liveness without HA, idle sessions."""
        now = time.monotonic()
        for host in self._hosts.values():
            xapi = host.xapi
            if xapi is None:
                continue
            expired = [ref for ref, session in xapi.sessions.items()
                       if now - session.last_active > self.timers["session_idle"]]
            for ref in expired:
                del xapi.sessions[ref]
            if expired:
                self._lock.notify_all()
            if not xapi.is_master or self._ha_enabled(xapi.db):
                continue
            for other in self._hosts.values():
                if other is host:
                    continue
                if self._connected_slave(other, host):
                    xapi.heard[other.name] = now
                live = xapi.db.record("host_metrics", other.metrics_ref)["live"]
                quiet = now - xapi.heard[other.name] > self.timers["host_assumed_dead"]
                if live == quiet:
                    xapi.db.update(other.metrics_ref, {"live": not quiet})
                    self._lock.notify_all()
        return True

    def _ha_enabled(self, db):
        return db.record("pool", self._pool_ref)["ha_enabled"]

    def _ha_fence(self, dead, boots):
        """HA has fenced ``dead``: not live for its master; a slave of it becomes master."""
        if dead.alive or dead.boots != boots:
            return
        dead.fenced = True
        for host in self._hosts.values():
            xapi = host.xapi
            if not host.alive or xapi is None or not host.ha_armed:
                continue
            if xapi.is_master:
                xapi.db.update(dead.metrics_ref, {"live": False})
            elif xapi.master_address == dead.address:
                # HA's statefile holds the database's redo log: nothing is lost.
                host.backup = dead.backup.copy()
                self._set_disk_role(host, "master")
                self._light_fuse(host)
        self._lock.notify_all()

    # -- lab controls (also reachable as lab.* calls) --------------------------

    def fail_host(self, name):
        """The host dies: its listeners refuse connections, its plugins are killed."""
        with self._lock:
            host = self._lab_host(name)
            if not host.alive:
                return
            self._stop_xapi(host)
            host.alive = False
            host.boots += 1
            host.died_at = time.monotonic()
            self._kill_plugins(host)
            if host.ha_armed:
                self._after(self.timers["ha_fence"], self._ha_fence, host, host.boots)
            self._sync_pool_listener()
            self._lock.notify_all()

    def restore_host(self, name):
        """The host boots again; its xapi starts with the role its pool.conf names."""
        with self._lock:
            host = self._lab_host(name)
            if host.alive:
                return
            host.alive = True
            host.boots += 1
            host.fenced = False
            self._after(self.timers["xapi_start"], self._start_xapi, host, host.boots)
            self._lock.notify_all()

    def audit_entries(self):
        with self._lock:
            return copy.deepcopy(self._audit)

    def _lab_host(self, name):
        if name not in self._hosts:
            raise XapiFailure("LAB_UNKNOWN_HOST", name)
        return self._hosts[name]

    def _lab_fail_host(self, call, name):
        self.fail_host(name)
        return ""

    def _lab_restore_host(self, call, name):
        self.restore_host(name)
        return ""

    def _lab_audit(self, call):
        return self.audit_entries()

    # -- calls: who may call what, and the audit trail -------------------------

    def answer(self, listener, method, params):
        """The reply struct to one call arriving at ``listener``, or None to drop the connection.

        Every call, whatever its outcome, goes to the audit trail.
        """
        started = time.monotonic()
        with self._lock:
            behind = self._host_behind(listener)
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

    def _host_behind(self, listener):
        if listener.kind in ("host", "pool") and listener.host_name:
            return self._hosts[listener.host_name]
        return None

    def _method_spec(self, listener, method):
        if method.startswith("lab."):
            return self._lab_methods.get(method) if listener.loopback else None
        if listener.kind == "control":
            return None
        return self._methods.get(method)

    def _dispatch(self, listener, method, params):
        args = list(params)
        with self._lock:
            call = _Call(listener, self._host_behind(listener))
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
            master = self._master_at(xapi.master_address)
            if master is not None:
                break
            self._assert_serving(call)
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
            "message.create": _Method(self._message_create, 5),
            "message.get_all": _Method(lambda call: sorted(self._messages(call).records()), 0),
            "message.get_all_records": _Method(lambda call: self._messages(call).records(), 0),
            "message.get_record": _Method(lambda call, ref: self._messages(call).record(ref), 1),
            "message.get_by_uuid": _Method(
                lambda call, message_uuid: self._messages(call).ref_by_uuid(message_uuid), 1),
            "event.from": _Method(self._event_from, 3),
        }
        fields = {cls: self._hosts[self.config["master"]].backup.rows(cls)[0].record
                  for cls in TABLES}
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
        sessions[ref] = _Session(None, str(originator), time.monotonic())
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
        call.xapi.sessions[ref] = _Session(call.host.name, "", time.monotonic())
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
        return next(host for host in self._hosts.values() if host.ref == ref)

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
            self._sleep(call, self.timers["call_plugin_retry"])
        raise XapiFailure("CANNOT_CONTACT_HOST", target.ref)

    def _pool_operation(self, call, operation):
        """Enter a pool operation; the others refuse while it runs.  Returns its key."""
        db = self._db(call)
        running = db.record("pool", self._pool_ref)["current_operations"]
        for other in running.values():
            raise XapiFailure(POOL_OPERATIONS[other])
        key = new_ref()
        db.update(self._pool_ref, {"current_operations": dict(running, **{key: operation})})
        self._lock.notify_all()
        return key

    def _end_pool_operation(self, call, key):
        db = self._db(call)
        running = dict(db.record("pool", self._pool_ref)["current_operations"])
        running.pop(key, None)
        db.update(self._pool_ref, {"current_operations": running})
        self._lock.notify_all()

    def _pool_designate_new_master(self, call, host_ref):
        target = self._host_by_ref(self._db(call), host_ref)
        operation = self._pool_operation(call, "designate_new_master")
        try:
            if target is call.host:
                return ""  # xapi: this host is master already, nothing to do
            self._check_live(call, target)
            self._reach(call, target)
            if self._ha_enabled(self._db(call)):
                raise XapiFailure("HA_IS_ENABLED")
            self._sleep(call, self.timers["designate_call"])
            if not target.alive or target.xapi is None:
                raise XapiFailure("CANNOT_CONTACT_HOST", target.ref)
            self._sync_backups(call.host, messages=True)
            self._set_disk_role(call.host, "slave:" + target.address)
            self._set_disk_role(target, "master")
            target.xapi.restart_with_master = True
            self._light_fuse(call.host)
        finally:
            if call.host.xapi is call.xapi:
                self._end_pool_operation(call, operation)
        return ""

    def _pool_emergency_transition(self, call):
        if call.host.ha_armed:
            raise XapiFailure("HA_IS_ENABLED")
        self._set_disk_role(call.host, "master")
        self._light_fuse(call.host)
        return ""

    def _pool_enable_ha(self, call, heartbeat_srs, configuration):
        db = self._db(call)
        if self._ha_enabled(db):
            raise XapiFailure("HA_IS_ENABLED")
        if not isinstance(heartbeat_srs, list) or not isinstance(configuration, dict):
            raise XapiFailure("FIELD_TYPE_ERROR", "heartbeat_srs")
        for ref in heartbeat_srs:
            db.row("SR", ref)
        operation = self._pool_operation(call, "ha_enable")
        try:
            for host in self._hosts.values():
                if not db.record("host_metrics", host.metrics_ref)["live"]:
                    raise XapiFailure("HOST_OFFLINE", host.ref)
            candidates = heartbeat_srs or [row.ref for row in db.rows("SR")
                                           if row.record["shared"]]
            if not candidates:
                raise XapiFailure("CANNOT_CREATE_STATE_FILE")
            db.update(self._pool_ref, {"ha_enabled": True, "ha_statefiles": [candidates[0]]})
            for host in self._hosts.values():
                if host is call.host or self._connected_slave(host, call.host):
                    host.ha_armed = True
        finally:
            self._end_pool_operation(call, operation)
        return ""

    def _pool_disable_ha(self, call):
        db = self._db(call)
        if not self._ha_enabled(db):
            raise XapiFailure("HA_NOT_ENABLED")
        operation = self._pool_operation(call, "ha_disable")
        try:
            db.update(self._pool_ref, {"ha_enabled": False, "ha_statefiles": []})
            now = time.monotonic()
            for host in self._hosts.values():
                if host is call.host or self._connected_slave(host, call.host):
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
        self._sleep(call, EVENT_BATCHING)
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
            self._sleep(call, EVENT_BATCHING)
        return {"events": events, "valid_ref_counts": db.counts(),
                "token": make_token(db.generation, messages.generation)}

    def _assert_session(self, call):
        """A blocked call ends the way it would on real xapi when the world changes under it."""
        self._assert_serving(call)
        if call.session_ref not in call.xapi.sessions:
            raise XapiFailure("SESSION_INVALID", call.session_ref)

    # -- host plugins ----------------------------------------------------------

    def _host_call_plugin(self, call, host_ref, plugin, fn, args):
        if not isinstance(args, dict) or not all(
                isinstance(key, str) and isinstance(value, str) for key, value in args.items()):
            raise XapiFailure("FIELD_TYPE_ERROR", "args")
        target = self._host_by_ref(self._db(call), host_ref)
        self._check_live(call, target)
        serving = target.xapi if target is call.host else self._reach(call, target)
        path = find_plugin(target.plugin_dir, plugin)

        def done(run):
            with self._lock:
                target.plugin_runs.discard(run)
                self._lock.notify_all()
        run = PluginRun(path, call.session_ref, fn, args, target.netns,
                        self.config["ip_tool"], done)
        target.plugin_runs.add(run)
        return self._wait_for_plugin(call, target, serving, run)

    def _wait_for_plugin(self, call, target, serving, run):
        while not run.done:
            self._assert_serving(call)
            if not target.alive:
                # Nothing answers, nothing closes the connection: the call hangs.
                self._sleep(call, max(0.0, target.died_at + self.timers["in_flight_hang"]
                                      - time.monotonic()))
                raise XapiFailure("CANNOT_CONTACT_HOST", target.ref)
            if target.xapi is not serving:
                raise XapiFailure("CANNOT_CONTACT_HOST", target.ref)  # its xapi restarted
            self._lock.wait()
        self._assert_serving(call)
        return run.result()

    def _kill_plugins(self, host):
        for run in list(host.plugin_runs):
            run.kill()


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
